import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteQueue } from '../src/byte-queue.js';
import { FrameError } from '../src/errors.js';
import { type LinesOptions, lines } from '../src/framing/lines.js';
import { INVALID, type Outcome, rejectsOption, run, TOO_LARGE } from './codec-table.js';

describe('lines#decode', () => {
  const cases: Array<[string, LinesOptions, Array<string | number[]>, Outcome[], boolean?]> = [
    // name, options, chunks, frames (then the error, if any), end of stream (default true)
    ['one chunk, two lines', {}, ['a\nb\n'], ['a', 'b']],
    ['lines split across chunks', {}, ['hel', 'lo\nwor', 'ld\n'], ['hello', 'world']],
    ['empty lines', {}, ['\n\n'], ['', '']],
    ['no bytes', {}, [], []],
    ['auto: CRLF and LF', { delimiter: 'auto' }, ['a\r\nb\n'], ['a', 'b']],
    ['auto: CRLF split between chunks', {}, ['a\r', '\nb\r\n'], ['a', 'b']],
    ['auto: a CR inside the line stays', {}, ['a\rb\n'], ['a\rb']],
    ['auto: only one CR is stripped', {}, ['a\r\r\n'], ['a\r']],
    ["'\\n': a CR before LF stays", { delimiter: '\n' }, ['a\r\n'], ['a\r']],
    ["'\\r\\n': a bare LF is part of the line", { delimiter: '\r\n' }, ['a\nb\r\n'], ['a\nb']],
    ["'\\r\\n': CRLF split between chunks", { delimiter: '\r\n' }, ['a\r', '\n'], ['a']],
    ["'\\r\\n': CR CR LF", { delimiter: '\r\n' }, ['a\r\r\n'], ['a\r']],
    ['final line without delimiter is returned', {}, ['a\nb'], ['a', 'b']],
    ['auto: final line drops its trailing CR', {}, ['a\r'], ['a']],
    ["'\\n': final line keeps its CR", { delimiter: '\n' }, ['a\r'], ['a\r']],
    ['a partial line waits while the stream is open', {}, ['abc'], [], false],
    ['utf8 character split across chunks', {}, [[0xc3], [0xa9, 0x0a]], ['é']],
    ['latin1', { encoding: 'latin1' }, [[0xe9, 0x0a]], ['é']],
    ['invalid UTF-8 becomes U+FFFD by default', {}, [[0xff, 0x0a]], ['\ufffd']],
    ['validateUtf8 rejects invalid UTF-8', { validateUtf8: true }, [[0x61, 0xff, 0x0a]], [INVALID]],
    ['validateUtf8 accepts valid UTF-8', { validateUtf8: true }, [[0xc3, 0xa9, 0x0a]], ['é']],
    // maxLength counts the line without its delimiter.
    ['maxLength: exactly maxLength', { maxLength: 3 }, ['abc\n'], ['abc']],
    ['maxLength: auto, CRLF not counted', { maxLength: 3 }, ['abc\r\n'], ['abc']],
    ['maxLength: one byte over, delimiter present', { maxLength: 3 }, ['abcd\n'], [TOO_LARGE]],
    ['maxLength: frames before the long line are returned', { maxLength: 3 }, ['ab\nabcd\n'], ['ab', TOO_LARGE]],
    ["maxLength '\\n': maxLength bytes, no delimiter yet", { maxLength: 3, delimiter: '\n' }, ['abc'], [], false],
    [
      "maxLength '\\n': maxLength + 1 bytes without delimiter",
      { maxLength: 3, delimiter: '\n' },
      ['abcd'],
      [TOO_LARGE],
      false,
    ],
    ['maxLength auto: maxLength + 1 bytes may still end in CRLF', { maxLength: 3 }, ['abc\r'], [], false],
    ['maxLength auto: maxLength + 2 bytes without LF', { maxLength: 3 }, ['abcd\r'], [TOO_LARGE], false],
    [
      "maxLength '\\r\\n': maxLength + 2 bytes without CRLF",
      { maxLength: 3, delimiter: '\r\n' },
      ['ab', 'c\rx'],
      [TOO_LARGE],
      false,
    ],
    ['maxLength: detected in 1-byte chunks', { maxLength: 2, delimiter: '\n' }, ['a', 'b', 'c'], [TOO_LARGE], false],
    ['maxLength: final line too long at end of stream', { maxLength: 3 }, ['abcd'], [TOO_LARGE]],
    ['maxLength 0: only empty lines', { maxLength: 0 }, ['\n\r\n', 'a'], ['', '', TOO_LARGE]],
  ];
  for (const [name, options, chunks, expected, end] of cases) {
    it(name, () => {
      assert.deepEqual(run(lines(options as LinesOptions & { encoding?: 'utf8' }), chunks, end ?? true), expected);
    });
  }

  it('encoding null gives zero-copy Buffers for lines inside one chunk', () => {
    const codec = lines({ encoding: null });
    // Longer than 128 bytes, so the queue keeps it rather than gathering it into its arena.
    const chunk = Buffer.concat([Buffer.from('ab\r\ncd\n'), Buffer.alloc(200, 0x2e)]);
    const q = new ByteQueue();
    q.push(chunk);
    const a = codec.decode(q)!;
    const b = codec.decode(q)!;
    assert.deepEqual([a.toString(), b.toString()], ['ab', 'cd']);
    assert.equal(a.buffer, chunk.buffer);
    assert.equal(b.byteOffset, chunk.byteOffset + 4);
    assert.equal(q.copies, 0);
  });

  it('scans each byte of a long partial line a bounded number of times (no O(n²) rescans)', () => {
    let searched = 0;
    class CountingQueue extends ByteQueue {
      override indexOf(value: number | Uint8Array, from = 0): number {
        searched += this.length - from;
        return super.indexOf(value, from);
      }
    }
    for (const delimiter of ['\n', '\r\n', 'auto'] as const) {
      searched = 0;
      const n = 20_000;
      const codec = lines({ delimiter, maxLength: n });
      const q = new CountingQueue();
      for (let i = 0; i < n; i++) {
        q.push(Buffer.from('x'));
        assert.equal(codec.decode(q), undefined);
      }
      q.push(Buffer.from(delimiter === '\r\n' ? '\r\n' : '\n'));
      assert.equal(codec.decode(q)?.length, n);
      assert.ok(searched <= 2 * n + 4, `${delimiter}: searched ${searched} bytes for a ${n}-byte line`);
    }
  });

  it('one codec object serves interleaved streams (state lives in the queue)', () => {
    const codec = lines();
    const q1 = new ByteQueue();
    const q2 = new ByteQueue();
    q1.push(Buffer.from('ab'));
    assert.equal(codec.decode(q1), undefined);
    q2.push(Buffer.from('x\ny'));
    assert.equal(codec.decode(q2), 'x');
    q1.push(Buffer.from('c\n'));
    assert.equal(codec.decode(q1), 'abc');
    assert.equal(codec.decodeEnd!(q2), 'y');
  });
});

