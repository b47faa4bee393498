/**
 * The replies to one batch of requests, encoded as RESP bytes straight into one scratch buffer and
 * written with one `write()`.
 *
 * Pushing each reply's pieces through `writeFrame` (a `$3\r\n` header string, the value, a CRLF
 * string, each measured, copied and UTF-8 encoded on its own) cost about a sixth of the server's CPU
 * under `redis-benchmark -P 16 -t get`; the common replies (a value, a preencoded constant, the null
 * bulk string, a small integer) are written here byte by byte, everything else through the codec.
 *
 * The scratch is shared by every connection of the app: a handler fills it and writes it out (see
 * {@link ReplyBuffer.writeTo}) before it next awaits, so no other connection's replies can be in it
 * meanwhile. What is handed to the connection is copied there at once: writes from the scratch are
 * kept under 4 KiB, which `write()` copies (README), and a value of 4 KiB or more is written from its
 * own buffer, not copied in.
 */
// The imported Buffer, not the global (a getter that optimized code calls on every use).
import { Buffer } from 'node:buffer';
import { type Conn, type Encoder, type FrameSink, RawReply, type RespReply } from 'tcpkit';

/** Scratch bytes: a batch of small replies larger than this continues in a fresh scratch. */
const SCRATCH_SIZE = 64 * 1024;
/** Longest piece of the scratch handed to one write: under write()'s 4 KiB copy limit, so it is copied at once. */
const SEGMENT = 4 * 1024 - 1;
/** Values from this size up are written from their own buffer, as `write()` sends a large buffer (without a copy). */
const LARGE = 4 * 1024;
/** Room for a header: `$`, up to 16 digits (a length or an integer below 2^53), CRLF. */
const HEADER_ROOM = 20;

const CR = 0x0d;
const LF = 0x0a;
const DOLLAR = 0x24; // '$'
const COLON = 0x3a; // ':'
const MINUS = 0x2d; // '-'
const NULL_BULK = Buffer.from('$-1\r\n', 'latin1');

export class ReplyBuffer implements FrameSink {
  readonly #codec: Encoder<RespReply>;
  #scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE);
  #used = 0;
  /** Start of the scratch bytes not yet in #pieces. */
  #cut = 0;
  /**
   * What goes out before the scratch bytes from #cut, in order: large values, long strings and sealed
   * ranges of the scratch (of this one, or of one it filled before). Empty for nearly every batch.
   */
  readonly #pieces: Array<Uint8Array | string> = [];
  #count = 0;
  /** Bytes held in #pieces (strings counted by length: a bound, not an exact size). */
  #piecesBytes = 0;

  constructor(codec: Encoder<RespReply>) {
    this.#codec = codec;
  }

  /** Bytes held (a bound: strings are counted by their length). */
  get bytes(): number {
    return this.#piecesBytes + this.#used - this.#cut;
  }

  /** Appends `reply`, encoded as RESP2. @throws as the codec's `encode` (an integer reply that is not an integer). */
  add(reply: RespReply): void {
    if (reply instanceof Uint8Array) this.#bulk(reply);
    else if (reply instanceof RawReply) this.#raw(reply.bytes);
    else if (reply === null) this.#raw(NULL_BULK);
    else if (typeof reply === 'number' && Number.isSafeInteger(reply)) {
      this.#room(HEADER_ROOM);
      this.#scratch[this.#used++] = COLON;
      this.#integer(reply);
      this.#crlf();
    } else this.#codec.encode(reply, this);
  }

  /** FrameSink, for the codec's encoder: strings as UTF-8. */
  push(...chunks: Array<Uint8Array | string>): number {
    for (const chunk of chunks) {
      if (typeof chunk !== 'string') this.#raw(chunk);
      else if (chunk.length >= LARGE) this.#piece(chunk, chunk.length);
      else {
        // A UTF-8 string takes at most 3 bytes per UTF-16 unit.
        this.#room(chunk.length * 3);
        this.#used += this.#scratch.write(chunk, this.#used);
      }
    }
    return chunks.length;
  }

