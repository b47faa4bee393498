// Conn's write path (src/conn-writer.ts): write, backpressure, the slow consumer, writeFrame, end.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lines } from '../src/framing/index.js';
import type { Encoder } from '../src/framing/types.js';
import { type Conn, serve } from '../src/index.js';
import {
  assertPending,
  ChannelProbe,
  Child,
  codeOf,
  connect,
  deferred,
  exchange,
  LOOPBACK,
  portOf,
  pseudoRandom,
  stop,
  until,
  withConn,
  within,
  withServer,
} from './helpers.js';
import { logServerWrites } from './write-helpers.js';

const TEST = { timeout: 20_000 };

describe('Conn#write', () => {
  it('sends everything written in answer to one read in one socket write (coalescing)', TEST, async () => {
    // Count the server's writes at the layer they reach first (the handle, or the stream on the fallback).
    let serverPort = -1;
    const log = logServerWrites(() => serverPort);
    try {
      await withConn(
        {},
        async (conn) => {
          for await (const chunk of conn) {
            const n = chunk.toString().trim();
            await conn.write('header;');
            await conn.write(`body ${n};`);
            conn.write('trailer\n');
          }
        },
        async (port) => {
          serverPort = port;
          const client = await connect(port);
          client.write('1');
          await client.receive('header;body 1;trailer\n'.length);
          client.write('2');
          await client.receive(2 * 'header;body 1;trailer\n'.length);
          client.end();
          await client.waitClosed();
        },
      );
    } finally {
      log.restore();
    }
    assert.deepEqual(log.calls, ['header;body 1;trailer\n', 'header;body 2;trailer\n']);
  });

  it('delivers many un-awaited writes (strings, small and large buffers) complete and in order', TEST, async () => {
    const big = pseudoRandom(40_000, 3);
    const expected: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      if (i % 500 === 250) expected.push(big);
      else expected.push(Buffer.from(`${i},`));
    }
    await withConn(
      {},
      async (conn) => {
        for (let i = 0; i < expected.length; i++) {
          const piece = expected[i]!;
          // Alternate strings and buffers; writes issued in one turn are coalesced by tcpkit.
          void conn.write(i % 2 === 0 && piece !== big ? piece.toString() : piece);
          if (i % 700 === 0) await new Promise((r) => setImmediate(r));
        }
        await conn.end();
      },
      async (port) => {
        const reply = await exchange(port, '');
        const want = Buffer.concat(expected);
        assert.equal(reply.length, want.length);
        assert.ok(reply.equals(want), 'bytes arrive in the order written');
      },
    );
  });

  it('coalesces multi-byte strings intact', TEST, async () => {
    const pieces = Array.from({ length: 500 }, (_, i) => `${i}:é€😀;`);
    await withConn(
      {},
      async (conn) => {
        for (const p of pieces) void conn.write(p);
        await conn.end();
      },
      async (port) => {
        const reply = await exchange(port, '');
        assert.equal(reply.toString('utf8'), pieces.join(''));
      },
    );
  });

  it('resolves at once while below maxWriteBuffer', TEST, async () => {
    await withConn(
      { maxWriteBuffer: 1024 },
      async (conn) => {
        const marker = new Promise<string>((r) => setImmediate(() => r('pending')));
        return Promise.race([conn.write('small').then(() => 'resolved'), marker]);
      },
      async (port, outcome) => {
        const client = await connect(port);
        assert.equal((await outcome).value, 'resolved');
        await client.receive(5);
        client.destroy();
      },
    );
  });

  it('stays pending above maxWriteBuffer until the peer drains it (backpressure)', TEST, async () => {
    const size = 8 * 1024 * 1024;
    // Boxed: resolving a deferred with a promise would adopt it.
    const written = deferred<{ p: Promise<void> }>();
    await withConn(
      { maxWriteBuffer: 64 * 1024, maxQueuedBytes: 16 * 1024 * 1024, writeTimeout: 0 },
      async (conn) => {
        const p = conn.write(pseudoRandom(size, 5));
        written.resolve({ p });
        await p;
        return conn.queuedBytes;
      },
      async (port, outcome) => {
        const client = await connect(port, { read: false });
        const { p } = await within(written.promise, 5000, 'the handler to write');
        await assertPending(p, 300, 'write() of 8 MiB to a peer that does not read');
        client.socket.resume();
        const { value, error } = await outcome;
        assert.equal(error, undefined);
        assert.ok((value ?? 0) < 64 * 1024, 'resolved once the queue is below maxWriteBuffer');
        const got = await client.receive(size, 10_000);
        assert.ok(got.equals(pseudoRandom(size, 5)));
        client.destroy();
      },
    );
  });

  it('rejects with ERR_CONNECTION_CLOSED after end()', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        await conn.end('bye');
        return conn.write('more').then(
          () => 'fulfilled',
          (e: unknown) => codeOf(e),
        );
      },
      async (port, outcome) => {
        const reply = await exchange(port, '');
        assert.equal(reply.toString(), 'bye');
        assert.equal((await outcome).value, 'ERR_CONNECTION_CLOSED');
      },
    );
  });

  it('rejects pending writes with ERR_CONNECTION_CLOSED when the peer resets', TEST, async () => {
    const writing = deferred();
    await withConn(
      { writeTimeout: 0, maxQueuedBytes: 64 * 1024 * 1024 },
      async (conn) => {
        const chunk = Buffer.alloc(1024 * 1024);
        for (let i = 0; i < 64; i++) {
          const p = conn.write(chunk);
          writing.resolve();
          await p;
        }
      },
      async (port, outcome) => {
        const client = await connect(port, { read: false });
        await within(writing.promise, 5000, 'the handler to write');
        await until(() => client.socket.bytesRead === 0, 'nothing read');
        client.socket.resetAndDestroy();
        const { error } = await outcome;
        assert.equal(codeOf(error), 'ERR_CONNECTION_CLOSED');
      },
    );
  });

  it('sends what a small buffer held when written, though the caller reuses it at once', TEST, async () => {
    await withServer(
      {},
      async (conn) => {
        await conn.read();
        const scratch = Buffer.alloc(2);
        for (let i = 0; i < 5; i++) {
          scratch.write(`${i}\n`);
          await conn.write(scratch);
        }
      },
      async (port) => {
        const client = await connect(port);
        client.write('go');
        await client.waitClosed();
        assert.equal(client.received().toString(), '0\n1\n2\n3\n4\n');
      },
    );
  });

  it('sends a write the handler does not follow with a read (a push), once, by the end of the turn', TEST, async () => {
    const received = deferred();
    await withServer(
      {},
      async (conn) => {
        await conn.read();
        void conn.write('pushed\n');
        // Waits for something other than input: only the flush scheduler can send the write.
        await received.promise;
        await conn.write('after\n');
      },
      async (port) => {
        const client = await connect(port);
        client.write('go');
        assert.equal(await client.receiveText('pushed\n'), 'pushed\n');
        received.resolve();
        await client.waitClosed();
        assert.equal(client.received().toString(), 'pushed\nafter\n');
      },
    );
  });

  it('sends the pushes of one turn, around a reply whose handler parks, by the end of the turn', TEST, async () => {
    // Three handlers resume in one turn, in this order: two push and wait for something else, the one
    // between them answers and parks for input (which flushes it and takes it off the scheduler). Every
    // push must still leave, with no read to flush it.
    const roles = ['push1', 'reply', 'push2'] as const;
    const go = new Map(roles.map((r) => [r, deferred()]));
    const done = deferred();
    let waiting = 0;
    const allWaiting = deferred();
    await withServer(
      {},
      async (conn) => {
        const role = (await conn.read())!.toString() as (typeof roles)[number];
        if (++waiting === roles.length) allWaiting.resolve();
        await go.get(role)!.promise;
        if (role === 'reply') {
          // Parks in the same step as its write, before push2 resumes.
          void conn.write('reply\n');
          await conn.read();
        } else {
          void conn.write(`${role}\n`);
          await done.promise;
        }
      },
      async (port) => {
        const clients = await Promise.all(roles.map(() => connect(port)));
        for (const [i, c] of clients.entries()) c.write(roles[i]!);
        await allWaiting.promise;
        for (const r of roles) go.get(r)!.resolve();
        const texts = await Promise.all(clients.map((c, i) => c.receiveText(`${roles[i]}\n`)));
        assert.deepEqual(texts, ['push1\n', 'reply\n', 'push2\n']);
        done.resolve();
        for (const c of clients) c.end();
        await Promise.all(clients.map((c) => c.waitClosed()));
      },
    );
  });

  it('sends what a large buffer held: its write resolves once the kernel has it', TEST, async () => {
    const size = 256 * 1024;
    await withServer(
      {},
      async (conn) => {
        await conn.read();
        const scratch = Buffer.alloc(size, 'a');
        await conn.write(scratch);
        scratch.fill('b');
        await conn.write(scratch);
      },
      async (port) => {
        const client = await connect(port);
        client.write('go');
        await client.waitClosed();
        const got = client.received();
        assert.equal(got.length, 2 * size);
        assert.equal(got.subarray(0, size).toString(), 'a'.repeat(size));
        assert.equal(got.subarray(size).toString(), 'b'.repeat(size));
      },
    );
  });
});

