/**
 * The write path of a connection: writes queued, coalesced and flushed in one syscall, backpressure
 * against `maxWriteBuffer`, the slow-consumer cap `maxQueuedBytes`, and `end()`. Created on the first
 * write (an idle connection needs none), as the inbound queue is on the first read.
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
/** Buffers shorter than this are copied at write(); Node's Buffer.allocUnsafe pools below 4 KiB. */
const COPY_LIMIT = 4 * 1024;

function ignore(): void {}

/**
 * Marks a promise handled: whoever awaits it still sees the rejection, but a write fired and forgotten
 * must not become an unhandled rejection, which would crash the process rather than end one connection.
 */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
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

export class ConnWriter {
  #core: ConnCore;
  #socket: Socket;
  /** Queued writes: the first in a field (the common single write allocates no array), the rest after it. */
  #first: WriteData | null = null;
  #rest: WriteData[] | null = null;
  #pendingBytes = 0;
  #scheduled = false;
  /** A queued buffer is the caller's own (too large to copy): the write flushes at once and waits for the kernel. */
  #handOff = false;
  #writeWaiters: { resolve: () => void; reject: (e: Error) => void }[] | null = null;
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

  write(data: WriteData): Promise<void> {
    const failed = this.#writeState();
    if (failed !== null) return handled(Promise.reject(failed));
    this.#enqueue(data);
    return this.#settleWrite();
  }

