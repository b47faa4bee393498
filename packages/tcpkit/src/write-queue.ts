/**
 * The output a connection's writer holds before handing it to the socket: pieces in order, small
 * writes copied into one append buffer (not an object each), larger buffers kept as the caller's own.
 * ConnWriter (conn-writer.ts) extends it with when output leaves and what writes wait for; one object
 * per connection, not two.
 */
// The imported Buffer, not the global (a getter that optimized code calls on every use).
import { Buffer } from 'node:buffer';
import { defaultPool } from './buffer-pool.js';
import type { WriteData } from './conn.js';

/**
 * TypedArray#set, called as a function: `copy.set(data)` on a fresh buffer is a generic property load
 * in optimized code on Node 20 (about 70 instructions a write); a call through a constant is not.
 */
const typedArraySet = Uint8Array.prototype.set;

/** Batches up to this size are copied into one pooled buffer; larger ones go out with writev. */
export const COALESCE_LIMIT = 16 * 1024;
/**
 * Writes shorter than this are copied at write() (a lent chunk written back is not: see addLent); a
 * larger buffer is sent from the caller's memory.
 */
export const COPY_LIMIT = 4 * 1024;
/** The first append buffer of a batch; each next one doubles, up to COALESCE_LIMIT. */
const APPEND_MIN = 1024;

export function byteLength(data: WriteData): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}

/** Copies `data` into `target` at `offset`; returns the bytes copied. */
export function copyInto(target: Buffer, data: WriteData, offset: number): number {
  if (typeof data === 'string') return target.write(data, offset);
  target.set(data, offset);
  return data.byteLength;
}

/** Where the queue stood before an encoder ran (writeFrame puts it back if the encoder throws). */
export interface QueueMark {
  first: WriteData | null;
  restLength: number;
  pooledLength: number;
  bytes: number;
  pieces: number;
  callerBuffers: number;
  tail: Buffer | null;
  tailUsed: number;
  firstSmall: boolean;
}

export class WriteQueue {
  /** Queued pieces in order: the first in a field (the common single write allocates no array), the rest after it. */
  protected first: WriteData | null = null;
  protected rest: WriteData[] | null = null;
  /** The open append buffer (pooled), always after the pieces above; small writes are copied into it. */
  protected tail: Buffer | null = null;
  protected tailUsed = 0;
  /** The first piece is a small write's own copy (it moves into the append buffer when a second one comes). */
  protected firstSmall = false;
  /** Pooled buffers among the queued pieces, given back once the write that carries them completes. */
  protected pooled: Buffer[] | null = null;
  /** Payload bytes queued here (not yet handed to the socket). */
  protected pendingBytes = 0;
  /** Queued pieces (the open append buffer included): each is charged ENTRY_OVERHEAD. */
  protected pieces = 0;
  /** Caller buffers queued here, not yet handed to the socket (their writes wait for the kernel). */
  protected callerBuffers = 0;

  /** Queues `data` (`len` bytes, not 0); says whether it was queued as the caller's own buffer (not copied). */
  protected add(data: WriteData, len: number): boolean {
    this.pendingBytes += len;
    if (len < COPY_LIMIT) {
      // A resolved write means the caller may reuse its buffer (as after Go's Write): small writes are
      // copied now. The first of a batch into a buffer of its own (the common single reply), the next
      // ones into an append buffer, so a thousand tiny writes cost one buffer, not a thousand objects.
      if (this.tail === null && this.first === null) {
        if (typeof data === 'string') this.first = data;
        else {
          const copy = Buffer.allocUnsafe(len);
          typedArraySet.call(copy, data);
          this.first = copy;
        }
        this.firstSmall = true;
        this.pieces = 1;
      } else {
        this.#append(data, len);
      }
      return false;
    }
    // A larger buffer is sent from the caller's memory and its write resolves only once the kernel
    // has it (see ConnWriter#settle), since copying it would cost an allocation of its own: 4 KiB echo
    // went from 1.42x to 1.06x the plain server's CPU per message. (Strings are immutable: never copied.)
    this.seal();
    this.#push(data);
    if (typeof data === 'string') return false;
    this.callerBuffers++;
    return true;
  }

  /**
   * Queues a small buffer (`len` bytes, 0 < len < COPY_LIMIT) into the empty queue as `copy` (a
   * buffer of `len` bytes the queue may keep): add()'s common case, for the writer's fast path.
   */
  protected addLone(data: Uint8Array, len: number, copy: Buffer): void {
    typedArraySet.call(copy, data);
    this.first = copy;
    this.firstSmall = true;
    this.pieces = 1;
    this.pendingBytes = len;
  }

