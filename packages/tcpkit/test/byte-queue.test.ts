import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BufferPool } from '../src/buffer-pool.js';
import { ByteQueue } from '../src/byte-queue.js';

/** A queue holding `parts` as separate chunks. */
function queueOf(...parts: Array<string | number[]>): ByteQueue {
  const q = new ByteQueue(undefined, { coalesceMax: 0 }); // keep the chunking under test
  for (const p of parts) q.push(typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p));
  return q;
}

describe('ByteQueue#push/length/shift', () => {
  it('counts bytes and ignores empty chunks', () => {
    const q = queueOf('ab', '', 'cde');
    assert.equal(q.length, 5);
  });

  it('shift returns the live bytes of the first chunk without copying', () => {
    const a = Buffer.from(`hello${'.'.repeat(200)}`);
    const q = new ByteQueue();
    q.push(a);
    q.push(Buffer.from('world'));
    q.skip(2);
    const s = q.shift()!;
    assert.equal(s.toString(), `llo${'.'.repeat(200)}`);
    assert.equal(s.buffer, a.buffer);
    assert.equal(q.shift()!.toString(), 'world');
    assert.equal(q.shift(), undefined);
    assert.equal(q.length, 0);
  });
});

/** `s` with every character repeated 130 times: chunks above the 128-byte arena threshold. */
const wide = (s: string) => s.replace(/./g, (c) => c.repeat(130));

describe('ByteQueue#push (tiny chunks)', () => {
  it('gathers chunks of up to 128 bytes pushed behind others into one chunk, copying each once', () => {
    const q = new ByteQueue();
    const first = Buffer.from('a');
    q.push(first);
    for (const c of 'bcdef') q.push(Buffer.from(c));
    assert.equal(q.copiedBytes, 5, 'the chunk pushed into the empty queue is kept as is');
    assert.equal(q.shift(), first);
    assert.equal(q.take(5).toString(), 'bcdef');
    assert.equal(q.copies, 0, 'a frame inside the arena is a view of it');
  });

  it('keeps a tiny chunk pushed into an empty queue as is, so a frame in it is a view of it', () => {
    const q = new ByteQueue();
    const chunk = Buffer.from('ping\n');
    q.push(chunk);
    assert.equal(q.copiedBytes, 0);
    const frame = q.take(4);
    assert.equal(frame.buffer, chunk.buffer);
    assert.equal(frame.byteOffset, chunk.byteOffset);
    q.skip(1);
    q.push(Buffer.from('pong\n'));
    assert.equal(q.copiedBytes, 0, 'emptied again: the next chunk is kept as is too');
  });

  it('never rewrites arena bytes a frame still views', () => {
    const q = new ByteQueue();
    const frames: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      q.push(Buffer.from([i & 0xff, (i >> 8) & 0xff]));
      frames.push(q.take(2));
    }
    for (const [i, f] of frames.entries()) assert.deepEqual([...f], [i & 0xff, (i >> 8) & 0xff]);
  });

  it('coalesceMax 0 queues every chunk as is', () => {
    const q = new ByteQueue(undefined, { coalesceMax: 0 });
    const a = Buffer.from('ab');
    q.push(a);
    q.push(Buffer.from('c'));
    assert.equal(q.copiedBytes, 0);
    assert.equal(q.take(2).buffer, a.buffer);
  });

  it('rejects a bad coalesceMax', () => {
    assert.throws(() => new ByteQueue(undefined, { coalesceMax: 5000 }), { code: 'ERR_INVALID_OPTION' });
  });

  it('mixes tiny and large chunks in order', () => {
    const q = new ByteQueue();
    const parts = ['ab', 'x'.repeat(300), 'c', 'd', 'y'.repeat(129), 'e'];
    for (const p of parts) q.push(Buffer.from(p));
    assert.equal(q.length, parts.join('').length);
    assert.equal(q.indexOf(Buffer.from('cd')), 302);
    assert.equal(q.takeAll().toString(), parts.join(''));
  });
});

