import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteQueue } from '../src/byte-queue.js';
import { type LengthPrefixedOptions, lengthPrefixed } from '../src/framing/length-prefixed.js';
import { encode, INVALID, type Outcome, rejectsOption, run, TOO_LARGE } from './codec-table.js';

const HELLO = 'HELLO, WORLD'; // 12 bytes, as in Netty's LengthFieldBasedFrameDecoder examples
const CAFE = '\xca\xfe';

describe('lengthPrefixed#decode', () => {
  const cases: Array<[string, LengthPrefixedOptions, Array<string | number[]>, Outcome[], boolean?]> = [
    ['default: u32be length, payload', {}, [`\0\0\0\x0c${HELLO}`], [HELLO]],
    ['two frames in one chunk', { width: 1 }, ['\x01a\x02bc'], ['a', 'bc']],
    ['empty payload', { width: 1 }, ['\0\0'], ['', '']],
    ['header split across chunks', { width: 4 }, ['\0\0', '\0', '\x02ab'], ['ab']],
    ['1-byte chunks', { width: 2 }, ['\0', '\x02', 'a', 'b'], ['ab']],
    // Netty's examples, in order.
    ['netty: 2-byte length, strip header', { width: 2 }, [`\0\x0c${HELLO}`], [HELLO]],
    ['netty: 2-byte length, keep header', { width: 2, stripHeader: false }, [`\0\x0c${HELLO}`], [`\0\x0c${HELLO}`]],
    ['netty: length counts the header', { width: 2, lengthIncludesHeader: true }, [`\0\x0e${HELLO}`], [HELLO]],
    [
      'netty: 3-byte length after a 2-byte header (kept by default)',
      { width: 3, headerOffset: 2 },
      [`${CAFE}\0\0\x0c${HELLO}`],
      [`${CAFE}\0\0\x0c${HELLO}`],
    ],
    [
      'netty: 2-byte header after the length (lengthAdjustment +2)',
      { width: 3, lengthAdjustment: 2 },
      [`\0\0\x0c${CAFE}${HELLO}`],
      [`${CAFE}${HELLO}`],
    ],
    [
      'netty: HDR1 LEN HDR2, strip HDR1 and LEN',
      { width: 2, headerOffset: 1, lengthAdjustment: 1, stripHeader: true },
      [`\xca\0\x0c\xfe${HELLO}`],
      [`\xfe${HELLO}`],
    ],
    [
      'netty: HDR1 LEN HDR2, length counts the whole frame',
      { width: 2, headerOffset: 1, lengthIncludesHeader: true, stripHeader: true },
      [`\xca\0\x10\xfe${HELLO}`],
      [`\xfe${HELLO}`],
    ],
    ['little endian u16', { width: 2, endian: 'little' }, ['\x02\0ab'], ['ab']],
    ['big endian u24', { width: 3 }, ['\0\0\x01a'], ['a']],
    ['little endian u24', { width: 3, endian: 'little' }, ['\x01\0\0a'], ['a']],
    ['little endian u32', { width: 4, endian: 'little' }, ['\x01\0\0\0a'], ['a']],
    ['big endian u64', { width: 8 }, ['\0\0\0\0\0\0\0\x01a'], ['a']],
    ['little endian u64', { width: 8, endian: 'little' }, ['\x01\0\0\0\0\0\0\0a'], ['a']],
    ['negative lengthAdjustment (a 2-byte trailer not sent)', { width: 1, lengthAdjustment: -2 }, ['\x03a'], ['a']],
    // Hostile input.
    ['too large: detected from the header alone', { maxLength: 9 }, ['\0\0\0\x0a'], [TOO_LARGE], false],
    ['too large: u32 0xffffffff', {}, ['\xff\xff\xff\xff'], [TOO_LARGE], false],
    ['too large: u64 beyond 2^53', { width: 8 }, ['\xff\xff\xff\xff\xff\xff\xff\xff'], [TOO_LARGE], false],
    ['maxLength is inclusive', { width: 1, maxLength: 2 }, ['\x02ab'], ['ab']],
    [
      'maxLength applies after adjustment',
      { width: 1, maxLength: 2, lengthAdjustment: 1 },
      ['\x02'],
      [TOO_LARGE],
      false,
    ],
    [
      'negative: length smaller than the header it counts',
      { width: 2, lengthIncludesHeader: true },
      ['\0\x01'],
      [INVALID],
      false,
    ],
    ['negative: adjustment larger than the length', { width: 1, lengthAdjustment: -5 }, ['\x03'], [INVALID], false],
    ['truncated payload at end of stream', { width: 1 }, ['\x01a\x03ab'], ['a', INVALID]],
    ['truncated header at end of stream', { width: 4 }, ['\0\0'], [INVALID]],
    ['truncated fixed header at end of stream', { width: 1, headerOffset: 2 }, ['\xca'], [INVALID]],
  ];
  for (const [name, options, chunks, expected, end] of cases) {
    it(name, () => assert.deepEqual(run(lengthPrefixed(options), chunks, end ?? true), expected));
  }

  it('payloads are zero-copy views, also when the header sits in the previous chunk', () => {
    const codec = lengthPrefixed({ width: 1 });
    // Chunks longer than 128 bytes, so the queue keeps them rather than gathering them.
    const a = Buffer.concat([Buffer.from([200]), Buffer.alloc(200, 1), Buffer.from([3])]);
    const b = Buffer.concat([Buffer.from('cde'), Buffer.alloc(200, 0xff)]);
    const q = new ByteQueue();
    q.push(a);
    q.push(b);
    const first = codec.decode(q)!;
    const second = codec.decode(q)!;
    assert.equal(first.buffer, a.buffer);
    assert.equal(second.buffer, b.buffer);
    assert.equal(q.copies, 0);
  });

  it('holds nothing of an oversized frame: the error comes with the header', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([0x7f, 0xff, 0xff, 0xff]));
    assert.throws(() => lengthPrefixed().decode(q), { code: 'ERR_FRAME_TOO_LARGE' });
  });

  it('the truncation error says so', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([0, 0, 0, 9, 1]));
    assert.throws(() => lengthPrefixed().decodeEnd!(q), /truncated/);
  });
});

