// Over the ~400-line guide on purpose: one dense concept (the chunk list every decoder reads from, with its
// cursor, arena and readers), whose operations share its private invariants; split, they would need them public.
// The imported Buffer, not the global (a getter that optimized code calls on every use).
import { Buffer } from 'node:buffer';
import type { BufferPool } from './buffer-pool.js';
import { integer } from './validate.js';

const EMPTY = Buffer.alloc(0);

const ARENA_SIZE = 4096;

/** Options of a {@link ByteQueue}. */
export interface ByteQueueOptions {
  /**
   * Chunks of at most this many bytes pushed behind others are copied into an arena and queued
   * as one chunk, so that a peer sending a byte at a time cannot make each decode walk thousands
   * of chunks (a chunk pushed into an empty queue is kept as is). 0 queues every chunk as is.
   * Default 128; at most 4096.
   */
  coalesceMax?: number;
}

/** Text encodings a frame can be decoded to without an intermediate Buffer. */
export type TextEncoding = 'utf8' | 'latin1';

/**
 * A queue of bytes received from a socket: chunks go in without copying, frames come out.
 *
 * Offsets passed to the peek methods (`byteAt`, `indexOf`, `u8`, `u16be`, ...) count from the
 * first unconsumed byte. They read across chunk boundaries without concatenating.
 *
 * Complexity (k = number of chunks held, usually 1-3 since tiny chunks are gathered into one;
 * n = bytes involved):
 * - `push`, `length`: O(1); a chunk of at most `coalesceMax` bytes is copied, O(its length).
 * - `byteAt`, `u8` ... `u64le`: O(1) when the bytes lie in the first chunk, else O(k), and
 *   amortised O(1) for offsets that grow between consumptions (a cursor remembers the chunk).
 * - `indexOf`: O(n) in the bytes searched (native `Buffer#indexOf` inside each chunk, plus at
 *   most `sequence.length - 1` byte compares at each chunk boundary); resuming where `decoderState` says
 *   does not walk the chunks already searched.
 * - `take(n)`: O(1) and zero-copy when the n bytes lie in the first chunk; otherwise one O(n) copy.
 * - `takeString(n)`: decodes straight from the chunk when the n bytes lie in it; otherwise
 *   copies them once into a scratch buffer (from the pool, when the queue has one).
 * - `skip(n)`, `shift()`, `clear()`: O(chunks dropped).
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  /** index in #chunks of the first live chunk (avoids Array#shift on every take). */
  #head = 0;
  /** offset of the first unconsumed byte in #chunks[#head]. */
  #offset = 0;
  #length = 0;
  #pool: BufferPool | undefined;
  readonly #coalesceMax: number;
  /**
   * The last chunk `#locate` found (index, and queue offset of its first live byte), so that a
   * decoder resuming its search where its `decoderState` says over thousands of tiny chunks does not walk them
   * all again on every call. -1 when unknown; consuming bytes forgets it.
   */
  #cacheIndex = -1;
  #cacheBase = 0;
  /**
   * Tiny chunks (a slow or hostile peer sending a byte at a time) are appended to an arena and
   * queued as one growing view of it, so decoders see a few chunks rather than thousands. The
   * arena is append-only, never reused: frames handed out as views of it stay valid.
   */
  #arena: Buffer = EMPTY;
  #arenaUsed = 0;
  /** The arena view that is the last queued chunk, which the next tiny chunk may extend. */
  #arenaView: Buffer = EMPTY;
  /** Bytes appended to the arena behind #arenaView and not yet covered by it (see #sync). */
  #arenaPending = 0;

  /**
   * The decoder's progress on the frame at the head of the queue, kept between `decode` calls so
   * that a frame arriving in many small chunks is not parsed again on each (which would cost
   * O(n²)). The decoder owns its meaning (lines and delimited: how many bytes they searched without
   * finding the delimiter; lengthPrefixed: the payload length read from the header; resp: where a
   * request split across reads was left). `undefined` means no progress; the queue sets it back to
   * `undefined` whenever bytes are consumed, so a decoder never sees a state for another frame.
   */
  decoderState: unknown = undefined;

  /** Number of copies made because a frame straddled chunks (`take`, `takeString`); for benchmarks. */
  copies = 0;

  /** Bytes copied in all: straddling frames, and tiny chunks gathered on push; for benchmarks. */
  copiedBytes = 0;

  /**
   * @param pool where `takeString()` borrows its scratch buffer when it must copy; omitted: a fresh buffer.
   * @param options see {@link ByteQueueOptions}.
   */
  constructor(pool?: BufferPool, options: ByteQueueOptions = {}) {
    const { coalesceMax = 128 } = options;
    integer('coalesceMax', coalesceMax, 0, ARENA_SIZE);
    this.#pool = pool;
    this.#coalesceMax = coalesceMax;
  }

  /** Bytes held. */
  get length(): number {
    return this.#length;
  }

  /**
   * @internal The first chunk when it holds every queued byte (the usual case), else undefined; the
   * bytes start at {@link ByteQueue.headOffset} in it. Lets this package's decoders index them directly.
   */
  flat(): Buffer | undefined {
    if (this.#length === 0) return undefined;
    if (this.#arenaPending !== 0) this.#sync();
    const first = this.#chunks[this.#head]!;
    return first.length - this.#offset === this.#length ? first : undefined;
  }

  /** @internal Offset of the first queued byte in the chunk {@link ByteQueue.flat} returns. */
  get headOffset(): number {
    return this.#offset;
  }

  /** The pool given to the constructor, if any (codecs may borrow scratch buffers from it). */
  get pool(): BufferPool | undefined {
    return this.#pool;
  }

  /**
   * Appends a chunk. The queue keeps a reference: do not reuse the buffer. Chunks of up to
   * `coalesceMax` bytes pushed behind others are copied into an arena instead (O(chunk length)),
   * so that a peer trickling bytes cannot make every later operation walk thousands of chunks.
   */
  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    // Into an empty queue a chunk goes as is, whatever its size: there is nothing to gather it with,
    // and a tiny frame (a request, a ping) is then decoded from its own chunk without a copy.
    const empty = this.#length === 0;
    this.#length += n;
    if (n > this.#coalesceMax || empty) {
      if (this.#arenaPending !== 0) this.#sync();
      this.#chunks.push(chunk);
      return;
    }
    this.copiedBytes += n;
    const arena = this.#arena;
    const used = this.#arenaUsed;
    const chunks = this.#chunks;
    const last = chunks.length - 1;
    if (used + n <= arena.length && last >= this.#head && chunks[last] === this.#arenaView) {
      // The last chunk is the arena's view and the arena has room: append behind it. The view
      // is widened lazily (#sync), so a run of tiny pushes allocates no Buffer objects.
      copySmall(chunk, arena, used);
      this.#arenaUsed = used + n;
      this.#arenaPending += n;
      return;
    }
    if (this.#arenaPending !== 0) this.#sync();
    let start = used;
    if (used + n > arena.length) {
      this.#arena = Buffer.allocUnsafeSlow(ARENA_SIZE);
      start = 0;
    }
    copySmall(chunk, this.#arena, start);
    this.#arenaUsed = start + n;
    this.#arenaView = this.#arena.subarray(start, start + n);
    chunks.push(this.#arenaView);
  }

  /** Widens the arena view (the last chunk) over the bytes appended to the arena since. */
  #sync(): void {
    const view = this.#arenaView;
    const start = view.byteOffset - this.#arena.byteOffset;
    // Same start, so offsets into this chunk (#offset, the cursor) stay valid.
    this.#arenaView = this.#arena.subarray(start, start + view.length + this.#arenaPending);
    this.#chunks[this.#chunks.length - 1] = this.#arenaView;
    this.#arenaPending = 0;
  }

  /** Removes and returns the bytes of the first chunk (zero-copy), or undefined when empty. */
  shift(): Buffer | undefined {
    if (this.#length === 0) return undefined;
    if (this.#arenaPending !== 0) this.#sync();
    const chunk = this.#chunks[this.#head]!;
    const out = this.#offset === 0 ? chunk : chunk.subarray(this.#offset);
    this.#dropHead();
    this.#length -= out.length;
    this.decoderState = undefined;
    return out;
  }

  /** Removes and returns every byte held as one buffer (zero-copy when held in one chunk). */
  takeAll(): Buffer {
    return this.take(this.#length);
  }

  /**
   * Removes and returns the next `n` bytes. Zero-copy (a view of the socket's chunk) when they
   * lie in one chunk; copied into a fresh buffer when they straddle chunks. The copy is not
   * taken from a pool on purpose: the caller owns the frame and nobody would give it back.
   * @throws RangeError when fewer than `n` bytes are held.
   */
  take(n: number): Buffer {
    if (n > this.#length) throw new RangeError(`take(${n}) with only ${this.#length} bytes queued`);
    if (n === 0) return EMPTY;
    if (this.#arenaPending !== 0) this.#sync();
    this.decoderState = undefined;
    const first = this.#chunks[this.#head]!;
    const start = this.#offset;
    const avail = first.length - start;
    if (n <= avail) {
      this.#length -= n;
      if (n === avail) {
        this.#dropHead();
        return start === 0 ? first : first.subarray(start);
      }
      this.#offset = start + n;
      this.#cacheIndex = -1;
      return first.subarray(start, start + n);
    }
    this.copies++;
    this.copiedBytes += n;
    const out = Buffer.allocUnsafe(n);
    this.#copyOut(out, n);
    return out;
  }

  /**
   * Removes the next `n` bytes and returns them decoded as text. Decodes straight from the
   * chunk when the bytes lie in one (no intermediate Buffer object at all); otherwise copies
   * them once into a scratch buffer borrowed from the pool and gives it back.
   * A UTF-8 sequence split by chunk boundaries is decoded whole because the copy joins it.
   * @throws RangeError when fewer than `n` bytes are held.
   */
  takeString(n: number, encoding: TextEncoding): string {
    if (n > this.#length) throw new RangeError(`takeString(${n}) with only ${this.#length} bytes queued`);
    if (n === 0) return '';
    if (this.#arenaPending !== 0) this.#sync();
    this.decoderState = undefined;
    const first = this.#chunks[this.#head]!;
    const start = this.#offset;
    const avail = first.length - start;
    if (n <= avail) {
      const text = first.toString(encoding, start, start + n);
      this.#length -= n;
      if (n === avail) this.#dropHead();
      else {
        this.#offset = start + n;
        this.#cacheIndex = -1;
      }
      return text;
    }
    this.copies++;
    this.copiedBytes += n;
    const pool = this.#pool;
    const scratch = pool !== undefined && n <= pool.maxSize ? pool.acquire(n) : Buffer.allocUnsafe(n);
    this.#copyOut(scratch, n);
    const text = scratch.toString(encoding, 0, n);
    pool?.release(scratch);
    return text;
  }

  /** Moves the next `n` bytes (more than the first chunk holds) into `out` and consumes them. */
  #copyOut(out: Buffer, n: number): void {
    this.#cacheIndex = -1;
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[this.#head]!;
      const want = n - filled;
      const have = chunk.length - this.#offset;
      if (have <= want) {
        if (have <= 16) for (let j = 0; j < have; j++) out[filled + j] = chunk[this.#offset + j]!;
        else chunk.copy(out, filled, this.#offset);
        filled += have;
        this.#dropHead();
      } else {
        chunk.copy(out, filled, this.#offset, this.#offset + want);
        filled += want;
        this.#offset += want;
      }
    }
    this.#length -= n;
  }

  /** Discards the next `n` bytes. @throws RangeError when fewer than `n` are held. */
  skip(n: number): void {
    if (n > this.#length) throw new RangeError(`skip(${n}) with only ${this.#length} bytes queued`);
    if (this.#arenaPending !== 0) this.#sync();
    this.decoderState = undefined;
    this.#cacheIndex = -1;
    this.#length -= n;
    const first = this.#chunks[this.#head];
    if (first !== undefined && this.#offset + n < first.length) {
      this.#offset += n;
      return;
    }
    while (n > 0) {
      const chunk = this.#chunks[this.#head]!;
      const have = chunk.length - this.#offset;
      if (have <= n) {
        n -= have;
        this.#dropHead();
      } else {
        this.#offset += n;
        n = 0;
      }
    }
  }

  /** Discards everything. */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
    this.decoderState = undefined;
    this.#cacheIndex = -1;
    this.#arenaView = EMPTY;
    this.#arenaPending = 0;
  }

  /** The byte at `offset`. @throws RangeError when out of range. */
  byteAt(offset: number): number {
    if (offset < 0 || offset >= this.#length) throw new RangeError(`offset ${offset} out of range`);
    if (this.#arenaPending !== 0) this.#sync();
    const pos = this.#offset + offset;
    const first = this.#chunks[this.#head]!;
    if (pos < first.length) return first[pos]!;
    const i = this.#locate(offset);
    return this.#chunks[i]![offset - this.#cacheBase + (i === this.#head ? this.#offset : 0)]!;
  }

  /**
   * Index in #chunks of the chunk holding queue offset `offset` (< length); leaves the queue
   * offset of that chunk's first live byte in #cacheBase. Amortised O(1) for offsets that only
   * grow between consumptions, as a resumed search's do.
   */
  #locate(offset: number): number {
    let i = this.#head;
    let base = 0;
    if (this.#cacheIndex !== -1 && offset >= this.#cacheBase) {
      i = this.#cacheIndex;
      base = this.#cacheBase;
    }
    for (;;) {
      const live = this.#chunks[i]!.length - (i === this.#head ? this.#offset : 0);
      if (offset < base + live) break;
      base += live;
      i++;
    }
    this.#cacheIndex = i;
    this.#cacheBase = base;
    return i;
  }

  /**
   * Position of the first occurrence of `value` (a byte or a byte sequence) at or after `from`,
   * or -1. Sequences that straddle chunk boundaries are found.
   */
  indexOf(value: number | Uint8Array, from = 0): number {
    if (from < 0) from = 0;
    if (this.#arenaPending !== 0) {
      if (typeof value === 'number') return this.#indexOfBytePending(value, from);
      this.#sync();
    }
    if (typeof value === 'number') return this.#indexOfByte(value, from);
    if (value.length === 0) return from <= this.#length ? from : -1;
    if (value.length === 1) return this.#indexOfByte(value[0]!, from);
    return this.#indexOfSequence(value, from);
  }

  /**
   * #indexOfByte that also searches the arena bytes not yet covered by the last chunk, without
   * widening it: a trickling peer's bytes are searched as they come, and the view is widened
   * once per frame (by the take that follows a match) rather than once per byte.
   */
  #indexOfBytePending(byte: number, from: number): number {
    const pending = this.#arenaPending;
    const covered = this.#length - pending;
    if (from < covered) {
      const at = this.#indexOfByte(byte, from);
      if (at !== -1) return at;
    }
    const arena = this.#arena;
    const first = this.#arenaUsed - pending;
    for (let p = from > covered ? from - covered : 0; p < pending; p++)
      if (arena[first + p] === byte) return covered + p;
    return -1;
  }

  #indexOfByte(byte: number, from: number): number {
    if (from >= this.#length) return -1;
    const head = this.#head;
    let i = head;
    let base = 0; // queue offset of the first live byte of chunk i
    if (from > 0) {
      i = this.#locate(from);
      base = this.#cacheBase;
    }
    for (; i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i]!;
      const start = i === head ? this.#offset : 0;
      const local = start + (from > base ? from - base : 0);
      if (chunk.length - local <= 16) {
        // A few fresh bytes (a trickling peer): a loop beats the native call's overhead.
        for (let p = local; p < chunk.length; p++) if (chunk[p] === byte) return base + p - start;
      } else {
        const at = chunk.indexOf(byte, local);
        if (at !== -1) return base + at - start;
      }
      base += chunk.length - start;
    }
    return -1;
  }

  /**
   * Searches each chunk natively, then the few positions where the sequence could straddle the
   * boundary to the next chunk. Matches inside chunk i all start before any straddling one, so
   * the first match found this way is the first match in the queue.
   */
  #indexOfSequence(seq: Uint8Array, from: number): number {
    if (from >= this.#length) return -1;
    const m = seq.length;
    const head = this.#head;
    let i = head;
    let base = 0;
    if (from > 0) {
      i = this.#locate(from);
      base = this.#cacheBase;
    }
    for (; i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i]!;
      const start = i === head ? this.#offset : 0;
      const end = base + chunk.length - start; // queue offset just past this chunk
      const at = chunk.indexOf(seq, start + (from > base ? from - base : 0));
      if (at !== -1) return base + at - start;
      for (let p = Math.max(from, end - m + 1); p < end && p + m <= this.#length; p++) {
        if (this.#matchesAt(seq, p)) return p;
      }
      base = end;
    }
    return -1;
  }

  #matchesAt(seq: Uint8Array, at: number): boolean {
    for (let j = 0; j < seq.length; j++) if (this.byteAt(at + j) !== seq[j]) return false;
    return true;
  }

  /**
   * Reads `n` (<= 4) bytes at `offset` as an unsigned big-endian integer without allocating;
   * byte by byte only when they straddle chunks.
   */
  #uintBE(offset: number, n: number): number {
    if (offset < 0 || offset + n > this.#length) throw new RangeError(`read of ${n} bytes at ${offset} out of range`);
    if (this.#arenaPending !== 0) this.#sync();
    const first = this.#chunks[this.#head]!;
    const p = this.#offset + offset;
    let v = 0;
    if (p + n <= first.length) for (let j = 0; j < n; j++) v = v * 256 + first[p + j]!;
    else for (let j = 0; j < n; j++) v = v * 256 + this.byteAt(offset + j);
    return v;
  }

  #uintLE(offset: number, n: number): number {
    if (offset < 0 || offset + n > this.#length) throw new RangeError(`read of ${n} bytes at ${offset} out of range`);
    if (this.#arenaPending !== 0) this.#sync();
    const first = this.#chunks[this.#head]!;
    const p = this.#offset + offset;
    let v = 0;
    if (p + n <= first.length) for (let j = n - 1; j >= 0; j--) v = v * 256 + first[p + j]!;
    else for (let j = n - 1; j >= 0; j--) v = v * 256 + this.byteAt(offset + j);
    return v;
  }

  /** Unsigned 8-bit integer at `offset`. */
  u8(offset = 0): number {
    return this.byteAt(offset);
  }
  /** Unsigned 16-bit big-endian integer at `offset`. */
  u16be(offset = 0): number {
    return this.#uintBE(offset, 2);
  }
  /** Unsigned 16-bit little-endian integer at `offset`. */
  u16le(offset = 0): number {
    return this.#uintLE(offset, 2);
  }
  /** Unsigned 24-bit big-endian integer at `offset`. */
  u24be(offset = 0): number {
    return this.#uintBE(offset, 3);
  }
  /** Unsigned 24-bit little-endian integer at `offset`. */
  u24le(offset = 0): number {
    return this.#uintLE(offset, 3);
  }
  /** Unsigned 32-bit big-endian integer at `offset`. */
  u32be(offset = 0): number {
    // The common length-prefix read gets the native reader when the bytes lie in one chunk.
    const first = this.#chunks[this.#head];
    const p = this.#offset + offset;
    if (first !== undefined && offset >= 0 && p + 4 <= first.length && this.#arenaPending === 0)
      return first.readUInt32BE(p);
    return this.#uintBE(offset, 4);
  }
  /** Unsigned 32-bit little-endian integer at `offset`. */
  u32le(offset = 0): number {
    return this.#uintLE(offset, 4);
  }
  /** Unsigned 64-bit big-endian integer at `offset`, as a bigint. */
  u64be(offset = 0): bigint {
    return (BigInt(this.u32be(offset)) << 32n) | BigInt(this.u32be(offset + 4));
  }
  /** Unsigned 64-bit little-endian integer at `offset`, as a bigint. */
  u64le(offset = 0): bigint {
    return (BigInt(this.u32le(offset + 4)) << 32n) | BigInt(this.u32le(offset));
  }

  #dropHead(): void {
    this.#cacheIndex = -1;
    this.#chunks[this.#head] = EMPTY;
    this.#head++;
    this.#offset = 0;
    if (this.#head === this.#chunks.length) {
      // Popped rather than `length = 0`, which makes V8 free the array's backing store and the next
      // push allocate it again: about 150 bytes per frame when every read is consumed whole.
      const chunks = this.#chunks;
      while (chunks.length > 0) chunks.pop();
      this.#head = 0;
    } else if (this.#head >= 32 && this.#head * 2 >= this.#chunks.length) {
      // Compact now and then so a long run of small chunks does not grow the array forever.
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** Copies a small chunk; a plain loop beats Buffer#copy's call overhead for a few bytes. */
function copySmall(from: Buffer, to: Buffer, at: number): void {
  if (from.length > 16) from.copy(to, at);
  else for (let j = 0; j < from.length; j++) to[at + j] = from[j]!;
}
