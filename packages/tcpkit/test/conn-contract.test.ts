// Conn edge cases found in review: what a resolved write promises, fire-and-forget end(), sockets
// that outlive their handler, deadlines after half-close, and encoders that throw.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Encoder } from '../src/framing/types.js';
import { type Conn, InvalidOptionError, type ServeOptions, serve } from '../src/index.js';
import { ChannelProbe, connect, deferred, LOOPBACK, portOf, stop, until, within } from './helpers.js';

const TEST = { timeout: 20_000 };

async function withServer(
  options: ServeOptions,
  handler: (conn: Conn) => Promise<void>,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const server = await serve({ ...LOOPBACK, ...options }, handler);
  try {
    await body(portOf(server));
  } finally {
    await stop(server);
  }
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

describe('Conn#write: a resolved write frees the caller’s buffer', () => {
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

describe('Conn#end', () => {
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

describe('Conn deadlines', () => {
  it('fires maxLifetime on time when an earlier deadline was excused (the peer sent a bare FIN)', TEST, async () => {
    const reason = deferred<unknown>();
    await withServer(
      { firstByteTimeout: 100, idleTimeout: 60_000, maxLifetime: 600 },
      async (conn) => {
        conn.signal.addEventListener('abort', () => reason.resolve(conn.signal.reason));
        await within(reason.promise, 5000, 'the lifetime deadline');
      },
      async (port) => {
        const client = await connect(port, { allowHalfOpen: true });
        client.end(); // FIN without a byte: the first-byte deadline is excused
        assert.equal(codeOf(await within(reason.promise, 5000, 'the abort')), 'ERR_LIFETIME_EXCEEDED');
        client.destroy();
      },
    );
  });
});

describe('Conn#writeFrame', () => {
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

describe('Server slots', () => {
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
});

describe('Server slots, continued', () => {
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

describe('Conn#close with a peer that never reads', () => {
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
});

describe('Conn#close after someone already waits for the close', () => {
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

describe('ServeOptions.keepAlive', () => {
  it('rejects a delay under one second (the kernel counts whole seconds)', async () => {
    await assert.rejects(
      serve({ keepAlive: 500 }, async () => {}),
      (e: unknown) => e instanceof InvalidOptionError && /keepAlive/.test(e.message),
    );
  });
});
