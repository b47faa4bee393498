/**
 * The write path of a connection: writes queued (write-queue.ts), coalesced and flushed in one syscall,
 * backpressure against `maxWriteBuffer`, the slow-consumer cap `maxQueuedBytes`, write progress for
 * `writeTimeout`, and `end()`. Created on the first write (an idle connection needs none), as the
 * inbound queue is on the first read. Output goes straight to the socket's handle (handle-writer.ts):
 * the TCP handle, or over TLS the TLS handle, which encrypts it (its shutdown then waits for those
 * writes: tls.ts's gateShutdown). Where that hook is missing or `TCPKIT_WRITE_PATH=stream`, through the
 * socket's stream.
 *
 * Memory: `maxQueuedBytes` bounds what queued output costs, not only its payload. Small writes are
 * copied into one append buffer (not an object each), every queued piece and every write waiting for
 * the drain is charged {@link ENTRY_OVERHEAD} on top of its bytes, writes waiting for the same drain
 * share one promise, and while the kernel buffer is full output stays in this queue (compact) instead
 * of piling up as one request per write below it.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { BareSocket } from './bare-socket.js';
import { defaultPool, releaseAll } from './buffer-pool.js';
import type { WriteData } from './conn.js';
import type { ConnCore } from './conn-core.js';
import { CLOSED, ENDED, LINGERING, OPEN } from './conn-state.js';
import { deadlines } from './deadlines.js';
import { ConnectionClosedError, SlowConsumerError } from './errors.js';
import { scheduleFlush, unscheduleFlush } from './flush-scheduler.js';
import type { Encoder, FrameSink } from './framing/types.js';
import { type HandleWriter, type HandleWriteSink, handleWritable, useHandleWrites } from './handle-writer.js';
import { type CallerBufferHolder, holdLent, type LentBuffer, noteHeld } from './lent-buffers.js';
import { gateShutdown, type ShutdownGate } from './tls.js';
import { COALESCE_LIMIT, COPY_LIMIT, copyInto, WriteQueue } from './write-queue.js';

const RESOLVED = Promise.resolve();
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

/** Copies a batch of pieces into one pooled buffer (`bytes` long). */
function coalesce(first: WriteData, rest: WriteData[], bytes: number): Buffer {
  const batch = defaultPool.acquire(bytes);
  let off = copyInto(batch, first, 0);
  for (let i = 0; i < rest.length; i++) off += copyInto(batch, rest[i]!, off);
  return batch;
}

type SocketHandle = { writeQueueSize?: number; _parent?: { writeQueueSize?: number } | null } | null;

/**
 * Idle writers of plain TCP connections (nothing queued, in flight, waited for or ended), for the next
 * connection that writes: a connection parked on a read holds no writer (about 260 bytes), and a
 * ping-pong connection takes one back for each reply without allocating (see ConnCore#flushWrites).
 * A handful is enough: a writer goes back as soon as its connection waits for input again.
 */
const MAX_SPARES = 64;
/**
 * A stack of fixed size and a count, not push and pop: the count swings between 0 and a few as
 * connections take and give back writers, and an array that pop() empties may give up its backing
 * store (the runtime's trimming), which the next push() allocates again (seen in an allocation
 * profile of the accept burst: about 30 bytes a connection).
 */
const spares: (ConnWriter | null)[] = new Array(MAX_SPARES).fill(null);
let spareCount = 0;

export class ConnWriter extends WriteQueue implements HandleWriteSink, ShutdownGate, CallerBufferHolder {
  /**
   * The connection served (its socket is the one written to); null while a spare, so a closed
   * connection is not kept alive by the spares.
   */
  #core: ConnCore | null;
  /** Writes straight to the socket's handle (plain TCP); null: through the socket's stream. */
  #handle: HandleWriter | null;
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
  #frameHasCallerBuffer = false;
  /**
   * The copy of the last lone small write (a plain TCP writer's), reused for the next one of the same
   * length: a request/response handler's replies cost no allocation. It is free again whenever the
   * fast path in write() may take it: the queue is empty (it is not queued) and no handle write is in
   * flight (the kernel has it: every write of it either completed or was taken at once).
   */
  #reply: Buffer | null = null;

  /** A TLS socket: what its handle is handed leaves the caller's memory at once (see #settle). */
  readonly #encrypts: boolean;
  /** A TLS socket's shutdown, held back until the writes in flight complete (see whenWritten). */
  #afterWrites: (() => void) | null = null;

