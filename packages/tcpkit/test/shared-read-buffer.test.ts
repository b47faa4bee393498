// The copy of each read out of the shared read buffers (src/shared-read-buffer.ts copyOut): exact
// bytes, exact length, memory of its own, at every size class (Node's pool, the slab, a buffer of its own).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { copyOut, sharedReadBuffer, WAITER_READ_SIZE, waiterReadBuffer } from '../src/shared-read-buffer.js';
import { pseudoRandom } from './helpers.js';

describe('copyOut', () => {
  const sizes = [1, 63, 64, 4095, 4096, 4097, 16 * 1024, 16 * 1024 + 1, 64 * 1024];
  for (const [name, buffer] of [
    ['the shared buffer', sharedReadBuffer],
    ['the waiters’ buffer', waiterReadBuffer],
  ] as const) {
    it(`copies the first n bytes of ${name} into a chunk of its own`, () => {
      const source = buffer();
      for (const n of sizes.filter((size) => size <= source.length)) {
        const bytes = pseudoRandom(n, n);
        source.set(bytes);
        const chunk = copyOut(source, n);
        assert.ok(Buffer.isBuffer(chunk));
        assert.equal(chunk.length, n);
        assert.deepEqual(chunk, bytes);
        // The next read lands in the same buffer: the chunk must not change with it.
        source.fill(0, 0, n);
        assert.deepEqual(chunk, bytes, `a ${n}-byte chunk kept its bytes`);
      }
    });
  }

  it('gives consecutive chunks separate memory', () => {
    const source = sharedReadBuffer();
    const chunks: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const n = i % 2 === 0 ? 64 : WAITER_READ_SIZE;
      source.fill(i & 0xff, 0, n);
      chunks.push(copyOut(source, n));
    }
    for (const [i, chunk] of chunks.entries())
      assert.ok(
        chunk.every((b) => b === (i & 0xff)),
        `chunk ${i} intact`,
      );
  });
});