describe('Conn#write: writers handed back while parked', () => {
  // Buffers: every reply has the same length, so each writer reuses its reply buffer whichever
  // connection took it from the spares (the fast path in conn-writer.ts); strings take the general path.
  for (const kind of ['string', 'Buffer'] as const) {
    it(
      `keeps every connection's replies its own while idle writers pass from one connection to the next (${kind} replies)`,
      TEST,
      async () => {
        // Each reply waits for the next read, so one connection's writer goes back to the spares as
        // another's is taken: turns of many connections interleaved must never cross their output.
        await withServer(
          {},
          async (conn) => {
            for await (const chunk of conn) {
              const reply = `${conn.remotePort}:${chunk.toString()};`;
              await conn.write(kind === 'string' ? reply : Buffer.from(reply));
            }
          },
          async (port) => {
            const clients = await Promise.all(Array.from({ length: 8 }, () => connect(port)));
            const expected = clients.map(() => '');
            for (let turn = 0; turn < 5; turn++) {
              clients.forEach((c, i) => {
                c.write(`${turn}.${i}`);
                expected[i] += `${c.socket.localPort}:${turn}.${i};`;
              });
              await Promise.all(clients.map((c, i) => c.receive(expected[i]!.length)));
            }
            for (const [i, c] of clients.entries()) {
              assert.equal(c.received().toString(), expected[i]);
              c.end();
              await c.waitClosed();
            }
          },
        );
      },
    );
  }

  it('keeps nothing of a closed connection alive through the spare writer it handed back', TEST, async () => {
    // In a child with --expose-gc: a connection answers once, parks (its writer goes to the spares), and
    // is reset by its peer; once closed and collected, a WeakRef to its Conn must be empty.
    const child = fileURLToPath(new URL('./fixtures/spare-writer-child.ts', import.meta.url));
    const proc = new Child(process.execPath, ['--expose-gc', '--import', 'tsx', child]);
    try {
      const { collected } = await proc.json<{ collected: boolean }>('collected');
      assert.equal(collected, true, 'the closed connection was collected');
      assert.deepEqual(await within(proc.exited, 10_000, 'the child to exit'), { code: 0, signal: null });
    } finally {
      proc.kill();
    }
  });
});

