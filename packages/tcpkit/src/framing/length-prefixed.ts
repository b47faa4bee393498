import type { ByteQueue } from '../byte-queue.js';
import { FrameInvalidError, FrameTooLargeError } from '../errors.js';
import { boolean, integer, oneOf } from '../validate.js';
import type { Codec, FrameSink } from './types.js';

/** Options of {@link lengthPrefixed}. Names follow Netty's LengthFieldBasedFrameDecoder where they can. */
export interface LengthPrefixedOptions {
  /** Bytes in the length field: 1, 2, 3, 4 or 8. Default 4. */
  width?: 1 | 2 | 3 | 4 | 8;
  /** Byte order of the length field. Default `'big'` (network order). */
  endian?: 'big' | 'little';
  /**
   * Bytes of fixed header before the length field (Netty's lengthFieldOffset), e.g. 1 for a
   * message-type byte. Default 0.
   */
  headerOffset?: number;
  /**
   * Whether the length field counts the header (`headerOffset` + `width` bytes) as well as the
   * payload. Default false: it counts what follows the length field.
   */
  lengthIncludesHeader?: boolean;
  /**
   * Added to the length field's value to get the payload length, for protocols whose length
   * counts more or fewer bytes than follow it (e.g. -2 when it counts a 2-byte trailer that is
   * not sent, +2 when 2 bytes follow that it does not count). Applied after
   * `lengthIncludesHeader`. A negative payload length is `ERR_FRAME_INVALID`. Default 0.
   */
  lengthAdjustment?: number;
  /**
   * Longest payload accepted, in bytes (what follows the length field, after adjustment). A
   * longer one ends the stream with `ERR_FRAME_TOO_LARGE` as soon as its header has arrived,
   * before any of it is buffered. Default 8388608 (8 MiB).
   */
  maxLength?: number;
  /**
   * Whether decoded frames are the payload only (true) or the whole frame: fixed header, length
   * field and payload (false). Default true when `headerOffset` is 0 (the length field is pure
   * framing), false otherwise (the fixed header usually carries meaning, such as a type byte).
   */
  stripHeader?: boolean;
}

/** What the encoder accepts: a payload, or, when `headerOffset` > 0, the fixed header and the payload. */
export type LengthPrefixedItem = Uint8Array | string | { header: Uint8Array; payload: Uint8Array | string };

const MAX_FIELD = { 1: 0xff, 2: 0xffff, 3: 0xffffff, 4: 0xffffffff, 8: Number.MAX_SAFE_INTEGER } as const;

/**
 * Frames preceded by their length: `[header (headerOffset bytes)] [length (width bytes)] [payload]`.
 * Frames are Buffers, zero-copy views of the socket's chunk when they lie in one. Bytes left at
 * end of stream are a truncated frame (`ERR_FRAME_INVALID`).
 *
 * Security: `maxLength` is checked against the length field before the payload is buffered, so
 * a peer announcing 4 GiB costs nothing.
 */
class LengthPrefixedCodec implements Codec<Buffer, LengthPrefixedItem> {
  readonly #width: 1 | 2 | 3 | 4 | 8;
  readonly #littleEndian: boolean;
  readonly #headerOffset: number;
  readonly #headerLength: number;
  /** Payload length = length field + #adjustment (lengthAdjustment, less the header when counted). */
  readonly #adjustment: number;
  readonly #maxLength: number;
  readonly #stripHeader: boolean;

  constructor(options: LengthPrefixedOptions) {
    const {
      width = 4,
      endian = 'big',
      headerOffset = 0,
      lengthIncludesHeader = false,
      lengthAdjustment = 0,
      maxLength = 8 * 1024 * 1024,
      stripHeader = headerOffset === 0,
    } = options;
    oneOf('width', width, [1, 2, 3, 4, 8]);
    oneOf('endian', endian, ['big', 'little']);
    integer('headerOffset', headerOffset, 0, 65536);
    boolean('lengthIncludesHeader', lengthIncludesHeader);
    integer('lengthAdjustment', lengthAdjustment, -(2 ** 32), 2 ** 32);
    integer('maxLength', maxLength, 0);
    boolean('stripHeader', stripHeader);
    this.#width = width;
    this.#littleEndian = endian === 'little';
    this.#headerOffset = headerOffset;
    this.#headerLength = headerOffset + width;
    this.#adjustment = lengthAdjustment - (lengthIncludesHeader ? this.#headerLength : 0);
    this.#maxLength = maxLength;
    this.#stripHeader = stripHeader;
  }

