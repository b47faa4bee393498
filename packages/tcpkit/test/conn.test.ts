import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fixed, lines } from '../src/framing/index.js';
import { type Conn, ConnectionClosedError, InvalidOptionError, type ServeOptions, serve } from '../src/index.js';
import {
  assertPending,
  ChannelProbe,
  connect,
  deferred,
  exchange,
  LOOPBACK,
  portOf,
  pseudoRandom,
  stop,
  until,
  within,
} from './helpers.js';

const TEST = { timeout: 20_000 };

/**
 * Serves one handler for the body of a test. The handler's outcome (its return value or what it
 * threw) is handed to the test through `outcome`, so assertions run in the test, not the handler.
 */
async function withConn<T>(
  options: ServeOptions,
  handler: (conn: Conn) => Promise<T>,
  body: (port: number, outcome: Promise<{ value?: T; error?: unknown; conn: Conn }>) => Promise<void>,
): Promise<void> {
  const outcome = deferred<{ value?: T; error?: unknown; conn: Conn }>();
  const server = await serve({ ...LOOPBACK, ...options }, async (conn) => {
    try {
      outcome.resolve({ value: await handler(conn), conn });
    } catch (error) {
      outcome.resolve({ error, conn });
      throw error;
    }
  });
  try {
    await body(portOf(server), within(outcome.promise, 10_000, 'the handler to settle'));
  } finally {
    await stop(server);
  }
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

describe('Conn#read', () => {
  it('returns the chunks sent, then null at the peer FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const chunks: Buffer[] = [];
        for (let c = await conn.read(); c !== null; c = await conn.read()) chunks.push(c);
        await conn.write(`${Buffer.concat(chunks).toString()}|${String(await conn.read())}`);
        return chunks.length;
      },
      async (port) => {
        const reply = await exchange(port, 'hello world');
        assert.equal(reply.toString(), 'hello world|null');
      },
    );
  });

  it('rejects with ERR_CONNECTION_CLOSED, the socket error as cause, when the peer resets', TEST, async () => {
    const first = deferred();
    await withConn(
      {},
      async (conn) => {
        await conn.read();
        first.resolve();
        return conn.read();
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write('a');
        await within(first.promise, 5000, 'the first read');
        client.socket.resetAndDestroy();
        const { error, conn } = await outcome;
        assert.ok(error instanceof ConnectionClosedError);
        assert.equal(codeOf(error), 'ERR_CONNECTION_CLOSED');
        assert.equal(codeOf((error as Error).cause), 'ECONNRESET');
        assert.equal(conn.signal.aborted, true);
        assert.equal(codeOf(conn.signal.reason), 'ERR_CONNECTION_CLOSED');
      },
    );
  });

  it('pauses the socket when the handler does not read: input buffered stays bounded', TEST, async () => {
    const go = deferred();
    const maxReadBuffer = 64 * 1024;
    const total = 8 * 1024 * 1024;
    let bytesBeforeReading = -1;
    await withConn(
      { maxReadBuffer, idleTimeout: 0 },
      async (conn) => {
        await go.promise;
        bytesBeforeReading = conn.bytesRead;
        let n = 0;
        for await (const chunk of conn) n += chunk.length;
        await conn.write(String(n));
        return n;
      },
      async (port) => {
        const client = await connect(port);
        client.end(pseudoRandom(total, 1));
        // Give the server time to buffer as much as it would: there is no event for "did not read".
        await new Promise((r) => setTimeout(r, 300));
        go.resolve();
        await client.waitClosed(10_000);
        assert.equal(client.received().toString(), String(total), 'every byte is delivered once reading starts');
        assert.ok(bytesBeforeReading >= 0);
        assert.ok(
          bytesBeforeReading <= maxReadBuffer + 256 * 1024,
          `read ${bytesBeforeReading} bytes from the kernel while the handler was not reading`,
        );
      },
    );
  });
});

