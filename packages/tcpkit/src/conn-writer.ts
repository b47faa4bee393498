/**
 * The write path of a connection: writes queued, coalesced and flushed in one syscall, backpressure
 * against `maxWriteBuffer`, the slow-consumer cap `maxQueuedBytes`, write progress for `writeTimeout`,
 * and `end()`. Created on the first write (an idle connection needs none), as the inbound queue is on
 * the first read.
 *
 * Memory: `maxQueuedBytes` bounds what queued output costs, not only its payload. Small writes are
 * copied into one append buffer (not an object each), every queued piece and every write waiting for
 * the drain is charged {@link ENTRY_OVERHEAD} on top of its bytes, writes waiting for the same drain
 * share one promise, and while the kernel buffer is full output stays in this queue (compact) instead
 * of piling up as one stream request per write in the socket.
 */
import type { Socket } from 'node:net';
import { defaultPool } from './buffer-pool.js';
import type { WriteData } from './conn.js';
import type { ConnCore } from './conn-core.js';
import { CLOSED, ENDED, LINGERING, OPEN } from './conn-state.js';
import { deadlines } from './deadlines.js';
import { ConnectionClosedError, SlowConsumerError } from './errors.js';
import type { Encoder, FrameSink } from './framing/types.js';

const RESOLVED = Promise.resolve();
/** Batches up to this size are copied into one pooled buffer; larger ones go out with writev. */
const COALESCE_LIMIT = 16 * 1024;
/** Writes shorter than this are copied at write(); a larger buffer is sent from the caller's memory. */
const COPY_LIMIT = 4 * 1024;
/** The first append buffer of a batch; each next one doubles, up to COALESCE_LIMIT. */
const APPEND_MIN = 1024;
/**
 * What a queued piece of output or a write waiting for the drain costs beyond its bytes (a Buffer
 * header, an array slot, the caller's promise reaction), charged against `maxQueuedBytes` so that a
 * flood of tiny writes is bounded in memory, not only in payload.
 */
export const ENTRY_OVERHEAD = 64;

function ignore(): void {}

/**
 * Marks a promise handled: whoever awaits it still sees the rejection, but a write fired and forgotten
 * must not become an unhandled rejection, which would crash the process rather than end one connection.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
}

/** One promise shared by every write waiting for the same event (a drain below the mark, the kernel taking caller buffers). */
class SharedWait {
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (e: Error) => void;
  /** Writes handed this promise (each charged ENTRY_OVERHEAD while it waits). */
  count = 0;
  constructor() {
    this.promise = handled(
      new Promise<void>((resolve, reject) => {
        this.resolve = resolve;
        this.reject = reject;
      }),
    );
  }
}

// When queued writes leave (Netty's "flush at read complete"): a handler's writes are held until
// it next waits for input (ConnReader#park flushes them, synchronously) or until it settles, so
// everything it wrote in answer to one read — every reply to a pipelined batch, a header and a body —
// leaves in one syscall, and a request/response handler pays for no scheduling at all. Writes not
// followed by a read (a server push from a timer, a handler awaiting something else) are flushed by
// one setImmediate per event-loop iteration shared by every connection. (A process.nextTick per write
// batch cost about 0.1 of the plain server's CPU per message in 64-byte ping-pong.)
// A reused array and a count rather than a fresh array per iteration.
const dirty: (ConnWriter | null)[] = [];
let dirtyCount = 0;
let flushPending = false;
function flushAll(): void {
  flushPending = false;
  // flush() never makes a writer dirty again, so the list cannot grow while it is walked.
  for (let i = 0; i < dirtyCount; i++) {
    const writer = dirty[i]!;
    dirty[i] = null;
    writer.flush();
  }
  dirtyCount = 0;
}

type SocketHandle = { writeQueueSize?: number } | null;