  decode(queue: ByteQueue): Buffer | undefined {
    const headerLength = this.#headerLength;
    // A frame whose header was read on an earlier call left its payload length in
    // queue.decoderState (undefined: not read yet), so a frame arriving in many small chunks is parsed once.
    const known = queue.decoderState as number | undefined;
    if (known !== undefined) {
      if (queue.length < headerLength + known) return undefined;
    } else if (queue.length < headerLength) return undefined;
    const payloadLength = known ?? this.#readField(queue) + this.#adjustment;
    if (payloadLength < 0) {
      throw new FrameInvalidError(`invalid length field: payload length ${payloadLength} after adjustment`);
    }
    if (payloadLength > this.#maxLength) {
      throw new FrameTooLargeError(
        `frame payload of ${payloadLength} bytes is longer than maxLength (${this.#maxLength}); raise lengthPrefixed({ maxLength })`,
      );
    }
    if (queue.length < headerLength + payloadLength) {
      queue.decoderState = payloadLength;
      return undefined;
    }
    if (!this.#stripHeader) return queue.take(headerLength + payloadLength);
    queue.skip(headerLength);
    return queue.take(payloadLength);
  }

  decodeEnd(queue: ByteQueue): Buffer | undefined {
    const frame = this.decode(queue);
    if (frame !== undefined || queue.length === 0) return frame;
    throw new FrameInvalidError(`truncated frame: ${queue.length} bytes at end of stream`);
  }

  #readField(queue: ByteQueue): number {
    const at = this.#headerOffset;
    const le = this.#littleEndian;
    switch (this.#width) {
      case 1:
        return queue.u8(at);
      case 2:
        return le ? queue.u16le(at) : queue.u16be(at);
      case 3:
        return le ? queue.u24le(at) : queue.u24be(at);
      case 4:
        return le ? queue.u32le(at) : queue.u32be(at);
      case 8: {
        // Two 32-bit halves instead of a bigint: beyond 2^53 precision is lost, but such a
        // length is rejected by maxLength anyway.
        const hi = le ? queue.u32le(at + 4) : queue.u32be(at);
        const lo = le ? queue.u32le(at) : queue.u32be(at + 4);
        return hi * 2 ** 32 + lo;
      }
    }
  }

  /**
   * Writes the header (fixed header and length field, one small buffer) and the payload as
   * separate chunks. With `headerOffset` > 0, pass `{ header, payload }` with a header of
   * exactly `headerOffset` bytes. Frames decoded with `stripHeader: false` include their header:
   * write those with `conn.write()`, not through the encoder.
   * @throws FrameTooLargeError when the payload is longer than `maxLength`.
   * @throws FrameInvalidError when the header has the wrong size or the length does not fit the field.
   */
  encode(item: LengthPrefixedItem, out: FrameSink): void {
    let header: Uint8Array | undefined;
    let payload: Uint8Array | string;
    if (typeof item === 'string' || item instanceof Uint8Array) payload = item;
    else ({ header, payload } = item);
    const headerOffset = this.#headerOffset;
    if ((header?.length ?? 0) !== headerOffset) {
      throw new FrameInvalidError(`frame header must be headerOffset (${headerOffset}) bytes`);
    }
    const payloadLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (payloadLength > this.#maxLength) {
      throw new FrameTooLargeError(
        `frame payload of ${payloadLength} bytes is longer than maxLength (${this.#maxLength})`,
      );
    }
    const field = payloadLength - this.#adjustment;
    const width = this.#width;
    if (field < 0 || field > MAX_FIELD[width]) {
      throw new FrameInvalidError(`length ${field} does not fit a ${width}-byte length field`);
    }
    const head = Buffer.allocUnsafe(this.#headerLength);
    if (header !== undefined) head.set(header, 0);
    if (width === 8) {
      const hi = Math.floor(field / 2 ** 32);
      const lo = field >>> 0;
      if (this.#littleEndian) {
        head.writeUInt32LE(lo, headerOffset);
        head.writeUInt32LE(hi, headerOffset + 4);
      } else {
        head.writeUInt32BE(hi, headerOffset);
        head.writeUInt32BE(lo, headerOffset + 4);
      }
    } else if (this.#littleEndian) head.writeUIntLE(field, headerOffset, width);
    else head.writeUIntBE(field, headerOffset, width);
    if (payloadLength === 0) out.push(head);
    else out.push(head, payload);
  }
}

/**
 * A codec for length-prefixed frames. With no options: a 4-byte big-endian length, then that
 * many bytes of payload. See {@link LengthPrefixedOptions}.
 */
export function lengthPrefixed(options: LengthPrefixedOptions = {}): Codec<Buffer, LengthPrefixedItem> {
  return new LengthPrefixedCodec(options);
}
