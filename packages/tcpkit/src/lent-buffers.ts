/**
 * The buffers `conn.chunks({ reuse: true })` lends to handlers: a process-wide free list of read
 * buffers, each chunk valid until the iterator's next step, as Go's `bufio.Scanner.Bytes()` and
 * Netty's released `ByteBuf`. An owned chunk (`for await (const chunk of conn)`) is the handler's
 * to keep, so its memory (a view of a 64 KiB slab at 4 KiB and more, see shared-read-buffer.ts)
 * is freed only by a collection; over TLS that external memory crosses V8's limit before any
 * scavenge and sets off a mark-compact every few hundred milliseconds. A lent chunk's memory
 * goes back here at the next step and serves the next read: in ping-pong no ArrayBuffer, and no
 * Buffer object while the read length repeats, is made per message.
 *
 * A lent chunk handed to `write()` may outlive the step: writes of 4 KiB and more are sent from the
 * caller's memory (write-queue.ts), and one not awaited may still be queued or in flight on the
 * handle when the handler steps. The writer reports such a buffer ({@link noteHeld}); at the step it
 * goes back to the free list only if that writer holds no caller memory any more, else it is left
 * to the collector, never reused early. A smaller lent chunk written back is queued by reference, not
 * copied ({@link holdLent}): the step flushes it first (in ping-pong the kernel takes it there and
 * then), and the writer copies it out if it is still queued (CallerBufferHolder#holdsCallerBuffers).
 */
// The imported Buffer, not the global (a getter that optimized code calls on every use).
import { Buffer } from 'node:buffer';

/** A writer that may keep a caller's buffer after `write()` returned (ConnWriter). */
export interface CallerBufferHolder {
  /**
   * `lent` goes back at the handler's step: the writer copies out what it still queues of it by
   * reference and says whether it may still reference the buffer anyhow (queued, or in flight below
   * the writer). Exact in one direction: true whenever a reference may remain (the buffer is then
   * left to the collector); false only when none does.
   */
  holdsCallerBuffers(lent: LentBuffer): boolean;
}

/** The smallest lent buffer is 2^MIN_SHIFT bytes (64 B); each class doubles, up to the 64 KiB of the shared read buffer. */
const MIN_SHIFT = 6;
const CLASSES = 11;
/** Free buffers kept per size class, in bytes (at least two buffers): about 1.4 MiB at most in all. */
const FREE_BYTES_PER_CLASS = 128 * 1024;

/** TypedArray#set called as a function (a generic property load in optimized code otherwise; see write-queue.ts). */
const typedArraySet = Uint8Array.prototype.set;

const kLent = Symbol('tcpkit.lent');
/** A lent buffer's ArrayBuffer carries its record, so a write can tell a lent chunk (and any view of it). */
type Tagged = ArrayBuffer & { [kLent]?: LentBuffer };

/** One buffer of the free list, and what happened to it while lent. */
export class LentBuffer {
  /** The whole buffer (its capacity is its class's size). */
  readonly whole: Buffer;
  /** The chunk handed out last: reused as is when the next read has the same length. */
  view: Buffer;
  readonly sizeClass: number;
  /** Handed to a handler, not yet given back. */
  out = false;
  /** The writer that took this buffer's memory by reference while lent (see noteHeld). */
  holder: CallerBufferHolder | null = null;
  /** Taken by more than one writer: never reused. */
  shared = false;

  constructor(sizeClass: number) {
    this.sizeClass = sizeClass;
    this.whole = Buffer.allocUnsafeSlow(1 << (sizeClass + MIN_SHIFT));
    this.view = this.whole;
    (this.whole.buffer as Tagged)[kLent] = this;
  }
}

/**
 * Per class a stack and a count, not push and pop (an array that pop() empties may give up its backing
 * store, which the next push allocates again: see conn-writer.ts's spares). Grown as used, not made
 * full size up front: 32 KiB of empty slots in the old generation at startup were enough to turn V8's
 * collections of a 4 KiB echo's dead read chunks from scavenges into mark-compacts (docs/benchmarks.md).
 */
