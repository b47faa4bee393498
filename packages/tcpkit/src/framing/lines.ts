import { isUtf8 } from 'node:buffer';
import type { ByteQueue, TextEncoding } from '../byte-queue.js';
import { FrameInvalidError, FrameTooLargeError, InvalidOptionError } from '../errors.js';
import { boolean, integer, oneOf } from '../validate.js';
import type { Codec, FrameSink } from './types.js';

const LF = 0x0a;
const CR = 0x0d;
const CRLF = Buffer.from('\r\n');

/** How lines end: `'\n'`, `'\r\n'`, or `'auto'` (either; a `\r` before the `\n` is stripped). */
export type LineDelimiter = '\n' | '\r\n' | 'auto';

/** Options of {@link lines}. */
export interface LinesOptions {
  /**
   * Longest line accepted, in bytes, not counting its delimiter. A longer line ends the stream
   * with `ERR_FRAME_TOO_LARGE` as soon as `maxLength` + delimiter length bytes have arrived
   * without a delimiter, so a peer cannot make the decoder buffer more. Default 65536 (64 KiB).
   */
  maxLength?: number;
  /**
   * How lines end. `'\n'`: a line ends at LF (a CR before it stays in the line). `'\r\n'`: a line
   * ends at CRLF (a bare LF is part of the line). `'auto'`: a line ends at LF and a CR just
   * before it is stripped, so both styles are read; the encoder writes LF. Default `'auto'`.
   */
  delimiter?: LineDelimiter;
  /**
   * How frames are decoded: `'utf8'` or `'latin1'` give strings, `null` gives Buffers (zero-copy
   * views of the socket's chunk when the line lies in one). Default `'utf8'`.
   */
  encoding?: TextEncoding | null;
  /**
   * With `encoding: 'utf8'`: reject a line that is not valid UTF-8 with `ERR_FRAME_INVALID`
   * instead of replacing its bad sequences with U+FFFD. Default false.
   */
  validateUtf8?: boolean;
}

/**
 * Text lines. At end of stream a final line without a delimiter is returned as a frame (as Go's
 * `bufio.Scanner` and tokio's `LinesCodec` do), since many peers omit the last newline.
 *
 * Security: `maxLength` bounds the memory one connection can make the decoder hold.
 */
class LinesCodec<T extends string | Buffer> implements Codec<T, string | Uint8Array> {
  readonly #maxLength: number;
  readonly #mode: LineDelimiter;
  readonly #encoding: TextEncoding | null;
  readonly #validateUtf8: boolean;
  /** Bytes that may be buffered without a delimiter before the line is known to be too long. */
  readonly #limit: number;

  constructor(options: LinesOptions) {
    const { maxLength = 64 * 1024, delimiter = 'auto', encoding = 'utf8', validateUtf8 = false } = options;
    integer('maxLength', maxLength, 0);
    oneOf('delimiter', delimiter, ['\n', '\r\n', 'auto']);
    oneOf('encoding', encoding, ['utf8', 'latin1', null]);
    boolean('validateUtf8', validateUtf8);
    if (validateUtf8 && encoding !== 'utf8') throw new InvalidOptionError('validateUtf8', "needs encoding 'utf8'");
    this.#maxLength = maxLength;
    this.#mode = delimiter;
    this.#encoding = encoding;
    this.#validateUtf8 = validateUtf8;
    this.#limit = maxLength + (delimiter === '\n' ? 1 : 2);
  }