  constructor(core: ConnCore, socket: Socket) {
    super();
    this.#core = core;
    this.#encrypts = socket instanceof TLSSocket;
    this.#handle = useHandleWrites(socket, this);
    if (this.#encrypts && this.#handle !== null) gateShutdown(socket as TLSSocket, this);
  }

  /** A writer for `core`: a spare one if any fits its socket, else a new one. */
  static acquire(core: ConnCore, socket: Socket): ConnWriter {
    // A bare socket writes to its handle (the bare path exists only where handle writes do): the
    // usual case needs no probe of the handle per write.
    if (
      spareCount === 0 ||
      !(socket instanceof BareSocket || (!(socket instanceof TLSSocket) && handleWritable(socket)))
    )
      return new ConnWriter(core, socket);
    const writer = spares[--spareCount]!;
    spares[spareCount] = null;
    writer.#core = core;
    writer.#seenLength = 0;
    writer.#seenQueue = 0;
    return writer;
  }

  /**
   * Goes back to the spares if it holds nothing for its connection: all output taken by the kernel,
   * no write waiting, not ended, and no frame sink handed to an encoder (which might keep it). A
   * spare may still sit in the flush scheduler's list: its flush() then finds nothing queued.
   */
  release(): boolean {
    const h = this.#handle;
    if (
      h === null ||
      h.inFlight !== 0 ||
      this.#scheduled ||
      this.first !== null ||
      this.tail !== null ||
      this.#encrypts ||
      this.#belowMark !== null ||
      this.#taken !== null ||
      this.#endPromise !== null ||
      this.#sink !== null ||
      spareCount === MAX_SPARES
    ) {
      return false;
    }
    this.#core = null;
    spares[spareCount++] = this;
    return true;
  }

  /** The socket written to (HandleWriteSink): the connection's. */
  get socket(): Socket {
    return this.#core!.socket;
  }

  // #handedOut and #charged are methods, not private getters: optimized code on Node 20 calls into the
  // runtime for every private getter it reads (about 30 instructions each, three per write).

  /** Bytes handed to the socket that have not reached the kernel. */
  #handedOut(): number {
    const h = this.#handle;
    if (h === null) return this.socket.writableLength;
    return h.inFlight === 0 ? 0 : h.pendingBytes;
  }

  /** Output handed to the socket waits for the kernel (the deadline policy's writePending). */
  get waitsForKernel(): boolean {
    const h = this.#handle;
    return h === null ? this.socket.writableLength > 0 : h.inFlight !== 0;
  }

