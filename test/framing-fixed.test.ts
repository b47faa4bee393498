import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteQueue } from '../src/byte-queue.js';
import { FrameError, InvalidOptionError } from '../src/errors.js';
import { fixed } from '../src/framing/fixed.js';
import type { Decoder, Encoder } from '../src/framing/types.js';

type Outcome = string | { error: string };

/**
 * Feeds `chunks` one by one, decoding after each as conn.frames() does, then ends the stream.
 * Buffer frames come back as latin1 strings so tables can spell them.
 */
function run(decoder: Decoder<Buffer>, chunks: Array<string | number[]>, end = true): Outcome[] {
  const q = new ByteQueue();
  const out: Outcome[] = [];
  try {
    for (const c of chunks) {
      q.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : Buffer.from(c));
      for (let f = decoder.decode(q); f !== undefined; f = decoder.decode(q)) out.push(f.toString('latin1'));
    }
    if (end)
      for (let f = decoder.decodeEnd!(q); f !== undefined; f = decoder.decodeEnd!(q)) out.push(f.toString('latin1'));
  } catch (error) {
    assert.ok(error instanceof FrameError, `expected a FrameError, got ${String(error)}`);
    out.push({ error: error.code });
  }
  return out;
}

/** Encodes `item` into a fresh array sink, or returns the FrameError's code. */
function encode<T>(encoder: Encoder<T>, item: T): Array<string | Uint8Array> | { error: string } {
  const out: Array<string | Uint8Array> = [];
  try {
    encoder.encode(item, out);
    return out.map((c) => (typeof c === 'string' ? c : Buffer.from(c).toString('latin1')));
  } catch (error) {
    assert.ok(error instanceof FrameError, `expected a FrameError, got ${String(error)}`);
    assert.deepEqual(out, [], 'nothing pushed before the error');
    return { error: error.code };
  }
}

const INVALID = { error: 'ERR_FRAME_INVALID' };

function rejectsOption(make: () => unknown, option: string): void {
  assert.throws(make, (error: unknown) => error instanceof InvalidOptionError && error.option === option);
}

describe('fixed#decode', () => {
  const cases: Array<[string, number, Array<string | number[]>, Outcome[], boolean?]> = [
    ['frames inside one chunk', 3, ['abcdef'], ['abc', 'def']],
    ['frames across chunks', 3, ['ab', 'cd', 'ef'], ['abc', 'def']],
    ['1-byte chunks', 2, ['a', 'b', 'c', 'd'], ['ab', 'cd']],
    ['one chunk, many frames and a partial', 2, ['abcde'], ['ab', 'cd'], false],
    ['size 1', 1, ['ab'], ['a', 'b']],
    ['truncated frame at end of stream', 3, ['abcd'], ['abc', INVALID]],
    ['nothing left at end of stream', 3, ['abc'], ['abc']],
  ];
  for (const [name, size, chunks, expected, end] of cases) {
    it(name, () => assert.deepEqual(run(fixed(size), chunks, end ?? true), expected));
  }

  it('frames inside one chunk are zero-copy views', () => {
    // Longer than 128 bytes, so the queue keeps it rather than gathering it into its arena.
    const chunk = Buffer.concat([Buffer.from('abcdef'), Buffer.alloc(200, 0x2e)]);
    const q = new ByteQueue();
    q.push(chunk);
    const codec = fixed(3);
    assert.equal(codec.decode(q)!.buffer, chunk.buffer);
    assert.equal(codec.decode(q)!.byteOffset, chunk.byteOffset + 3);
    assert.equal(q.copies, 0);
  });

  it('the truncation error says so', () => {
    const q = new ByteQueue();
    q.push(Buffer.from('ab'));
    assert.throws(() => fixed(3).decodeEnd!(q), /truncated/);
  });
});

describe('fixed#encode', () => {
  it('writes a frame of the right size as is', () => {
    assert.deepEqual(encode(fixed(3), 'abc'), ['abc']);
    assert.deepEqual(encode(fixed(2), Buffer.from('ab')), ['ab']);
  });
  it('refuses a frame of another size', () => {
    assert.deepEqual(encode(fixed(3), 'ab'), INVALID);
    assert.deepEqual(encode(fixed(1), 'é'), INVALID);
  });
});

describe('fixed options', () => {
  for (const size of [0, -1, 1.5, Number.NaN, 2 ** 40]) {
    it(`rejects size ${size}`, () => rejectsOption(() => fixed(size), 'size'));
  }
});