describe('lines#encode', () => {
  // Not codec-table's encode(): these cases check which chunks stay bytes and which stay strings.
  const cases: Array<[string, LinesOptions, string | Uint8Array, Array<string | Uint8Array> | { error: string }]> = [
    ['auto writes LF', {}, 'abc', ['abc', '\n']],
    ["'\\r\\n' writes CRLF", { delimiter: '\r\n' }, 'abc', ['abc', '\r\n']],
    ["'\\n' writes LF", { delimiter: '\n' }, 'abc', ['abc', '\n']],
    ['bytes as they are', {}, Buffer.from('ab'), [Buffer.from('ab'), '\n']],
    ['latin1 strings become latin1 bytes', { encoding: 'latin1' }, 'é', [Buffer.from([0xe9]), '\n']],
    ['empty line', {}, '', ['', '\n']],
    ['a line containing LF is refused (no line injection)', {}, 'a\nb', INVALID],
    ["'\\r\\n': a line containing CRLF is refused", { delimiter: '\r\n' }, 'a\r\nb', INVALID],
    ["'\\r\\n': a bare LF is fine", { delimiter: '\r\n' }, 'a\nb', ['a\nb', '\r\n']],
    ['auto: a trailing CR is refused (the decoder would strip it)', {}, 'a\r', INVALID],
    ["'\\n': a trailing CR is fine", { delimiter: '\n' }, 'a\r', ['a\r', '\n']],
    ['longer than maxLength (in UTF-8 bytes)', { maxLength: 2 }, 'éa', TOO_LARGE],
  ];
  for (const [name, options, item, expected] of cases) {
    it(name, () => {
      const out: Array<string | Uint8Array> = [];
      try {
        lines(options as LinesOptions & { encoding?: 'utf8' }).encode(item, out);
        assert.deepEqual(out, expected);
      } catch (error) {
        assert.ok(error instanceof FrameError, String(error));
        assert.deepEqual({ error: error.code }, expected);
        assert.deepEqual(out, [], 'nothing pushed before the error');
      }
    });
  }
});

describe('lines options', () => {
  const bad: Array<[string, unknown]> = [
    ['maxLength', { maxLength: -1 }],
    ['maxLength', { maxLength: 1.5 }],
    ['maxLength', { maxLength: '10' }],
    ['delimiter', { delimiter: '\r' }],
    ['encoding', { encoding: 'hex' }],
    ['validateUtf8', { validateUtf8: 'yes' }],
    ['validateUtf8', { validateUtf8: true, encoding: 'latin1' }],
  ];
  for (const [option, options] of bad) {
    it(`rejects ${JSON.stringify(options)} naming ${option}`, () =>
      rejectsOption(() => lines(options as LinesOptions), option));
  }

  it('defaults: 64 KiB lines, auto delimiter, utf8 strings', () => {
    const codec = lines();
    assert.deepEqual(run(codec, ['x'.repeat(65536), '\r\n']), ['x'.repeat(65536)]);
    assert.deepEqual(run(codec, ['x'.repeat(65538)], false), [TOO_LARGE]);
  });
});