const free: (LentBuffer | null)[][] = [];
const freeCount: number[] = [];
const freeMax: number[] = [];
for (let c = 0; c < CLASSES; c++) {
  freeMax.push(Math.max(2, FREE_BYTES_PER_CLASS >> (c + MIN_SHIFT)));
  free.push([]);
  freeCount.push(0);
}

/** Lent buffers made since the process started (for tests and benchmarks: steady ping-pong makes none). */
export let lentBuffersMade = 0;

/** The size class of an `n`-byte read (1 <= n <= 64 KiB). */
function classOf(n: number): number {
  const bits = 32 - Math.clz32(n - 1);
  return bits <= MIN_SHIFT ? 0 : bits - MIN_SHIFT;
}

/**
 * The buffer lent last (see holdLent): in ping-pong the handler writes the chunk back before any other
 * read is lent, so one identity check tells a lent chunk without a look at its ArrayBuffer.
 */
let lastLent: LentBuffer | null = null;

/** The last source view made (see lendCopy): in ping-pong every read has the same length. */
let lastSource: Uint8Array | null = null;
let lastLength = 0;
let lastView: Uint8Array | null = null;

/**
 * A lent buffer holding the first `n` bytes of `source` (a shared read buffer that the next read
 * overwrites): from the free list, or made when its class has none free.
 */
export function lendCopy(source: Uint8Array, n: number): LentBuffer {
  const c = classOf(n);
  let lent: LentBuffer;
  if (freeCount[c]! > 0) {
    const i = --freeCount[c]!;
    lent = free[c]![i]!;
    free[c]![i] = null;
  } else {
    lent = new LentBuffer(c);
    lentBuffersMade++;
  }
  lent.out = true;
  if (lent.view.length !== n) lent.view = n === lent.whole.length ? lent.whole : lent.whole.subarray(0, n);
  if (source !== lastSource || n !== lastLength) {
    lastSource = source;
    lastLength = n;
    lastView = n === source.length ? source : new Uint8Array(source.buffer, source.byteOffset, n);
  }
  typedArraySet.call(lent.view, lastView!);
  lastLent = lent;
  return lent;
}

/**
 * The handler stepped past `lent`: back to the free list, unless a writer may still hold its memory
 * (then the collector frees it) or its class's list is full.
 */
export function giveBack(lent: LentBuffer): void {
  lent.out = false;
  const holder = lent.holder;
  if (holder !== null) {
    // Taken by two writers: only one of them would be asked. Else that one copies out what it queues.
    if (lent.shared || holder.holdsCallerBuffers(lent)) return;
    lent.holder = null;
  }
  const c = lent.sizeClass;
  if (freeCount[c]! < freeMax[c]!) free[c]![freeCount[c]!++] = lent;
}

/**
 * A writer (`holder`) keeps `data` by reference beyond `write()` (a caller buffer of 4 KiB or more):
 * if it is (a view of) a lent buffer still lent, that buffer must not be reused while the writer holds it.
 */
export function noteHeld(data: Uint8Array, holder: CallerBufferHolder): void {
  const lent = (data.buffer as Tagged)[kLent];
  if (lent === undefined || !lent.out) return;
  if (lent.holder === null) lent.holder = holder;
  else if (lent.holder !== holder) lent.shared = true;
}

/**
 * `data` is the chunk lent last, still lent (the handler writes it back before its next step): its
 * buffer is now held by `holder`, which may queue it by reference instead of copying it (write-queue.ts
 * addLent). Says whether it is. A chunk lent earlier, or a view of one, is not recognized here (it is
 * copied, as any small write): the check is one comparison, cheap enough for every small write.
 */
export function holdLent(data: Uint8Array, holder: CallerBufferHolder): boolean {
  const lent = lastLent;
  if (lent === null || lent.view !== data || !lent.out) return false;
  if (lent.holder === null) lent.holder = holder;
  else if (lent.holder !== holder) lent.shared = true;
  return true;
}
