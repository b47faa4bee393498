import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { BlockList, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { DESCRIPTOR, Gate, type Lease, SLOT_SHARES } from '../src/gate.js';
import { type Conn, type RejectReason, type ServeOptions, type Server, serve } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import { ChannelProbe, type Client, connect, deferred, LOOPBACK, portOf, stop, until, within } from './helpers.js';

const TEST = { timeout: 20_000 };

/**
 * A server whose handlers each read the client's name (its first bytes), record it in the
 * order admitted, and hold their slot until the test releases that name.
 */
class Holding {
  readonly admitted: string[] = [];
  server!: Server;
  port = 0;
  #holds = new Map<string, ReturnType<typeof deferred<void>>>();
  #admittedWaiters: (() => void)[] = [];

  static async start(options: ServeOptions): Promise<Holding> {
    const h = new Holding();
    h.server = await serve({ ...LOOPBACK, ...options }, async (conn) => {
      const name = (await conn.read())?.toString() ?? '';
      h.admitted.push(name);
      for (const w of h.#admittedWaiters.splice(0)) w();
      await h.#hold(name).promise;
      await conn.write(`bye ${name}`);
    });
    h.port = portOf(h.server);
    return h;
  }

  #hold(name: string): ReturnType<typeof deferred<void>> {
    let d = this.#holds.get(name);
    if (d === undefined) {
      d = deferred();
      this.#holds.set(name, d);
    }
    return d;
  }

  release(name: string): void {
    this.#hold(name).resolve();
  }

  /** Waits until `n` handlers have been admitted. */
  async admittedCount(n: number): Promise<string[]> {
    await within(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (this.admitted.length >= n) resolve();
          else this.#admittedWaiters.push(check);
        };
        check();
      }),
      5000,
      `${n} admitted handlers (got ${this.admitted.join(',')})`,
    );
    return this.admitted;
  }

  /** Connects a client that introduces itself by `name`, and waits until the server accepted it. */
  async client(name: string, localAddress?: string): Promise<Client> {
    const accepted = this.server.stats().accepted;
    const c = await connect(this.port, { localAddress });
    c.write(name);
    await until(() => this.server.stats().accepted > accepted, `the server to accept ${name}`);
    return c;
  }

  async stop(): Promise<void> {
    for (const d of this.#holds.values()) d.resolve();
    await stop(this.server);
  }
}

describe('Gate: maxConnections with whenFull "wait"', () => {
  it('holds connections beyond the cap and admits them in FIFO order as slots free', TEST, async () => {
    const h = await Holding.start({ maxConnections: 2, maxWaiting: 10 });
    try {
      const clients: Client[] = [];
      for (const name of ['c1', 'c2']) clients.push(await h.client(name));
      await h.admittedCount(2);
      for (const [i, name] of ['c3', 'c4', 'c5'].entries()) {
        clients.push(await h.client(name));
        await until(() => h.server.stats().waiting === i + 1, `${name} to wait`);
      }
      assert.deepEqual(h.admitted, ['c1', 'c2']);
      const s = h.server.stats();
      assert.equal(s.active, 2);
      assert.equal(s.waiting, 3);
      assert.equal(s.accepted, 5);
      assert.equal(s.served, 2);
      h.release('c1');
      await h.admittedCount(3);
      h.release('c2');
      await h.admittedCount(4);
      h.release('c3');
      await h.admittedCount(5);
      assert.deepEqual(h.admitted, ['c1', 'c2', 'c3', 'c4', 'c5'], 'admitted first come, first served');
      await within(clients[0]!.receiveText('bye c1'), 5000, 'the first reply');
      for (const name of ['c4', 'c5']) h.release(name);
      for (const c of clients) await c.waitClosed();
      const end = h.server.stats();
      assert.equal(end.served, 5);
      assert.equal(end.waiting, 0);
      assert.deepEqual(end.rejected, { full: 0, perPeer: 0, blocked: 0, waitTimeout: 0, shutdown: 0, abandoned: 0 });
    } finally {
      await h.stop();
    }
  });

  it('rejects a waiting connection after waitTimeout (rejected.waitTimeout, published)', TEST, async () => {
    const probe = new ChannelProbe<{ remoteAddress: string; reason: RejectReason }>('tcpkit:connection:reject');
    const h = await Holding.start({ maxConnections: 1, waitTimeout: 250 });
    try {
      await h.client('holder');
      await h.admittedCount(1);
      const waiter = await h.client('waiter');
      await until(() => h.server.stats().waiting === 1, 'the waiter to queue');
      const closed = await waiter.waitClosed();
      assert.equal(closed.ended || closed.error !== undefined, true);
      assert.equal(waiter.receivedLength, 0, 'its handler never ran');
      const s = h.server.stats();
      assert.equal(s.rejected.waitTimeout, 1);
      assert.equal(s.waiting, 0);
      assert.equal(s.served, 1);
      const m = await probe.next((m) => m.reason === 'waitTimeout');
      assert.equal(m.remoteAddress, '127.0.0.1');
      assert.deepEqual(h.admitted, ['holder']);
    } finally {
      probe.stop();
      await h.stop();
    }
  });

  it('rejects beyond maxWaiting as full', TEST, async () => {
    const h = await Holding.start({ maxConnections: 1, maxWaiting: 1, waitTimeout: 0 });
    try {
      await h.client('holder');
      await h.admittedCount(1);
      await h.client('queued');
      await until(() => h.server.stats().waiting === 1, 'one waiter');
      const third = await h.client('third');
      await third.waitClosed();
      const s = h.server.stats();
      assert.equal(s.rejected.full, 1);
      assert.equal(s.waiting, 1, 'the queued connection still waits');
      h.release('holder');
      await h.admittedCount(2);
      assert.deepEqual(h.admitted, ['holder', 'queued']);
    } finally {
      await h.stop();
    }
  });

  it('with maxWaiting 0 behaves as reject', TEST, async () => {
    const h = await Holding.start({ maxConnections: 1, maxWaiting: 0 });
    try {
      await h.client('holder');
      await h.admittedCount(1);
      const second = await h.client('second');
      await second.waitClosed();
      assert.equal(h.server.stats().rejected.full, 1);
    } finally {
      await h.stop();
    }
  });
});

