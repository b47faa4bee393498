/**
 * The read path of a connection: input queued until the handler pulls it (`read`, `readExactly`,
 * `frames`, `for await`), one parked reader at a time, flow control against `maxReadBuffer`, and the
 * end of input (the peer's FIN, or the server draining).
 */
import type { Socket } from 'node:net';
import { defaultPool } from './buffer-pool.js';
import { ByteQueue } from './byte-queue.js';
import type { ConnCore } from './conn-core.js';
import { type HandlerState, WAIT_CALLBACK, WAIT_ITERATE, WAIT_NONE, WAIT_READ } from './conn-deadlines.js';
import type { ChunkLender } from './conn-iterators.js';
import { CLOSED, LINGERING } from './conn-state.js';
import { deadlines } from './deadlines.js';
import { FrameInvalidError, ReadPendingError } from './errors.js';
import type { Decoder } from './framing/types.js';
import { copyOut } from './shared-read-buffer.js';

/** The reader whose promise is being made (see ConnReader#parked), and how it waits. */
let parking: ConnReader | null = null;
let parkingMode = WAIT_NONE;

/** decodeNext's answers other than a frame (decoders never return undefined as a frame, so these cannot be one). */
export const NEED_MORE: unique symbol = Symbol('need more input');
export const END: unique symbol = Symbol('end of input');

/** Why input ended, as bits: both may hold (a FIN that arrives while draining). */
const EOF = 1;
const DRAINING = 2;

const DONE: IteratorResult<never> = Object.freeze({ value: undefined, done: true }) as IteratorResult<never>;

export class ConnReader implements HandlerState, AsyncIterableIterator<Buffer> {
  /** The connection; also its timers (ConnCore extends ConnTimers). */
  #core: ConnCore;
  #socket: Socket;
  #maxReadBuffer: number;
  /** Input received and not yet read; created on first use (an idle connection needs none). */
  #inbound: ByteQueue | null = null;
  /**
   * The parked reader, stored as its resolve function and a mode rather than a closure, so the
   * per-message read path allocates only its promise. Not its reject function: a parked connection
   * would hold it (56 bytes) for the rare failure, which settles the promise through resolve instead.
   */
  waitMode = WAIT_NONE;
  #waitResolve: ((v: unknown) => void) | null = null;
  /** The lending iterator parked here (mode WAIT_ITERATE): the next read is copied into a lent buffer (onRead). */
  #lender: ChunkLender | null = null;
  #paused = false;
  #inputEnd = 0;

  constructor(core: ConnCore, socket: Socket, maxReadBuffer: number) {
    this.#core = core;
    this.#socket = socket;
    this.#maxReadBuffer = maxReadBuffer;
  }

