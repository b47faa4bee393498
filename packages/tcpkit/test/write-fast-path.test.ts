// What the writer's fast path could break (src/conn-writer.ts: a small buffer written into an empty
// queue with nothing waiting for the kernel is copied into the writer's reply buffer, reused for the
// next reply of the same length): a reply still in flight overwritten by the next one, and backpressure
// for a write at or above maxWriteBuffer. (Replies crossing connections as writers and their reply
// buffers pass between them: conn-writer.test.ts.)
// Runs on the handle path; the fallback run (integration/write-path.test.ts) runs it through the stream.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextIteration } from 'node:timers/promises';
import { connect, deferred, pseudoRandom, withConn } from './helpers.js';

const TEST = { timeout: 120_000 };
/** Just under the size up to which small writes are copied: each turn's reply goes through the fast path. */
const REPLY = 4000;
/** Far more than loopback's kernel buffers hold for a peer that does not read (a bound, not a target). */
const LIMIT = 25_000;
const MORE = 300;
const SETTLE = 90_000;

describe('write fast path: the reply buffer', () => {
  it(
    'a reply still waiting for the kernel is not overwritten by the next replies of the same length',
    TEST,
    async () => {
      const reply = (i: number): Buffer => pseudoRandom(REPLY, i + 1);
      const blocked = deferred<number>();
      await withConn(
        { maxWriteBuffer: 64 * 1024, writeTimeout: 0 },
        async (conn) => {
          // One reply a turn, each flushed alone from an empty queue, until one waits for the kernel.
          let n = 0;
          while (n < LIMIT) {
            await conn.write(reply(n++));
            await nextIteration();
            if (conn.queuedBytes > 0) break;
          }
          blocked.resolve(n);
          // Behind it, and once the peer reads, again from an empty queue as writes complete.
          for (let i = 0; i < MORE; i++) {
            await conn.write(reply(n++));
            if (i % 2 === 0) await nextIteration();
          }
          await conn.end();
          return n;
        },
        async (port, outcome) => {
          const client = await connect(port, { read: false });
          const before = await blocked.promise;
          assert.ok(before < LIMIT, `a reply waited for the kernel within ${LIMIT} turns`);
          client.socket.resume();
          const { value: n, error } = await outcome;
          assert.equal(error, undefined);
          const got = await client.receive(n! * REPLY, SETTLE);
          assert.equal(got.length, n! * REPLY);
          for (let i = 0; i < n!; i++) {
            const at = got.subarray(i * REPLY, (i + 1) * REPLY);
            if (!at.equals(reply(i))) assert.fail(`reply ${i} of ${n} (the kernel blocked at ${before}) was altered`);
          }
        },
        SETTLE,
      );
    },
  );

  it('a small buffer write at or above maxWriteBuffer waits for its flush, not resolving at once', TEST, async () => {
    await withConn(
      { maxWriteBuffer: 16 },
      async (conn) => {
        // The marker's turn comes before the scheduler's flush of a write made after it.
        const marker = new Promise<string>((r) => setImmediate(() => r('pending')));
        const first = await Promise.race([conn.write(Buffer.alloc(64, 1)).then(() => 'resolved'), marker]);
        // Below the mark, a write resolves at once.
        const below = await Promise.race([
          conn.write(Buffer.alloc(8, 2)).then(() => 'resolved'),
          new Promise<string>((r) => setImmediate(() => r('pending'))),
        ]);
        return [first, below];
      },
      async (port, outcome) => {
        const client = await connect(port);
        assert.deepEqual((await outcome).value, ['pending', 'resolved']);
        const got = await client.receive(72);
        assert.ok(got.equals(Buffer.concat([Buffer.alloc(64, 1), Buffer.alloc(8, 2)])));
        client.destroy();
      },
    );
  });
});