  /**
   * CallerBufferHolder: the handler steps past `lent`. A small lent chunk still queued by reference
   * (addLent) is copied out now, as write() would have copied it; then whether the buffer may still be
   * referenced here (a caller buffer of COPY_LIMIT or more queued: perhaps a view of it) or below (a
   * handle write in flight, the stream's buffer): lent-buffers.ts then leaves it to the collector. Never
   * false while a reference remains (the buffer would serve the next read under bytes not yet sent);
   * true at times when none does (a write in flight of other bytes), which costs only its reuse.
   */
  holdsCallerBuffers(lent: LentBuffer): boolean {
    const view = lent.view;
    if (this.first === view && view.length < COPY_LIMIT) this.copyOutLent(view);
    if (this.callerBuffers > 0) return true;
    // A TLS handle encrypts (or copies) what it is handed at once: none of the caller's memory stays.
    if (this.#handle !== null) return !this.#encrypts && this.#handle.inFlight !== 0;
    return this.#core !== null && this.#core.socket.writableLength > 0;
  }

  /** Bytes accepted by `write()` and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.pendingBytes + this.#handedOut();
  }

  /**
   * A copy for a lone small write of `len` bytes. A plain TCP writer keeps it as its reply buffer
   * (see #reply); a TLS writer, which holds on to its connection, does not.
   */
  #newReply(len: number): Buffer {
    const copy = Buffer.allocUnsafe(len);
    if (!this.#encrypts) this.#reply = copy;
    return copy;
  }

  /** What queued output costs, as charged against `maxQueuedBytes`: bytes plus overhead per piece and per waiting write. */
  #charged(): number {
    const waiting = (this.#belowMark?.count ?? 0) + (this.#taken?.count ?? 0);
    return this.queuedBytes + (this.pieces + waiting) * ENTRY_OVERHEAD;
  }

  write(data: WriteData): Promise<void> {
    const core = this.#core!;
    if (core.error !== null || core.phase !== OPEN) return this.#refused();
    const h = this.#handle;
    // A buffer into an empty queue, with nothing handed out waiting for the kernel (so no write waits
    // either, and nothing is charged yet), takes a shorter way to the answers the general path below
    // would give: the common reply.
    if (h !== null && h.inFlight === 0 && this.first === null && this.tail === null && typeof data !== 'string') {
      const len = data.length;
      if (len >= COPY_LIMIT) {
        if (!this.#encrypts) return this.#writeNow(h, data);
      } else if (len > 0 && len < core.options.maxWriteBuffer) {
        // A lent chunk (conn.chunks({ reuse: true })) written back is queued by reference: the handler's
        // next step flushes it (when it parks) or copies it out (holdsCallerBuffers). Any other is
        // copied, as any small write. Either way it resolves at once.
        if (holdLent(data, this)) this.addLent(data, len);
        else {
          let copy = this.#reply;
          if (copy === null || copy.length !== len) copy = this.#newReply(len);
          this.addLone(data, len, copy);
        }
        if (!this.#scheduled) {
          this.#scheduled = true;
          scheduleFlush(this);
        }
        return RESOLVED;
      }
    }
    const before = this.#charged();
    const callerBuffer = this.#enqueue(data);
    return this.#settle(before, callerBuffer);
  }

  /**
   * A large buffer into an empty queue (plain TCP): to the kernel now, from the caller's memory, as
   * #settle flushes one; it resolves once the kernel has it.
   */
  #writeNow(h: HandleWriter, data: Uint8Array): Promise<void> {
    h.write(data, null);
    const core = this.#core!;
    if (core.error !== null) return handled(Promise.reject(core.error));
    if (h.inFlight === 0) return RESOLVED;
    // A lent read buffer (conn.chunks({ reuse: true })) in flight is not reused until it is out.
    noteHeld(data, this);
    this.#blocked(core);
    this.#taken ??= new SharedWait();
    this.#taken.count++;
    return this.#taken.promise;
  }

  writeFrame<T>(encoder: Encoder<T>, item: T): Promise<void> {
    const core = this.#core!;
    if (core.error !== null || core.phase !== OPEN) return this.#refused();
    this.#sink ??= {
      push: (...chunks: WriteData[]): number => {
        for (const c of chunks) if (this.#enqueue(c)) this.#frameHasCallerBuffer = true;
        return chunks.length;
      },
    };
    const before = this.#charged();
    const mark = this.mark();
    this.#frameHasCallerBuffer = false;
    try {
      encoder.encode(item, this.#sink);
    } catch (error) {
      // Never send part of a frame: drop what the encoder pushed before it threw.
      if (this.#core!.error === null) this.restore(mark);
      return handled(Promise.reject(error));
    }
    return this.#settle(before, this.#frameHasCallerBuffer);
  }

  /**
   * What a write() or writeFrame() returns once all its bytes are queued. One write is one check against
   * `maxQueuedBytes`, however many pieces an encoder pushed: a write issued below `maxWriteBuffer` is
   * accepted whatever its size; only piling on top of a full buffer makes a slow consumer.
   */
  #settle(before: number, callerBuffer: boolean): Promise<void> {
    const core = this.#core!;
    if (core.error !== null) return handled(Promise.reject(core.error));
    const { maxQueuedBytes, maxWriteBuffer } = core.options;
    let wait: SharedWait | null = null;
    if (callerBuffer) {
      // The caller may reuse its buffer once the write resolves: that is once the kernel has it.
      this.flush();
      if (core.error !== null) return handled(Promise.reject(core.error));
      // Over TLS the handle hands the bytes to OpenSSL, which encrypts (or copies) them at once: the
      // caller's buffer is free as soon as it is handed out, though the ciphertext still waits.
      if (this.callerBuffers > 0 || (this.waitsForKernel && !this.#encrypts)) wait = this.#taken ??= new SharedWait();
      // Yet it resolves, as any write, only below maxWriteBuffer: resolved on top of a full buffer, the
      // handler's next awaited write would be charged as a slow consumer's.
      else if (this.#encrypts && this.queuedBytes >= maxWriteBuffer) wait = this.#belowMark ??= new SharedWait();
    } else if (this.queuedBytes >= maxWriteBuffer) {
      wait = this.#belowMark ??= new SharedWait();
    }
    if (wait !== null) wait.count++;
    // Below the mark (nearly every write) the charge is not even added up.
    if (before >= maxWriteBuffer) {
      const charged = this.#charged();
      if (charged > maxQueuedBytes) {
        core.slowConsumer(new SlowConsumerError(charged, maxQueuedBytes));
        return handled(Promise.reject(core.error ?? new ConnectionClosedError()));
      }
    }
    return wait === null ? RESOLVED : wait.promise;
  }

  /** A write refused: the connection failed, or was ended. */
  #refused(): Promise<void> {
    const error = this.#core!.error;
    return handled(Promise.reject(error ?? new ConnectionClosedError('write after end')));
  }

  /** Queues `data` and schedules the flush; says whether it was queued as the caller's own buffer (not copied). */
  #enqueue(data: WriteData): boolean {
    const core = this.#core!;
    if (core.error !== null || core.phase !== OPEN) return false;
    // `length`, not `byteLength` (the same for a Uint8Array): optimized code on Node 20 reads a typed
    // array's `byteLength` through a generic property load (about 150 instructions), its `length` inline.
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (len === 0) return false;
    // A lent chunk into the empty queue, as in write()'s fast path (here: the stream path, or the kernel still busy).
    if (
      len < COPY_LIMIT &&
      this.first === null &&
      this.tail === null &&
      typeof data !== 'string' &&
      holdLent(data, this)
    ) {
      this.addLent(data, len);
      if (!this.#scheduled) {
        this.#scheduled = true;
        scheduleFlush(this);
      }
      return false;
    }
    const callerBuffer = this.add(data, len);
    // A lent read buffer (conn.chunks({ reuse: true })) held here is not reused until it is out.
    if (callerBuffer) noteHeld(data as Uint8Array, this);
    if (!this.#scheduled) {
      this.#scheduled = true;
      scheduleFlush(this);
    }
    return callerBuffer;
  }

  /** Flushes now if writes wait for the scheduler (the handler is about to wait for input). */
  flushIfScheduled(): void {
    if (this.#scheduled) this.flush();
  }

  /** Takes this writer off the flush scheduler: it is flushing now. */
  #unschedule(): void {
    if (this.#scheduled) {
      this.#scheduled = false;
      unscheduleFlush(this);
    }
  }

  /**
   * Hands the queued writes to the socket in one write (or one writev). While the kernel buffer is full
   * (output handed out still waits) they stay queued here until it drains: one compact queue instead
   * of a request per flush, and below it only what the kernel is taking (see progressed()).
   */
  flush(): void {
    this.#unschedule();
    const core = this.#core!;
    if (core.error !== null || core.phase === CLOSED || this.waitsForKernel) return;
    this.#handOut();
  }

  #handOut(): void {
    if (this.tail !== null) this.seal();
    const first = this.first;
    if (first === null) return;
    const rest = this.rest;
    const pooled = this.pooled;
    const bytes = this.pendingBytes;
    this.clear();
    const h = this.#handle;
    if (h === null) this.#toStream(first, rest, pooled, bytes);
    else if (rest === null) h.write(first, pooled);
    else this.#toHandle(h, first, rest, pooled, bytes);
    const core = this.#core!;
    if (core.error !== null) return; // the write failed at once: the connection is over
    if (this.waitsForKernel) this.#blocked(core);
    else if (this.#taken !== null || this.#belowMark !== null) this.#allTaken();
  }

  /** Output handed out waits for the kernel: write progress is watched from here, and writeTimeout runs. */
  #blocked(core: ConnCore): void {
    const t = core.timers;
    this.#seenLength = this.#handedOut();
    this.#seenQueue = this.#queueSize();
    if (t.writeBlockedSince === 0) {
      t.writeBlockedSince = deadlines.now();
      if (t.writeTimeout > 0) core.armAt(t.writeBlockedSince + t.writeTimeout);
    }
  }

  /**
   * Several pieces to the handle (a lone one is written by #handOut itself): libuv writes what the
   * kernel takes now and reports the rest's completion (onHandleDrained).
   */
  #toHandle(h: HandleWriter, first: WriteData, rest: WriteData[], pooled: Buffer[] | null, bytes: number): void {
    if (bytes <= COALESCE_LIMIT) {
      const batch = coalesce(first, rest, bytes);
      releaseAll(pooled);
      h.write(batch.length === bytes ? batch : batch.subarray(0, bytes), [batch]);
    } else {
      rest.unshift(first);
      h.writev(rest, pooled);
    }
  }

  /** TLS and the fallback: through the socket's Writable. */
  #toStream(first: WriteData, rest: WriteData[] | null, pooled: Buffer[] | null, bytes: number): void {
    const socket = this.socket;
    // A failed write may still be referenced by libuv: only a completed one gives its buffers back.
    const release = pooled === null ? undefined : (err?: Error | null): void => (err ? undefined : releaseAll(pooled));
    // The socket's writable high-water mark is 1 byte (see server.ts), so write() returns false
    // exactly when output is left waiting for the kernel, and 'drain' fires once it is all out:
    // write deadlines and backpressure need no per-write callback.
    if (rest === null) {
      socket.write(first, release);
    } else if (bytes <= COALESCE_LIMIT) {
      const batch = coalesce(first, rest, bytes);
      releaseAll(pooled);
      socket.write(batch.length === bytes ? batch : batch.subarray(0, bytes), (err) => {
        if (!err) defaultPool.release(batch);
      });
    } else {
      socket.cork();
      socket.write(first);
      for (let i = 0; i < rest.length; i++) socket.write(rest[i]!, i === rest.length - 1 ? release : undefined);
      socket.uncork();
    }
  }