describe('ByteQueue#take', () => {
  const cases: Array<[string, string[], number[], string[], number]> = [
    // name, chunks, take sizes, expected, copies
    ['inside one chunk', ['abcdef'], [2, 3, 1], ['ab', 'cde', 'f'], 0],
    ['exactly one chunk', ['ab', 'cd'], [2, 2], ['ab', 'cd'], 0],
    ['straddling two chunks', ['abc', 'def'], [4, 2], ['abcd', 'ef'], 1],
    ['straddling many chunks', ['a', 'b', 'c', 'd', 'e'], [5], ['abcde'], 1],
    ['zero bytes', ['ab'], [0, 2], ['', 'ab'], 0],
  ];
  for (const [name, chunks, sizes, expected, copies] of cases) {
    it(name, () => {
      const q = queueOf(...chunks.map(wide));
      assert.deepEqual(
        sizes.map((n) => q.take(n * 130).toString()),
        expected.map(wide),
      );
      assert.equal(q.copies, copies);
      assert.equal(q.length, 0);
    });
  }

  it('returns a view of the socket chunk when the bytes lie in one', () => {
    const chunk = Buffer.from(wide('xxabcxx'));
    const q = new ByteQueue();
    q.push(chunk);
    q.skip(2);
    const t = q.take(3);
    assert.equal(t.buffer, chunk.buffer);
    assert.equal(t.byteOffset, chunk.byteOffset + 2);
  });

  it('throws RangeError when asked for more than it holds', () => {
    assert.throws(() => queueOf('ab').take(3), RangeError);
  });

  it('takeAll returns everything', () => {
    const q = queueOf('ab', 'cd');
    assert.equal(q.takeAll().toString(), 'abcd');
    assert.equal(q.length, 0);
  });
});

describe('ByteQueue#takeString', () => {
  it('decodes from one chunk without copying', () => {
    for (const [encoding, expected] of [
      ['utf8', 'héllo'],
      ['latin1', 'h\xc3\xa9llo'],
    ] as const) {
      const q = new ByteQueue();
      q.push(Buffer.from('héllo'));
      assert.equal(q.takeString(6, encoding), expected);
      assert.equal(q.copies, 0);
    }
  });

  it('joins a UTF-8 sequence split across chunks, borrowing from the pool', () => {
    const text = `${'a'.repeat(150)}é€${'b'.repeat(150)}`;
    const bytes = Buffer.from(text);
    const pool = new BufferPool({ minSize: 512 });
    const q = new ByteQueue(pool);
    q.push(bytes.subarray(0, 151)); // cuts é in two
    q.push(bytes.subarray(151, 153)); // cuts € (gathered in the arena)
    q.push(bytes.subarray(153));
    assert.equal(q.takeString(bytes.length, 'utf8'), text);
    assert.equal(q.copies, 1);
    assert.equal(pool.pooledBytes, 512, 'the scratch buffer went back to the pool');
  });
});

describe('ByteQueue#skip/clear/decoderState', () => {
  it('skips across chunks', () => {
    const q = queueOf('ab', 'cd', 'ef');
    q.skip(3);
    assert.equal(q.takeAll().toString(), 'def');
  });

  it('resets decoderState whenever bytes are consumed', () => {
    const q = queueOf('abcdef');
    for (const consume of [
      () => q.skip(1),
      () => q.take(1),
      () => q.takeString(1, 'utf8'),
      () => q.shift(),
      () => q.clear(),
    ]) {
      q.push(Buffer.from('xyz'));
      q.decoderState = { at: 2 };
      consume();
      assert.equal(q.decoderState, undefined);
    }
  });

  it('throws RangeError when skipping more than it holds', () => {
    assert.throws(() => queueOf('ab').skip(3), RangeError);
  });

  it('stays correct over many small chunks (head compaction)', () => {
    const q = new ByteQueue();
    let expected = '';
    for (let i = 0; i < 200; i++) {
      q.push(Buffer.from(String.fromCharCode(97 + (i % 26))));
      expected += String.fromCharCode(97 + (i % 26));
      if (i % 3 === 2) {
        assert.equal(q.take(2).toString(), expected.slice(0, 2));
        expected = expected.slice(2);
      }
    }
    assert.equal(q.takeAll().toString(), expected);
  });
});

