import type { ByteQueue } from '../byte-queue.js';
import { FrameInvalidError, FrameTooLargeError, InvalidOptionError } from '../errors.js';
import { boolean, integer } from '../validate.js';
import type { Codec, FrameSink } from './types.js';

/** Options of {@link delimited}. */
export interface DelimitedOptions {
  /** The byte sequence that ends every frame (a string is taken as UTF-8). Required, not empty. */
  delimiter: Uint8Array | string;
  /**
   * Longest frame accepted, in bytes, not counting the delimiter. A longer frame ends the stream
   * with `ERR_FRAME_TOO_LARGE` as soon as `maxLength` + delimiter length bytes have arrived
   * without a delimiter. Default 65536 (64 KiB).
   */
  maxLength?: number;
  /** Whether decoded frames end with the delimiter. Default false (it is dropped). */
  keepDelimiter?: boolean;
}

/**
 * Frames ended by a byte sequence (Netty's DelimiterBasedFrameDecoder with one delimiter).
 * Frames are Buffers, zero-copy views of the socket's chunk when they lie in one. Bytes left
 * at end of stream are a truncated frame (`ERR_FRAME_INVALID`).
 *
 * Security: `maxLength` bounds the memory one connection can make the decoder hold.
 */
class DelimitedCodec implements Codec<Buffer, Uint8Array | string> {
  readonly #delimiter: Buffer;
  readonly #maxLength: number;
  readonly #keepDelimiter: boolean;
  readonly #limit: number;

  constructor(options: DelimitedOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError('delimiter', 'delimited() needs options with a delimiter');
    }
    const { delimiter, maxLength = 64 * 1024, keepDelimiter = false } = options;
    if (typeof delimiter !== 'string' && !(delimiter instanceof Uint8Array)) {
      throw new InvalidOptionError('delimiter', 'must be a string or a Uint8Array');
    }
    if (delimiter.length === 0) throw new InvalidOptionError('delimiter', 'must not be empty');
    integer('maxLength', maxLength, 0);
    boolean('keepDelimiter', keepDelimiter);
    // Copied so that a caller mutating its buffer later cannot change the framing.
    this.#delimiter = Buffer.from(delimiter);
    this.#maxLength = maxLength;
    this.#keepDelimiter = keepDelimiter;
    this.#limit = maxLength + this.#delimiter.length;
  }

  decode(queue: ByteQueue): Buffer | undefined {
    const length = queue.length;
    if (length === 0) return undefined;
    const delimiter = this.#delimiter;
    // decoderState: bytes already searched for the delimiter (undefined: none).
    const at = queue.indexOf(delimiter, queue.decoderState as number | undefined);
    if (at === -1) {
      if (length >= this.#limit) throw this.#tooLarge(length);
      // The last delimiter.length - 1 bytes may begin a delimiter completed by the next chunk.
      queue.decoderState = Math.max(0, length - delimiter.length + 1);
      return undefined;
    }
    if (at > this.#maxLength) throw this.#tooLarge(at);
    if (this.#keepDelimiter) return queue.take(at + delimiter.length);
    const frame = queue.take(at);
    queue.skip(delimiter.length);
    return frame;
  }

  decodeEnd(queue: ByteQueue): Buffer | undefined {
    const frame = this.decode(queue);
    if (frame !== undefined || queue.length === 0) return frame;
    throw new FrameInvalidError(`truncated frame: ${queue.length} bytes at end of stream without a delimiter`);
  }

  #tooLarge(seen: number): FrameTooLargeError {
    return new FrameTooLargeError(
      `frame longer than maxLength (${this.#maxLength} bytes): ${seen} bytes without a delimiter; raise delimited({ maxLength })`,
    );
  }

  /**
   * Writes `frame` and the delimiter as two chunks. With `keepDelimiter`, a frame that already
   * ends with the delimiter (as decoded frames do) is written as is.
   * @throws FrameInvalidError when the delimiter would be found before the frame's end.
   * @throws FrameTooLargeError when the frame is longer than `maxLength` bytes.
   */
  encode(frame: Uint8Array | string, out: FrameSink): void {
    const delimiter = this.#delimiter;
    let bytes = typeof frame === 'string' ? Buffer.from(frame) : frame;
    let withDelimiter = false;
    if (this.#keepDelimiter && endsWith(bytes, delimiter)) {
      bytes = bytes.subarray(0, bytes.length - delimiter.length);
      withDelimiter = true;
    }
    if (bytes.length > this.#maxLength) {
      throw new FrameTooLargeError(`frame of ${bytes.length} bytes is longer than maxLength (${this.#maxLength})`);
    }
    if (firstDelimiter(bytes, delimiter) !== bytes.length) {
      throw new FrameInvalidError('frame contains the delimiter');
    }
    if (withDelimiter) out.push(typeof frame === 'string' ? Buffer.from(frame) : frame);
    else out.push(bytes, delimiter);
  }
}

function endsWith(bytes: Uint8Array, suffix: Uint8Array): boolean {
  if (bytes.length < suffix.length) return false;
  const base = bytes.length - suffix.length;
  for (let j = 0; j < suffix.length; j++) if (bytes[base + j] !== suffix[j]) return false;
  return true;
}

/**
 * Where the first delimiter of `body + delimiter` starts. It is `body.length` only when the body
 * neither contains the delimiter nor ends with a prefix that joins the appended one into an
 * earlier match (a self-overlapping delimiter such as `aa` after a body ending in `a`).
 */
function firstDelimiter(body: Uint8Array, delimiter: Buffer): number {
  const inside = Buffer.from(body.buffer, body.byteOffset, body.length).indexOf(delimiter);
  if (inside !== -1) return inside;
  const n = body.length;
  const m = delimiter.length;
  for (let p = Math.max(0, n - m + 1); p < n; p++) {
    let match = true;
    for (let j = 0; j < m && match; j++) {
      const at = p + j;
      match = (at < n ? body[at] : delimiter[at - n]) === delimiter[j];
    }
    if (match) return p;
  }
  return n;
}

/** A codec for frames ended by `delimiter`. See {@link DelimitedOptions}. */
export function delimited(options: DelimitedOptions): Codec<Buffer, Uint8Array | string> {
  return new DelimitedCodec(options);
}
