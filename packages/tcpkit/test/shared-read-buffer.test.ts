// The copy of each read out of the shared read buffers (src/shared-read-buffer.ts copyOut): exact
// bytes, exact length, memory of its own, at every size class (Node's pool, the slab, a buffer of its own).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
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

  it('carves small chunks out of 8 KiB slabs, so a kept one keeps at most 8 KiB alive (as Node’s pool)', () => {
    const source = sharedReadBuffer();
    const kept: Buffer[] = [];
    // 3,000-byte reads: each small slab holds two, so the third rolls over to a new one.
    for (let i = 0; i < 7; i++) {
      source.fill(i + 1, 0, 3000);
      kept.push(copyOut(source, 3000));
    }
    for (const [i, chunk] of kept.entries()) {
      assert.ok(chunk.buffer.byteLength <= 8 * 1024, `chunk ${i} is a view of ${chunk.buffer.byteLength} bytes`);
      assert.ok(
        chunk.every((b) => b === i + 1),
        `chunk ${i} intact`,
      );
    }
    assert.equal(new Set(kept.map((c) => c.buffer)).size, 4, 'two chunks a slab');
  });

  it('keeps every chunk intact and apart over any sequence of read sizes (property)', () => {
    const source = sharedReadBuffer();
    // Sizes from every class, weighted to the slab's (4 to 16 KiB), so that slabs fill and roll over.
    const size = fc.oneof(
      fc.integer({ min: 1, max: 4095 }),
      fc.integer({ min: 4096, max: 16 * 1024 }),
      fc.integer({ min: 16 * 1024 + 1, max: 64 * 1024 }),
      fc.constantFrom(64, 128, 1024, 4096, 4097, 8192, 16 * 1024, 64 * 1024),
    );
    fc.assert(
      fc.property(fc.array(size, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1 }), (sizes, seed) => {
        const kept = sizes.map((n, i) => {
          const bytes = pseudoRandom(n, seed + i);
          source.set(bytes);
          const chunk = copyOut(source, n);
          // The next read overwrites the shared buffer, as the kernel would.
          source.fill(0xee, 0, n);
          return { bytes, chunk };
        });
        for (const [i, { bytes, chunk }] of kept.entries()) {
          assert.ok(Buffer.isBuffer(chunk));
          assert.equal(chunk.length, bytes.length);
          assert.ok(chunk.equals(bytes), `chunk ${i} (${bytes.length} bytes) intact`);
          assert.ok(chunk.buffer !== source.buffer, 'a chunk never shares memory with the read buffer');
        }
        // Chunks carved out of one ArrayBuffer (a slab, Node's pool) never overlap.
        const byBuffer = new Map<ArrayBufferLike, [number, number][]>();
        for (const { chunk } of kept) {
          const ranges = byBuffer.get(chunk.buffer) ?? [];
          ranges.push([chunk.byteOffset, chunk.byteOffset + chunk.length]);
          byBuffer.set(chunk.buffer, ranges);
        }
        for (const ranges of byBuffer.values()) {
          ranges.sort((a, b) => a[0] - b[0]);
          for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]![0] >= ranges[i - 1]![1], 'chunks overlap');
        }
      }),
      { numRuns: 200 },
    );
  });
});
