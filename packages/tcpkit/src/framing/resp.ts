// Over the ~400-line guide on purpose: one dense concept, the RESP2 codec, whose decoder mirrors Redis's parser check
// for check (multibulk, inline with sdssplitargs quoting, every limit) beside the reply encoder it answers with.
import type { ByteQueue } from '../byte-queue.js';
import { FrameInvalidError, FrameTooLargeError } from '../errors.js';
import { integer } from '../validate.js';
import { decodeFlatMultibulk, type FlatLimits } from './resp-flat.js';
import type { Codec, FrameSink } from './types.js';

const CR = 0x0d;
const LF = 0x0a;
const STAR = 0x2a; // '*'
const DOLLAR = 0x24; // '$'
const CRLF = '\r\n';

/** Options of {@link resp}. Every limit is in bytes unless it says otherwise. */
export interface RespOptions {
  /**
   * Longest bulk string (one argument) accepted. Checked against the `$<length>` header before
   * any of the body is buffered. Redis's `proto-max-bulk-len`. Default 536870912 (512 MiB).
   */
  maxBulkLength?: number;
  /**
   * Longest inline command (a request that does not start with `*`), and longest `*<count>` or
   * `$<length>` header line. Redis's `PROTO_INLINE_MAX_SIZE`. Default 65536 (64 KiB).
   */
  maxInlineLength?: number;
  /**
   * Most arguments in one request (the `*<count>` header). Redis 6.2 fixed this at 1048576;
   * Redis 7 accepts up to 2^31 - 1. Default 1048576.
   */
  maxArrayLength?: number;
  /**
   * Most bytes one request may occupy, headers included: the bound on what a single request can
   * make a connection buffer. Redis's `client-query-buffer-limit`. Default 1073741824 (1 GiB).
   */
  maxLength?: number;
}

/** A RESP simple string reply: `+<value>\r\n`. The value must not contain CR or LF. */
export class SimpleString {
  constructor(readonly value: string) {}
}

/**
 * A RESP error reply: `-<message>\r\n`. The message starts with the error code, as in
 * `new ErrorReply('ERR syntax error')`. CR and LF in it are sent as spaces, as Redis does.
 */
export class ErrorReply {
  constructor(readonly message: string) {}
}

/** Bytes that are already a complete RESP reply (a preencoded constant such as `+OK\r\n`); sent as is. */
export class RawReply {
  readonly bytes: Buffer;
  constructor(bytes: Buffer | string) {
    this.bytes = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  }
}

/**
 * A reply the `resp` encoder writes:
 * - `Uint8Array`: bulk string (binary safe); `string`: bulk string of its UTF-8 bytes;
 * - `null`: the null bulk string `$-1`;
 * - `number` (an integer) or `bigint`: integer reply;
 * - an array: array reply of these, recursively;
 * - {@link SimpleString}, {@link ErrorReply}, {@link RawReply}.
 */
export type RespReply =
  | Uint8Array
  | string
  | null
  | number
  | bigint
  | SimpleString
  | ErrorReply
  | RawReply
  | readonly RespReply[];

/**
 * Where a request that arrives in many chunks was left: the elements already known complete,
 * so the next `decode` resumes there instead of rewalking every header (which would cost
 * O(n²) for a large array). Kept in `queue.decoderState`, so the codec object itself stays
 * stateless; the queue drops it whenever bytes are consumed.
 */
interface Progress {
  /** Offset of the next element header. */
  at: number;
  /** Elements still to read. */
  remaining: number;
  /** Offset and length of each argument found so far. */
  starts: number[];
  lengths: number[];
  /** The queue must hold at least this many bytes before walking on is worth trying. */
  need: number;
}

/** Requests of at most this many arguments are parsed in the shared scratch arrays below. */
const SCRATCH_ARGS = 64;
const scratchStarts: number[] = [];
const scratchLengths: number[] = [];

