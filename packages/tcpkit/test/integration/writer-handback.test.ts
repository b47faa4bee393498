// Idle writers handed from one connection to the next (conn-writer.ts spares): under many connections
// parking and writing in turn, writes of every size and kind, awaited or not, peers that stop reading and
// peers that reset mid-write, every byte must reach its own connection and nothing else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lines } from '../../src/framing/index.js';
import { serve } from '../../src/index.js';
import { type Client, connect, deferred, LOOPBACK, portOf, stop, until, within } from '../helpers.js';

const TEST = { timeout: 120_000 };

/** Bytes that name their connection and request: misrouted output cannot compare equal. */
function payload(tag: number, seq: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = 0x21 + ((tag * 31 + seq * 7 + i * 13) % 90);
  return out;
}

/** Sizes on every branch of the write path: copied, the caller's buffer, coalesced, writev, beyond the kernel buffer. */
const SIZES = [1, 60, 1000, 4095, 4096, 9000, 16 * 1024, 40 * 1024, 300 * 1024, 1024 * 1024];

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
}

describe('Conn#write: writers handed back while parked, under load', () => {
  it(
    'every byte reaches its own connection while writers pass between parked and writing connections',
    TEST,
    async () => {
      const bigStarted = new Map<number, () => void>();
      const server = await serve({ ...LOOPBACK, maxWriteBuffer: 8 * 1024 }, async (conn) => {
        for await (const line of conn.frames(lines({ maxLength: 256 }))) {
          const [tag, seq, size, mode] = line.split(' ').map(Number) as [number, number, number, number];
          const body = payload(tag, seq, size);
          if (mode === 0) await conn.write(body);
          else if (mode === 1) {
            // Not awaited: the connection parks on its next read with this output still queued or in flight.
            void conn.write(body.subarray(0, size >> 1)).catch(() => {});
            void conn.write(body.subarray(size >> 1)).catch(() => {});
          } else if (mode === 2) {
            await conn.write(body.toString('latin1'));
          } else if (mode === 3) {
            // Written while not parked (a push after a turn of the loop): flushed by the scheduler.
            await new Promise<void>((resolve) => setImmediate(resolve));
            void conn.write(body).catch(() => {});
          } else {
            // A peer that does not read: the write stays in flight until it resets.
            bigStarted.get(tag)?.();
            await conn.write(body).catch(() => {});
          }
        }
      });
      const port = portOf(server);
      try {
        const GOOD = 40;
        const ROUNDS = 25;
        const good: Client[] = await Promise.all(Array.from({ length: GOOD }, () => connect(port)));
        const expected: Buffer[][] = good.map(() => []);
        const lengths = good.map(() => 0);
        const next = lcg(7);

        // Peers that ask for 16 MiB, never read, and reset while the server's write is in flight.
        const SLOW = 6;
        const slow = await Promise.all(Array.from({ length: SLOW }, () => connect(port, { read: false })));
        const resets = slow.map(async (c, i) => {
          const tag = 1000 + i;
          const started = deferred();
          bigStarted.set(tag, started.resolve);
          c.write(`${tag} 0 ${16 * 1024 * 1024} 4\n`);
          await within(started.promise, 20_000, 'the big write to start');
          // Let the kernel buffer fill (a bounded poll on the peer's own receive queue is not visible
          // here; one more turn of other connections' traffic is what matters).
          await new Promise<void>((resolve) => setImmediate(resolve));
          c.socket.resetAndDestroy();
        });

        for (let round = 0; round < ROUNDS; round++) {
          good.forEach((c, i) => {
            // One or two requests per read, so some reads answer with several writes.
            const count = 1 + (next() % 2);
            let text = '';
            for (let k = 0; k < count; k++) {
              const seq = round * 2 + k;
              const size = SIZES[next() % SIZES.length]!;
              const mode = next() % 4;
              text += `${i} ${seq} ${size} ${mode}\n`;
              expected[i]!.push(payload(i, seq, size));
              lengths[i]! += size;
            }
            c.write(text);
          });
          if (round === 3) await Promise.all(resets);
          await Promise.all(good.map((c, i) => c.receive(lengths[i]!, 60_000)));
        }
        for (const [i, c] of good.entries()) {
          const want = Buffer.concat(expected[i]!);
          const got = c.received();
          if (!got.equals(want)) {
            let at = 0;
            while (at < want.length && got[at] === want[at]) at++;
            assert.fail(`connection ${i}: ${got.length} bytes, want ${want.length}; first difference at ${at}`);
          }
        }
        await Promise.all(
          good.map(async (c) => {
            c.end();
            await c.waitClosed(20_000);
          }),
        );
        await Promise.all(slow.map((c) => c.waitClosed(20_000)));
        await until(() => server.stats().active === 0, 'every handler to end', 20_000);
      } finally {
        await stop(server);
      }
    },
  );
});

describe('Conn#write: slow consumers cut while writers pass between connections', () => {
  it('each slow consumer ends with ERR_SLOW_CONSUMER alone; its neighbours get every byte', TEST, async () => {
    const codes: unknown[] = [];
    const server = await serve({ ...LOOPBACK, maxWriteBuffer: 16 * 1024, maxQueuedBytes: 256 * 1024 }, async (conn) => {
      try {
        for await (const line of conn.frames(lines({ maxLength: 256 }))) {
          const [tag, seq, size] = line.split(' ').map(Number) as [number, number, number];
          if (size === 0) {
            // Piles up 1 MiB of small (copied, queued) writes in one turn: far past maxQueuedBytes.
            for (let i = 0; i < 1024; i++) void conn.write(payload(tag, seq + i, 1024)).catch(() => {});
            await conn.write('after').catch(() => {});
          } else await conn.write(payload(tag, seq, size));
        }
      } catch (error) {
        codes.push((error as { code?: unknown }).code);
        throw error;
      }
    });
    const port = portOf(server);
    try {
      const GOOD = 20;
      const good = await Promise.all(Array.from({ length: GOOD }, () => connect(port)));
      const expected: Buffer[][] = good.map(() => []);
      const lengths = good.map(() => 0);
      const next = lcg(11);
      const slow: Client[] = [];
      for (let round = 0; round < 12; round++) {
        if (round % 3 === 1) {
          const c = await connect(port, { read: false });
          c.write(`${500 + round} 0 0\n`);
          slow.push(c);
        }
        good.forEach((c, i) => {
          const size = SIZES[next() % (SIZES.length - 1)]!;
          c.write(`${i} ${round} ${size}\n`);
          expected[i]!.push(payload(i, round, size));
          lengths[i]! += size;
        });
        await Promise.all(good.map((c, i) => c.receive(lengths[i]!, 60_000)));
      }
      for (const [i, c] of good.entries())
        assert.ok(c.received().equals(Buffer.concat(expected[i]!)), `connection ${i}`);
      // (A peer that never reads never sees the close either: the server's count is the evidence.)
      await until(() => codes.length === slow.length, 'every slow consumer to end', 20_000);
      assert.deepEqual(
        codes,
        slow.map(() => 'ERR_SLOW_CONSUMER'),
      );
      assert.equal(server.stats().slowConsumers, slow.length);
      for (const c of slow) c.destroy();
      await Promise.all(
        good.map(async (c) => {
          c.end();
          await c.waitClosed(20_000);
        }),
      );
    } finally {
      await stop(server);
    }
  });
});
