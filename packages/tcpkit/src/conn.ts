import type { Socket } from 'node:net';
import { defaultPool } from './buffer-pool.js';
import { ByteQueue } from './byte-queue.js';
import { type DeadlineEntry, deadlines } from './deadlines.js';
import {
  ConnectionClosedError,
  FirstByteTimeoutError,
  FrameInvalidError,
  FrameTimeoutError,
  IdleTimeoutError,
  LifetimeExceededError,
  SlowConsumerError,
  type TimeoutError,
  WriteTimeoutError,
} from './errors.js';
import type { Decoder, Encoder, FrameSink } from './framing/types.js';
import { type ConnTimeouts, type ResolvedOptions, validateTimeouts } from './options.js';

/** @internal what a connection needs from its server. */
export interface ConnHost {
  readonly options: ResolvedOptions;
  onTimeout(conn: Conn, error: TimeoutError): void;
  onSlowConsumer(conn: Conn, error: SlowConsumerError): void;
  /** A finished connection's queued output has all reached the kernel. */
  onOutputFlushed(conn: Conn): void;
  onSocketClosed(conn: Conn): void;
}

/** Data `conn.write()` accepts. Strings are sent as UTF-8. */
export type WriteData = Uint8Array | string;

const RESOLVED = Promise.resolve();

function ignore(): void {}

/**
 * Marks a write's promise handled: whoever awaits it still sees the rejection, but a write fired
 * and forgotten must not become an unhandled rejection, which would crash the process rather
 * than end one connection.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
}
const WAIT_NONE = 0;
const WAIT_READ = 1;
const WAIT_ITERATE = 2;
const WAIT_CALLBACK = 3;
const kConn = Symbol('tcpkit.conn');
/** Batches up to this size are copied into one pooled buffer; larger ones go out with writev. */
const COALESCE_LIMIT = 16 * 1024;
/** Buffers shorter than this are copied at write(); Node's Buffer.allocUnsafe pools below 4 KiB. */
const COPY_LIMIT = 4 * 1024;

type SocketWithConn = Socket & { [kConn]: Conn };

// When queued writes leave (Netty's "flush at read complete"): a handler's writes are held until
// it next waits for input (Conn#park flushes them, synchronously) or until it settles, so everything
// it wrote in answer to one read — every reply to a pipelined batch, a header and a body — leaves in
// one syscall, and a request/response handler pays for no scheduling at all. Writes not followed by a
// read (a server push from a timer, a handler awaiting something else) are flushed by one setImmediate
// per event-loop iteration shared by every connection. (A process.nextTick per write batch cost about
// 0.1 of the plain server's CPU per message in 64-byte ping-pong.)
// A reused array and a count rather than a fresh array per iteration.
const dirty: (Conn | null)[] = [];
let dirtyCount = 0;
let flushPending = false;
function flushAll(): void {
  flushPending = false;
  // _flush never makes a connection dirty again, so the list cannot grow while it is walked.
  for (let i = 0; i < dirtyCount; i++) {
    const conn = dirty[i]!;
    dirty[i] = null;
    conn._flush();
  }
  dirtyCount = 0;
}

let nextId = 1;

/**
 * One accepted connection, handed to the handler. Reads are pulled (`read`, `readExactly`,
 * `frames`, `for await`), writes respect backpressure (`await write`), every deadline of the
 * server applies, and `signal` aborts when the connection ends, times out or the server drains.
 */
export class Conn implements DeadlineEntry, AsyncIterable<Buffer> {
  /** Process-unique connection number. */
  readonly id: number;
  /** The peer's IP address (IPv4-mapped IPv6 addresses are given as IPv4). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The local address the peer connected to (IPv4-mapped IPv6 given as IPv4). */
  readonly localAddress: string;
  readonly localPort: number;
  /** @internal DeadlineEntry slot. */
  tick = -1;
  /** @internal the connection still counts against the server's caps (see Server#releaseSlot). */
  _holdsSlot = true;
  /** @internal settles when the handler has settled (set by the server). */
  _handlerSettled: Promise<void> = RESOLVED;