  decode(queue: ByteQueue): T | undefined {
    const length = queue.length;
    if (length === 0) return undefined;
    const crlf = this.#mode === '\r\n';
    // decoderState: bytes already searched for the delimiter (undefined: none).
    const from = queue.decoderState as number | undefined;
    const at = crlf ? queue.indexOf(CRLF, from) : queue.indexOf(LF, from);
    if (at === -1) {
      if (length >= this.#limit) throw this.#tooLarge(length);
      // A CR at the end may be the first half of a CRLF split across chunks: rescan it.
      queue.decoderState = crlf ? length - 1 : length;
      return undefined;
    }
    let lineLength = at;
    let delimiterLength = crlf ? 2 : 1;
    if (this.#mode === 'auto' && at > 0 && queue.byteAt(at - 1) === CR) {
      lineLength--;
      delimiterLength++;
    }
    if (lineLength > this.#maxLength) throw this.#tooLarge(lineLength);
    const line = this.#read(queue, lineLength);
    queue.skip(delimiterLength);
    return line;
  }

  decodeEnd(queue: ByteQueue): T | undefined {
    const line = this.decode(queue);
    if (line !== undefined || queue.length === 0) return line;
    let lineLength = queue.length;
    // The final line has no LF; a trailing CR is the first half of its delimiter, as in Go's dropCR.
    if (this.#mode !== '\n' && queue.byteAt(lineLength - 1) === CR) lineLength--;
    if (lineLength > this.#maxLength) throw this.#tooLarge(lineLength);
    const last = this.#read(queue, lineLength);
    queue.clear();
    return last;
  }

  #read(queue: ByteQueue, n: number): T {
    const encoding = this.#encoding;
    if (encoding === null) return queue.take(n) as T;
    if (!this.#validateUtf8) return queue.takeString(n, encoding) as T;
    const bytes = queue.take(n);
    if (!isUtf8(bytes)) throw new FrameInvalidError('line is not valid UTF-8');
    return bytes.toString('utf8') as T;
  }

  #tooLarge(seen: number): FrameTooLargeError {
    return new FrameTooLargeError(
      `line longer than maxLength (${this.#maxLength} bytes): ${seen} bytes without a delimiter; raise lines({ maxLength })`,
    );
  }

  /**
   * Writes `line` and the delimiter (LF for `'auto'`) as two chunks. Strings are encoded with
   * the codec's encoding (UTF-8 when it is null).
   * @throws FrameInvalidError when the line contains the delimiter (which would let a caller
   *   inject extra lines), or, with `'auto'`, ends with CR (which the decoder would strip).
   * @throws FrameTooLargeError when the line is longer than `maxLength` bytes.
   */
  encode(line: string | Uint8Array, out: FrameSink): void {
    const bytes: string | Uint8Array =
      typeof line === 'string' && this.#encoding === 'latin1' ? Buffer.from(line, 'latin1') : line;
    const byteLength = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
    if (byteLength > this.#maxLength) {
      throw new FrameTooLargeError(`line of ${byteLength} bytes is longer than maxLength (${this.#maxLength})`);
    }
    const view = typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    if (this.#mode === '\r\n' ? view.includes('\r\n') : view.includes('\n')) {
      throw new FrameInvalidError('line contains the line delimiter');
    }
    if (this.#mode === 'auto' && byteLength > 0 && lastByteIsCR(view)) {
      throw new FrameInvalidError("line ends with CR, which delimiter 'auto' strips when decoding");
    }
    out.push(bytes, this.#mode === '\r\n' ? '\r\n' : '\n');
  }
}

function lastByteIsCR(view: string | Buffer): boolean {
  return typeof view === 'string' ? view.charCodeAt(view.length - 1) === CR : view[view.length - 1] === CR;
}

/**
 * A codec for text lines, as in `for await (const line of conn.frames(lines())) ...`.
 * Frames are strings, or Buffers with `encoding: null`. See {@link LinesOptions}.
 */
export function lines(options?: LinesOptions & { encoding?: TextEncoding }): Codec<string, string | Uint8Array>;
export function lines(options: LinesOptions & { encoding: null }): Codec<Buffer, string | Uint8Array>;
export function lines(options: LinesOptions): Codec<string | Buffer, string | Uint8Array>;
export function lines(options: LinesOptions = {}): Codec<string | Buffer, string | Uint8Array> {
  return new LinesCodec(options);
}
