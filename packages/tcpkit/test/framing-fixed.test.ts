import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteQueue } from '../src/byte-queue.js';
import { fixed } from '../src/framing/fixed.js';
import { encode, INVALID, type Outcome, rejectsOption, run } from './codec-table.js';

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