describe('Gate: maxConnections with whenFull "reject"', () => {
  it('closes connections beyond the cap at once and keeps serving the admitted ones', TEST, async () => {
    const probe = new ChannelProbe<{ remoteAddress: string; reason: RejectReason }>('tcpkit:connection:reject');
    const h = await Holding.start({ maxConnections: 2, whenFull: 'reject' });
    try {
      const a = await h.client('a');
      await h.client('b');
      await h.admittedCount(2);
      const rejected: Client[] = [];
      for (const name of ['x', 'y', 'z']) rejected.push(await h.client(name));
      for (const c of rejected) {
        await c.waitClosed();
        assert.equal(c.receivedLength, 0);
      }
      const s = h.server.stats();
      assert.equal(s.rejected.full, 3);
      assert.equal(s.waiting, 0);
      assert.equal(s.active, 2);
      assert.equal(probe.messages.filter((m) => m.reason === 'full').length, 3);
      h.release('a');
      assert.match(await a.receiveText('bye a'), /bye a/);
      // The freed slot takes a new connection.
      await h.client('later');
      await h.admittedCount(3);
      assert.deepEqual(h.admitted, ['a', 'b', 'later']);
    } finally {
      probe.stop();
      await h.stop();
    }
  });
});

describe('Gate: maxConnectionsPerPeer', () => {
  it('caps connections per remote IP; another address is still admitted', TEST, async () => {
    const probe = new ChannelProbe<{ remoteAddress: string; reason: RejectReason }>('tcpkit:connection:reject');
    const h = await Holding.start({ maxConnectionsPerPeer: 2 });
    try {
      await h.client('a1');
      await h.client('a2');
      await h.admittedCount(2);
      const a3 = await h.client('a3');
      await a3.waitClosed();
      assert.equal(a3.receivedLength, 0);
      await h.client('b1', '127.0.0.2');
      await h.admittedCount(3);
      assert.deepEqual(h.admitted, ['a1', 'a2', 'b1']);
      const m = await probe.next((m) => m.reason === 'perPeer');
      assert.equal(m.remoteAddress, '127.0.0.1');
      assert.equal(h.server.stats().rejected.perPeer, 1);
      // A slot of that peer frees: it may connect again.
      h.release('a1');
      await until(() => h.server.stats().active === 2, 'a1 to finish');
      await h.client('a4');
      await h.admittedCount(4);
      assert.equal(h.admitted[3], 'a4');
      assert.equal(h.server.stats().rejected.perPeer, 1);
    } finally {
      probe.stop();
      await h.stop();
    }
  });

  it('counts waiting connections toward the peer cap', TEST, async () => {
    const h = await Holding.start({ maxConnections: 1, maxWaiting: 10, maxConnectionsPerPeer: 2 });
    try {
      await h.client('a1');
      await h.admittedCount(1);
      await h.client('a2');
      await until(() => h.server.stats().waiting === 1, 'a2 to wait');
      const a3 = await h.client('a3');
      await a3.waitClosed();
      await h.client('b1', '127.0.0.2');
      await until(() => h.server.stats().waiting === 2, 'b1 to wait');
      const s = h.server.stats();
      assert.equal(s.rejected.perPeer, 1);
      assert.equal(s.rejected.full, 0);
      h.release('a1');
      await h.admittedCount(2);
      h.release('a2');
      await h.admittedCount(3);
      assert.deepEqual(h.admitted, ['a1', 'a2', 'b1']);
    } finally {
      await h.stop();
    }
  });

  it('returns the peer slot of a connection rejected after waiting', TEST, async () => {
    const h = await Holding.start({ maxConnections: 1, maxConnectionsPerPeer: 2, waitTimeout: 200 });
    try {
      await h.client('a1');
      await h.admittedCount(1);
      const a2 = await h.client('a2');
      await a2.waitClosed();
      assert.equal(h.server.stats().rejected.waitTimeout, 1);
      // a2's slot is back: a3 may wait in its place rather than be refused as perPeer.
      await h.client('a3');
      await until(() => h.server.stats().waiting === 1, 'a3 to wait');
      assert.equal(h.server.stats().rejected.perPeer, 0);
    } finally {
      await h.stop();
    }
  });
});

