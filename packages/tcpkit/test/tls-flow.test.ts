// The write and read paths over TLS: a write of the caller's buffer resolves once OpenSSL has taken it
// (the ciphertext may still wait for the kernel), yet backpressure, writeTimeout and the slow-consumer
// cap still hold against a peer that stops reading; the shutdown waits for the writes to the TLS
// handle still in flight; decrypted input reads into the shared buffer.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { type ServeOptions, type Server, serve } from '../src/index.js';
import { certs } from './fixtures/certs.js';
import { deferred, LOOPBACK, portOf, stop, until, within } from './helpers.js';
import { readAll, tlsConnect } from './tls-client.js';

const TEST = { timeout: 30_000 };

function tlsServe(options: ServeOptions, handler: Parameters<typeof serve>[1]): Promise<Server> {
  const c = certs();
  return serve({ ...LOOPBACK, tls: { key: c.serverKey, cert: c.serverCert }, ...options }, handler);
}

/** The error a handler's write loop ended with (it writes until a write rejects). */
type Outcome = { error: Error & { code?: string }; written: number };

describe('tls write and read paths', () => {
  it("a caller's buffer may be reused once its write resolved: the peer gets what it held then", TEST, async () => {
    const size = 16 * 1024;
    const rounds = 64;
    const server = await tlsServe({}, async (conn) => {
      const buf = Buffer.alloc(size);
      for (let i = 0; i < rounds; i++) {
        buf.fill(i);
        await conn.write(buf);
      }
    });
    try {
      const s = await tlsConnect(portOf(server));
      const data = await within(readAll(s), 20_000, 'every round');
      assert.equal(data.length, size * rounds);
      for (let i = 0; i < rounds; i++) {
        const part = data.subarray(i * size, (i + 1) * size);
        assert.ok(
          part.every((b) => b === i),
          `round ${i} arrived as written`,
        );
      }
    } finally {
      await stop(server);
    }
  });

  it('many small writes, not awaited, arrive whole and in order', TEST, async () => {
    const count = 20_000;
    const server = await tlsServe({}, async (conn) => {
      for (let i = 0; i < count; i++) void conn.write(`${i}\n`);
      await conn.end();
    });
    try {
      const s = await tlsConnect(portOf(server));
      const lines = (await within(readAll(s), 20_000, 'every line')).toString().split('\n');
      assert.equal(lines.pop(), '');
      assert.equal(lines.length, count);
      for (let i = 0; i < count; i++) assert.equal(lines[i], String(i));
    } finally {
      await stop(server);
    }
  });

  it('a peer that stops reading: awaited writes block and writeTimeout cuts the connection', TEST, async () => {
    const outcome = deferred<Outcome>();
    const server = await tlsServe({ writeTimeout: 300, maxWriteBuffer: 64 * 1024 }, async (conn) => {
      const chunk = Buffer.alloc(16 * 1024, 1);
      let written = 0;
      try {
        for (;;) {
          await conn.write(chunk);
          written += chunk.length;
        }
      } catch (error) {
        outcome.resolve({ error: error as Outcome['error'], written });
      }
    });
    try {
      const s = await tlsConnect(portOf(server));
      s.pause(); // never reads
      s.on('error', () => {});
      const { error, written } = await within(outcome.promise, 20_000, 'the write loop to end');
      assert.equal(error.code, 'ERR_WRITE_TIMEOUT');
      // Held back by the kernel's buffers, not accepted without bound.
      assert.ok(written < 64 * 1024 * 1024, `${written} bytes accepted from a peer that reads nothing`);
      await until(() => server.stats().timeouts.write === 1, 'the timeout counted');
      s.destroy();
    } finally {
      await stop(server);
    }
  });

  it('a peer that stops reading while un-awaited writes pile up is cut as a slow consumer', TEST, async () => {
    const outcome = deferred<Outcome>();
    const server = await tlsServe({ maxWriteBuffer: 64 * 1024, maxQueuedBytes: 1024 * 1024 }, async (conn) => {
      const chunk = Buffer.alloc(16 * 1024, 2);
      let written = 0;
      // Fire and forget, a turn at a time, until the connection is cut.
      while (!conn.isClosed && conn.signal.reason === undefined) {
        void conn.write(chunk).catch(() => {});
        written += chunk.length;
        await new Promise((r) => setImmediate(r));
      }
      outcome.resolve({ error: conn.signal.reason as Outcome['error'], written });
    });
    try {
      const s = await tlsConnect(portOf(server));
      s.pause();
      s.on('error', () => {});
      const { error } = await within(outcome.promise, 20_000, 'the connection to be cut');
      assert.equal(error.code, 'ERR_SLOW_CONSUMER');
      assert.equal(server.stats().slowConsumers, 1);
      s.destroy();
    } finally {
      await stop(server);
    }
  });

  // Writes go straight to the TLS handle, past the socket's Writable, so the shutdown must wait for
  // the write in flight: otherwise close_notify and the FIN would overtake the ciphertext still held
  // in the TLS layer and the peer would see a truncated stream. 32 MiB is more than the loopback's
  // send and receive buffers take, so the write is in flight when the handler returns.
  for (const lingerTimeout of [2_000, 0]) {
    it(
      `output still in flight when the handler returns reaches the peer whole before close_notify (lingerTimeout ${lingerTimeout})`,
      TEST,
      async () => {
        const size = 32 * 1024 * 1024;
        const payload = Buffer.alloc(size, 0x5a);
        const server = await tlsServe({ lingerTimeout }, async (conn) => {
          void conn.write(payload);
        });
        try {
          const s = await tlsConnect(portOf(server));
          let ended = false;
          s.once('end', () => {
            ended = true;
          });
          const errors: Error[] = [];
          s.on('error', (e) => errors.push(e));
          const data = await within(readAll(s), 20_000, 'every byte');
          assert.deepEqual(errors, []);
          assert.equal(data.length, size);
          assert.ok(data.every((b) => b === 0x5a));
          assert.ok(ended, "the peer's close_notify and FIN came after the data");
        } finally {
          await stop(server);
        }
      },
    );
  }

  it('end() while a write is in flight: what was queued behind it follows it, then the close', TEST, async () => {
    const size = 32 * 1024 * 1024;
    // Room for the writes behind the first one, queued on top of it (not a slow consumer).
    const server = await tlsServe({ maxQueuedBytes: 2 * size }, async (conn) => {
      void conn.write(Buffer.alloc(size, 0x5a));
      void conn.write('tail');
      await conn.end('end');
    });
    try {
      const s = await tlsConnect(portOf(server));
      const data = await within(readAll(s), 20_000, 'every byte');
      assert.equal(data.length, size + 7);
      assert.equal(data.subarray(size).toString(), 'tailend');
      assert.ok(data.subarray(0, size).every((b) => b === 0x5a));
    } finally {
      await stop(server);
    }
  });

  it('a request sent in the same flight as the client Finished reaches the handler whole', TEST, async () => {
    const got = deferred<string>();
    const server = await tlsServe({}, async (conn) => {
      const chunks: Buffer[] = [];
      for await (const chunk of conn) chunks.push(chunk);
      got.resolve(Buffer.concat(chunks).toString());
    });
    try {
      // The client's second flight (Finished) is held back and sent in one segment with its first record.
      const raw = net.connect({ host: '127.0.0.1', port: portOf(server) });
      await once(raw, 'connect');
      const held: Buffer[] = [];
      let flights = 0;
      const { Duplex } = await import('node:stream');
      const wire = new Duplex({
        write(chunk: Buffer, _enc, cb) {
          if (flights++ === 0) raw.write(chunk);
          else held.push(chunk);
          cb();
        },
        read() {},
        final(cb) {
          raw.end(Buffer.concat(held.splice(0)));
          cb();
        },
      });
      raw.on('data', (d: Buffer) => wire.push(d));
      raw.on('end', () => wire.push(null));
      const t = tls.connect({ socket: wire, ca: certs().ca, servername: 'localhost' });
      await once(t, 'secureConnect');
      t.end('early bytes');
      assert.equal(await within(got.promise, 10_000, 'the request'), 'early bytes');
      raw.destroy();
    } finally {
      await stop(server);
    }
  });
});
