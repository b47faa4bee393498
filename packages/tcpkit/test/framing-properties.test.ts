import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ByteQueue } from '../src/byte-queue.js';
import { FrameError } from '../src/errors.js';
import { delimited } from '../src/framing/delimited.js';
import { fixed } from '../src/framing/fixed.js';
import { type LengthPrefixedItem, lengthPrefixed } from '../src/framing/length-prefixed.js';
import { type LineDelimiter, lines } from '../src/framing/lines.js';
import type { Codec, Decoder, Encoder } from '../src/framing/types.js';

// Modest run counts so the whole file runs in a few seconds; FC_RUNS=5000 for a deeper search.
const RUNS = { numRuns: Number(process.env.FC_RUNS ?? 300) };

/** How the encoded stream is cut into socket chunks. */
const splits = fc.record({
  /** 0: every chunk queued as is; 128: tiny chunks gathered into the queue's arena. */
  coalesceMax: fc.constantFrom(0, 128),
  oneByte: fc.boolean(),
  cuts: fc.array(fc.nat({ max: 2000 }), { maxLength: 12 }),
});

function cut(bytes: Buffer, { oneByte, cuts }: { oneByte: boolean; cuts: number[] }): Buffer[] {
  if (oneByte) return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

function encodeAll<T>(encoder: Encoder<T>, items: T[]): Buffer {
  const out: Array<string | Uint8Array> = [];
  for (const item of items) encoder.encode(item, out);
  return Buffer.concat(out.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
}

/**
 * Decodes `chunks` as conn.frames() does. After each chunk's decode loop the queue may hold at
 * most `bound` bytes (a partial frame); `check` sees the frames as they come.
 */
function decodeAll<T>(
  decoder: Decoder<T>,
  chunks: Buffer[],
  coalesceMax: number,
  bound = Number.POSITIVE_INFINITY,
): T[] {
  const q = new ByteQueue(undefined, { coalesceMax });
  const frames: T[] = [];
  for (const c of chunks) {
    q.push(c);
    for (let f = decoder.decode(q); f !== undefined; f = decoder.decode(q)) frames.push(f);
    assert.ok(q.length <= bound, `holds ${q.length} bytes, more than the bound ${bound}`);
  }
  for (let f = decoder.decodeEnd!(q); f !== undefined; f = decoder.decodeEnd!(q)) frames.push(f);
  assert.equal(q.length, 0, 'every byte consumed');
  return frames;
}

function endsWith(b: Buffer, suffix: Buffer): boolean {
  return b.length >= suffix.length && b.subarray(b.length - suffix.length).equals(suffix);
}

/** Items the encoder accepts (the generators are deliberately rough; the encoder is the judge). */
function encodable<T>(encoder: Encoder<T>, items: T[]): T[] {
  return items.filter((item) => {
    try {
      encoder.encode(item, []);
      return true;
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      return false;
    }
  });
}

/** Random bytes over a small alphabet that includes the framing bytes, so frames do occur. */
const hostileBytes = fc
  .array(fc.oneof(fc.constantFrom(0x0a, 0x0d, 0x00, 0x01, 0xff, 0x61), fc.integer({ min: 0, max: 255 })), {
    maxLength: 300,
  })
  .map((a) => Buffer.from(a));

/**
 * Feeds random bytes: the decoder may only return frames or throw a FrameError, and never holds
 * more than `bound` bytes after decoding (so at most bound + one chunk in all).
 */
function assertBoundedAndTyped<T>(
  decoder: Decoder<T>,
  bytes: Buffer,
  split: { coalesceMax: number; oneByte: boolean; cuts: number[] },
  bound: number,
): void {
  try {
    decodeAll(decoder, cut(bytes, split), split.coalesceMax, bound);
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    assert.ok(error instanceof FrameError, `not a FrameError: ${String(error)}`);
    assert.ok(error.code === 'ERR_FRAME_TOO_LARGE' || error.code === 'ERR_FRAME_INVALID', error.code);
  }
}

describe('lines (property)', () => {
  const delimiters = fc.constantFrom<LineDelimiter>('\n', '\r\n', 'auto');
  const text = fc.string({ unit: fc.constantFrom('a', 'é', '€', '\r', '\n', ' ', '😀'), maxLength: 12 });

  it('decodes exactly the encoded lines under any chunking', () => {
    fc.assert(
      fc.property(delimiters, fc.array(text, { maxLength: 20 }), splits, (delimiter, raw, split) => {
        const codec = lines({ delimiter, maxLength: 64 });
        const items = encodable(codec, raw);
        assert.deepEqual(decodeAll(codec, cut(encodeAll(codec, items), split), split.coalesceMax), items);
      }),
      RUNS,
    );
  });

  it('Buffers with encoding null', () => {
    fc.assert(
      fc.property(
        delimiters,
        fc.array(fc.uint8Array({ maxLength: 12 }), { maxLength: 20 }),
        splits,
        (delimiter, raw, split) => {
          const codec = lines({ delimiter, encoding: null, maxLength: 64 });
          const items = encodable(codec, raw).map((b) => Buffer.from(b));
          assert.deepEqual(decodeAll(codec, cut(encodeAll(codec, items), split), split.coalesceMax), items);
        },
      ),
      RUNS,
    );
  });

  it('random bytes: frames or FrameError only, bounded', () => {
    fc.assert(
      fc.property(
        delimiters,
        fc.nat(40),
        fc.boolean(),
        hostileBytes,
        splits,
        (delimiter, maxLength, strict, bytes, split) => {
          const codec: Decoder<string | Buffer> = strict
            ? lines({ delimiter, maxLength, validateUtf8: true })
            : lines({ delimiter, maxLength, encoding: null });
          assertBoundedAndTyped(codec, bytes, split, maxLength + (delimiter === '\n' ? 1 : 2) - 1);
        },
      ),
      RUNS,
    );
  });
});

describe('delimited (property)', () => {
  // A tiny alphabet makes delimiters and partial delimiters common in the frames.
  const small = fc.uint8Array({ maxLength: 10 }).map((a) => Buffer.from(a.map((b) => b % 3)));
  const delimiter = fc.uint8Array({ minLength: 1, maxLength: 4 }).map((a) => Buffer.from(a.map((b) => b % 3)));

  it('decodes exactly the encoded frames under any chunking', () => {
    fc.assert(
      fc.property(
        delimiter,
        fc.boolean(),
        fc.array(small, { maxLength: 20 }),
        splits,
        (d, keepDelimiter, raw, split) => {
          const codec = delimited({ delimiter: d, keepDelimiter, maxLength: 64 });
          const items = encodable<Buffer>(codec, raw);
          // With keepDelimiter, a frame already ending with the delimiter is written as is.
          const expected = keepDelimiter ? items.map((b) => (endsWith(b, d) ? b : Buffer.concat([b, d]))) : items;
          assert.deepEqual(decodeAll(codec, cut(encodeAll(codec, items), split), split.coalesceMax), expected);
        },
      ),
      RUNS,
    );
  });

  it('random bytes: frames or FrameError only, bounded', () => {
    fc.assert(
      fc.property(
        delimiter,
        fc.nat(40),
        hostileBytes.map((b) => b.map((x) => x % 3)),
        splits,
        (d, maxLength, bytes, split) => {
          assertBoundedAndTyped(
            delimited({ delimiter: d, maxLength }),
            Buffer.from(bytes),
            split,
            maxLength + d.length - 1,
          );
        },
      ),
      RUNS,
    );
  });
});

describe('lengthPrefixed (property)', () => {
  const options = fc.record({
    width: fc.constantFrom(1 as const, 2 as const, 3 as const, 4 as const, 8 as const),
    endian: fc.constantFrom('big' as const, 'little' as const),
    headerOffset: fc.nat(3),
    lengthIncludesHeader: fc.boolean(),
    lengthAdjustment: fc.integer({ min: -3, max: 3 }),
    stripHeader: fc.boolean(),
  });

  it('decodes exactly the encoded frames under any chunking', () => {
    fc.assert(
      fc.property(
        options,
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
        splits,
        (o, payloads, split) => {
          const codec = lengthPrefixed({ ...o, maxLength: 1000 });
          const header = Buffer.alloc(o.headerOffset, 0xab);
          const raw: LengthPrefixedItem[] = payloads.map((p) => (o.headerOffset > 0 ? { header, payload: p } : p));
          const items = encodable(codec, raw);
          const expected = items.map((item) => {
            const payload = Buffer.from(typeof item === 'object' && 'payload' in item ? item.payload : item);
            return o.stripHeader ? payload : encodeAll(codec, [item]);
          });
          assert.deepEqual(decodeAll(codec, cut(encodeAll(codec, items), split), split.coalesceMax), expected);
        },
      ),
      RUNS,
    );
  });

  it('random bytes: frames or FrameError only, bounded', () => {
    fc.assert(
      fc.property(options, fc.nat(300), hostileBytes, splits, (o, maxLength, bytes, split) => {
        const codec = lengthPrefixed({ ...o, maxLength });
        assertBoundedAndTyped(codec, bytes, split, o.headerOffset + o.width + maxLength - 1);
      }),
      RUNS,
    );
  });
});

describe('fixed (property)', () => {
  it('decodes exactly the encoded frames under any chunking', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 16 })
          .chain((size) =>
            fc.tuple(
              fc.constant(size),
              fc.array(fc.uint8Array({ minLength: size, maxLength: size }), { maxLength: 20 }),
            ),
          ),
        splits,
        ([size, raw], split) => {
          const codec: Codec<Buffer, Uint8Array | string> = fixed(size);
          const items = raw.map((b) => Buffer.from(b));
          assert.deepEqual(decodeAll(codec, cut(encodeAll(codec, items), split), split.coalesceMax), items);
        },
      ),
      RUNS,
    );
  });

  it('random bytes: frames or FrameError only, bounded', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), hostileBytes, splits, (size, bytes, split) => {
        assertBoundedAndTyped(fixed(size), bytes, split, size - 1);
      }),
      RUNS,
    );
  });
});