  /** What a write() or writeFrame() returns once its bytes are queued. */
  #settleWrite(): Promise<void> {
    if (this.#core.error !== null) return handled(Promise.reject(this.#core.error));
    if (this.#handOff) {
      this.#handOff = false;
      this.flush();
      if (this.#core.error !== null) return handled(Promise.reject(this.#core.error));
      return this.#socket.writableLength === 0 ? RESOLVED : this.#drained();
    }
    if (this.#pendingBytes + this.#socket.writableLength < this.#core.options.maxWriteBuffer) return RESOLVED;
    return this.#drained();
  }

  writeFrame<T>(encoder: Encoder<T>, item: T): Promise<void> {
    const failed = this.#writeState();
    if (failed !== null) return handled(Promise.reject(failed));
    this.#sink ??= {
      push: (...chunks: WriteData[]): number => {
        for (const c of chunks) this.#enqueue(c);
        return chunks.length;
      },
    };
    const first = this.#first;
    const restLength = this.#rest?.length ?? 0;
    const bytes = this.#pendingBytes;
    try {
      encoder.encode(item, this.#sink);
    } catch (error) {
      // Never send part of a frame: drop what the encoder pushed before it threw.
      if (this.#core.error === null) {
        this.#first = first;
        if (first === null || restLength === 0) this.#rest = null;
        else if (this.#rest !== null) this.#rest.length = restLength;
        this.#pendingBytes = bytes;
        this.#handOff = false;
      }
      return handled(Promise.reject(error));
    }
    return this.#settleWrite();
  }

  /** Settles once queued output drops below maxWriteBuffer (or rejects when the connection fails). */
  #drained(): Promise<void> {
    if (this.#writeWaiters === null) this.#writeWaiters = [];
    const waiters = this.#writeWaiters;
    return handled(new Promise((resolve, reject) => waiters.push({ resolve, reject })));
  }

  #writeState(): Error | null {
    if (this.#core.error !== null) return this.#core.error;
    if (this.#core.phase !== OPEN) return new ConnectionClosedError('write after end');
    return null;
  }

  #enqueue(data: WriteData): void {
    const core = this.#core;
    if (core.error !== null || core.phase !== OPEN) return;
    const len = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (len === 0) return;
    if (typeof data !== 'string') {
      // A resolved write means the caller may reuse its buffer (as after Go's Write): small buffers are
      // copied now, from Node's 8 KiB allocation pool (strings are immutable and need no copy); a larger
      // one is sent from the caller's memory and its write resolves only once the kernel has it (see
      // #settleWrite), since copying it would cost an allocation of its own: 4 KiB echo went from
      // 1.42x to 1.06x the plain server's CPU per message.
      if (len < COPY_LIMIT) {
        const copy = Buffer.allocUnsafe(len);
        copy.set(data);
        data = copy;
      } else {
        this.#handOff = true;
      }
    }
    if (this.#first === null) this.#first = data;
    else if (this.#rest === null) this.#rest = [data];
    else this.#rest.push(data);
    this.#pendingBytes += len;
    const queued = this.#pendingBytes + this.#socket.writableLength;
    const { maxQueuedBytes, maxWriteBuffer } = core.options;
    // A write issued below maxWriteBuffer respects backpressure, however large: only piling on
    // top of a full buffer makes a slow consumer.
    if (queued > maxQueuedBytes && queued - len >= maxWriteBuffer) {
      core.slowConsumer(new SlowConsumerError(queued, maxQueuedBytes));
      return;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (!flushPending) {
        flushPending = true;
        setImmediate(flushAll);
      }
      dirty[dirtyCount++] = this;
    }
  }

  /** Flushes now if writes wait for the scheduler (the handler is about to wait for input). */
  flushIfScheduled(): void {
    if (this.#scheduled) this.flush();
  }

  /** Hands the queued writes to the socket in one write (or one writev). */
  flush(): void {
    this.#scheduled = false;
    const first = this.#first;
    const core = this.#core;
    if (first === null || core.error !== null || core.phase === CLOSED) return;
    const rest = this.#rest;
    const socket = this.#socket;
    const bytes = this.#pendingBytes;
    this.#first = null;
    this.#rest = null;
    this.#pendingBytes = 0;
    // The socket's writable high-water mark is 1 byte (see server.ts), so write() returns false
    // exactly when output is left waiting for the kernel, and 'drain' fires once it is all out:
    // write deadlines and backpressure need no per-write callback.
    let flushed: boolean;
    if (rest === null) {
      flushed = socket.write(first);
    } else if (bytes <= COALESCE_LIMIT) {
      const pooled = defaultPool.acquire(bytes);
      let off = 0;
      for (let i = -1; i < rest.length; i++) {
        const c = i < 0 ? first : rest[i]!;
        if (typeof c === 'string') off += pooled.write(c, off);
        else {
          pooled.set(c, off);
          off += c.byteLength;
        }
      }
      // A failed write may still be referenced by libuv: only a completed one goes back to the pool.
      flushed = socket.write(pooled.length === bytes ? pooled : pooled.subarray(0, bytes), (err) => {
        if (!err) defaultPool.release(pooled);
      });
    } else {
      socket.cork();
      socket.write(first);
      for (const c of rest) socket.write(c);
      socket.uncork();
      flushed = socket.writableLength === 0;
    }
    if (!flushed) {
      const t = core.timers;
      if (t.writeBlockedSince === 0) {
        t.writeBlockedSince = deadlines.now();
        if (t.writeTimeout > 0) core.armAt(t.writeBlockedSince + t.writeTimeout);
      }
    } else if (this.#writeWaiters !== null) {
      this.#resolveWriters();
    }
  }

  /** Socket 'drain': every queued byte reached the kernel. */
  onDrain(): void {
    this.#core.timers.writeBlockedSince = 0;
    if (this.#writeWaiters !== null && this.queuedBytes < this.#core.options.maxWriteBuffer) this.#resolveWriters();
  }

  /** Flushes queued writes (and `data`) and sends FIN; resolves once everything is out. */
  end(data?: WriteData): Promise<void> {
    if (this.#endPromise !== null) return this.#endPromise;
    const core = this.#core;
    if (core.error !== null) return handled(Promise.reject(core.error));
    if (core.phase === CLOSED) return handled(Promise.reject(new ConnectionClosedError()));
    if (data !== undefined) this.#enqueue(data);
    core.phase = ENDED;
    this.#handOff = false;
    this.flush();
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
          this.#resolveWriters();
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
    this.#rest = null;
    this.#pendingBytes = 0;
  }

  #resolveWriters(): void {
    const waiters = this.#writeWaiters;
    this.#writeWaiters = null;
    if (waiters === null) return;
    for (const w of waiters) w.resolve();
  }

  /** Rejects every write waiting for the drain. */
  rejectWriters(error: Error): void {
    const waiters = this.#writeWaiters;
    this.#writeWaiters = null;
    if (waiters === null) return;
    for (const w of waiters) w.reject(error);
  }
}
