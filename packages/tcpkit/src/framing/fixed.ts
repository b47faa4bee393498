import type { ByteQueue } from '../byte-queue.js';
import { FrameInvalidError } from '../errors.js';
import { integer } from '../validate.js';
import type { Codec, FrameSink } from './types.js';

/**
 * Frames of exactly `size` bytes (Netty's FixedLengthFrameDecoder). Frames are Buffers,
 * zero-copy views of the socket's chunk when they lie in one. The size is also the bound:
 * the decoder never holds more than `size - 1` bytes of an incomplete frame. Bytes left at end
 * of stream are a truncated frame (`ERR_FRAME_INVALID`).
 */
class FixedCodec implements Codec<Buffer, Uint8Array | string> {
  readonly #size: number;

  constructor(size: number) {
    integer('size', size, 1, 2 ** 31);
    this.#size = size;
  }

  decode(queue: ByteQueue): Buffer | undefined {
    return queue.length >= this.#size ? queue.take(this.#size) : undefined;
  }

  decodeEnd(queue: ByteQueue): Buffer | undefined {
    const frame = this.decode(queue);
    if (frame !== undefined || queue.length === 0) return frame;
    throw new FrameInvalidError(`truncated frame: ${queue.length} of ${this.#size} bytes at end of stream`);
  }

  /**
   * Writes `frame` as is.
   * @throws FrameInvalidError when it is not exactly `size` bytes (a string counts in UTF-8).
   */
  encode(frame: Uint8Array | string, out: FrameSink): void {
    const length = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
    if (length !== this.#size) {
      throw new FrameInvalidError(`frame of ${length} bytes is not the fixed size (${this.#size})`);
    }
    out.push(frame);
  }
}

/** A codec for frames of exactly `size` bytes. */
export function fixed(size: number): Codec<Buffer, Uint8Array | string> {
  return new FixedCodec(size);
}
