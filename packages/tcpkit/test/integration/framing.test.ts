import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ByteQueue } from '../../src/byte-queue.js';
import { delimited, fixed, lengthPrefixed, lines } from '../../src/framing/index.js';
import type { Codec, Decoder } from '../../src/framing/types.js';
import { type Conn, type Server, serve } from '../../src/index.js';

const TEST = { timeout: 10_000 };

/**
 * Connects, writes `chunks` one event-loop turn apart (so they tend to arrive as separate
 * segments, cutting frames), half-closes, and resolves with every byte the server sent before
 * it closed.
 */
function exchange(port: number, chunks: Buffer[]): Promise<{ data: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    const socket = net.connect({ host: '127.0.0.1', port });
    let error: Error | undefined;
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', (e) => {
      error = e;
    });
    socket.on('close', () => resolve({ data: Buffer.concat(received), error }));
    socket.on('connect', async () => {
      for (const c of chunks) {
        socket.write(c);
        await new Promise((r) => setImmediate(r));
      }
      socket.end();
    });
  });
}

function encodeAll<T>(codec: Codec<unknown, T>, items: T[]): Buffer {
  const out: Array<string | Uint8Array> = [];
  for (const item of items) codec.encode(item, out);
  return Buffer.concat(out.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
}

function decodeAll<T>(decoder: Decoder<T>, bytes: Buffer): T[] {
  const q = new ByteQueue();
  q.push(bytes);
  const frames: T[] = [];
  for (let f = decoder.decode(q); f !== undefined; f = decoder.decode(q)) frames.push(f);
  assert.equal(q.length, 0, 'the reply ends on a frame boundary');
  return frames;
}

/** Cuts `bytes` into chunks of the given sizes, cycling, so frames straddle chunk boundaries. */
function slice(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

function portOf(server: Server): number {
  const address = server.address;
  assert.ok(typeof address !== 'string', 'a TCP server');
  return address.port;
}

/** An echo server for `codec`: every frame is written back through the codec's encoder. */
async function echoServer<T>(codec: Codec<T, T>): Promise<Server> {
  return serve({ host: '127.0.0.1', port: 0 }, async (conn: Conn) => {
    for await (const frame of conn.frames(codec)) await conn.writeFrame(codec, frame);
  });
}

describe('framing over a socket: conn.frames() and conn.writeFrame()', () => {
  const cases: Array<[string, Codec<unknown, unknown>, unknown[]]> = [
    ['lines', lines() as Codec<unknown, unknown>, ['hello', '', 'wörld €', 'x'.repeat(5000), 'last']],
    [
      'lines, CRLF, Buffers',
      lines({ delimiter: '\r\n', encoding: null }) as Codec<unknown, unknown>,
      ['a\nb', 'c'].map((s) => Buffer.from(s)),
    ],
    [
      'delimited',
      delimited({ delimiter: '\0\0' }) as Codec<unknown, unknown>,
      ['one', 'two\0x', '', 'x'.repeat(3000)].map((s) => Buffer.from(s)),
    ],
    [
      'lengthPrefixed',
      lengthPrefixed({ width: 2, endian: 'little' }) as Codec<unknown, unknown>,
      [Buffer.alloc(0), Buffer.from('abc'), Buffer.alloc(40_000, 7)],
    ],
    ['fixed', fixed(7) as Codec<unknown, unknown>, ['abcdefg', '1234567', '\0\0\0\0\0\0\0'].map((s) => Buffer.from(s))],
  ];
  for (const [name, codec, items] of cases) {
    it(`${name}: echoes every frame under awkward chunking`, TEST, async () => {
      const server = await echoServer(codec);
      try {
        const sent = encodeAll(codec, items);
        const { data, error } = await exchange(portOf(server), slice(sent, [1, 3, 700, 2, 9000]));
        assert.equal(error, undefined);
        assert.deepEqual(decodeAll(codec, data), items);
      } finally {
        await server.shutdown({ timeout: 2000 });
      }
    });
  }
});

describe('framing over a socket: end of stream', () => {
  it('lines: a final line without a delimiter is still delivered', TEST, async () => {
    const codec = lines();
    const server = await echoServer(codec);
    try {
      const { data } = await exchange(portOf(server), [Buffer.from('a\r\nb')]);
      assert.deepEqual(decodeAll(codec, data), ['a', 'b']);
    } finally {
      await server.shutdown({ timeout: 2000 });
    }
  });
});

describe('framing over a socket: corrupt streams', () => {
  let server: Server;
  const errors: Array<{ conn: Conn; error: unknown }> = [];
  const onError = (message: unknown) => errors.push(message as { conn: Conn; error: unknown });
  const codec = lengthPrefixed({ width: 4, maxLength: 1024 });

  before(async () => {
    diagnostics_channel.subscribe('tcpkit:connection:error', onError);
    server = await echoServer(codec);
  });
  after(async () => {
    diagnostics_channel.unsubscribe('tcpkit:connection:error', onError);
    await server.shutdown({ timeout: 2000 });
  });

  const bad: Array<[string, Buffer, string]> = [
    [
      'an oversized length closes the connection with ERR_FRAME_TOO_LARGE',
      Buffer.from([0, 0, 0x10, 0]),
      'ERR_FRAME_TOO_LARGE',
    ],
    [
      'a truncated frame at end of stream closes it with ERR_FRAME_INVALID',
      Buffer.from([0, 0, 0, 9, 1, 2]),
      'ERR_FRAME_INVALID',
    ],
  ];
  for (const [name, garbage, code] of bad) {
    it(`${name}; other connections go on`, TEST, async () => {
      errors.length = 0;
      // A healthy connection opened first and used on both sides of the bad one.
      const healthy = net.connect({ host: '127.0.0.1', port: portOf(server) });
      const healthyReplies = new ByteQueue();
      healthy.on('data', (d: Buffer) => healthyReplies.push(d));
      const replyTo = async (payload: string): Promise<string> => {
        healthy.write(encodeAll(codec, [payload]));
        for (let i = 0; i < 500; i++) {
          const frame = codec.decode(healthyReplies);
          if (frame !== undefined) return frame.toString();
          await new Promise((r) => setTimeout(r, 5));
        }
        throw new Error('no reply on the healthy connection');
      };
      await new Promise((r) => healthy.once('connect', r));
      assert.equal(await replyTo('before'), 'before');

      // The bad connection is served until the corruption: it gets its reply, then is closed.
      const bad = net.connect({ host: '127.0.0.1', port: portOf(server) });
      const badReplies = new ByteQueue();
      bad.on('data', (d: Buffer) => badReplies.push(d));
      bad.on('error', () => {}); // a reset is an acceptable way for the server to close it
      const closed = new Promise((r) => bad.once('close', r));
      await new Promise((r) => bad.once('connect', r));
      bad.write(encodeAll(codec, ['ok']));
      for (let i = 0; i < 500 && badReplies.length < 6; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(codec.decode(badReplies)?.toString(), 'ok');
      bad.end(garbage);
      await closed;
      for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(errors.length, 1);
      assert.equal((errors[0]!.error as { code?: string }).code, code);

      assert.equal(await replyTo('after'), 'after');
      healthy.end();
      await new Promise((r) => healthy.once('close', r));
    });
  }
});