  /**
   * Queues a lent chunk (`len` bytes, 0 < len < COPY_LIMIT; conn.chunks({ reuse: true }), see
   * lent-buffers.ts holdLent) into the empty queue by reference, not copied: its write still resolves
   * at once, as a small write's, because the lent buffer is not reused while this queue holds it: the
   * handler's next step flushes it, and copies it out (ConnWriter#holdsCallerBuffers) if it is still
   * here. It is the lone small first piece, so a next small write copies it into the append buffer.
   */
  protected addLent(data: Uint8Array, len: number): void {
    this.first = data;
    this.firstSmall = true;
    this.pieces = 1;
    this.pendingBytes += len;
  }

  /**
   * The lent chunk `view`, if queued by addLent (still the first piece, perhaps with larger pieces
   * behind it), is replaced by a copy of its own; says whether it was. Only the first piece can be one:
   * a small write after it copies it into the append buffer.
   */
  protected copyOutLent(view: Uint8Array): boolean {
    if (this.first !== view) return false;
    const copy = Buffer.allocUnsafe(view.length);
    typedArraySet.call(copy, view);
    this.first = copy;
    return true;
  }

  #push(piece: WriteData): void {
    this.firstSmall = false;
    if (this.first === null) this.first = piece;
    else if (this.rest === null) this.rest = [piece];
    else this.rest.push(piece);
    this.pieces++;
  }

  /** Copies a small write into the append buffer, opening one (the lone first write moves into it). */
  #append(data: WriteData, len: number): void {
    let tail = this.tail;
    if (tail !== null && this.tailUsed + len > tail.length) {
      this.seal();
      tail = null;
    }
    if (tail === null) {
      // The lone small first piece joins the append buffer, so the batch leaves as one buffer uncopied.
      const lone = this.firstSmall ? this.first : null;
      const loneLength = lone === null ? 0 : byteLength(lone);
      const grown = this.pooled === null ? APPEND_MIN : Math.min(this.pooled.at(-1)!.length * 2, COALESCE_LIMIT);
      tail = defaultPool.acquire(Math.max(grown, loneLength + len));
      this.tailUsed = 0;
      if (lone !== null) {
        this.first = null;
        this.firstSmall = false;
        this.pieces = 0;
        this.tailUsed = copyInto(tail, lone, 0);
      }
      this.tail = tail;
      this.pieces++;
    }
    this.tailUsed += copyInto(tail, data, this.tailUsed);
  }

  /** Closes the append buffer: it becomes a queued piece (given back to the pool after its write). */
  protected seal(): void {
    const tail = this.tail;
    if (tail === null) return;
    this.tail = null;
    this.pieces--;
    this.#push(this.tailUsed === tail.length ? tail : tail.subarray(0, this.tailUsed));
    if (this.pooled === null) this.pooled = [tail];
    else this.pooled.push(tail);
  }

  protected mark(): QueueMark {
    return {
      first: this.first,
      restLength: this.rest?.length ?? 0,
      pooledLength: this.pooled?.length ?? 0,
      bytes: this.pendingBytes,
      pieces: this.pieces,
      callerBuffers: this.callerBuffers,
      tail: this.tail,
      tailUsed: this.tailUsed,
      firstSmall: this.firstSmall,
    };
  }

  /** Drops what was queued after `m`. */
  protected restore(m: QueueMark): void {
    this.first = m.first;
    if (m.first === null || m.restLength === 0) this.rest = null;
    else if (this.rest !== null) this.rest.length = m.restLength;
    // Back to none, not an empty list: the append path reads a non-null list's last buffer to size the next.
    if (this.pooled !== null) {
      if (m.pooledLength === 0) this.pooled = null;
      else this.pooled.length = m.pooledLength;
    }
    this.pendingBytes = m.bytes;
    this.pieces = m.pieces;
    this.callerBuffers = m.callerBuffers;
    this.tail = m.tail;
    this.tailUsed = m.tailUsed;
    this.firstSmall = m.firstSmall;
  }

  /** Empties the queue (its pieces were handed out, or will never be sent). */
  protected clear(): void {
    this.first = null;
    this.firstSmall = false;
    this.rest = null;
    this.tail = null;
    this.pooled = null;
    this.pendingBytes = 0;
    this.pieces = 0;
    this.callerBuffers = 0;
  }
}