export class ConnWriter {
  #core: ConnCore;
  #socket: Socket;
  /** Queued pieces in order: the first in a field (the common single write allocates no array), the rest after it. */
  #first: WriteData | null = null;
  #rest: WriteData[] | null = null;
  /** The open append buffer (pooled), always after the pieces above; small writes are copied into it. */
  #tail: Buffer | null = null;
  #tailUsed = 0;
  /** The first piece is a small write's own copy (it moves into the append buffer when a second one comes). */
  #firstSmall = false;
  /** Pooled buffers among the queued pieces, given back once the write that carries them completes. */
  #pooled: Buffer[] | null = null;
  /** Payload bytes queued here (not yet handed to the socket). */
  #pendingBytes = 0;
  /** Queued pieces (the open append buffer included): each is charged ENTRY_OVERHEAD. */
  #pieces = 0;
  /** Caller buffers queued here, not yet handed to the socket (their writes wait for the kernel). */
  #callerBuffers = 0;
  #scheduled = false;
  /** Writes waiting for the queue to drop below maxWriteBuffer. */
  #belowMark: SharedWait | null = null;
  /** Writes of caller buffers waiting for the kernel to take them. */
  #taken: SharedWait | null = null;
  /** What the socket reported when write progress was last looked at (see progressed()). */
  #seenLength = 0;
  #seenQueue = 0;
  #endPromise: Promise<void> | null = null;
  /** What encoders push to (created on the first writeFrame). */
  #sink: FrameSink | null = null;

  constructor(core: ConnCore, socket: Socket) {
    this.#core = core;
    this.#socket = socket;
  }

