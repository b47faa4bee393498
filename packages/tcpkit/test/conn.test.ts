// Conn's lifecycle (src/conn.ts, src/conn-core.ts): properties, close, destroy, setTimeouts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type Conn, InvalidOptionError, serve } from '../src/index.js';
import {
  codeOf,
  connect,
  deferred,
  exchange,
  LOOPBACK,
  portOf,
  stop,
  until,
  withConn,
  within,
  withServer,
} from './helpers.js';

const TEST = { timeout: 20_000 };

describe('Conn properties', () => {
  it('exposes the addresses, ports, a unique id and byte counters', TEST, async () => {
    const seen: Conn[] = [];
    const server = await serve(LOOPBACK, async (conn) => {
      seen.push(conn);
      for await (const chunk of conn) await conn.write(chunk);
    });
    try {
      const port = portOf(server);
      const a = await connect(port);
      const b = await connect(port, { localAddress: '127.0.0.2' });
      a.write('12345');
      b.write('x');
      await a.receive(5);
      await b.receive(1);
      assert.equal(seen.length, 2);
      const [ca, cb] = seen.sort((x, y) => x.id - y.id) as [Conn, Conn];
      assert.notEqual(ca.id, cb.id);
      const byPort = (p: number | undefined): Conn => (ca.remotePort === p ? ca : cb);
      const connA = byPort(a.socket.localPort);
      const connB = byPort(b.socket.localPort);
      assert.notEqual(connA, connB);
      assert.equal(connA.remoteAddress, '127.0.0.1');
      assert.equal(connB.remoteAddress, '127.0.0.2');
      assert.equal(connA.localAddress, '127.0.0.1');
      assert.equal(connA.localPort, port);
      assert.equal(connA.bytesRead, 5);
      await until(() => connA.bytesWritten === 5, 'bytesWritten to reach 5');
      assert.equal(connA.isClosed, false);
      a.destroy();
      b.destroy();
      await until(() => connA.isClosed && connB.isClosed, 'both connections to close');
    } finally {
      await stop(server);
    }
  });
});

describe('Conn addresses', () => {
  // The local end is the listener's (no getsockname per connection): it must still be the socket's own.
  for (const host of ['127.0.0.1', '127.0.0.2']) {
    it(`are the socket's own, read after the peer reset it (listener on ${host})`, TEST, async () => {
      const closedConn = deferred<Conn>();
      const server = await serve({ ...LOOPBACK, host }, async (conn) => {
        await conn.closed;
        closedConn.resolve(conn);
      });
      try {
        const port = portOf(server);
        const socket = net.connect({ host, port, localAddress: '127.0.0.3' });
        await once(socket, 'connect');
        const ownPort = socket.localPort;
        socket.resetAndDestroy();
        const conn = await within(closedConn.promise, 10_000, 'the handler to see the close');
        assert.equal(conn.isClosed, true);
        assert.deepEqual(
          [conn.remoteAddress, conn.remotePort, conn.localAddress, conn.localPort],
          ['127.0.0.3', ownPort, host, port],
        );
      } finally {
        await stop(server);
      }
    });
  }

  it('of a unix socket: no local address, port 0', TEST, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcpkit-conn-'));
    const seen = deferred<Conn>();
    const server = await serve({ path: join(dir, 's.sock'), lingerTimeout: 500 }, async (conn) => {
      seen.resolve(conn);
    });
    try {
      const socket = net.connect(join(dir, 's.sock'));
      socket.on('error', () => {});
      const conn = await within(seen.promise, 10_000, 'the connection');
      assert.deepEqual([conn.remoteAddress, conn.remotePort, conn.localAddress, conn.localPort], ['', 0, '', 0]);
      socket.destroy();
    } finally {
      await stop(server);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Conn#close', () => {
  it('resolves once the socket is closed and the peer saw a FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        await conn.write('bye');
        await conn.close();
        return conn.isClosed;
      },
      async (port, outcome) => {
        const client = await connect(port);
        const closed = await client.waitClosed();
        assert.equal(closed.ended, true);
        assert.equal(closed.error, undefined);
        assert.equal(client.received().toString(), 'bye');
        assert.equal((await outcome).value, true);
      },
    );
  });

  it('rejects the pending write when the lingering close gives up on the data', TEST, async () => {
    const outcome = deferred<unknown[]>();
    await withServer(
      { writeTimeout: 300, lingerTimeout: 100 },
      async (conn) => {
        await conn.read();
        const results: unknown[] = [];
        const write = conn.write(Buffer.alloc(16 * 1024 * 1024)).then(
          () => 'ok',
          (e: unknown) => codeOf(e),
        );
        await conn.close();
        results.push(await write);
        outcome.resolve(results);
      },
      async (port) => {
        const client = await connect(port, { read: false });
        client.write('go');
        const [write] = await within(outcome.promise, 10_000, 'the handler');
        assert.notEqual(write, 'ok', 'a write whose data never left must not resolve');
        client.destroy();
      },
    );
  });

  it('still flushes, sends FIN and closes (waiting for a close does not start or block one)', TEST, async () => {
    await withServer(
      {},
      async (conn) => {
        await conn.read();
        const waited = conn.closed; // as the server does at shutdown
        await conn.write('bye');
        await conn.close();
        await waited;
      },
      async (port) => {
        const client = await connect(port);
        client.write('hi');
        const closed = await client.waitClosed();
        assert.equal(client.received().toString(), 'bye');
        assert.equal(closed.ended, true, 'the client saw a FIN');
      },
    );
  });
});

describe('Conn#destroy', () => {
  it('closes at once; pending reads reject with the error and signal.reason is it', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const pending = conn.read();
        const error = new Error('bad peer');
        conn.destroy(error);
        const reason = await pending.then(
          () => null,
          (e: unknown) => e,
        );
        return { sameError: reason === error, signalReason: conn.signal.reason === error };
      },
      async (port, outcome) => {
        const client = await connect(port);
        await client.waitClosed();
        assert.deepEqual((await outcome).value, { sameError: true, signalReason: true });
      },
    );
  });
});

describe('Conn#setTimeouts', () => {
  it('throws InvalidOptionError naming the timeout for a bad value or an unknown key', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const messages: string[] = [];
        for (const bad of [{ idleTimeout: -1 }, { writeTimeout: 1.5 }, { bogusTimeout: 5 }]) {
          try {
            conn.setTimeouts(bad as never);
            messages.push('accepted');
          } catch (e) {
            assert.ok(e instanceof InvalidOptionError);
            messages.push(e.message);
          }
        }
        return messages;
      },
      async (port, outcome) => {
        await exchange(port, '');
        const messages = (await outcome).value!;
        assert.match(messages[0]!, /^idleTimeout/);
        assert.match(messages[1]!, /^writeTimeout/);
        assert.match(messages[2]!, /^bogusTimeout/);
      },
    );
  });

  it('applies a new idleTimeout to this connection only', TEST, async () => {
    await withConn(
      { idleTimeout: 0, firstByteTimeout: 0 },
      async (conn) => {
        await conn.read();
        conn.setTimeouts({ idleTimeout: 200 });
        return conn.read();
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write('x');
        const { error, conn } = await outcome;
        assert.equal(codeOf(error), 'ERR_IDLE_TIMEOUT');
        assert.equal(conn.signal.reason, error);
        await client.waitClosed();
      },
    );
  });
});