describe('Gate: blockList', () => {
  it('closes connections from a blocked address at accept and serves the others', TEST, async () => {
    const probe = new ChannelProbe<{ remoteAddress: string; reason: RejectReason }>('tcpkit:connection:reject');
    const blockList = new BlockList();
    blockList.addAddress('127.0.0.2');
    const h = await Holding.start({ blockList });
    try {
      const blocked = await h.client('blocked', '127.0.0.2');
      await blocked.waitClosed();
      assert.equal(blocked.receivedLength, 0);
      const ok = await h.client('ok');
      await h.admittedCount(1);
      h.release('ok');
      assert.match(await ok.receiveText('bye ok'), /bye ok/);
      assert.deepEqual(h.admitted, ['ok']);
      const s = h.server.stats();
      assert.equal(s.rejected.blocked, 1);
      assert.equal(s.served, 1);
      const m = await probe.next((m) => m.reason === 'blocked');
      assert.equal(m.remoteAddress, '127.0.0.2');
    } finally {
      probe.stop();
      await h.stop();
    }
  });

  it('blocks a whole subnet', TEST, async () => {
    const blockList = new BlockList();
    blockList.addSubnet('127.0.0.0', 30);
    const h = await Holding.start({ blockList });
    try {
      for (const address of ['127.0.0.1', '127.0.0.2']) {
        const c = await h.client(address, address);
        await c.waitClosed();
      }
      assert.equal(h.server.stats().rejected.blocked, 2);
      assert.equal(h.server.stats().served, 0);
    } finally {
      await h.stop();
    }
  });
});

