// Shared by the codec table tests (test/framing-*.test.ts): feed chunks through a decoder the way
// conn.frames() does, encode into an array sink, and compare outcomes as plain values.
import assert from 'node:assert/strict';
import { ByteQueue } from '../src/byte-queue.js';
import { FrameError, InvalidOptionError } from '../src/errors.js';
import type { Decoder, Encoder } from '../src/framing/types.js';

export type Outcome = string | { error: string };

/**
 * Feeds `chunks` one by one, decoding after each as conn.frames() does, then ends the stream.
 * String chunks are latin1 bytes; Buffer frames come back as latin1 strings so tables can spell
 * them, and string frames (lines) as they are.
 */
export function run<T>(decoder: Decoder<T>, chunks: Array<string | number[]>, end = true): Outcome[] {
  const q = new ByteQueue();
  const out: Outcome[] = [];
  const spell = (frame: T): Outcome => (Buffer.isBuffer(frame) ? frame.toString('latin1') : (frame as string));
  try {
    for (const c of chunks) {
      q.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : Buffer.from(c));
      for (let f = decoder.decode(q); f !== undefined; f = decoder.decode(q)) out.push(spell(f));
    }
    if (end) for (let f = decoder.decodeEnd!(q); f !== undefined; f = decoder.decodeEnd!(q)) out.push(spell(f));
  } catch (error) {
    assert.ok(error instanceof FrameError, `expected a FrameError, got ${String(error)}`);
    out.push({ error: error.code });
  }
  return out;
}

/** Encodes `item` into a fresh array sink, or returns the FrameError's code. */
export function encode<T>(encoder: Encoder<T>, item: T): Array<string | Uint8Array> | { error: string } {
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

export const TOO_LARGE = { error: 'ERR_FRAME_TOO_LARGE' };
export const INVALID = { error: 'ERR_FRAME_INVALID' };

export function rejectsOption(make: () => unknown, option: string): void {
  assert.throws(make, (error: unknown) => error instanceof InvalidOptionError && error.option === option);
}