  /** The peer sent FIN. */
  get eof(): boolean {
    return (this.#inputEnd & EOF) !== 0;
  }

  /** The server drains: reads end at the input already received. */
  get draining(): boolean {
    return (this.#inputEnd & DRAINING) !== 0;
  }

  /** Input received and not yet read. */
  get buffered(): number {
    return this.#inbound === null ? 0 : this.#inbound.length;
  }

  /** Output handed to the socket waits for the kernel (HandlerState, for the deadline policy). */
  get writePending(): boolean {
    return this.#core.writer?.waitsForKernel ?? this.#socket.writableLength > 0;
  }

  /** No input will arrive beyond what is buffered: FIN, drain, or the socket closed. */
  #inputOver(): boolean {
    return this.#inputEnd !== 0 || this.#core.phase === CLOSED;
  }

  read(): Promise<Buffer | null> {
    if (this.buffered > 0) return Promise.resolve(this.#takeChunk());
    const error = this.#core.error;
    if (error !== null) return Promise.reject(error);
    if (this.#inputOver()) return Promise.resolve(null);
    return this.#parked(WAIT_READ) as Promise<Buffer | null>;
  }

  /**
   * A promise for the parked reader. Its executor is one function for every connection (it runs
   * synchronously, so the reader and mode can wait in module slots): a parked read allocates only
   * the promise and its resolving functions, no closure.
   */
  #parked(mode: number): Promise<unknown> {
    parking = this;
    parkingMode = mode;
    return new Promise(ConnReader.#parkExecutor);
  }

  static #parkExecutor = (resolve: (v: never) => void): void => {
    const reader = parking!;
    parking = null;
    reader.#park(parkingMode, resolve);
  };

  async readExactly(n: number): Promise<Buffer> {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`readExactly: n must be a non-negative integer, got ${n}`);
    while (this.buffered < n) {
      if (this.#core.error !== null) throw this.#core.error;
      if (this.#inputOver()) {
        throw new FrameInvalidError(`truncated: stream ended after ${this.buffered} of ${n} bytes`);
      }
      await new Promise<void>((resolve) => this.waitForData(resolve as () => void));
    }
    const out = this.#inbound!.take(n);
    this.#afterConsume();
    return out;
  }

  /**
   * The next chunk as an iterator step: `for await (const chunk of conn)` iterates the reader itself
   * (conn.ts), so a connection holds no iterator object of its own while it waits.
   */
  next(): Promise<IteratorResult<Buffer>> {
    if (this.buffered > 0) return Promise.resolve({ value: this.#takeChunk(), done: false });
    const error = this.#core.error;
    if (error !== null) return Promise.reject(error);
    if (this.#inputOver()) return Promise.resolve({ value: undefined, done: true });
    return this.#parked(WAIT_ITERATE) as Promise<IteratorResult<Buffer>>;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    return this;
  }

  /**
   * A step of `lender` (conn.chunks({ reuse: true })): as next(), but parked, the next read is copied
   * straight into a lent buffer (see onRead). Input already queued is delivered as it is (its own memory).
   */
  nextLent(lender: ChunkLender): Promise<IteratorResult<Buffer>> {
    if (this.waitMode !== WAIT_NONE) return Promise.reject(new ReadPendingError());
    if (this.buffered > 0) return Promise.resolve({ value: this.#takeChunk(), done: false });
    const error = this.#core.error;
    if (error !== null) return Promise.reject(error);
    if (this.#inputOver()) return Promise.resolve(DONE);
    const promise = this.#parked(WAIT_ITERATE) as Promise<IteratorResult<Buffer>>;
    this.#lender = lender;
    return promise;
  }

  /** `lender` ends while parked here (its return()): its pending step ends the iteration. */
  unpark(lender: ChunkLender): void {
    if (this.#lender !== lender) return;
    this.#unparked()(DONE);
  }

  /**
   * One step of frame decoding for the frame iterators: the next frame, or NEED_MORE when it must
   * wait for input, or END at end of input. Returns the frame itself (no result object), so a
   * batch of frames costs no allocation per frame beyond what the decoder makes.
   */
  decodeNext<T>(decoder: Decoder<T>): T | typeof NEED_MORE | typeof END {
    const q = this.#queue();
    const t = this.#core;
    if (q.length > 0) {
      const frame = decoder.decode(q);
      if (frame !== undefined) {
        t.frameStartAt = 0;
        this.#afterConsume();
        if (q.length > 0 && t.frameTimeout > 0) {
          // The next frame has begun already.
          t.frameStartAt = deadlines.now();
          this.#core.armAt(t.frameStartAt + t.frameTimeout);
        }
        return frame;
      }
    }
    if (this.#core.error !== null) throw this.#core.error;
    if (this.draining || this.#core.phase === CLOSED) return END;
    if (this.eof) {
      if (q.length === 0) return END;
      const last = decoder.decodeEnd?.(q);
      if (last !== undefined) return last;
      if (q.length === 0) return END;
      throw new FrameInvalidError(`truncated frame: stream ended with ${q.length} bytes of an incomplete frame`);
    }
    if (q.length > 0 && t.frameTimeout > 0) {
      // Also when the frame began while the handler was busy: its deadline may be due already.
      if (t.frameStartAt === 0) t.frameStartAt = deadlines.now();
      this.#core.armAt(t.frameStartAt + t.frameTimeout);
    }
    return NEED_MORE;
  }

  /** Parks a callback run when input, end of stream or an error arrives. */
  waitForData(wake: () => void): void {
    this.#park(WAIT_CALLBACK, wake);
  }

  #park(mode: number, resolve: (v: never) => void): void {
    this.waitMode = mode;
    this.#waitResolve = resolve as (v: unknown) => void;
    this.#core.flushWrites(); // the handler waits for input: what it wrote leaves now
    // The idle clock runs while the handler waits for input: from now, or from the last byte. (Only
    // with an idle timeout in force: without one the reading is never used, and a clock read is a
    // call into the runtime per message; ConnTimers#set restarts the clock when one is set later.)
    const t = this.#core;
    if (t.lastReadAt !== 0 && t.idleTimeout > 0) t.lastReadAt = deadlines.now();
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  /** Takes the parked reader off (the caller settles it): its resolve function. */
  #unparked(): (v: unknown) => void {
    const resolve = this.#waitResolve!;
    this.waitMode = WAIT_NONE;
    this.#waitResolve = null;
    this.#lender = null;
    return resolve;
  }

  /** Hands what arrived (input, end of stream, error) to the parked reader, if any. */
  notify(): void {
    const mode = this.waitMode;
    if (mode === WAIT_NONE) return;
    const resolve = this.#unparked();
    if (mode === WAIT_CALLBACK) {
      resolve(undefined);
    } else if (this.buffered > 0) {
      const chunk = this.#takeChunk();
      resolve(mode === WAIT_READ ? chunk : { value: chunk, done: false });
    } else if (this.#core.error !== null) {
      // A promise resolved with a rejected one rejects with its reason (a microtask later).
      resolve(Promise.reject(this.#core.error));
    } else {
      resolve(mode === WAIT_READ ? null : { value: undefined, done: true });
    }
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
    if (this.buffered === 0) {
      // The handler caught up: from here on, silence is the peer's.
      const t = this.#core;
      if (t.lastReadAt !== 0 && t.idleTimeout > 0) t.lastReadAt = deadlines.now();
      this.#core.frameStartAt = 0;
    }
    if (this.#paused && this.buffered < this.#maxReadBuffer && !this.draining) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  /**
   * A read into the shared read buffer: its first `n` bytes of `source`, valid only during the call.
   * A lending iterator parked on an empty queue gets them copied into a lent buffer; anything else
   * gets them copied into a chunk of their own (copyOut), as from the socket's 'data'.
   */
  onRead(source: Buffer, n: number): void {
    if (this.#core.phase === LINGERING) return;
    const lender = this.#lender;
    if (lender === null || this.buffered !== 0) {
      this.onData(copyOut(source, n));
      return;
    }
    this.#arrived();
    this.#unparked()(lender.lend(source, n));
  }

  /** Input arrived: the clocks it restarts. */
  #arrived(): void {
    const t = this.#core;
    const first = t.lastReadAt === 0;
    // The first byte's time is kept whatever the timeouts; later ones matter only to an idle timeout.
    if (first || t.idleTimeout > 0) t.lastReadAt = deadlines.now();
    // The first byte swaps firstByteTimeout for idleTimeout, which may be sooner or the only deadline.
    if (first) this.#core.onFirstInput();
  }

  /** A chunk from the socket (the 'data' event, or a read copied out of the shared read buffer). */
  onData(chunk: Buffer): void {
    if (this.#core.phase === LINGERING) return;
    this.#arrived();
    const mode = this.waitMode;
    if ((mode === WAIT_READ || mode === WAIT_ITERATE) && this.buffered === 0) {
      // Hot path: a reader is parked on an empty queue; hand the chunk over without queueing it.
      this.#unparked()(mode === WAIT_READ ? chunk : { value: chunk, done: false });
      return;
    }
    this.#queue().push(chunk);
    if (mode !== WAIT_NONE) this.notify();
    else if (!this.#paused && this.buffered >= this.#maxReadBuffer) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  /** The peer's FIN. */
  onEnd(): void {
    this.#inputEnd |= EOF;
    this.notify();
  }

  /** The server drains: deliver what was received, then end reads. Returns false if already draining. */
  drain(): boolean {
    if (this.draining) return false;
    this.#inputEnd |= DRAINING;
    if (this.#core.phase !== LINGERING) {
      // Pull anything the stream buffered while we were paused, then stop reading.
      const socket = this.#socket;
      while (socket.readableLength > 0 && socket.read() !== null) {}
      this.#paused = true;
      socket.pause();
    }
    this.notify();
    return true;
  }

  /** The handler is done: settle the parked reader, drop unread input, and read on (to discard) until FIN. */
  linger(): void {
    this.notify();
    this.#inbound?.clear();
    if (this.#paused || this.draining) {
      this.#paused = false;
      this.#socket.resume();
    }
  }
}