describe('Lease', () => {
  /** A gate over stand-in sockets (no I/O): records what it admits and turns away. */
  function gate(options: ServeOptions) {
    const admitted: { name: string; lease: Lease }[] = [];
    const rejected: string[] = [];
    const g = new Gate(resolveOptions(options), {
      admit: (socket, lease) => admitted.push({ name: (socket as unknown as { name: string }).name, lease }),
      reject: (_socket, _peer, reason) => rejected.push(reason),
      shed: () => rejected.push('shed'),
    });
    const offer = (name: string, peer = '127.0.0.1') =>
      g.offer(
        Object.assign(new EventEmitter(), {
          name,
          destroyed: false,
          destroy() {},
          pause() {},
          resume() {},
        }) as unknown as Socket,
        peer,
      );
    return { g, admitted, rejected, offer };
  }

  it('gives its slot back once, however often it is released', () => {
    const { g, admitted, offer } = gate({ maxConnections: 1, maxWaiting: 5, waitTimeout: 0 });
    assert.equal(offer('a'), 'run');
    assert.equal(offer('b'), 'wait');
    assert.equal(offer('c'), 'wait');
    const a = admitted[0]!.lease;
    a.releaseSlot();
    a.releaseSlot();
    a.release();
    assert.deepEqual(
      admitted.map((x) => x.name),
      ['a', 'b'],
      'one slot freed: one waiter admitted',
    );
    assert.equal(g.waiting, 1);
  });

  it('gives the per-peer count back with the slot, and the descriptor only at release', () => {
    const { admitted, rejected, offer } = gate({ maxConnections: 10, maxConnectionsPerPeer: 1 });
    assert.equal(offer('a'), 'run');
    assert.equal(offer('b'), 'rejected');
    assert.deepEqual(rejected, ['perPeer']);
    admitted[0]!.lease.releaseSlot();
    assert.equal(offer('c'), 'run', 'the peer’s count went back with the slot');
    admitted[0]!.lease.releaseDescriptor();
    admitted[0]!.lease.release();
    assert.equal(offer('d'), 'rejected', 'c still counts; releasing a twice gave nothing more back');
  });

  it('hands its shares over once: the lease gives nothing back after, the holder of the shares does, once', () => {
    const { g, admitted, offer } = gate({ maxConnections: 1, maxWaiting: 5, waitTimeout: 0 });
    assert.equal(offer('a'), 'run');
    assert.equal(offer('b'), 'wait');
    const lease = admitted[0]!.lease;
    let shares = lease.handOver();
    lease.release();
    assert.equal(g.waiting, 1, 'the handed-over lease freed no slot');
    shares = g.give(lease.peer, shares, SLOT_SHARES);
    assert.equal(shares, DESCRIPTOR, 'the descriptor is still held');
    assert.deepEqual(
      admitted.map((x) => x.name),
      ['a', 'b'],
      'the slot given back admitted the waiter',
    );
    assert.equal(g.give(lease.peer, shares, SLOT_SHARES), DESCRIPTOR, 'the slot again: nothing more given');
    assert.equal(offer('c'), 'wait', 'b holds the one slot');
    assert.equal(g.descriptors.open, 3);
    assert.equal(g.give(lease.peer, shares, DESCRIPTOR), 0);
    assert.equal(g.descriptors.open, 2);
  });
});

describe('Gate: the slot of a finished handler', () => {
  it(
    'a finished handler whose output waits for a non-reading peer keeps its slot until the socket closes',
    TEST,
    async () => {
      const closes = new ChannelProbe<{ conn: Conn }>('tcpkit:connection:close');
      const server = await serve({ ...LOOPBACK, maxConnections: 1, whenFull: 'reject' }, async (conn) => {
        conn.write(Buffer.alloc(8 * 1024 * 1024)).catch(() => {});
      });
      try {
        const port = portOf(server);
        const first = await connect(port, { read: false });
        await until(() => server.stats().served === 1 && server.stats().active === 0, 'the first handler to return');
        const second = await connect(port);
        await second.waitClosed();
        assert.equal(server.stats().rejected.full, 1, 'the lingering socket still holds the only slot');
        first.destroy();
        await closes.next(); // the first connection's server socket closed: its slot is free

        const third = await connect(port, { read: false });
        await until(() => server.stats().served === 2, 'the slot freed by the close admits the next');
        third.destroy();
      } finally {
        closes.stop();
        await stop(server);
      }
    },
  );

  it(
    'frees the slot once the finished handler’s output is delivered, though the peer keeps its side open',
    TEST,
    async () => {
      const size = 16 * 1024 * 1024;
      const server = await serve({ ...LOOPBACK, maxConnections: 1 }, async (conn) => {
        conn.write(Buffer.alloc(size, 1)).catch(() => {});
      });
      try {
        const port = portOf(server);
        const first = await connect(port, { allowHalfOpen: true });
        await first.receive(size, 10_000); // all of it read; the client never closes its side
        const second = await connect(port);
        second.write('next');
        // Admitted (and its handler's reply arrives) long before writeTimeout (30 s) or any linger would end.
        await second.receive(size, 10_000);
        assert.equal(server.stats().served, 2);
        first.destroy();
        second.destroy();
      } finally {
        await stop(server);
      }
    },
  );
});