  #socket: Socket;
  #host: ConnHost;
  /** Input received and not yet read; created on first use (an idle connection needs none). */
  #inbound: ByteQueue | null = null;
  #waitMode = WAIT_NONE;
  #waitResolve: ((v: unknown) => void) | null = null;
  #waitReject: ((e: Error) => void) | null = null;
  #eof = false;
  #draining = false;
  #paused = false;
  /** Why the connection failed (timeout, reset, slow consumer); pending and later operations reject with it. */
  #error: Error | null = null;
  #closed = false;
  #ended = false;
  #lingering = false;

  /** Queued writes: the first in a field (the common single write allocates no array), the rest after it. */
  #first: WriteData | null = null;
  #rest: WriteData[] | null = null;
  #pendingBytes = 0;
  #scheduled = false;
  /** A queued buffer is the caller's own (too large to copy): the write flushes at once and waits for the kernel. */
  #handOff = false;
  /** When output started waiting in the socket because the kernel buffer was full; 0 = all flushed. */
  #writeBlockedSince = 0;
  #writeWaiters: { resolve: () => void; reject: (e: Error) => void }[] | null = null;
  #endPromise: Promise<void> | null = null;
  #closing = false;
  #closePromise: Promise<void> | null = null;
  #closeResolve: (() => void) | null = null;

  #firstByteTimeout: number;
  #idleTimeout: number;
  #frameTimeout: number;
  #writeTimeout: number;
  #maxLifetime: number;
  #startedAt: number;
  #lastReadAt = 0;
  #frameStartAt = 0;
  #lingerUntil = 0;

  #abort: AbortController | null = null;
  #abortReason: Error | null = null;

  /** @internal created by the server when the handler is admitted. */
  constructor(socket: Socket, host: ConnHost, remoteAddress: string) {
    this.id = nextId++;
    this.#socket = socket;
    this.#host = host;
    this.remoteAddress = remoteAddress;
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = normalizeAddress(socket.localAddress ?? '');
    this.localPort = socket.localPort ?? 0;
    const o = host.options;
    this.#firstByteTimeout = o.firstByteTimeout;
    this.#idleTimeout = o.idleTimeout;
    this.#frameTimeout = o.frameTimeout;
    this.#writeTimeout = o.writeTimeout;
    this.#maxLifetime = o.maxLifetime;
    this.#startedAt = deadlines.now();
    (socket as SocketWithConn)[kConn] = this;
    if (!useSharedReadBuffer(socket)) socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('drain', onDrain);
    this.#arm();
    socket.resume();
  }