  /** Bytes accepted by `write()` and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.#pendingBytes + this.#socket.writableLength;
  }

  /** What queued output costs, as charged against `maxQueuedBytes`: bytes plus overhead per piece and per waiting write. */
  get #charged(): number {
    const waiting = (this.#belowMark?.count ?? 0) + (this.#taken?.count ?? 0);
    return this.queuedBytes + (this.#pieces + waiting) * ENTRY_OVERHEAD;
  }

  write(data: WriteData): Promise<void> {
    const failed = this.#writeState();
    if (failed !== null) return handled(Promise.reject(failed));
    const before = this.#charged;
    const callerBuffer = this.#enqueue(data);
    return this.#settle(before, callerBuffer);
  }

  writeFrame<T>(encoder: Encoder<T>, item: T): Promise<void> {
    const failed = this.#writeState();
    if (failed !== null) return handled(Promise.reject(failed));
    this.#sink ??= {
      push: (...chunks: WriteData[]): number => {
        for (const c of chunks) if (this.#enqueue(c)) this.#frameHasCallerBuffer = true;
        return chunks.length;
      },
    };
    const before = this.#charged;
    const first = this.#first;
    const restLength = this.#rest?.length ?? 0;
    const { pendingBytes, pieces, callerBuffers, tail, tailUsed } = this.#snapshot();
    const firstSmall = this.#firstSmall;
    const pooledLength = this.#pooled?.length ?? 0;
    this.#frameHasCallerBuffer = false;
    try {
      encoder.encode(item, this.#sink);
    } catch (error) {
      // Never send part of a frame: drop what the encoder pushed before it threw.
      if (this.#core.error === null) {
        this.#first = first;
        if (first === null || restLength === 0) this.#rest = null;
        else if (this.#rest !== null) this.#rest.length = restLength;
        if (this.#pooled !== null) this.#pooled.length = pooledLength;
        this.#pendingBytes = pendingBytes;
        this.#pieces = pieces;
        this.#callerBuffers = callerBuffers;
        this.#tail = tail;
        this.#tailUsed = tailUsed;
        this.#firstSmall = firstSmall;
      }
      return handled(Promise.reject(error));
    }
    return this.#settle(before, this.#frameHasCallerBuffer);
  }

  #frameHasCallerBuffer = false;

  #snapshot(): { pendingBytes: number; pieces: number; callerBuffers: number; tail: Buffer | null; tailUsed: number } {
    return {
      pendingBytes: this.#pendingBytes,
      pieces: this.#pieces,
      callerBuffers: this.#callerBuffers,
      tail: this.#tail,
      tailUsed: this.#tailUsed,
    };
  }

  /**
   * What a write() or writeFrame() returns once all its bytes are queued. One write is one check against
   * `maxQueuedBytes`, however many pieces an encoder pushed: a write issued below `maxWriteBuffer` is
   * accepted whatever its size; only piling on top of a full buffer makes a slow consumer.
   */
  #settle(before: number, callerBuffer: boolean): Promise<void> {
    const core = this.#core;
    if (core.error !== null) return handled(Promise.reject(core.error));
    const { maxQueuedBytes, maxWriteBuffer } = core.options;
    let wait: SharedWait | null = null;
    if (callerBuffer) {
      // The caller may reuse its buffer once the write resolves: that is once the kernel has it.
      this.flush();
      if (core.error !== null) return handled(Promise.reject(core.error));
      if (this.#callerBuffers > 0 || this.#socket.writableLength > 0) wait = this.#taken ??= new SharedWait();
    } else if (this.queuedBytes >= maxWriteBuffer) {
      wait = this.#belowMark ??= new SharedWait();
    }
    if (wait !== null) wait.count++;
    const charged = this.#charged;
    if (charged > maxQueuedBytes && before >= maxWriteBuffer) {
      core.slowConsumer(new SlowConsumerError(charged, maxQueuedBytes));
      return handled(Promise.reject(core.error ?? new ConnectionClosedError()));
    }
    return wait === null ? RESOLVED : wait.promise;
  }

  #writeState(): Error | null {
    if (this.#core.error !== null) return this.#core.error;
    if (this.#core.phase !== OPEN) return new ConnectionClosedError('write after end');
    return null;
  }

  /** Queues `data`; says whether it was queued as the caller's own buffer (not copied). */
  #enqueue(data: WriteData): boolean {
    const core = this.#core;
    if (core.error !== null || core.phase !== OPEN) return false;
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (len === 0) return false;
    let callerBuffer = false;
    if (len < COPY_LIMIT) {
      // A resolved write means the caller may reuse its buffer (as after Go's Write): small writes are
      // copied now. The first of a batch into a buffer of its own (the common single reply), the next
      // ones into an append buffer, so a thousand tiny writes cost one buffer, not a thousand objects.
      if (this.#tail === null && this.#first === null) {
        if (typeof data === 'string') this.#first = data;
        else {
          const copy = Buffer.allocUnsafe(len);
          copy.set(data);
          this.#first = copy;
        }
        this.#firstSmall = true;
        this.#pieces = 1;
      } else {
        this.#append(data, len);
      }
    } else {
      // A larger buffer is sent from the caller's memory and its write resolves only once the kernel
      // has it (see #settle), since copying it would cost an allocation of its own: 4 KiB echo went from
      // 1.42x to 1.06x the plain server's CPU per message. (Strings are immutable: never copied.)
      this.#seal();
      this.#push(data);
      if (typeof data !== 'string') {
        this.#callerBuffers++;
        callerBuffer = true;
      }
    }
    this.#pendingBytes += len;
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (!flushPending) {
        flushPending = true;
        setImmediate(flushAll);
      }
      dirty[dirtyCount++] = this;
    }
    return callerBuffer;
  }

  #push(piece: WriteData): void {
    this.#firstSmall = false;
    if (this.#first === null) this.#first = piece;
    else if (this.#rest === null) this.#rest = [piece];
    else this.#rest.push(piece);
    this.#pieces++;
  }

  /** Copies a small write into the append buffer, opening one (the lone first write moves into it). */
  #append(data: WriteData, len: number): void {
    let tail = this.#tail;
    if (tail !== null && this.#tailUsed + len > tail.length) {
      this.#seal();
      tail = null;
    }
    if (tail === null) {
      // The lone small first piece joins the append buffer, so the batch leaves as one buffer uncopied.
      const lone = this.#firstSmall ? this.#first : null;
      const loneLength = lone === null ? 0 : typeof lone === 'string' ? Buffer.byteLength(lone) : lone.byteLength;
      const grown = this.#pooled === null ? APPEND_MIN : Math.min(this.#pooled.at(-1)!.length * 2, COALESCE_LIMIT);
      tail = defaultPool.acquire(Math.max(grown, loneLength + len));
      this.#tailUsed = 0;
      if (lone !== null) {
        this.#first = null;
        this.#firstSmall = false;
        this.#pieces = 0;
        this.#tailUsed = typeof lone === 'string' ? tail.write(lone, 0) : (tail.set(lone), loneLength);
      }
      this.#tail = tail;
      this.#pieces++;
    }
    this.#tailUsed +=
      typeof data === 'string' ? tail.write(data, this.#tailUsed) : (tail.set(data, this.#tailUsed), len);
  }

  /** Closes the append buffer: it becomes a queued piece (given back to the pool after its write). */
  #seal(): void {
    const tail = this.#tail;
    if (tail === null) return;
    this.#tail = null;
    this.#pieces--;
    this.#push(this.#tailUsed === tail.length ? tail : tail.subarray(0, this.#tailUsed));
    if (this.#pooled === null) this.#pooled = [tail];
    else this.#pooled.push(tail);
  }

  /** Flushes now if writes wait for the scheduler (the handler is about to wait for input). */
  flushIfScheduled(): void {
    if (this.#scheduled) this.flush();
  }

  /**
   * Hands the queued writes to the socket in one write (or one writev). While the kernel buffer is full
   * (the socket still holds output) they stay queued here until 'drain': one compact queue instead of a
   * stream request per flush, and the socket then holds only what the kernel is taking (see progressed()).
   */
  flush(): void {
    this.#scheduled = false;
    const core = this.#core;
    if (core.error !== null || core.phase === CLOSED || this.#socket.writableLength > 0) return;
    this.#handOut();
  }

  #handOut(): void {
    this.#seal();
    const first = this.#first;
    if (first === null) return;
    const rest = this.#rest;
    const pooled = this.#pooled;
    const socket = this.#socket;
    const bytes = this.#pendingBytes;
    this.#first = null;
    this.#firstSmall = false;
    this.#rest = null;
    this.#pooled = null;
    this.#pendingBytes = 0;
    this.#pieces = 0;
    this.#callerBuffers = 0;
    // A failed write may still be referenced by libuv: only a completed one gives its buffers back.
    const release =
      pooled === null
        ? undefined
        : (err?: Error | null): void => {
            if (!err) for (const b of pooled) defaultPool.release(b);
          };
    // The socket's writable high-water mark is 1 byte (see server.ts), so write() returns false
    // exactly when output is left waiting for the kernel, and 'drain' fires once it is all out:
    // write deadlines and backpressure need no per-write callback.
    if (rest === null) {
      socket.write(first, release);
    } else if (bytes <= COALESCE_LIMIT) {
      const batch = defaultPool.acquire(bytes);
      let off = 0;
      for (let i = -1; i < rest.length; i++) {
        const c = i < 0 ? first : rest[i]!;
        if (typeof c === 'string') off += batch.write(c, off);
        else {
          batch.set(c, off);
          off += c.byteLength;
        }
      }
      release?.();
      socket.write(batch.length === bytes ? batch : batch.subarray(0, bytes), (err) => {
        if (!err) defaultPool.release(batch);
      });
    } else {
      socket.cork();
      socket.write(first);
      for (let i = 0; i < rest.length; i++) socket.write(rest[i]!, i === rest.length - 1 ? release : undefined);
      socket.uncork();
    }
    if (socket.writableLength > 0) {
      const t = this.#core.timers;
      this.#seenLength = socket.writableLength;
      this.#seenQueue = this.#queueSize();
      if (t.writeBlockedSince === 0) {
        t.writeBlockedSince = deadlines.now();
        if (t.writeTimeout > 0) this.#core.armAt(t.writeBlockedSince + t.writeTimeout);
      }
    } else {
      this.#allTaken();
    }
  }

  /** libuv's count of bytes it has not yet written to the kernel (updated as the kernel takes them). */
  #queueSize(): number {
    const size = (this.#socket as unknown as { _handle: SocketHandle })._handle?.writeQueueSize;
    return typeof size === 'number' ? size : 0;
  }

  /**
   * Whether the kernel took any of the output since the last look (or since it started waiting): the
   * socket's pending bytes (libuv's count drops as the kernel takes part of a write) or the request in
   * flight changed. `writeTimeout` runs from the last progress, so a peer that reads slowly but steadily
   * is kept and one that stopped reading is cut. The kernel wakes a writer only once about a third of
   * its send buffer is free, so progress is seen in steps of that size.
   */
  progressed(): boolean {
    const length = this.#socket.writableLength;
    const queue = this.#queueSize();
    if (length === this.#seenLength && queue === this.#seenQueue) return false;
    this.#seenLength = length;
    this.#seenQueue = queue;
    return true;
  }

  /** Socket 'drain': the socket handed everything it held to the kernel. Hand it what queued meanwhile. */
  onDrain(): void {
    this.#core.timers.writeBlockedSince = 0;
    if (this.#callerBuffers === 0) this.#wake('taken');
    if (this.#first !== null || this.#tail !== null) this.#handOut();
    if (this.queuedBytes < this.#core.options.maxWriteBuffer) this.#wake('belowMark');
  }

  /** Everything queued reached the kernel. */
  #allTaken(): void {
    this.#wake('taken');
    this.#wake('belowMark');
  }

  #wake(which: 'taken' | 'belowMark'): void {
    const wait = which === 'taken' ? this.#taken : this.#belowMark;
    if (wait === null) return;
    if (which === 'taken') this.#taken = null;
    else this.#belowMark = null;
    wait.resolve();
  }

  /** Flushes queued writes (and `data`) and sends FIN; resolves once everything is out. */
  end(data?: WriteData): Promise<void> {
    if (this.#endPromise !== null) return this.#endPromise;
    const core = this.#core;
    if (core.error !== null) return handled(Promise.reject(core.error));
    if (core.phase === CLOSED) return handled(Promise.reject(new ConnectionClosedError()));
    if (data !== undefined) this.#enqueue(data);
    core.phase = ENDED;
    this.#scheduled = false;
    // Everything goes to the socket now, behind what it already holds: nothing is written after the FIN.
    this.#handOut();
    this.#endPromise = handled(
      new Promise<void>((resolve, reject) => {
        this.#socket.end((err?: Error | null) => {
          // Destroyed before the flush finished (a deadline, a reset): the data did not all leave.
          if (core.error === null && err)
            core.error = new ConnectionClosedError(`connection closed: ${err.message}`, err);
          if (core.error !== null) {
            this.rejectWriters(core.error);
            return reject(core.error);
          }
          // Everything is out ('drain' is not emitted once a socket is ending).
          core.timers.writeBlockedSince = 0;
          this.#allTaken();
          resolve();
          if (core.phase === LINGERING) core.outputFlushed();
        });
      }),
    );
    return this.#endPromise;
  }

  /** The connection failed: what is queued will never be sent. */
  discard(): void {
    this.#first = null;
    this.#firstSmall = false;
    this.#rest = null;
    this.#tail = null;
    this.#pooled = null;
    this.#pendingBytes = 0;
    this.#pieces = 0;
    this.#callerBuffers = 0;
  }

  /** Writes wait for the drain. */
  get hasWaiters(): boolean {
    return this.#belowMark !== null || this.#taken !== null;
  }

  /** Rejects every write waiting for the drain. */
  rejectWriters(error: Error): void {
    const waits = [this.#belowMark, this.#taken];
    this.#belowMark = null;
    this.#taken = null;
    for (const w of waits) w?.reject(error);
  }
}
