// conn.chunks({ reuse: true }) (src/conn-iterators.ts ChunkLender, src/lent-buffers.ts): chunks lent until
// the next step, over real loopback sockets: byte-exact echo, the buffers' reuse, the connection's
// deadlines, errors, end of stream and drain, misuse, and lent chunks still held by writes in flight.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Conn, type ServeOptions, serve } from '../src/index.js';
import { lentBuffersMade } from '../src/lent-buffers.js';
import { certs } from './fixtures/certs.js';
import {
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
import { readAll, tlsConnect } from './tls-client.js';

const TEST = { timeout: 30_000 };
/** On the stream read path (TCPKIT_READ_PATH=stream) reads arrive as the stream's own chunks: none is lent. */
const LENDS = process.env.TCPKIT_READ_PATH !== 'stream';

/** The echo a lending handler is written as: each chunk written (and awaited) before the next step. */
async function echo(conn: Conn): Promise<void> {
  for await (const chunk of conn.chunks({ reuse: true })) await conn.write(chunk);
}

/** Sends `messages` one at a time, each once the previous one came back (so each is its own read or reads). */
async function pingPong(port: number, messages: Buffer[]): Promise<Buffer> {
  const client = await connect(port);
  let expected = 0;
  for (const m of messages) {
    client.write(m);
    expected += m.length;
    await client.receive(expected, 10_000);
  }
  client.end();
  await client.waitClosed(10_000);
  return client.received();
}

describe('Conn#chunks({ reuse: true })', () => {
  it('echoes byte-exact across sizes, from 1 byte to reads larger than any lent buffer', TEST, async () => {
    const sizes = [
      1, 2, 63, 64, 65, 100, 1000, 1024, 4095, 4096, 4097, 8192, 16_384, 16_385, 65_536, 70_000, 1_000_000,
    ];
    const messages = sizes.map((size, i) => pseudoRandom(size, i + 1));
    await withServer({}, echo, async (port) => {
      const got = await pingPong(port, messages);
      assert.ok(got.equals(Buffer.concat(messages)), 'the echo is byte-exact');
    });
  });

  it('echoes byte-exact when a message arrives in pieces and when many arrive at once', TEST, async () => {
    const whole = pseudoRandom(300_000, 7);
    await withServer({}, echo, async (port) => {
      const client = await connect(port);
      // Pieces of varying size, written without waiting (they coalesce in the kernel, or not).
      for (let off = 0, i = 0; off < whole.length; i++) {
        const n = Math.min(whole.length - off, [1, 7, 100, 4096, 5000, 20_000][i % 6]!);
        client.write(whole.subarray(off, off + n));
        off += n;
      }
      const got = await client.receive(whole.length, 10_000);
      assert.ok(got.subarray(0, whole.length).equals(whole));
      client.end();
      await client.waitClosed();
    });
  });

  it('reuses its buffers in steady ping-pong: no lent buffer made per message, and the same chunk object', {
    ...TEST,
    skip: LENDS ? false : 'the stream read path lends nothing',
  }, async () => {
    const seen = new Set<Buffer>();
    let lengths = 0;
    const made = deferred<number>();
    await withServer(
      {},
      async (conn) => {
        let madeAfterWarmUp = -1;
        let n = 0;
        for await (const chunk of conn.chunks({ reuse: true })) {
          if (++n === 10) madeAfterWarmUp = lentBuffersMade;
          if (n > 10) {
            seen.add(chunk);
            lengths += chunk.length;
          }
          await conn.write(chunk);
        }
        made.resolve(lentBuffersMade - madeAfterWarmUp);
      },
      async (port) => {
        const messages = Array.from({ length: 400 }, (_, i) => pseudoRandom(i % 2 === 0 ? 64 : 4096, i));
        const got = await pingPong(port, messages);
        assert.ok(got.equals(Buffer.concat(messages)));
        assert.equal(await within(made.promise, 5000, 'the handler'), 0, 'no lent buffer made after the warm-up');
        // Two lengths alternate in two size classes: one buffer and one chunk object each.
        assert.equal(seen.size, 2, 'the same two chunk objects, reused');
        assert.ok(lengths > 0);
      },
    );
  });

  it('delivers input that arrived while the handler was busy (queued, its own memory), in order', TEST, async () => {
    const parts = [pseudoRandom(5000, 1), pseudoRandom(64, 2), pseudoRandom(20_000, 3), pseudoRandom(10, 4)];
    const total = parts.reduce((a, p) => a + p.length, 0);
    await withConn(
      {},
      async (conn) => {
        const it = conn.chunks({ reuse: true });
        const kept: Buffer[] = [];
        let got = 0;
        while (got < parts[0]!.length) {
          const r = await it.next();
          kept.push(Buffer.from(r.value as Buffer));
          got += (r.value as Buffer).length;
        }
        await conn.write('a');
        // The rest arrives while the handler is not parked: it is queued.
        await until(() => conn.bytesRead === total, 'the rest of the input');
        for (let r = await it.next(); !r.done; r = await it.next()) kept.push(Buffer.from(r.value));
        return Buffer.concat(kept);
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write(parts[0]!);
        await client.receive(1);
        for (const p of parts.slice(1)) client.write(p);
        client.end();
        const { value } = await outcome;
        assert.ok(value!.equals(Buffer.concat(parts)));
      },
    );
  });

  it('ends at the peer FIN, after the input before it', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        let bytes = 0;
        for await (const chunk of conn.chunks({ reuse: true })) bytes += chunk.length;
        await conn.write(`got ${bytes}`);
        return bytes;
      },
      async (port, outcome) => {
        const reply = await exchange(port, pseudoRandom(100_000, 9));
        assert.equal(reply.toString(), 'got 100000');
        assert.equal((await outcome).value, 100_000);
      },
    );
  });

  it('rejects with ERR_IDLE_TIMEOUT when the peer goes quiet', TEST, async () => {
    await withConn(
      { idleTimeout: 200 },
      async (conn) => {
        for await (const chunk of conn.chunks({ reuse: true })) await conn.write(chunk);
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write('x');
        await client.receive(1);
        const { error } = await outcome;
        assert.equal(codeOf(error), 'ERR_IDLE_TIMEOUT');
        client.destroy();
      },
    );
  });

  it('rejects with ERR_CONNECTION_CLOSED when the peer resets', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        for await (const chunk of conn.chunks({ reuse: true })) await conn.write(chunk);
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write('hello');
        await client.receive(5);
        client.socket.resetAndDestroy();
        const { error } = await outcome;
        assert.equal(codeOf(error), 'ERR_CONNECTION_CLOSED');
      },
    );
  });

  it('ends while the server drains, after the input already received', TEST, async () => {
    const parked = deferred();
    const server = await serve({ ...LOOPBACK }, async (conn) => {
      let bytes = 0;
      const it = conn.chunks({ reuse: true });
      for (let r = await it.next(); !r.done; r = await it.next()) {
        bytes += r.value.length;
        if (bytes === 5) parked.resolve();
      }
      await conn.write(`drained after ${bytes}`);
    });
    const client = await connect(portOf(server));
    client.write('hello');
    await within(parked.promise, 5000, 'the first chunk');
    const result = await server.shutdown({ timeout: 5000 });
    assert.equal(result.forced, 0);
    assert.equal((await client.receiveText('drained')).toString(), 'drained after 5');
    client.destroy();
  });

  it('break gives the last chunk back and leaves later input to the next reader', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        let first = '';
        for await (const chunk of conn.chunks({ reuse: true })) {
          first = chunk.toString();
          break;
        }
        await conn.write('.');
        const rest = await conn.read();
        return `${first}|${rest?.toString()}`;
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write('one');
        await client.receive(1);
        client.write('two');
        assert.equal((await outcome).value, 'one|two');
        client.destroy();
      },
    );
  });

  it('refuses a step while one is pending (ERR_READ_PENDING) and a bad option (ERR_INVALID_OPTION)', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        assert.throws(() => conn.chunks({ reuse: 1 as unknown as boolean }), {
          code: 'ERR_INVALID_OPTION',
          option: 'chunks.reuse',
        });
        assert.throws(() => conn.chunks({ resue: true } as never), {
          code: 'ERR_INVALID_OPTION',
          option: 'chunks.resue',
        });
        const it = conn.chunks({ reuse: true });
        const pending = it.next();
        await assert.rejects(it.next(), { code: 'ERR_READ_PENDING' });
        await assert.rejects(conn.chunks({ reuse: true }).next(), { code: 'ERR_READ_PENDING' });
        // return() while parked ends the pending step; later steps are done.
        await it.return!();
        assert.deepEqual(await pending, { value: undefined, done: true });
        assert.equal((await it.next()).done, true);
        // The connection reads on with a new iterator.
        const next = conn.chunks({ reuse: true }).next();
        await conn.write('ready');
        const again = await next;
        return again.done ? '' : again.value.toString();
      },
      async (port, outcome) => {
        const client = await connect(port);
        // Nothing is sent before the handler's checks are done (a pending step must stay pending).
        await client.receiveText('ready');
        client.write('late');
        const { value, error } = await outcome;
        assert.equal(error, undefined);
        assert.equal(value, 'late');
        client.destroy();
      },
    );
  });

  it('echoes byte-exact over TLS', TEST, async () => {
    const c = certs();
    const server = await serve({ ...LOOPBACK, tls: { key: c.serverKey, cert: c.serverCert } }, echo);
    try {
      const s = await tlsConnect(portOf(server));
      const messages = [1, 64, 4096, 4096, 16_384, 20_000, 100_000, 64].map((n, i) => pseudoRandom(n, i + 50));
      const all = readAll(s);
      for (const m of messages) s.write(m);
      s.end();
      const got = await within(all, 10_000, 'the echo');
      assert.ok(got.equals(Buffer.concat(messages)));
    } finally {
      await stop(server);
    }
  });

  // A write of 4 KiB or more is sent from the caller's memory. Not awaited, it may still be queued (the
  // peer does not read, the kernel buffer is full) when the handler steps: the lent buffer must then not
  // serve the next read, or the bytes queued would be overwritten. Every message here is distinct, so
  // any early reuse shows as a mismatch.
  const slowPeerOptions: ServeOptions = { maxWriteBuffer: 64 * 1024 * 1024, maxQueuedBytes: 256 * 1024 * 1024 };
  for (const [name, tls] of [
    ['plain TCP', false],
    ['TLS', true],
  ] as const) {
    it(
      `never reuses a lent chunk that a write not awaited still holds (${name}, a peer that reads late)`,
      TEST,
      async () => {
        const count = 600;
        const size = 8192;
        const messages = Array.from({ length: count }, (_, i) => pseudoRandom(size, 1000 + i));
        const whole = Buffer.concat(messages);
        const c = certs();
        const options: ServeOptions = {
          ...LOOPBACK,
          ...slowPeerOptions,
          ...(tls ? { tls: { key: c.serverKey, cert: c.serverCert } } : {}),
        };
        const server = await serve(options, async (conn) => {
          for await (const chunk of conn.chunks({ reuse: true })) void conn.write(chunk);
          await conn.end();
        });
        try {
          const s = tls ? await tlsConnect(portOf(server)) : (await connect(portOf(server))).socket;
          s.pause();
          s.removeAllListeners('data');
          // Messages sent one by one in separate reads while the client reads nothing: the server's writes
          // pile up behind a full kernel buffer.
          for (const m of messages) {
            if (!s.write(m)) await once(s, 'drain');
          }
          s.end();
          const all = readAll(s);
          s.resume(); // paused explicitly: a 'data' listener alone does not resume it
          const got = await within(all, 20_000, 'the echo');
          assert.equal(got.length, whole.length);
          for (let i = 0; i < count; i++) {
            const at = i * size;
            assert.ok(got.subarray(at, at + size).equals(messages[i]!), `message ${i} intact`);
          }
        } finally {
          await stop(server);
        }
      },
    );
  }

  it(
    'never reuses a lent chunk written to another connection that holds it (a relay to a slow peer)',
    TEST,
    async () => {
      // 12 MB: more than the loopback socket buffers hold, so the sink's writer queues.
      const count = 2000;
      const size = 6000;
      const messages = Array.from({ length: count }, (_, i) => pseudoRandom(size, 5000 + i));
      const sink = deferred<Conn>();
      const server = await serve({ ...LOOPBACK, ...slowPeerOptions }, async (conn) => {
        const first = await conn.read();
        if (first?.toString() === 'sink') {
          sink.resolve(conn);
          await conn.closed;
          return;
        }
        const to = await sink.promise;
        if (first !== null) await to.write(first);
        for await (const chunk of conn.chunks({ reuse: true })) void to.write(chunk);
        await to.end();
      });
      try {
        const reader = await connect(portOf(server), { read: false });
        reader.write('sink');
        await within(sink.promise, 5000, 'the sink connection');
        const source = await connect(portOf(server));
        for (const m of messages) {
          if (!source.socket.write(m)) await once(source.socket, 'drain');
        }
        source.end();
        reader.socket.resume();
        const got = await reader.receive(count * size, 20_000);
        for (let i = 0; i < count; i++) {
          assert.ok(got.subarray(i * size, (i + 1) * size).equals(messages[i]!), `message ${i} intact`);
        }
        reader.destroy();
      } finally {
        await stop(server);
      }
    },
  );

  it('property: any sequence of writes, split anyhow, echoes byte-exact', { timeout: 60_000 }, async () => {
    await withServer({}, echo, async (port) => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 12 }),
          fc.integer({ min: 1, max: 1_000_000 }),
          async (sizes, seed) => {
            const messages = sizes.map((n, i) => pseudoRandom(n, seed + i));
            const client = await connect(port);
            for (const m of messages) client.write(m);
            const total = messages.reduce((a, m) => a + m.length, 0);
            const got = await client.receive(total, 10_000);
            client.destroy();
            return got.equals(Buffer.concat(messages));
          },
        ),
        { numRuns: 25 },
      );
    });
  });
});
