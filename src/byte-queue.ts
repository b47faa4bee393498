import type { BufferPool } from './buffer-pool.js';

const EMPTY = Buffer.alloc(0);

/**
 * A queue of bytes received from a socket: chunks go in without copying, frames come out.
 *
 * Offsets passed to the peek methods (`byteAt`, `indexOf`, `u8`, `u16be`, ...) count from the
 * first unconsumed byte. They read across chunk boundaries without concatenating.
 *
 * Complexity (k = number of chunks held, usually 1-3):
 * - `push`: O(1). `length`: O(1).
 * - `byteAt`, `u8` ... `u64le`: O(k) to find the chunk, O(1) in the common one-chunk case.
 * - `indexOf`: O(n) in the bytes searched (native `Buffer#indexOf` per chunk).
 * - `take(n)`: O(1) and zero-copy when the n bytes lie in the first chunk; otherwise O(n) copy.
 * - `skip(n)`, `shift()`: O(chunks dropped).
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  /** index in #chunks of the first live chunk (avoids Array#shift on every take). */
  #head = 0;
  /** offset of the first unconsumed byte in #chunks[#head]. */
  #offset = 0;
  #length = 0;
  #pool: BufferPool | undefined;

  /**
   * Where a delimiter search may resume: a decoder that scanned `n` bytes without finding its
   * delimiter stores `n` here so the next `decode` does not rescan them. Reset to 0 whenever
   * bytes are consumed. Decoders own its meaning; the queue only resets it.
   */
  scanned = 0;

  /** Number of copies made by `take()` for frames that straddled chunks (for benchmarks). */
  copies = 0;

  /** @param pool where `take()` gets buffers when it must copy; omitted: `Buffer.allocUnsafe`. */
  constructor(pool?: BufferPool) {
    this.#pool = pool;
  }

  /** Bytes held. */
  get length(): number {
    return this.#length;
  }

  /** Appends a chunk without copying it. The queue keeps a reference: do not reuse the buffer. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Removes and returns the bytes of the first chunk (zero-copy), or undefined when empty. */
  shift(): Buffer | undefined {
    if (this.#length === 0) return undefined;
    const chunk = this.#chunks[this.#head]!;
    const out = this.#offset === 0 ? chunk : chunk.subarray(this.#offset);
    this.#dropHead();
    this.#length -= out.length;
    this.scanned = 0;
    return out;
  }

  /** Removes and returns every byte held as one buffer (zero-copy when held in one chunk). */
  takeAll(): Buffer {
    return this.take(this.#length);
  }

  /**
   * Removes and returns the next `n` bytes. Zero-copy (a view of the socket's chunk) when they
   * lie in one chunk; copied into a fresh buffer when they straddle chunks.
   * @throws RangeError when fewer than `n` bytes are held.
   */
  take(n: number): Buffer {
    if (n > this.#length) throw new RangeError(`take(${n}) with only ${this.#length} bytes queued`);
    if (n === 0) return EMPTY;
    this.scanned = 0;
    const first = this.#chunks[this.#head]!;
    const avail = first.length - this.#offset;
    if (n <= avail) {
      const out = first.subarray(this.#offset, this.#offset + n);
      if (n === avail) this.#dropHead();
      else this.#offset += n;
      this.#length -= n;
      return out;
    }
    this.copies++;
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[this.#head]!;
      const want = n - filled;
      const have = chunk.length - this.#offset;
      if (have <= want) {
        chunk.copy(out, filled, this.#offset);
        filled += have;
        this.#dropHead();
      } else {
        chunk.copy(out, filled, this.#offset, this.#offset + want);
        filled += want;
        this.#offset += want;
      }
    }
    this.#length -= n;
    return out;
  }

  /** Discards the next `n` bytes. @throws RangeError when fewer than `n` are held. */
  skip(n: number): void {
    if (n > this.#length) throw new RangeError(`skip(${n}) with only ${this.#length} bytes queued`);
    this.scanned = 0;
    this.#length -= n;
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
    this.scanned = 0;
  }

  /** The byte at `offset`. @throws RangeError when out of range. */
  byteAt(offset: number): number {
    if (offset < 0 || offset >= this.#length) throw new RangeError(`offset ${offset} out of range`);
    let i = this.#head;
    let pos = offset + this.#offset;
    let chunk = this.#chunks[i]!;
    while (pos >= chunk.length) {
      pos -= chunk.length;
      chunk = this.#chunks[++i]!;
    }
    return chunk[pos]!;
  }

  /**
   * Position of the first occurrence of `value` (a byte or a byte sequence) at or after `from`,
   * or -1. Sequences that straddle chunk boundaries are found.
   */
  indexOf(value: number | Uint8Array, from = 0): number {
    if (from < 0) from = 0;
    if (typeof value === 'number') return this.#indexOfByte(value, from);
    if (value.length === 0) return from <= this.#length ? from : -1;
    if (value.length === 1) return this.#indexOfByte(value[0]!, from);
    return this.#indexOfSequence(value, from);
  }

  #indexOfByte(byte: number, from: number): number {
    let base = 0; // queue offset of the start of the current chunk's live bytes
    for (let i = this.#head; i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i]!;
      const start = i === this.#head ? this.#offset : 0;
      const live = chunk.length - start;
      if (from < base + live) {
        const at = chunk.indexOf(byte, start + Math.max(0, from - base));
        if (at !== -1) return base + at - start;
      }
      base += live;
    }
    return -1;
  }

  #indexOfSequence(seq: Uint8Array, from: number): number {
    const first = seq[0]!;
    let at = this.#indexOfByte(first, from);
    while (at !== -1) {
      if (at + seq.length > this.#length) return -1;
      let match = true;
      for (let j = 1; j < seq.length; j++) {
        if (this.byteAt(at + j) !== seq[j]) {
          match = false;
          break;
        }
      }
      if (match) return at;
      at = this.#indexOfByte(first, at + 1);
    }
    return -1;
  }

  /** Copies `n` bytes at `offset` into a small scratch buffer for integer reads across chunks. */
  #peek(offset: number, n: number): Buffer {
    if (offset < 0 || offset + n > this.#length) throw new RangeError(`read of ${n} bytes at ${offset} out of range`);
    const first = this.#chunks[this.#head]!;
    const start = this.#offset + offset;
    if (start + n <= first.length) return start === 0 && n === first.length ? first : first.subarray(start, start + n);
    const out = SCRATCH.subarray(0, n);
    for (let j = 0; j < n; j++) out[j] = this.byteAt(offset + j);
    return out;
  }

  u8(offset = 0): number {
    return this.byteAt(offset);
  }
  u16be(offset = 0): number {
    return this.#peek(offset, 2).readUInt16BE(0);
  }
  u16le(offset = 0): number {
    return this.#peek(offset, 2).readUInt16LE(0);
  }
  u24be(offset = 0): number {
    return this.#peek(offset, 3).readUIntBE(0, 3);
  }
  u24le(offset = 0): number {
    return this.#peek(offset, 3).readUIntLE(0, 3);
  }
  u32be(offset = 0): number {
    return this.#peek(offset, 4).readUInt32BE(0);
  }
  u32le(offset = 0): number {
    return this.#peek(offset, 4).readUInt32LE(0);
  }
  u64be(offset = 0): bigint {
    return this.#peek(offset, 8).readBigUInt64BE(0);
  }
  u64le(offset = 0): bigint {
    return this.#peek(offset, 8).readBigUInt64LE(0);
  }

  #dropHead(): void {
    this.#chunks[this.#head] = EMPTY;
    this.#head++;
    this.#offset = 0;
    if (this.#head === this.#chunks.length) {
      this.#chunks.length = 0;
      this.#head = 0;
    } else if (this.#head >= 32 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  /** @internal the pool used for straddling copies (exposed for codecs). */
  get pool(): BufferPool | undefined {
    return this.#pool;
  }
}

const SCRATCH = Buffer.alloc(8);
