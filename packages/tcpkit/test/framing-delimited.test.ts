import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteQueue } from '../src/byte-queue.js';
import { type DelimitedOptions, delimited } from '../src/framing/delimited.js';
import { encode, INVALID, type Outcome, rejectsOption, run, TOO_LARGE } from './codec-table.js';

describe('delimited#decode', () => {
  const NUL = { delimiter: '\0' };
  const BLANK = { delimiter: '\r\n\r\n' };
  const cases: Array<[string, DelimitedOptions, Array<string | number[]>, Outcome[], boolean?]> = [
    ['one-byte delimiter', NUL, ['a\0bc\0'], ['a', 'bc']],
    ['empty frames', NUL, ['\0\0'], ['', '']],
    ['frame split across chunks', NUL, ['ab', 'c\0d', '\0'], ['abc', 'd']],
    ['multi-byte delimiter', BLANK, ['a\r\nb\r\n\r\nc\r\n\r\n'], ['a\r\nb', 'c']],
    ['multi-byte delimiter split between chunks', BLANK, ['a\r', '\n\r', '\n'], ['a']],
    ['multi-byte delimiter in 1-byte chunks', BLANK, ['x', '\r', '\n', '\r', '\n', 'y'], ['x', INVALID]],
    ['partial delimiter then content', { delimiter: 'ab' }, ['xa', 'ayab'], ['xaay']],
    ['self-overlapping delimiter', { delimiter: 'aa' }, ['xaaa'], ['x', INVALID]],
    ['bytes delimiter', { delimiter: Buffer.from([0xff, 0x00]) }, [[1, 0xff, 0xff, 0x00]], ['\x01\xff']],
    ['keepDelimiter', { ...BLANK, keepDelimiter: true }, ['a\r\n\r\nb\r\n\r\n'], ['a\r\n\r\n', 'b\r\n\r\n']],
    ['truncated frame at end of stream', NUL, ['a\0b'], ['a', INVALID]],
    ['a partial frame waits while the stream is open', NUL, ['ab'], [], false],
    // maxLength counts the frame without its delimiter.
    ['maxLength: exactly maxLength', { ...BLANK, maxLength: 2 }, ['ab\r\n\r\n'], ['ab']],
    ['maxLength: keepDelimiter does not count it', { ...NUL, maxLength: 2, keepDelimiter: true }, ['ab\0'], ['ab\0']],
    ['maxLength: one over with delimiter present', { ...NUL, maxLength: 2 }, ['abc\0'], [TOO_LARGE]],
    [
      'maxLength: maxLength + delimiter - 1 bytes may still end well',
      { ...BLANK, maxLength: 2 },
      ['ab\r\n\r'],
      [],
      false,
    ],
    [
      'maxLength: maxLength + delimiter bytes without it',
      { ...BLANK, maxLength: 2 },
      ['ab\r\n\rx'],
      [TOO_LARGE],
      false,
    ],
    ['maxLength: detected in 1-byte chunks', { ...NUL, maxLength: 1 }, ['a', 'b'], [TOO_LARGE], false],
  ];
  for (const [name, options, chunks, expected, end] of cases) {
    it(name, () => assert.deepEqual(run(delimited(options), chunks, end ?? true), expected));
  }

  it('frames inside one chunk are zero-copy views', () => {
    // Longer than 128 bytes, so the queue keeps it rather than gathering it into its arena.
    const chunk = Buffer.concat([Buffer.from('ab||cd||'), Buffer.alloc(200, 0x2e)]);
    const q = new ByteQueue();
    q.push(chunk);
    const codec = delimited({ delimiter: '||' });
    assert.equal(codec.decode(q)!.buffer, chunk.buffer);
    assert.equal(codec.decode(q)!.byteOffset, chunk.byteOffset + 4);
    assert.equal(q.copies, 0);
  });

  it('the delimiter is copied: mutating the caller buffer changes nothing', () => {
    const d = Buffer.from('|');
    const codec = delimited({ delimiter: d });
    d[0] = 0x2c;
    assert.deepEqual(run(codec, ['a|b,']), ['a', INVALID]);
  });

  it('scans each byte of a long partial frame a bounded number of times', () => {
    let searched = 0;
    class CountingQueue extends ByteQueue {
      override indexOf(value: number | Uint8Array, from = 0): number {
        searched += this.length - from;
        return super.indexOf(value, from);
      }
    }
    const n = 20_000;
    const codec = delimited({ delimiter: '\r\n\r\n', maxLength: n });
    const q = new CountingQueue();
    for (let i = 0; i < n; i++) {
      q.push(Buffer.from('x'));
      assert.equal(codec.decode(q), undefined);
    }
    q.push(Buffer.from('\r\n\r\n'));
    assert.equal(codec.decode(q)?.length, n);
    assert.ok(searched <= 4 * n + 16, `searched ${searched} bytes for a ${n}-byte frame`);
  });
});

describe('delimited#encode', () => {
  const cases: Array<[string, DelimitedOptions, string | Uint8Array, ReturnType<typeof encode>]> = [
    ['appends the delimiter', { delimiter: '\0' }, 'abc', ['abc', '\0']],
    ['bytes', { delimiter: '||' }, Buffer.from('ab'), ['ab', '||']],
    ['empty frame', { delimiter: '\0' }, '', ['', '\0']],
    ['refuses a frame containing the delimiter', { delimiter: '||' }, 'a||b', INVALID],
    ['refuses a frame ending with the delimiter', { delimiter: '||' }, 'a||', INVALID],
    ['refuses a tail that joins the delimiter into an earlier match', { delimiter: 'aa' }, 'xa', INVALID],
    ['refuses a tail that joins a longer delimiter', { delimiter: 'abab' }, 'xab', INVALID],
    ['keepDelimiter: a decoded frame is written as is', { delimiter: '\0', keepDelimiter: true }, 'ab\0', ['ab\0']],
    ['keepDelimiter: a bare frame gets the delimiter', { delimiter: '\0', keepDelimiter: true }, 'ab', ['ab', '\0']],
    ['keepDelimiter: a delimiter inside is still refused', { delimiter: '\0', keepDelimiter: true }, 'a\0b\0', INVALID],
    ['longer than maxLength', { delimiter: '\0', maxLength: 2 }, 'abc', TOO_LARGE],
  ];
  for (const [name, options, item, expected] of cases) {
    it(name, () => assert.deepEqual(encode(delimited(options), item), expected));
  }
});

describe('delimited options', () => {
  const bad: Array<[string, unknown]> = [
    ['delimiter', undefined],
    ['delimiter', {}],
    ['delimiter', { delimiter: '' }],
    ['delimiter', { delimiter: 10 }],
    ['maxLength', { delimiter: '\0', maxLength: -1 }],
    ['keepDelimiter', { delimiter: '\0', keepDelimiter: 1 }],
  ];
  for (const [option, options] of bad) {
    it(`rejects ${JSON.stringify(options)} naming ${option}`, () =>
      rejectsOption(() => delimited(options as DelimitedOptions), option));
  }

  it('defaults: 64 KiB frames, delimiter dropped', () => {
    const codec = delimited({ delimiter: '\0' });
    assert.deepEqual(run(codec, ['x'.repeat(65536), '\0']), ['x'.repeat(65536)]);
    assert.deepEqual(run(codec, ['x'.repeat(65537)], false), [TOO_LARGE]);
  });
});