  /**
   * Writes what is held, if anything, and empties the buffer, before returning: the scratch is free
   * for the next connection as soon as this returns, whatever the returned write then waits for.
   */
  writeTo(conn: Conn): Promise<void> | undefined {
    if (this.#count === 0) {
      const n = this.#used;
      if (n === 0) return undefined;
      if (n <= SEGMENT) {
        this.#used = 0;
        this.#cut = 0;
        return conn.write(this.#scratch.subarray(0, n));
      }
    }
    this.#seal();
    try {
      return conn.writeFrame(ReplyBuffer.#encoder, this);
    } finally {
      this.discard();
    }
  }

  /** Drops what is held (a handler that fails mid-batch must not leave its replies to the next one). */
  discard(): void {
    for (let i = 0; i < this.#count; i++) this.#pieces[i] = '';
    this.#count = 0;
    this.#piecesBytes = 0;
    this.#used = 0;
    this.#cut = 0;
  }

  /** Hands the pieces to the connection's write queue, in order. */
  static readonly #encoder: Encoder<ReplyBuffer> = {
    encode(replies, out) {
      for (let i = 0; i < replies.#count; i++) out.push(replies.#pieces[i]!);
    },
  };

  #bulk(value: Uint8Array): void {
    const n = value.length;
    const large = n >= LARGE;
    this.#room(large ? HEADER_ROOM : HEADER_ROOM + n + 2);
    this.#scratch[this.#used++] = DOLLAR;
    this.#integer(n);
    this.#crlf();
    if (large) {
      this.#piece(value, n);
      this.#room(2);
    } else this.#copy(value, n);
    this.#crlf();
  }

  #raw(bytes: Uint8Array): void {
    const n = bytes.length;
    if (n >= LARGE) this.#piece(bytes, n);
    else {
      this.#room(n);
      this.#copy(bytes, n);
    }
  }

  /** Copies `n` bytes into the scratch (room must have been made). */
  #copy(bytes: Uint8Array, n: number): void {
    const s = this.#scratch;
    let at = this.#used;
    // A short value byte by byte: cheaper than a call to TypedArray#set.
    if (n <= 32) for (let i = 0; i < n; i++) s[at++] = bytes[i]!;
    else {
      s.set(bytes, at);
      at += n;
    }
    this.#used = at;
  }

  /** Writes a safe integer's decimal digits (room for 17 bytes must have been made). */
  #integer(value: number): void {
    const s = this.#scratch;
    let n = value;
    if (n < 0) {
      s[this.#used++] = MINUS;
      n = -n;
    }
    let digits = 1;
    for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++;
    let at = this.#used + digits;
    this.#used = at;
    do {
      s[--at] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
  }

  #crlf(): void {
    this.#scratch[this.#used++] = CR;
    this.#scratch[this.#used++] = LF;
  }

  /** Queues `piece` (`n` bytes or UTF-16 units) after the scratch bytes written so far. */
  #piece(piece: Uint8Array | string, n: number): void {
    this.#seal();
    this.#pieces[this.#count++] = piece;
    this.#piecesBytes += n;
  }

  /** Moves the scratch bytes not yet in a piece into pieces of at most SEGMENT bytes (which the queue copies). */
  #seal(): void {
    const to = this.#used;
    this.#piecesBytes += to - this.#cut;
    for (let at = this.#cut; at < to; at += SEGMENT) {
      this.#pieces[this.#count++] = this.#scratch.subarray(at, Math.min(at + SEGMENT, to));
    }
    this.#cut = to;
  }

  /** Makes room for `n` more bytes: a full scratch is sealed and writing goes on in a fresh one. */
  #room(n: number): void {
    if (this.#used + n <= this.#scratch.length) return;
    this.#seal();
    // The sealed ranges keep the old scratch alive until they are written. (No request is larger than a
    // scratch: a string pushed by the codec is under LARGE units, at most three bytes each.)
    this.#scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE);
    this.#used = 0;
    this.#cut = 0;
  }
}
