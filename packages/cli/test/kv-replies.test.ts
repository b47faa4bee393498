/** The kv app's reply buffer: the bytes it writes are what the resp codec encodes, and it never lends its scratch. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type Conn, type Encoder, ErrorReply, RawReply, type RespReply, resp, SimpleString } from 'tcpkit';
import { ReplyBuffer } from '../src/apps/kv/replies.js';

const codec = resp();

/** What the codec alone writes for `replies`, one after another. */
function encoded(replies: RespReply[]): Buffer {
  const chunks: Buffer[] = [];
  const sink = {
    push: (...c: Array<Uint8Array | string>) => chunks.push(...c.map((x) => Buffer.from(x as Uint8Array))),
  };
  for (const r of replies) codec.encode(r, sink);
  return Buffer.concat(chunks);
}

/**
 * A stand-in for a connection that records what each write hands over, copying only what `write()`
 * copies (under 4 KiB); a larger buffer is kept by reference, as the real queue sends it from the
 * caller's memory. Reading `bytes()` after later writes therefore shows if the scratch was lent out.
 */
function recorder() {
  const held: Buffer[] = [];
  const take = (chunk: Uint8Array | string): void => {
    if (typeof chunk === 'string') held.push(Buffer.from(chunk));
    else if (chunk.byteLength < 4096) held.push(Buffer.from(chunk));
    else held.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  };
  const conn = {
    write(data: Uint8Array | string): Promise<void> {
      take(data);
      return Promise.resolve();
    },
    writeFrame<T>(encoder: Encoder<T>, item: T): Promise<void> {
      const push = (...c: Array<Uint8Array | string>): number => {
        for (const chunk of c) take(chunk);
        return c.length;
      };
      encoder.encode(item, { push });
      return Promise.resolve();
    },
  };
  return { conn: conn as unknown as Conn, bytes: () => Buffer.concat(held) };
}

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
/** The replies the kv app makes, large values (written from their own buffer) included. */
const reply: fc.Arbitrary<RespReply> = fc.letrec<{ reply: RespReply }>((tie) => ({
  reply: fc.oneof(
    { depthSize: 'small' },
    bytes(40),
    fc.integer({ min: 4090, max: 9000 }).map((n) => Buffer.alloc(n, n & 0xff)),
    fc.constant(null),
    fc.integer(),
    fc.constantFrom(0, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 1e21, -0),
    fc.bigInt(),
    fc.string(),
    fc.string({ unit: 'grapheme', maxLength: 5000 }),
    fc.constantFrom(new RawReply('+OK\r\n'), new RawReply('$-1\r\n'), new RawReply(Buffer.alloc(5000, 0x61))),
    fc.string().map((s) => new SimpleString(s)),
    fc.string().map((s) => new ErrorReply(`ERR ${s}`)),
    fc.array(tie('reply'), { maxLength: 5 }),
  ),
})).reply;

describe('kv ReplyBuffer', () => {
  test('property: any replies, in batches of any size, are written as the codec encodes them', () => {
    fc.assert(
      fc.property(fc.array(fc.array(reply, { maxLength: 40 }), { minLength: 1, maxLength: 6 }), (batches) => {
        const replies = new ReplyBuffer(codec);
        const { conn, bytes: written } = recorder();
        for (const batch of batches) {
          for (const r of batch) replies.add(r);
          replies.writeTo(conn);
          assert.equal(replies.bytes, 0);
        }
        assert.deepEqual(written(), encoded(batches.flat()));
      }),
      { numRuns: 300 },
    );
  });

  test('a batch larger than the scratch goes on in a fresh one, in order', () => {
    const replies = new ReplyBuffer(codec);
    const { conn, bytes: written } = recorder();
    const batch: RespReply[] = [];
    for (let i = 0; i < 20_000; i++) batch.push(Buffer.from(`value-${i}`), i, null);
    // Long strings (each unit up to 3 bytes of UTF-8) pushed by the codec, and an array of them.
    batch.push('€'.repeat(4095), 'x'.repeat(5000), ['€'.repeat(3000), new ErrorReply('ERR é')]);
    for (const r of batch) replies.add(r);
    assert.ok(replies.bytes > 64 * 1024);
    replies.writeTo(conn);
    assert.deepEqual(written(), encoded(batch));
  });

  test('a value of 4 KiB or more is handed to the write as itself, not copied', () => {
    const replies = new ReplyBuffer(codec);
    const value = Buffer.alloc(10_000, 0x62);
    const handed: Array<Uint8Array | string> = [];
    const conn = {
      writeFrame<T>(encoder: Encoder<T>, item: T): Promise<void> {
        encoder.encode(item, { push: (...c) => handed.push(...c) });
        return Promise.resolve();
      },
    } as unknown as Conn;
    replies.add(value);
    replies.writeTo(conn);
    assert.ok(handed.includes(value));
  });

  test('nothing held: no write; discard drops a batch', () => {
    const replies = new ReplyBuffer(codec);
    const { conn, bytes: written } = recorder();
    assert.equal(replies.writeTo(conn), undefined);
    replies.add(Buffer.from('dropped'));
    replies.discard();
    assert.equal(replies.bytes, 0);
    assert.equal(replies.writeTo(conn), undefined);
    assert.equal(written().length, 0);
  });

  test('a number that is not an integer throws as the codec does', () => {
    const replies = new ReplyBuffer(codec);
    assert.throws(() => replies.add(1.5), /integer reply expected/);
  });
});