describe('Conn#write: slow consumer', () => {
  it('destroys with ERR_SLOW_CONSUMER when un-awaited writes queue past maxQueuedBytes in one turn', TEST, async () => {
    const errorProbe = new ChannelProbe<{ conn: Conn; error: Error }>('tcpkit:connection:error');
    try {
      await withConn(
        { maxWriteBuffer: 16 * 1024, maxQueuedBytes: 256 * 1024 },
        async (conn) => {
          const writes: Promise<void>[] = [];
          // Small writes (copied and queued, not handed to the kernel one by one), 512 KiB in one turn.
          for (let i = 0; i < 256; i++) writes.push(conn.write(Buffer.alloc(2 * 1024, i)));
          const settled = await Promise.allSettled(writes);
          return settled.map((s) => (s.status === 'rejected' ? codeOf(s.reason) : 'ok'));
        },
        async (port, outcome) => {
          const client = await connect(port);
          const { value, conn } = await outcome;
          assert.ok(value?.includes('ERR_SLOW_CONSUMER'), 'later writes reject with ERR_SLOW_CONSUMER');
          assert.equal(value?.at(-1), 'ERR_SLOW_CONSUMER');
          assert.equal(codeOf(conn.signal.reason), 'ERR_SLOW_CONSUMER');
          const published = await errorProbe.next((m) => m.conn === conn);
          assert.equal(codeOf(published.error), 'ERR_SLOW_CONSUMER');
          await client.waitClosed();
          assert.ok(client.receivedLength < 256 * 1024, 'the queue was dropped, not flushed');
        },
      );
    } finally {
      errorProbe.stop();
    }
  });

  it('lets writes fired without await or catch fail without an unhandled rejection', TEST, async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      await withConn(
        { maxWriteBuffer: 16 * 1024, maxQueuedBytes: 128 * 1024 },
        async (conn) => {
          // The careless pattern: fire and forget, past maxQueuedBytes.
          for (let i = 0; i < 128; i++) conn.write(Buffer.alloc(2 * 1024));
          await new Promise((r) => setTimeout(r, 50));
          return conn.signal.reason;
        },
        async (port, outcome) => {
          const client = await connect(port);
          assert.equal(codeOf((await outcome).value), 'ERR_SLOW_CONSUMER');
          await client.waitClosed();
          await new Promise((r) => setTimeout(r, 50));
          assert.deepEqual(unhandled, []);
        },
      );
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('accepts one awaited write larger than maxQueuedBytes (backpressure respected)', TEST, async () => {
    const size = 1024 * 1024;
    await withConn(
      { maxWriteBuffer: 16 * 1024, maxQueuedBytes: 256 * 1024 },
      async (conn) => {
        await conn.write(pseudoRandom(size, 9));
        await conn.write('end');
      },
      async (port, outcome) => {
        const reply = await exchange(port, '');
        const { error } = await outcome;
        assert.equal(error, undefined, `no error, got ${String(error)}`);
        assert.equal(reply.length, size + 3);
      },
    );
  });

  it('destroys a never-reading peer once writes fired across turns pile past maxQueuedBytes', TEST, async () => {
    const maxQueuedBytes = 1024 * 1024;
    let peakQueued = 0;
    const closeProbe = new ChannelProbe<{ conn: Conn }>('tcpkit:connection:close');
    const server = await serve({ ...LOOPBACK, maxQueuedBytes, writeTimeout: 0, idleTimeout: 0 }, async (conn: Conn) => {
      const chunk = Buffer.alloc(32 * 1024);
      // Bounded: 64 MiB at most, far above what the kernel buffers hold.
      for (let i = 0; i < 2048 && !conn.signal.aborted; i++) {
        conn.write(chunk).catch(() => {});
        peakQueued = Math.max(peakQueued, conn.queuedBytes);
        await new Promise((r) => setImmediate(r));
      }
    });
    try {
      const port = portOf(server);
      const client = await connect(port, { read: false });
      // A paused client does not notice the reset: watch the server side.
      const { conn } = await closeProbe.next(() => true, 10_000);
      assert.equal(codeOf(conn.signal.reason), 'ERR_SLOW_CONSUMER');
      client.destroy();
      const stats = server.stats();
      assert.equal(stats.slowConsumers, 1);
      assert.ok(peakQueued <= maxQueuedBytes + 32 * 1024, `peak queue ${peakQueued} stays near maxQueuedBytes`);
    } finally {
      closeProbe.stop();
      await stop(server);
    }
  });
});

describe('Conn#writeFrame', () => {
  it('encodes frames through a codec', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        for await (const line of conn.frames(lines())) await conn.writeFrame(lines(), line.toUpperCase());
      },
      async (port) => {
        const reply = await exchange(port, 'ab\ncd\n');
        assert.equal(reply.toString(), 'AB\nCD\n');
      },
    );
  });

  it('sends nothing of a frame whose encoder throws, and rejects rather than throwing', TEST, async () => {
    const halfThenThrow: Encoder<string> = {
      encode(item, out) {
        out.push('*2\r\n');
        throw new Error(`cannot encode ${item}`);
      },
    };
    const rejected = deferred<unknown>();
    await withServer(
      {},
      async (conn) => {
        await conn.read();
        let promise: Promise<void> | undefined;
        assert.doesNotThrow(() => {
          promise = conn.writeFrame(halfThenThrow, 'x');
        });
        await promise!.catch((error: unknown) => rejected.resolve(error));
        await conn.write('-ERR internal\r\n');
      },
      async (port) => {
        const client = await connect(port);
        client.write('go');
        await client.waitClosed();
        assert.equal(client.received().toString(), '-ERR internal\r\n');
        assert.match(String(await rejected.promise), /cannot encode x/);
      },
    );
  });
});