  /** Aborts when the connection fails, closes, or the server starts draining; `reason` is a TcpkitError. */
  get signal(): AbortSignal {
    if (this.#abort === null) {
      this.#abort = new AbortController();
      // A connection that closed cleanly gets its reason made only when someone looks (see _onClose).
      if (this.#abortReason === null && this.#closed) this.#abortReason = new ConnectionClosedError();
      if (this.#abortReason !== null) this.#abort.abort(this.#abortReason);
    }
    return this.#abort.signal;
  }

  /** Bytes received from the peer. */
  get bytesRead(): number {
    return this.#socket.bytesRead;
  }

  /** Bytes handed to the kernel for the peer. */
  get bytesWritten(): number {
    return this.#socket.bytesWritten;
  }

  /** Bytes accepted by `write()` and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.#pendingBytes + this.#socket.writableLength;
  }

  /** True once the socket is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  // ---- reading -------------------------------------------------------------------------------

  /**
   * The next chunk of input, or `null` at end of stream (the peer's FIN, or the server draining
   * once buffered input is consumed). Rejects with the connection's error after a timeout or reset.
   */
  read(): Promise<Buffer | null> {
    if (this.#buffered() > 0) return Promise.resolve(this.#takeChunk());
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#eof || this.#draining || this.#closed) return Promise.resolve(null);
    return new Promise<Buffer | null>((resolve, reject) => this.#park(WAIT_READ, resolve, reject));
  }

  /**
   * Exactly `n` bytes. Rejects with `ERR_FRAME_INVALID` if the stream ends first, and with the
   * connection's error on timeout or reset. Input is buffered until `n` bytes are there, so
   * bound `n` yourself when it comes from the peer.
   */
  async readExactly(n: number): Promise<Buffer> {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`readExactly: n must be a non-negative integer, got ${n}`);
    while (this.#buffered() < n) {
      if (this.#error !== null) throw this.#error;
      if (this.#eof || this.#draining || this.#closed) {
        throw new FrameInvalidError(`truncated: stream ended after ${this.#buffered()} of ${n} bytes`);
      }
      await new Promise<void>((resolve) => this.#waitForData(resolve as () => void));
    }
    const out = this.#inbound!.take(n);
    this.#afterConsume();
    return out;
  }

  /** Chunks of input until end of stream. */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return new ChunkIterator(this);
  }

  /** @internal */
  _nextChunk(): Promise<IteratorResult<Buffer>> {
    if (this.#buffered() > 0) return Promise.resolve({ value: this.#takeChunk(), done: false });
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#eof || this.#draining || this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise<IteratorResult<Buffer>>((resolve, reject) => this.#park(WAIT_ITERATE, resolve, reject));
  }

  /**
   * Decoded frames until end of stream. A decoder's `FrameError` rejects the iteration (the
   * connection stays open so the handler may answer, e.g. with a protocol error, before it ends).
   * While the server drains, frames already received are delivered, then the iteration ends.
   * `frameTimeout` bounds the time from a frame's first byte to its last.
   */
  frames<T>(decoder: Decoder<T>): AsyncIterableIterator<T> {
    return new FrameIterator(this, decoder);
  }

  /** @internal one step of frame decoding for FrameIterator; returns undefined when it must wait. */
  _decode<T>(decoder: Decoder<T>): IteratorResult<T> | undefined {
    const q = this.#queue();
    if (q.length > 0) {
      const frame = decoder.decode(q);
      if (frame !== undefined) {
        this.#frameStartAt = 0;
        this.#afterConsume();
        if (q.length > 0 && this.#frameTimeout > 0) {
          // The next frame has begun already.
          this.#frameStartAt = deadlines.now();
          this.#armAt(this.#frameStartAt + this.#frameTimeout);
        }
        return { value: frame, done: false };
      }
    }
    if (this.#error !== null) throw this.#error;
    if (this.#draining || this.#closed) return { value: undefined, done: true };
    if (this.#eof) {
      if (q.length === 0) return { value: undefined, done: true };
      const last = decoder.decodeEnd?.(q);
      if (last !== undefined) return { value: last, done: false };
      if (q.length === 0) return { value: undefined, done: true };
      throw new FrameInvalidError(`truncated frame: stream ended with ${q.length} bytes of an incomplete frame`);
    }
    if (q.length > 0 && this.#frameTimeout > 0) {
      // Also when the frame began while the handler was busy: its deadline may be due already.
      if (this.#frameStartAt === 0) this.#frameStartAt = deadlines.now();
      this.#armAt(this.#frameStartAt + this.#frameTimeout);
    }
    return undefined;
  }

  /** @internal */
  _waitForData(wake: () => void): void {
    this.#waitForData(wake);
  }

  /** Parks a callback run when input, end of stream or an error arrives. */
  #waitForData(wake: () => void): void {
    this.#park(WAIT_CALLBACK, wake, null);
  }

  // One parked reader at a time, stored as its resolve/reject pair and a mode rather than a
  // closure, so the per-message read path allocates only its promise.
  #park(mode: number, resolve: (v: never) => void, reject: ((e: Error) => void) | null): void {
    this.#waitMode = mode;
    this.#waitResolve = resolve as (v: unknown) => void;
    this.#waitReject = reject;
    if (this.#scheduled) this._flush(); // the handler waits for input: what it wrote leaves now
    // The idle clock runs while the handler waits for input: from now, or from the last byte.
    if (this.#lastReadAt !== 0) this.#lastReadAt = deadlines.now();
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  /** Hands what arrived (input, end of stream, error) to the parked reader, if any. */
  #notify(): void {
    const mode = this.#waitMode;
    if (mode === WAIT_NONE) return;
    const resolve = this.#waitResolve!;
    const reject = this.#waitReject;
    this.#waitMode = WAIT_NONE;
    this.#waitResolve = null;
    this.#waitReject = null;
    if (mode === WAIT_CALLBACK) {
      resolve(undefined);
    } else if (this.#buffered() > 0) {
      const chunk = this.#takeChunk();
      resolve(mode === WAIT_READ ? chunk : { value: chunk, done: false });
    } else if (this.#error !== null) {
      reject!(this.#error);
    } else {
      resolve(mode === WAIT_READ ? null : { value: undefined, done: true });
    }
  }

  #buffered(): number {
    return this.#inbound === null ? 0 : this.#inbound.length;
  }

  #queue(): ByteQueue {
    if (this.#inbound === null) this.#inbound = new ByteQueue(defaultPool);
    return this.#inbound;
  }

  #takeChunk(): Buffer {
    const chunk = this.#inbound!.shift()!;
    this.#afterConsume();
    return chunk;
  }

  #afterConsume(): void {
    if (this.#buffered() === 0) {
      // The handler caught up: from here on, silence is the peer's.
      if (this.#lastReadAt !== 0) this.#lastReadAt = deadlines.now();
      this.#frameStartAt = 0;
    }
    if (this.#paused && this.#buffered() < this.#host.options.maxReadBuffer && !this.#draining) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  /** @internal socket 'data' */
  _onData(chunk: Buffer): void {
    if (this.#lingering) return;
    const first = this.#lastReadAt === 0;
    this.#lastReadAt = deadlines.now();
    // The first byte swaps firstByteTimeout for idleTimeout, which may be sooner or the only deadline.
    if (first) this.#arm();
    const mode = this.#waitMode;
    if ((mode === WAIT_READ || mode === WAIT_ITERATE) && this.#buffered() === 0) {
      // Hot path: a reader is parked on an empty queue; hand the chunk over without queueing it.
      const resolve = this.#waitResolve!;
      this.#waitMode = WAIT_NONE;
      this.#waitResolve = null;
      this.#waitReject = null;
      resolve(mode === WAIT_READ ? chunk : { value: chunk, done: false });
      return;
    }
    this.#queue().push(chunk);
    if (mode !== WAIT_NONE) this.#notify();
    else if (!this.#paused && this.#buffered() >= this.#host.options.maxReadBuffer) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  /** @internal socket 'end' */
  _onEnd(): void {
    this.#eof = true;
    this.#notify();
  }

  // ---- writing -------------------------------------------------------------------------------

  /**
   * Queues `data` for the peer. When it resolves the caller may reuse its buffer: a buffer under
   * 4 KiB is copied and the write resolves at once while fewer than `maxWriteBuffer` bytes are
   * queued, else once the queue drains below it; a larger buffer is sent without a copy and its
   * write resolves once the kernel has taken it. Rejects with `ERR_WRITE_TIMEOUT` if the peer
   * does not take the data in time, `ERR_CONNECTION_CLOSED` if the connection closed, and
   * destroys the connection with `ERR_SLOW_CONSUMER` if more than `maxQueuedBytes` pile up.
   * Writes are held until the handler next waits for input or settles (at the latest, to the end of
   * the event-loop iteration), so everything written in answer to one read leaves in one syscall.
   */
  write(data: WriteData): Promise<void> {
    const failed = this.#writeState();
    if (failed !== null) return handled(Promise.reject(failed));
    this.#enqueue(data);
    return this.#settleWrite();
  }

  /** What a write() or writeFrame() returns once its bytes are queued. */
  #settleWrite(): Promise<void> {
    if (this.#error !== null) return handled(Promise.reject(this.#error));
    if (this.#handOff) {
      this.#handOff = false;
      this._flush();
      if (this.#error !== null) return handled(Promise.reject(this.#error));
      return this.#socket.writableLength === 0 ? RESOLVED : this.#drained();
    }
    if (this.#pendingBytes + this.#socket.writableLength < this.#host.options.maxWriteBuffer) return RESOLVED;
    return this.#drained();
  }

  /** Encodes `item` with `encoder` and writes its chunks as one write (see `write`). */
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
      if (this.#error === null) {
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

  /** What encoders push to (created on the first writeFrame). */
  #sink: FrameSink | null = null;

  #writeState(): Error | null {
    if (this.#error !== null) return this.#error;
    if (this.#ended || this.#closed) return new ConnectionClosedError('write after end');
    return null;
  }

  #enqueue(data: WriteData): void {
    if (this.#error !== null || this.#ended) return;
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
    // A write issued below maxWriteBuffer respects backpressure, however large: only piling on
    // top of a full buffer makes a slow consumer.
    if (queued > this.#host.options.maxQueuedBytes && queued - len >= this.#host.options.maxWriteBuffer) {
      const err = new SlowConsumerError(queued, this.#host.options.maxQueuedBytes);
      this.#host.onSlowConsumer(this, err);
      this.#fail(err);
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

  /** @internal hands the queued writes to the socket in one write (or one writev). */
  _flush(): void {
    this.#scheduled = false;
    const first = this.#first;
    if (first === null || this.#error !== null || this.#closed) return;
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
      flushed = true;
      flushed = flushed && socket.writableLength === 0;
    }
    if (!flushed) {
      if (this.#writeBlockedSince === 0) {
        this.#writeBlockedSince = deadlines.now();
        if (this.#writeTimeout > 0) this.#armAt(this.#writeBlockedSince + this.#writeTimeout);
      }
    } else if (this.#writeWaiters !== null) {
      this.#resolveWriters();
    }
  }

  /** @internal socket 'drain': every queued byte reached the kernel. */
  _onDrain(): void {
    this.#writeBlockedSince = 0;
    if (this.#writeWaiters !== null && this.queuedBytes < this.#host.options.maxWriteBuffer) this.#resolveWriters();
    if (this.#lingering) this.#outputFlushed();
  }

  /** While lingering, all output is out: the linger period runs from now, and the server may free the slot. */
  #outputFlushed(): void {
    if (this.queuedBytes > 0 || this.#closed) return;
    const until = deadlines.now() + this.#host.options.lingerTimeout;
    if (until < this.#lingerUntil) {
      this.#lingerUntil = until;
      deadlines.schedule(this, until);
    }
    this.#host.onOutputFlushed(this);
  }

  #resolveWriters(): void {
    const waiters = this.#writeWaiters;
    this.#writeWaiters = null;
    if (waiters === null) return;
    for (const w of waiters) w.resolve();
  }

  /** Flushes queued writes and sends FIN. Reading may go on (half-close). Resolves once flushed. */
  end(data?: WriteData): Promise<void> {
    if (this.#endPromise !== null) return this.#endPromise;
    if (this.#error !== null) return handled(Promise.reject(this.#error));
    if (this.#closed) return handled(Promise.reject(new ConnectionClosedError()));
    if (data !== undefined) this.#enqueue(data);
    this.#ended = true;
    this.#handOff = false;
    this._flush();
    this.#endPromise = handled(
      new Promise<void>((resolve, reject) => {
        this.#socket.end((err?: Error | null) => {
          // Destroyed before the flush finished (a deadline, a reset): the data did not all leave.
          if (this.#error === null && err)
            this.#error = new ConnectionClosedError(`connection closed: ${err.message}`, err);
          if (this.#error !== null) {
            this.#rejectWriters(this.#error);
            return reject(this.#error);
          }
          // Everything is out ('drain' is not emitted once a socket is ending).
          this.#writeBlockedSince = 0;
          this.#resolveWriters();
          resolve();
          if (this.#lingering) this.#outputFlushed();
        });
      }),
    );
    return this.#endPromise;
  }

  /**
   * Closes gracefully, as when the handler returns: flushes, sends FIN, then reads and discards
   * input until the peer's FIN or `lingerTimeout`, so the peer never sees a reset for data it sent.
   * Resolves when the socket is closed.
   */
  close(): Promise<void> {
    if (!this.#closing && !this.#closed) {
      this.#closing = true;
      if (this.#error !== null) this.#socket.destroy();
      else {
        this.end().catch(() => {});
        this.#linger();
      }
    }
    return this._closed();
  }

  /** Destroys the socket at once (no flush). With `error`, pending operations reject with it. */
  destroy(error?: Error): void {
    if (this.#closed) return;
    this.#fail(error ?? new ConnectionClosedError('connection destroyed'));
  }

  /** Changes this connection's timeouts (milliseconds, 0 = no limit); unspecified ones stay. */
  setTimeouts(timeouts: ConnTimeouts): void {
    validateTimeouts(timeouts);
    if (timeouts.firstByteTimeout !== undefined) this.#firstByteTimeout = timeouts.firstByteTimeout;
    if (timeouts.idleTimeout !== undefined) this.#idleTimeout = timeouts.idleTimeout;
    if (timeouts.frameTimeout !== undefined) this.#frameTimeout = timeouts.frameTimeout;
    if (timeouts.writeTimeout !== undefined) this.#writeTimeout = timeouts.writeTimeout;
    if (timeouts.maxLifetime !== undefined) this.#maxLifetime = timeouts.maxLifetime;
    if (!this.#closed && !this.#lingering) this.#arm();
  }

  #linger(): void {
    if (this.#lingering || this.#closed) return;
    this.#lingering = true;
    this.#notify();
    this.#inbound?.clear();
    const linger = this.#host.options.lingerTimeout;
    if (this.#eof) {
      // The peer already sent FIN: once ours is flushed the socket closes by itself.
    } else if (linger === 0) {
      this.#socket.destroySoon();
    }
    if (this.#paused || this.#draining) {
      this.#paused = false;
      this.#socket.resume();
    }
    // Lingering starts once our data is out: allow the write timeout for what is still queued.
    const flushTime = this.queuedBytes > 0 ? this.#writeTimeout || 30_000 : 0;
    this.#lingerUntil = deadlines.now() + Math.max(linger, flushTime);
    deadlines.schedule(this, this.#lingerUntil);
  }

  // ---- lifecycle (called by the server) ------------------------------------------------------

  /** @internal the server is draining: deliver what was received, then end reads. */
  _drain(reason: Error): void {
    if (this.#draining || this.#closed) return;
    this.#draining = true;
    this.#abortWith(reason);
    if (!this.#lingering) {
      // Pull anything the stream buffered while we were paused, then stop reading.
      const socket = this.#socket;
      while (socket.readableLength > 0 && socket.read() !== null) {}
      this.#paused = true;
      socket.pause();
    }
    this.#notify();
  }

  /** @internal the handler settled without throwing. */
  _handlerDone(): void {
    if (this.#closed) return;
    if (this.#error !== null) {
      this.#socket.destroy();
      return;
    }
    this.close().catch(() => {});
  }

  /**
   * @internal the handler threw. What it wrote before throwing is still flushed (a `write()` that
   * resolved was a promise to send), then FIN and a lingering close, so an error reply such as a
   * protocol error reaches the peer; a connection that already failed (timeout, reset) is destroyed.
   */
  _handlerFailed(error: Error): void {
    if (this.#closed) return;
    if (this.#error !== null) {
      this.#socket.destroy();
      return;
    }
    this.#abortWith(error);
    this.close().catch(() => {});
  }

  /** @internal waits for the socket to close. */
  // Waiting for the close is separate from starting it: a waiter (the server at shutdown) must not
  // keep a later close() from doing its work.
  _closed(): Promise<void> {
    if (this.#closed) return RESOLVED;
    if (this.#closePromise === null) {
      this.#closePromise = new Promise((resolve) => {
        this.#closeResolve = resolve;
      });
    }
    return this.#closePromise;
  }

  #fail(error: Error): void {
    if (this.#error === null) this.#error = error;
    this.#abortWith(error);
    deadlines.cancel(this);
    this.#first = null;
    this.#rest = null;
    this.#pendingBytes = 0;
    this.#socket.destroy();
    this.#notify();
    this.#rejectWriters(this.#error);
  }

  #rejectWriters(error: Error): void {
    const waiters = this.#writeWaiters;
    this.#writeWaiters = null;
    if (waiters === null) return;
    for (const w of waiters) w.reject(error);
  }

  #abortWith(reason: Error): void {
    if (this.#abortReason !== null) return;
    this.#abortReason = reason;
    this.#abort?.abort(reason);
  }

  /** @internal socket 'error' (a reset, EPIPE, ...). */
  _onError(err: Error): void {
    if (this.#error === null) this.#error = new ConnectionClosedError(`connection closed: ${err.message}`, err);
  }

  /** @internal socket 'close' */
  _onClose(): void {
    this.#closed = true;
    deadlines.cancel(this);
    if (this.#error === null && !this.#eof && !this.#lingering && !this.#draining) {
      // Closed without FIN or error (destroyed locally): pending reads see the closure.
      this.#error = new ConnectionClosedError();
    }
    // Errors capture a stack trace, a real cost per connection: make them only for an observer.
    if (this.#error !== null) this.#abortWith(this.#error);
    else if (this.#abort !== null) this.#abortWith(new ConnectionClosedError());
    this.#notify();
    if (this.#writeWaiters !== null) this.#rejectWriters(this.#error ?? new ConnectionClosedError());
    this.#closeResolve?.();
    this.#host.onSocketClosed(this);
  }

  // ---- deadlines -----------------------------------------------------------------------------

  /** Files the wheel entry no later than the earliest deadline now in force. */
  #arm(): void {
    const at = this.#nextDeadline();
    if (at === Number.POSITIVE_INFINITY) deadlines.cancel(this);
    else deadlines.schedule(this, at);
  }

  /** Makes sure the entry fires no later than `at`. */
  #armAt(at: number): void {
    if (this.tick === -1 || this.tick * deadlines.resolution > at) deadlines.schedule(this, at);
  }

  /** The earliest deadline in force that lies after `after` (default: any), or +Infinity. */
  #nextDeadline(after = Number.NEGATIVE_INFINITY): number {
    if (this.#lingering) return this.#lingerUntil;
    let at = Number.POSITIVE_INFINITY;
    const consider = (t: number): void => {
      if (t > after && t < at) at = t;
    };
    if (this.#maxLifetime > 0) consider(this.#startedAt + this.#maxLifetime);
    if (this.#writeTimeout > 0 && this.#writeBlockedSince > 0) consider(this.#writeBlockedSince + this.#writeTimeout);
    if (this.#lastReadAt === 0) {
      if (this.#firstByteTimeout > 0) consider(this.#startedAt + this.#firstByteTimeout);
    } else if (this.#idleTimeout > 0) {
      consider(this.#lastReadAt + this.#idleTimeout);
    }
    if (this.#frameTimeout > 0 && this.#frameStartAt > 0) consider(this.#frameStartAt + this.#frameTimeout);
    return at;
  }

  /** @internal DeadlineEntry: check which deadline, if any, has really passed. */
  onDeadline(now: number): void {
    if (this.#closed) return;
    if (this.#lingering) {
      if (now >= this.#lingerUntil) this.#socket.destroy();
      else deadlines.schedule(this, this.#lingerUntil);
      return;
    }
    let error: TimeoutError | null = null;
    if (this.#maxLifetime > 0 && now >= this.#startedAt + this.#maxLifetime) {
      error = new LifetimeExceededError(this.#maxLifetime);
    } else if (
      this.#writeTimeout > 0 &&
      this.#writeBlockedSince > 0 &&
      now >= this.#writeBlockedSince + this.#writeTimeout &&
      this.#socket.writableLength > 0
    ) {
      error = new WriteTimeoutError(this.#writeTimeout);
    } else if (this.#lastReadAt === 0) {
      if (this.#firstByteTimeout > 0 && now >= this.#startedAt + this.#firstByteTimeout && !this.#eof) {
        error = new FirstByteTimeoutError(this.#firstByteTimeout);
      }
    } else if (
      this.#idleTimeout > 0 &&
      now >= this.#lastReadAt + this.#idleTimeout &&
      // Only while the handler waits for input (a handler busy, or pushing output without reading, is
      // not waiting on the peer); unread input is the handler's delay unless it waits for the rest of a frame.
      this.#waitMode !== WAIT_NONE &&
      (this.#buffered() === 0 || this.#waitMode === WAIT_CALLBACK) &&
      this.#writeBlockedSince === 0 &&
      !this.#eof &&
      !this.#draining
    ) {
      error = new IdleTimeoutError(this.#idleTimeout);
    }
    // Only while the handler waits for the frame's missing bytes: complete frames queued behind a busy handler are not late.
    if (error === null && this.#frameTimeout > 0 && this.#frameStartAt > 0 && this.#waitMode === WAIT_CALLBACK) {
      if (now >= this.#frameStartAt + this.#frameTimeout) error = new FrameTimeoutError(this.#frameTimeout);
    }
    if (error !== null) {
      this.#host.onTimeout(this, error);
      this.#fail(error);
      return;
    }
    // The next deadline still ahead; one that passed but was excused (the handler holds unread input or is
    // busy, the peer half-closed) is checked again one idle period later, never past a later deadline.
    let at = this.#nextDeadline(now);
    if (this.#nextDeadline() <= now) at = Math.min(at, now + Math.max(this.#idleTimeout, deadlines.resolution));
    if (at !== Number.POSITIVE_INFINITY) deadlines.schedule(this, at);
  }
}

class ChunkIterator implements AsyncIterator<Buffer> {
  #conn: Conn;
  constructor(conn: Conn) {
    this.#conn = conn;
  }
  next(): Promise<IteratorResult<Buffer>> {
    return this.#conn._nextChunk();
  }
}

class FrameIterator<T> implements AsyncIterableIterator<T> {
  #conn: Conn;
  #decoder: Decoder<T>;
  #done = false;

  constructor(conn: Conn, decoder: Decoder<T>) {
    this.#conn = conn;
    this.#decoder = decoder;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    try {
      const r = this.#conn._decode(this.#decoder);
      if (r !== undefined) {
        if (r.done) this.#done = true;
        return Promise.resolve(r);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const step = (): void => {
        try {
          const r = this.#conn._decode(this.#decoder);
          if (r === undefined) this.#conn._waitForData(step);
          else {
            if (r.done) this.#done = true;
            resolve(r);
          }
        } catch (err) {
          reject(err);
        }
      };
      this.#conn._waitForData(step);
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.#done = true;
    return Promise.resolve({ value: undefined, done: true });
  }
}

function onData(this: SocketWithConn, chunk: Buffer): void {
  this[kConn]._onData(chunk);
}

// Reads into one shared buffer. Node reuses a caller's read buffer (`onread`) only for sockets it
// connects, not for accepted ones; the same mechanism can be switched on for an accepted socket
// through the handle's `useUserBuffer` and the socket's `kBuffer`/`kBufferCb` slots (present on
// Node 20, 22 and 24). Reads then skip the Readable stream (no push, no 'data' event), no 64 KiB
// buffer is allocated and shrunk per read, and pause/resume become readStop/readStart. One buffer
// serves every socket because a read callback runs to completion before the next read: the bytes
// are copied out into an exact-size chunk before it returns. If any piece is missing, the socket
// keeps the ordinary 'data' path.
const SHARED_READ_BUFFER_SIZE = 64 * 1024;
let sharedReadBuffer: Buffer | null = null;
let kBuffer: symbol | null | undefined;
let kBufferCb: symbol | null = null;

type HandleWithUserBuffer = { useUserBuffer?: (buf: Uint8Array) => void };

function useSharedReadBuffer(socket: Socket): boolean {
  if (kBuffer === undefined) {
    kBuffer = null;
    if (process.env.TCPKIT_READ_PATH !== 'stream') {
      const symbols = Object.getOwnPropertySymbols(socket);
      const b = symbols.find((sym) => sym.description === 'kBuffer');
      const cb = symbols.find((sym) => sym.description === 'kBufferCb');
      if (b !== undefined && cb !== undefined) {
        kBuffer = b;
        kBufferCb = cb;
        sharedReadBuffer = Buffer.allocUnsafeSlow(SHARED_READ_BUFFER_SIZE);
      }
    }
  }
  const handle = (socket as unknown as { _handle: HandleWithUserBuffer | null })._handle;
  if (kBuffer === null || typeof handle?.useUserBuffer !== 'function') return false;
  const slots = socket as unknown as Record<symbol, unknown>;
  if (slots[kBuffer] !== null || slots[kBufferCb!] !== null) return false;
  handle.useUserBuffer(sharedReadBuffer!);
  slots[kBuffer] = sharedReadBuffer;
  slots[kBufferCb!] = onSharedRead;
  return true;
}

function onSharedRead(this: SocketWithConn, nread: number, buf: Buffer): void {
  const chunk = Buffer.allocUnsafe(nread);
  buf.copy(chunk, 0, 0, nread);
  this[kConn]._onData(chunk);
}
function onEnd(this: SocketWithConn): void {
  this[kConn]._onEnd();
}
function onError(this: SocketWithConn, err: Error): void {
  this[kConn]._onError(err);
}
function onDrain(this: SocketWithConn): void {
  this[kConn]._onDrain();
}
function onClose(this: SocketWithConn): void {
  this[kConn]._onClose();
}

/** `::ffff:1.2.3.4` -> `1.2.3.4`, so IPv4 peers look the same on dual-stack listeners. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