/**
 * The RESP2 (Redis protocol) codec for a server: decodes requests, encodes replies.
 *
 * Requests are arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or inline commands
 * (`GET k\r\n`, split like Redis's `sdssplitargs`, quotes and escapes included); each decodes to
 * its arguments as Buffers (zero-copy views of the socket's chunk when they lie in one: copy an
 * argument you keep). An empty request (`*0`, `*-1`, a blank line) decodes to `[]`, which Redis
 * ignores and so should the handler.
 *
 * A malformed request throws a `FrameError` whose message is the text Redis 7 sends, e.g.
 * `Protocol error: invalid bulk length`; answer `-ERR <message>\r\n` and close, as Redis does
 * (see {@link protocolErrorReply}).
 *
 * Security: `maxBulkLength` is checked from the `$<length>` header before any body is buffered,
 * `maxInlineLength` bounds a line without a newline, `maxArrayLength` the argument count and
 * `maxLength` the whole request, so a peer cannot make one connection buffer without bound.
 */
class RespCodec implements Codec<Buffer[], RespReply> {
  readonly #maxBulkLength: number;
  readonly #maxInlineLength: number;
  readonly #maxArrayLength: number;
  readonly #maxLength: number;
  readonly #limits: FlatLimits;

  constructor(options: RespOptions) {
    const {
      maxBulkLength = 512 * 1024 * 1024,
      maxInlineLength = 64 * 1024,
      maxArrayLength = 1024 * 1024,
      maxLength = 1024 * 1024 * 1024,
    } = options;
    this.#maxBulkLength = integer('maxBulkLength', maxBulkLength, 1);
    this.#maxInlineLength = integer('maxInlineLength', maxInlineLength, 1);
    this.#maxArrayLength = integer('maxArrayLength', maxArrayLength, 1);
    this.#maxLength = integer('maxLength', maxLength, 1);
    this.#limits = {
      maxInlineLength: this.#maxInlineLength,
      maxArrayLength: this.#maxArrayLength,
      maxBulkLength: this.#maxBulkLength,
      maxLength: this.#maxLength,
    };
  }

  decode(queue: ByteQueue): Buffer[] | undefined {
    const length = queue.length;
    if (length === 0) return undefined;
    if (queue.byteAt(0) !== STAR) return this.#inline(queue, length);
    if (queue.decoderState === undefined) {
      const chunk = queue.flat();
      if (chunk !== undefined) {
        const args = decodeFlatMultibulk(queue, chunk, queue.headOffset, length, this.#limits);
        if (args !== undefined) return args;
      }
    }
    return this.#multibulk(queue, length);
  }

  /** Mirrors Redis's processMultibulkBuffer, check for check and message for message. */
  #multibulk(queue: ByteQueue, length: number): Buffer[] | undefined {
    const state = queue.decoderState as Progress | undefined;
    let at: number;
    let remaining: number;
    // Where the arguments found so far are noted: the state's own arrays when resuming, else the
    // shared scratch arrays (decode runs to completion, so one pair serves every connection); a
    // request complete in the queue, the usual case, then allocates only its arguments.
    let starts: number[];
    let lengths: number[];
    let found: number;
    if (state !== undefined) {
      if (length < state.need) return undefined;
      ({ at, remaining, starts, lengths } = state);
      found = starts.length;
    } else {
      const nl = queue.indexOf(CR);
      // The limit is checked against the line however it was cut into reads: an unfinished line
      // longer than the limit, and a finished one, fail alike (Redis checks only the buffer it holds,
      // but reads 16 KiB at a time, so a longer header always fails there too).
      if (nl > this.#maxInlineLength) throw new FrameTooLargeError('Protocol error: too big mbulk count string');
      if (nl === -1) {
        if (length > this.#maxInlineLength) throw new FrameTooLargeError('Protocol error: too big mbulk count string');
        return undefined;
      }
      if (nl + 2 > length) return undefined; // the LF after the CR has not arrived yet
      const count = parseInteger(queue, 1, nl);
      if (Number.isNaN(count) || count > 2147483647) {
        if (hasNul(queue, 1, nl)) {
          // Redis's strchr stops at the NUL: it sees no line end yet and waits for more.
          if (length > this.#maxInlineLength)
            throw new FrameTooLargeError('Protocol error: too big mbulk count string');
          return undefined;
        }
        throw new FrameInvalidError('Protocol error: invalid multibulk length');
      }
      if (count > this.#maxArrayLength) throw new FrameTooLargeError('Protocol error: invalid multibulk length');
      if (count <= 0) {
        queue.skip(nl + 2);
        return [];
      }
      at = nl + 2;
      remaining = count;
      // The scratch arrays stay small: a longer request notes its arguments in its own arrays.
      const scratch = count <= SCRATCH_ARGS;
      starts = scratch ? scratchStarts : [];
      lengths = scratch ? scratchLengths : [];
      found = 0;
    }
    while (remaining > 0) {
      const nl = at < length ? queue.indexOf(CR, at) : -1;
      if (nl === -1 || nl - at > this.#maxInlineLength) {
        if (length - at > this.#maxInlineLength)
          throw new FrameTooLargeError('Protocol error: too big bulk count string');
        return this.#suspend(queue, state, at, remaining, starts, lengths, found, at + 1);
      }
      if (nl + 2 > length) return this.#suspend(queue, state, at, remaining, starts, lengths, found, nl + 2);
      const first = queue.byteAt(at);
      const bulk = first === DOLLAR ? parseInteger(queue, at + 1, nl) : Number.NaN;
      if (Number.isNaN(bulk) && hasNul(queue, at, nl)) {
        // As for the count: a NUL before the CR hides the line end from Redis, which waits.
        if (length - at > this.#maxInlineLength)
          throw new FrameTooLargeError('Protocol error: too big bulk count string');
        return this.#suspend(queue, state, at, remaining, starts, lengths, found, length + 1);
      }
      if (first !== DOLLAR) {
        // (A NUL here is handled above: Redis never sees this line end.)
        throw new FrameInvalidError(`Protocol error: expected '$', got '${charFor(first)}'`);
      }
      if (Number.isNaN(bulk) || bulk < 0) throw new FrameInvalidError('Protocol error: invalid bulk length');
      if (bulk > this.#maxBulkLength) throw new FrameTooLargeError('Protocol error: invalid bulk length');
      const end = nl + 2 + bulk + 2;
      if (end > this.#maxLength) {
        throw new FrameTooLargeError(`Protocol error: request longer than maxLength (${this.#maxLength} bytes)`);
      }
      // The header is known good; only the body is missing. Wait for all of it at once.
      if (end > length) return this.#suspend(queue, state, at, remaining, starts, lengths, found, end);
      starts[found] = nl + 2;
      lengths[found] = bulk;
      found++;
      at = end;
      remaining--;
    }

    const args = new Array<Buffer>(found);
    let consumed = 0;
    for (let i = 0; i < found; i++) {
      queue.skip(starts[i]! - consumed);
      args[i] = queue.take(lengths[i]!);
      consumed = starts[i]! + lengths[i]!;
    }
    // Like Redis, the two bytes after a bulk body are skipped without checking they are CRLF.
    queue.skip(at - consumed);
    return args;
  }

  /** Records how far the walk got (in the queue's decoderState) and waits for `need` bytes. */
  #suspend(
    queue: ByteQueue,
    state: Progress | undefined,
    at: number,
    remaining: number,
    starts: number[],
    lengths: number[],
    found: number,
    need: number,
  ): undefined {
    if (state !== undefined) {
      // Resuming: the arguments went into the state's own arrays.
      state.at = at;
      state.remaining = remaining;
      state.need = need;
    } else {
      const scratch = starts === scratchStarts;
      queue.decoderState = {
        at,
        remaining,
        starts: scratch ? starts.slice(0, found) : starts,
        lengths: scratch ? lengths.slice(0, found) : lengths,
        need,
      } satisfies Progress;
    }
    return undefined;
  }

  /** Mirrors Redis's processInlineBuffer. */
  #inline(queue: ByteQueue, length: number): Buffer[] | undefined {
    const nl = queue.indexOf(LF);
    // A NUL before the LF hides the line end from Redis (its strchr stops there): it waits for more
    // input until the limit is passed, silent, with the connection open. So does this decoder.
    if (nl === -1 || hasNul(queue, 0, nl)) {
      // A CR at the end may be the line's terminator, whose LF is still on its way: not part of the line.
      const lineSoFar = queue.byteAt(length - 1) === CR ? length - 1 : length;
      if (lineSoFar > this.#maxInlineLength) throw new FrameTooLargeError('Protocol error: too big inline request');
      return undefined;
    }
    const lineLength = nl > 0 && queue.byteAt(nl - 1) === CR ? nl - 1 : nl;
    // Redis notices only when 64 KiB sit in its buffer without a newline, which depends on how
    // reads are split; a line longer than the limit is refused whatever the chunking.
    if (lineLength > this.#maxInlineLength) throw new FrameTooLargeError('Protocol error: too big inline request');
    const line = queue.take(lineLength);
    queue.skip(nl - lineLength + 1);
    const args = splitArgs(line);
    if (args === undefined) throw new FrameInvalidError('Protocol error: unbalanced quotes in request');
    return args;
  }

  /**
   * At end of stream a partial request is dropped without error, as Redis drops it: the peer has
   * gone, so there is nobody to send a protocol error to.
   */
  decodeEnd(queue: ByteQueue): Buffer[] | undefined {
    const request = this.decode(queue);
    if (request === undefined) queue.clear();
    return request;
  }

  /** Writes `reply` as RESP2. @throws FrameInvalidError for a number that is not an integer. */
  encode(reply: RespReply, out: FrameSink): void {
    if (reply === null) {
      out.push('$-1\r\n');
    } else if (reply instanceof Uint8Array) {
      out.push(`$${reply.length}\r\n`, reply, CRLF);
    } else if (typeof reply === 'string') {
      out.push(`$${Buffer.byteLength(reply)}\r\n${reply}\r\n`);
    } else if (typeof reply === 'number') {
      if (!Number.isInteger(reply)) throw new FrameInvalidError(`integer reply expected, got ${reply}`);
      out.push(`:${reply}\r\n`);
    } else if (typeof reply === 'bigint') {
      out.push(`:${reply}\r\n`);
    } else if (reply instanceof RawReply) {
      out.push(reply.bytes);
    } else if (reply instanceof SimpleString) {
      out.push(lineBytes('+', reply.value));
    } else if (reply instanceof ErrorReply) {
      out.push(lineBytes('-', reply.message));
    } else {
      out.push(`*${reply.length}\r\n`);
      for (const item of reply) this.encode(item, out);
    }
  }
}

/** `+`/`-` line, latin1 so each char is one byte (messages quoting binary arguments stay byte-exact). */
function lineBytes(prefix: string, text: string): Buffer | string {
  const clean = text.replace(/[\r\n]/g, ' ');
  return /^[\x20-\x7e]*$/.test(clean) ? `${prefix}${clean}\r\n` : Buffer.from(`${prefix}${clean}\r\n`, 'latin1');
}

/** One byte as the latin1 char Redis's `%c` prints. CR and LF become spaces, as Redis's error sanitizer does. */
function charFor(byte: number): string {
  return byte === CR || byte === LF ? ' ' : String.fromCharCode(byte);
}

/** Whether a NUL byte lies in queue bytes [start, end). Only asked on a line that failed to parse. */
function hasNul(queue: ByteQueue, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (queue.byteAt(i) === 0) return true;
  return false;
}

/** The digits of 2^63 - 1 and of 2^63 (the magnitude of the most negative 64-bit integer). */
const MAX_INT64 = '9223372036854775807';
const MIN_INT64_MAGNITUDE = '9223372036854775808';

/**
 * Redis's string2ll over queue bytes [start, end): optional '-', no '+', no leading zeros, no
 * spaces, a signed 64-bit value. Returns NaN when invalid. A value of 19 digits is checked against
 * the 64-bit range digit by digit (floating point would round it); values beyond 2^53 lose precision
 * but stay beyond every limit they are compared with.
 */
function parseInteger(queue: ByteQueue, start: number, end: number): number {
  const len = end - start;
  if (len <= 0 || len >= 21) return Number.NaN;
  let i = start;
  let negative = false;
  if (queue.byteAt(i) === 0x2d) {
    negative = true;
    i++;
    if (i === end) return Number.NaN;
  }
  const lead = queue.byteAt(i);
  if (lead === 0x30) return len === 1 ? 0 : Number.NaN;
  if (lead < 0x31 || lead > 0x39) return Number.NaN;
  const digits = end - i;
  if (digits > 19) return Number.NaN;
  let value = 0;
  let text = '';
  for (; i < end; i++) {
    const c = queue.byteAt(i);
    if (c < 0x30 || c > 0x39) return Number.NaN;
    value = value * 10 + (c - 0x30);
    if (digits === 19) text += String.fromCharCode(c);
  }
  // Same-length digit strings compare as numbers.
  if (digits === 19 && text > (negative ? MIN_INT64_MAGNITUDE : MAX_INT64)) return Number.NaN;
  return negative ? -value : value;
}

const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);
const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
const hexValue = (c: number): number => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10);

/**
 * Redis's sdssplitargs: blanks separate arguments; "double quotes" take \n \r \t \b \a \xHH and
 * \<any> escapes; 'single quotes' take \'; a closing quote must be followed by a blank or the
 * end. Like the C original the line ends at a NUL byte. Returns undefined for unbalanced quotes.
 */
export function splitArgs(line: Buffer): Buffer[] | undefined {
  const zero = line.indexOf(0);
  const n = zero === -1 ? line.length : zero;
  const at = (i: number): number => (i < n ? line[i]! : 0);
  const args: Buffer[] = [];
  let p = 0;
  for (;;) {
    while (p < n && isSpace(line[p]!)) p++;
    if (p >= n) return args;
    // Fast path for the common token without quotes: a zero-copy slice of the line.
    let q = p;
    for (; q < n; q++) {
      const c = line[q]!;
      if (c === 0x20 || c === LF || c === CR || c === 0x09 || c === 0x22 || c === 0x27) break;
    }
    if (q >= n || (line[q] !== 0x22 && line[q] !== 0x27)) {
      args.push(line.subarray(p, q));
      p = q < n ? q + 1 : q;
      continue;
    }
    const current: number[] = [];
    let inDouble = false;
    let inSingle = false;
    let done = false;
    while (!done) {
      const c = at(p);
      if (inDouble) {
        if (c === 0x5c && at(p + 1) === 0x78 && isHex(at(p + 2)) && isHex(at(p + 3))) {
          current.push(hexValue(at(p + 2)) * 16 + hexValue(at(p + 3)));
          p += 3;
        } else if (c === 0x5c && at(p + 1) !== 0) {
          p++;
          const e = at(p);
          current.push(
            e === 0x6e ? LF : e === 0x72 ? CR : e === 0x74 ? 0x09 : e === 0x62 ? 0x08 : e === 0x61 ? 0x07 : e,
          );
        } else if (c === 0x22) {
          if (at(p + 1) !== 0 && !isSpace(at(p + 1))) return undefined;
          done = true;
        } else if (c === 0) {
          return undefined;
        } else {
          current.push(c);
        }
      } else if (inSingle) {
        if (c === 0x5c && at(p + 1) === 0x27) {
          p++;
          current.push(0x27);
        } else if (c === 0x27) {
          if (at(p + 1) !== 0 && !isSpace(at(p + 1))) return undefined;
          done = true;
        } else if (c === 0) {
          return undefined;
        } else {
          current.push(c);
        }
      } else if (c === 0x20 || c === LF || c === CR || c === 0x09 || c === 0) {
        done = true;
      } else if (c === 0x22) {
        inDouble = true;
      } else if (c === 0x27) {
        inSingle = true;
      } else {
        current.push(c);
      }
      if (p < n) p++;
    }
    args.push(Buffer.from(current));
  }
}

/**
 * The bytes Redis sends for a malformed request: `-ERR <message>\r\n`, the message of the
 * `FrameError` the decoder threw (latin1, so a quoted byte goes back as that byte).
 */
export function protocolErrorReply(error: Error): Buffer {
  return Buffer.from(`-ERR ${error.message.replace(/[\r\n]/g, ' ')}\r\n`, 'latin1');
}

/**
 * A codec for RESP2 servers: `conn.frames(resp())` yields each request's arguments,
 * `conn.writeFrame(codec, reply)` sends a {@link RespReply}. See {@link RespOptions} for limits.
 */
export function resp(options: RespOptions = {}): Codec<Buffer[], RespReply> {
  return new RespCodec(options);
}