describe('lengthPrefixed#encode', () => {
  const cases: Array<
    [
      string,
      LengthPrefixedOptions,
      Parameters<ReturnType<typeof lengthPrefixed>['encode']>[0],
      ReturnType<typeof encode>,
    ]
  > = [
    ['default: u32be then the payload, two chunks', {}, 'abc', ['\0\0\0\x03', 'abc']],
    ['bytes', { width: 1 }, Buffer.from('ab'), ['\x02', 'ab']],
    ['a string counts its UTF-8 bytes', { width: 1 }, 'é', ['\x02', 'é']],
    ['empty payload: the header alone', { width: 2 }, '', ['\0\0']],
    ['u16le', { width: 2, endian: 'little' }, 'a', ['\x01\0', 'a']],
    ['u24be', { width: 3 }, 'a', ['\0\0\x01', 'a']],
    ['u64be', { width: 8 }, 'a', ['\0\0\0\0\0\0\0\x01', 'a']],
    ['u64le', { width: 8, endian: 'little' }, 'a', ['\x01\0\0\0\0\0\0\0', 'a']],
    ['lengthIncludesHeader', { width: 2, lengthIncludesHeader: true }, 'a', ['\0\x03', 'a']],
    ['lengthAdjustment', { width: 1, lengthAdjustment: -2 }, 'a', ['\x03', 'a']],
    [
      'headerOffset: header and length in one chunk',
      { width: 1, headerOffset: 2 },
      { header: Buffer.from(CAFE, 'latin1'), payload: 'a' },
      [`${CAFE}\x01`, 'a'],
    ],
    ['headerOffset: a bare payload is refused', { width: 1, headerOffset: 2 }, 'a', INVALID],
    [
      'headerOffset: a header of the wrong size is refused',
      { width: 1, headerOffset: 2 },
      { header: Buffer.from('x'), payload: 'a' },
      INVALID,
    ],
    ['payload longer than maxLength', { maxLength: 2 }, 'abc', TOO_LARGE],
    ['length that does not fit the field', { width: 1 }, 'x'.repeat(256), INVALID],
    ['length made negative by the adjustment', { width: 1, lengthAdjustment: 2 }, 'a', INVALID],
  ];
  for (const [name, options, item, expected] of cases) {
    it(name, () => assert.deepEqual(encode(lengthPrefixed(options), item), expected));
  }
});

describe('lengthPrefixed options', () => {
  const bad: Array<[string, LengthPrefixedOptions]> = [
    ['width', { width: 5 as 4 }],
    ['endian', { endian: 'middle' as 'big' }],
    ['headerOffset', { headerOffset: -1 }],
    ['lengthIncludesHeader', { lengthIncludesHeader: 'yes' as unknown as boolean }],
    ['lengthAdjustment', { lengthAdjustment: 0.5 }],
    ['maxLength', { maxLength: -1 }],
    ['stripHeader', { stripHeader: 1 as unknown as boolean }],
  ];
  for (const [option, options] of bad) {
    it(`rejects ${JSON.stringify(options)} naming ${option}`, () =>
      rejectsOption(() => lengthPrefixed(options), option));
  }

  it('default maxLength is 8 MiB', () => {
    const ok = Buffer.alloc(4);
    ok.writeUInt32BE(8 * 1024 * 1024);
    const over = Buffer.alloc(4);
    over.writeUInt32BE(8 * 1024 * 1024 + 1);
    assert.deepEqual(run(lengthPrefixed(), [[...ok]], false), []);
    assert.deepEqual(run(lengthPrefixed(), [[...over]], false), [TOO_LARGE]);
  });
});
