import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { echo } from '../../../../examples/echo.js';
import { type Conn, serve } from '../../src/index.js';
import { ChannelProbe, type Client, connect, LOOPBACK, portOf, pseudoRandom, stop, within } from '../helpers.js';

/** Writes `data` in slices of varying sizes, one event-loop turn apart, then half-closes. */
async function sendSliced(client: Client, data: Buffer, seed: number): Promise<void> {
  const sizes = [1, 7, 1000, 4096, 65536, 300_000];
  for (let at = 0, i = seed; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    if (!client.socket.write(data.subarray(at, at + n))) {
      await new Promise((r) => client.socket.once('drain', r));
    }
    at += n;
    if (i % 4 === 0) await new Promise((r) => setImmediate(r));
  }
  client.end();
}

describe('echo example over loopback', () => {
  it('returns every byte intact for many concurrent connections, 1 byte to 1 MiB', { timeout: 60_000 }, async () => {
    const sizes = [1, 2, 100, 1460, 4096, 16_384, 65_535, 65_536, 65_537, 200_000, 1024 * 1024];
    const perSize = 4;
    const server = await serve(LOOPBACK, echo);
    try {
      const port = portOf(server);
      const jobs = sizes.flatMap((size, s) =>
        Array.from({ length: perSize }, async (_, k) => {
          const seed = s * perSize + k + 1;
          const data = pseudoRandom(size, seed);
          const client = await connect(port);
          await sendSliced(client, data, seed);
          const closed = await client.waitClosed(45_000);
          assert.equal(closed.error, undefined, `size ${size}: no socket error`);
          assert.equal(closed.ended, true, `size ${size}: closed with FIN`);
          const got = client.received();
          assert.equal(got.length, size, `size ${size}: length`);
          assert.ok(got.equals(data), `size ${size}: bytes intact`);
          return size;
        }),
      );
      const done = await Promise.all(jobs);
      const total = done.reduce((a, b) => a + b, 0);
      const s = server.stats();
      assert.equal(s.served, sizes.length * perSize);
      assert.equal(s.accepted, sizes.length * perSize);
      assert.equal(s.active, 0);
      assert.equal(s.errors, 0);
      assert.equal(s.bytesRead, total);
      assert.equal(s.bytesWritten, total);
    } finally {
      await stop(server);
    }
  });

  it('keeps request/response order on 200 connections doing ping-pong', { timeout: 60_000 }, async () => {
    const server = await serve(LOOPBACK, echo);
    try {
      const port = portOf(server);
      await Promise.all(
        Array.from({ length: 200 }, async (_, c) => {
          const client = await connect(port);
          for (let i = 0; i < 20; i++) {
            const msg = `${String(c).padStart(3, '0')}:${String(i).padStart(2, '0')}:${'x'.repeat(57)}`; // 64 bytes
            client.write(msg);
            const got = await client.receive((i + 1) * msg.length, 30_000);
            assert.equal(got.subarray(i * msg.length).toString(), msg);
          }
          client.end();
          await client.waitClosed(30_000);
        }),
      );
      assert.equal(server.stats().served, 200);
      assert.equal(server.stats().errors, 0);
    } finally {
      await stop(server);
    }
  });

  it('cuts off a never-reading client with bounded memory while serving the others', { timeout: 60_000 }, async () => {
    const maxWriteBuffer = 64 * 1024;
    const maxReadBuffer = 64 * 1024;
    const close = new ChannelProbe<{ conn: Conn }>('tcpkit:connection:close');
    let peakQueued = 0;
    const server = await serve(
      { ...LOOPBACK, writeTimeout: 500, maxWriteBuffer, maxReadBuffer, idleTimeout: 0 },
      async (conn) => {
        for await (const chunk of conn) {
          await conn.write(chunk);
          peakQueued = Math.max(peakQueued, conn.queuedBytes);
        }
      },
    );
    try {
      const port = portOf(server);
      const bad = await connect(port, { read: false });
      // 64 MiB at most, pushed as fast as the socket takes it; the server echoes into a peer that never reads.
      const flood = Buffer.alloc(1024 * 1024, 0x61);
      let floodSent = 0;
      const pushFlood = (): void => {
        while (floodSent < 64 && !bad.socket.destroyed) {
          floodSent++;
          if (!bad.socket.write(flood)) {
            bad.socket.once('drain', pushFlood);
            return;
          }
        }
      };
      pushFlood();
      const badPort = bad.socket.localPort;
      const badClosed = close.next((m) => m.conn.remotePort === badPort, 30_000);
      let badDone = false;
      badClosed.then(
        () => {
          badDone = true;
        },
        () => {},
      );
      // Others keep being served while the bad client is stuck, and after it is cut off.
      const rounds = await Promise.all(
        Array.from({ length: 10 }, async (_, c) => {
          const client = await connect(port);
          let n = 0;
          for (; n < 2000 && (!badDone || n < 20); n++) {
            const msg = `${c}-${n};`;
            client.write(msg);
            await client.receiveText(`${c}-${n};`, 10_000);
          }
          client.end();
          await client.waitClosed();
          return n;
        }),
      );
      const { conn } = await within(badClosed, 20_000, 'the bad connection to close');
      assert.equal((conn.signal.reason as { code?: string }).code, 'ERR_WRITE_TIMEOUT');
      assert.equal(server.stats().timeouts.write, 1);
      for (const n of rounds) assert.ok(n >= 20, `a good client completed ${n} round trips`);
      assert.ok(
        peakQueued <= maxWriteBuffer + 2 * maxReadBuffer,
        `queued output peaked at ${peakQueued} bytes, bounded by maxWriteBuffer plus a chunk`,
      );
      assert.ok(conn.bytesRead < 64 * 1024 * 1024, 'the server stopped reading the flood');
      bad.destroy();
    } finally {
      close.stop();
      await stop(server);
    }
  });
});