describe('ByteQueue#indexOf', () => {
  const cases: Array<[string, string[], number | string, number, number]> = [
    // name, chunks, needle, from, expected
    ['byte in first chunk', ['ab\ncd'], 10, 0, 2],
    ['byte in a later chunk', ['ab', 'cd', 'e\n'], 10, 0, 5],
    ['byte before from is skipped', ['\na\n'], 10, 1, 2],
    ['byte absent', ['ab', 'cd'], 10, 0, -1],
    ['from past the end', ['ab'], 97, 5, -1],
    ['sequence inside a chunk', ['xx\r\nyy'], '\r\n', 0, 2],
    ['sequence split across chunks', ['xx\r', '\nyy'], '\r\n', 0, 2],
    ['sequence split across three chunks', ['a', 'b', 'c', 'abcd'], 'abcd', 0, 3],
    ['sequence spans a 1-byte chunk', ['xa', 'b', 'cy'], 'abc', 0, 1],
    ['earliest of a straddling and a later match', ['xab', 'cabc'], 'abc', 0, 1],
    ['sequence absent, prefix at end', ['xxab'], 'abc', 0, -1],
    ['sequence after from', ['abcabc'], 'abc', 1, 3],
    ['one-byte sequence', ['ab', 'c'], 'c', 0, 2],
  ];
  for (const [name, chunks, needle, from, expected] of cases) {
    it(name, () => {
      const q = queueOf(...chunks);
      const value = typeof needle === 'number' ? needle : Buffer.from(needle, 'latin1');
      assert.equal(q.indexOf(value, from), expected);
    });
  }

  it('agrees with Buffer#indexOf for any chunking', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }).map((a) => a.map((b) => b % 4)),
        fc.uint8Array({ minLength: 1, maxLength: 4 }).map((a) => a.map((b) => b % 4)),
        fc.array(fc.nat(64)),
        fc.nat(70),
        fc.constantFrom(0, 128),
        (bytes, needle, cuts, from, coalesceMax) => {
          const whole = Buffer.from(bytes);
          // 0 keeps the chunking under test; 128 gathers it into the arena (searched lazily).
          const q = new ByteQueue(undefined, { coalesceMax });
          const points = [...new Set(cuts.filter((c) => c < whole.length))].sort((a, b) => a - b);
          let prev = 0;
          for (const c of [...points, whole.length]) {
            q.push(whole.subarray(prev, c));
            prev = c;
          }
          const expected = from > whole.length ? -1 : whole.indexOf(Buffer.from(needle), from);
          assert.equal(q.indexOf(Buffer.from(needle), from), expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('ByteQueue integer reads', () => {
  const bytes = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88];
  const whole = Buffer.from(bytes);
  const reads: Array<
    [string, (q: ByteQueue, at: number) => number | bigint, (b: Buffer, at: number) => number | bigint, number]
  > = [
    ['u8', (q, at) => q.u8(at), (b, at) => b.readUInt8(at), 1],
    ['u16be', (q, at) => q.u16be(at), (b, at) => b.readUInt16BE(at), 2],
    ['u16le', (q, at) => q.u16le(at), (b, at) => b.readUInt16LE(at), 2],
    ['u24be', (q, at) => q.u24be(at), (b, at) => b.readUIntBE(at, 3), 3],
    ['u24le', (q, at) => q.u24le(at), (b, at) => b.readUIntLE(at, 3), 3],
    ['u32be', (q, at) => q.u32be(at), (b, at) => b.readUInt32BE(at), 4],
    ['u32le', (q, at) => q.u32le(at), (b, at) => b.readUInt32LE(at), 4],
    ['u64be', (q, at) => q.u64be(at), (b, at) => b.readBigUInt64BE(at), 8],
    ['u64le', (q, at) => q.u64le(at), (b, at) => b.readBigUInt64LE(at), 8],
  ];
  for (const [name, read, reference, width] of reads) {
    it(`${name} matches Buffer at every offset and every split point`, () => {
      for (let at = 0; at + width <= bytes.length; at++) {
        for (let cut = 0; cut <= bytes.length; cut++) {
          const q = queueOf(bytes.slice(0, cut), bytes.slice(cut));
          assert.equal(read(q, at), reference(whole, at), `at ${at}, cut ${cut}`);
        }
      }
      const one = new ByteQueue(undefined, { coalesceMax: 0 });
      for (const b of bytes) one.push(Buffer.from([b]));
      assert.equal(read(one, 0), reference(whole, 0), '1-byte chunks');
    });
  }

  it('throws RangeError past the end', () => {
    assert.throws(() => queueOf([1, 2, 3]).u32be(0), RangeError);
    assert.throws(() => queueOf([1]).byteAt(1), RangeError);
  });
});