describe('Conn#readExactly', () => {
  it('assembles exactly n bytes across chunks', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const a = await conn.readExactly(3);
        const b = await conn.readExactly(7);
        const c = await conn.readExactly(0);
        await conn.write(`${a}|${b}|${c.length}`);
      },
      async (port) => {
        const client = await connect(port);
        for (const piece of ['ab', 'cdefg', 'hij']) {
          client.write(piece);
          await new Promise((r) => setImmediate(r));
        }
        client.end();
        await client.waitClosed();
        assert.equal(client.received().toString(), 'abc|defghij|0');
      },
    );
  });

  it('reads far more than maxReadBuffer in one call', TEST, async () => {
    const size = 1024 * 1024 + 3;
    await withConn(
      { maxReadBuffer: 16 * 1024 },
      async (conn) => {
        const head = await conn.readExactly(size);
        const tail = await conn.readExactly(5);
        return Buffer.concat([head, tail]);
      },
      async (port, outcome) => {
        const data = pseudoRandom(size + 5, 11);
        await exchange(port, data);
        assert.ok((await outcome).value?.equals(data));
      },
    );
  });

  it('rejects with ERR_FRAME_INVALID when the stream ends first', TEST, async () => {
    await withConn(
      {},
      (conn) => conn.readExactly(4),
      async (port, outcome) => {
        await exchange(port, 'abc');
        const { error } = await outcome;
        assert.equal(codeOf(error), 'ERR_FRAME_INVALID');
      },
    );
  });

  it('rejects a negative or fractional n with a RangeError', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const errors = await Promise.allSettled([conn.readExactly(-1), conn.readExactly(1.5)]);
        return errors.map((r) => (r.status === 'rejected' ? (r.reason as Error).name : 'fulfilled'));
      },
      async (port, outcome) => {
        await exchange(port, '');
        assert.deepEqual((await outcome).value, ['RangeError', 'RangeError']);
      },
    );
  });
});

describe('Conn[Symbol.asyncIterator]', () => {
  it('iterates the input chunks until the peer FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const parts: Buffer[] = [];
        for await (const chunk of conn) parts.push(chunk);
        return Buffer.concat(parts);
      },
      async (port, outcome) => {
        const data = pseudoRandom(300_000, 7);
        await exchange(port, data);
        assert.ok((await outcome).value?.equals(data));
      },
    );
  });
});

describe('Conn#frames', () => {
  it('decodes frames from any chunking and ends at the FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const got: string[] = [];
        for await (const line of conn.frames(lines())) got.push(line);
        return got;
      },
      async (port, outcome) => {
        const client = await connect(port);
        for (const piece of ['one\ntw', 'o\n', '\nthr', 'ee\n']) {
          client.write(piece);
          await new Promise((r) => setImmediate(r));
        }
        client.end();
        await client.waitClosed();
        assert.deepEqual((await outcome).value, ['one', 'two', '', 'three']);
      },
    );
  });

  it("delivers the decoder's last frame at end of stream (lines: an unterminated last line)", TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const got: string[] = [];
        for await (const line of conn.frames(lines())) got.push(line);
        return got;
      },
      async (port, outcome) => {
        await exchange(port, 'whole\npart');
        assert.deepEqual((await outcome).value, ['whole', 'part']);
      },
    );
  });

  it('rejects with ERR_FRAME_INVALID on a partial frame at end of stream', TEST, async () => {
    const got: Buffer[] = [];
    await withConn(
      {},
      async (conn) => {
        for await (const frame of conn.frames(fixed(4))) got.push(frame);
      },
      async (port, outcome) => {
        await exchange(port, 'abcdef');
        assert.equal(codeOf((await outcome).error), 'ERR_FRAME_INVALID');
        assert.deepEqual(
          got.map((b) => b.toString()),
          ['abcd'],
        );
      },
    );
  });
});

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

describe('Conn#write', () => {
  it('sends everything written in answer to one read in one socket write (coalescing)', TEST, async () => {
    // Count the server-side socket writes by patching net.Socket#write for sockets on the server's port.
    const calls: string[] = [];
    const original = net.Socket.prototype.write;
    let serverPort = -1;
    net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof original>) {
      if (this.localPort === serverPort) calls.push(Buffer.from(args[0] as Uint8Array | string).toString());
      return original.apply(this, args);
    } as typeof original;
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
      net.Socket.prototype.write = original;
    }
    assert.deepEqual(calls, ['header;body 1;trailer\n', 'header;body 2;trailer\n']);
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