describe('Conn#end', () => {
  it('flushes, sends FIN, and may still read afterwards (half-close from the server side)', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        await conn.end('first');
        const rest: Buffer[] = [];
        for await (const chunk of conn) rest.push(chunk);
        return Buffer.concat(rest).toString();
      },
      async (port, outcome) => {
        const client = await connect(port, { allowHalfOpen: true });
        await client.receive(5);
        await until(() => client.socket.readableEnded, 'the server FIN');
        client.end('after FIN');
        const closed = await client.waitClosed();
        assert.equal(closed.error, undefined);
        assert.equal(client.received().toString(), 'first');
        assert.equal((await outcome).value, 'after FIN');
      },
    );
  });

  it('fired and forgotten after the connection failed, rejects without an unhandled rejection', TEST, async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    const failed = deferred<unknown>();
    try {
      await withServer(
        { idleTimeout: 200 },
        async (conn) => {
          try {
            await conn.read();
            await conn.read(); // the peer goes silent: idle timeout
          } catch (error) {
            failed.resolve(error);
            conn.end('-ERR idle\r\n'); // not awaited, as an error path often does
          }
        },
        async (port) => {
          const client = await connect(port);
          client.write('hello');
          assert.equal(codeOf(await within(failed.promise, 5000, 'the idle timeout')), 'ERR_IDLE_TIMEOUT');
          await client.waitClosed();
          await new Promise((resolve) => setImmediate(resolve));
        },
      );
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('after a large end(data) the idle deadline still guards the reads that follow', TEST, async () => {
    const outcome = deferred<unknown>();
    await withServer(
      { idleTimeout: 300 },
      async (conn) => {
        await conn.read();
        await conn.end(Buffer.alloc(4 * 1024 * 1024, 'x'));
        try {
          await conn.read(); // half-closed by us; the peer never sends or closes
          outcome.resolve('read returned');
        } catch (error) {
          outcome.resolve(error);
        }
      },
      async (port) => {
        const client = await connect(port, { allowHalfOpen: true });
        client.write('go');
        await client.receive(4 * 1024 * 1024);
        assert.equal(codeOf(await within(outcome.promise, 5000, 'the idle timeout')), 'ERR_IDLE_TIMEOUT');
        client.destroy();
      },
    );
  });
});