  /**
   * libuv's count of bytes it has not yet written to the kernel (updated as the kernel takes them). Over
   * TLS that is the TCP handle's below the TLS one (`_parent`): the TLS handle's own count stays at the
   * whole ciphertext until its write completes, so it shows no progress within one large write.
   */
  #queueSize(): number {
    const handle = (this.socket as unknown as { _handle: SocketHandle })._handle;
    const size = handle?._parent?.writeQueueSize ?? handle?.writeQueueSize;
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
    const length = this.#handedOut();
    const queue = this.#queueSize();
    if (length === this.#seenLength && queue === this.#seenQueue) return false;
    this.#seenLength = length;
    this.#seenQueue = queue;
    return true;
  }

  /** HandleWriteSink: the handle's last write in flight completed (the stream path's 'drain'). */
  onHandleDrained(): void {
    this.#core!.onDrain();
    const shutdown = this.#afterWrites;
    if (shutdown !== null && this.#handle!.inFlight === 0) {
      this.#afterWrites = null;
      shutdown();
    }
  }

  /** ShutdownGate (TLS): the socket's shutdown runs once no write to its handle is in flight. */
  whenWritten(shutdown: () => void): void {
    if (this.#handle !== null && this.#handle.inFlight !== 0) this.#afterWrites = shutdown;
    else shutdown();
  }

  /** HandleWriteSink: a handle write failed: end this connection with the error, as the socket's 'error' would. */
  onHandleError(error: Error): void {
    const core = this.#core!;
    core.onError(error);
    core.destroy();
  }

  /** Everything handed out reached the kernel. Hand it what queued meanwhile. */
  onDrain(): void {
    const core = this.#core!;
    core.timers.writeBlockedSince = 0;
    if (this.callerBuffers === 0) this.#wake('taken');
    if (this.first !== null || this.tail !== null) this.#handOut();
    if (this.queuedBytes < core.options.maxWriteBuffer) this.#wake('belowMark');
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
    const core = this.#core!;
    if (core.error !== null) return handled(Promise.reject(core.error));
    if (core.phase === CLOSED) return handled(Promise.reject(new ConnectionClosedError()));
    if (data !== undefined) this.#enqueue(data);
    core.phase = ENDED;
    this.#unschedule();
    // Everything goes to the socket now, behind what it already holds: nothing is written after the FIN.
    // (On the handle path libuv queues the stream's shutdown behind the writes still in flight. A TLS
    // handle takes one write at a time: with one in flight the rest goes out as it completes (onDrain),
    // and the shutdown waits for that: whenWritten.)
    if (!(this.#encrypts && this.#handle !== null && this.#handle.inFlight !== 0)) this.#handOut();
    this.#endPromise = handled(
      new Promise<void>((resolve, reject) => {
        this.socket.end((err?: Error | null) => {
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
    this.clear();
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
