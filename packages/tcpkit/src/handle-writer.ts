/**
 * Writes of plain TCP sockets straight to their libuv handle: tcpkit's second hook into Node internals
 * (the first is shared-read-buffer.ts, for reads).
 *
 * `net.Socket#write` runs every write through `stream.Writable` (its state machine, a callback per
 * write, a `process.nextTick` after it, a 'drain' event when the high-water mark was reached) and then
 * makes a `WriteWrap` request for the handle. tcpkit keeps its own queue above the socket, so it
 * writes to the handle as Node's `lib/internal/stream_base_commons.js` does (`writeBuffer`, `writev`,
 * `writeUtf8String` with a `WriteWrap`): libuv first tries the write synchronously and queues only what
 * the kernel did not take; only then is the request in flight, and its `oncomplete` reports when the
 * rest reached the kernel. A write the kernel took at once never touches the request, so one spare
 * request serves every synchronous write in the process.
 *
 * Feature detection runs once, on the first socket. If any piece is missing (another Node version,
 * or `TCPKIT_WRITE_PATH=stream` in the environment), `useHandleWrites` returns null and the writer
 * keeps writing through the socket's stream: the fallback is the stream, never an error. A TLS
 * socket's handle (Node's TLSWrap) takes the same writes and encrypts them; every one of them completes
 * asynchronously, a turn of the event loop later, even when the kernel took the ciphertext at once.
 */
import type { Socket } from 'node:net';
import { releaseAll } from './buffer-pool.js';
import type { WriteData } from './conn.js';
import { systemError } from './system-error.js';

/** What a handle write reports back to the writer that made it. */
export interface HandleWriteSink {
  /** The socket written to (asked per write, so a writer handed to another connection needs no rebinding). */
  readonly socket: Socket;
  /** The last write in flight completed: everything handed out reached the kernel. */
  onHandleDrained(): void;
  /** A write failed (EPIPE, ECONNRESET...): the connection is over. */
  onHandleError(error: Error): void;
}

/** A `WriteWrap` as Node's stream_base_commons.js fills it in, plus what tcpkit keeps on it. */
interface WriteReq {
  oncomplete: (this: WriteReq, status: number) => void;
  /** The writer of the write in flight. */
  writer: HandleWriter | null;
  /** Keeps the buffers of a write in flight alive until libuv is done with them (libuv holds no reference). */
  chunks: WriteData | WriteData[] | null;
  /** Pooled buffers to give back once the write completed. */
  pooled: Buffer[] | null;
}

interface StreamHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  writeUtf8String(req: WriteReq, data: string): number;
  writev(req: WriteReq, chunks: WriteData[] | (WriteData | string)[], allBuffers: boolean): number;
  readonly writeQueueSize: number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/** undefined: not probed yet; null: not available on this Node. */
let binding: StreamWrapBinding | null | undefined;
/** The binding's shared state array and the slot saying whether the last write went asynchronous (read per write). */
let streamState: Int32Array | null = null;
let kLastWriteWasAsync = 0;
/**
 * The request the next write uses (made by the first write that finds none): untouched by every write
 * the kernel took synchronously, so it stays here until a write goes asynchronous with it.
 */
let spare: WriteReq | null = null;
/**
 * A TLS handle completes a write inside the call when the TCP handle below it refuses the ciphertext
 * at once (EPIPE, ECONNRESET: the peer's reset is in). Its request is not bound to a writer yet (that
 * happens once the call returns): `inCallStatus` keeps the status for #dispatched, which settles the
 * write then.
 */
let inCallStatus: number | null = null;
/** An option of Node's command line or NODE_OPTIONS that switches pending deprecations on. */
function isPendingDeprecationFlag(arg: string): boolean {
  // Node takes `_` for `-` in option names: `--pending_deprecation` is the same option.
  return arg.replaceAll('_', '-') === '--pending-deprecation';
}

/** Node runs with --pending-deprecation: process.binding() would print a deprecation warning. */
function pendingDeprecation(): boolean {
  return (
    process.execArgv.some(isPendingDeprecationFlag) ||
    (process.env.NODE_OPTIONS ?? '').split(/\s+/).some(isPendingDeprecationFlag) ||
    process.env.NODE_PENDING_DEPRECATION === '1'
  );
}

function probe(): void {
  binding = null;
  if (process.env.TCPKIT_WRITE_PATH === 'stream' || pendingDeprecation()) return;
  try {
    // process.binding() is the one door to these; its deprecation (DEP0111) is documentation-only
    // unless --pending-deprecation is on, where the stream path is taken rather than print a warning.
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (typeof b.WriteWrap !== 'function' || !(b.streamBaseState instanceof Int32Array)) return;
    if (typeof b.kLastWriteWasAsync !== 'number') return;
    binding = b as StreamWrapBinding;
    streamState = binding.streamBaseState;
    kLastWriteWasAsync = binding.kLastWriteWasAsync;
  } catch {
    // No binding on this runtime: the stream path it is.
  }
}

/**
 * The stream binding, where handle writes are available in this process (probed once), else null.
 * The bare accept path (bare-socket.ts) needs them, and reads its other pieces from the same binding.
 */
export function handleWriteBinding(): object | null {
  if (binding === undefined) probe();
  return binding ?? null;
}

/**
 * A writer straight to `socket`'s handle, reporting to `sink`. Returns null where the hook is
 * unavailable: then write through the socket's stream.
 */
export function useHandleWrites(socket: Socket, sink: HandleWriteSink): HandleWriter | null {
  return handleWritable(socket) ? new HandleWriter(sink) : null;
}

/** Whether `socket`'s output can go straight to its handle (see useHandleWrites). */
export function handleWritable(socket: Socket): boolean {
  if (binding === undefined) probe();
  if (binding === null) return false;
  const handle = (socket as unknown as { _handle: Partial<StreamHandle> | null })._handle;
  return (
    handle != null &&
    typeof handle.writeBuffer === 'function' &&
    typeof handle.writev === 'function' &&
    typeof handle.writeUtf8String === 'function'
  );
}

function newReq(): WriteReq {
  const req = new binding!.WriteWrap();
  req.oncomplete = onWriteComplete;
  req.writer = null;
  req.chunks = null;
  req.pooled = null;
  return req;
}

/** A new spare request, for a write that found none. */
function spareReq(): WriteReq {
  spare = newReq();
  return spare;
}

function onWriteComplete(this: WriteReq, status: number): void {
  const writer = this.writer;
  if (writer === null) {
    inCallStatus = status; // inside the write call (see inCallStatus)
    return;
  }
  const pooled = this.pooled;
  this.writer = null;
  this.chunks = null;
  this.pooled = null;
  writer.completed(status, pooled);
}

/** One connection's writes to its handle. */
export class HandleWriter {
  /** Its ConnWriter, which names the socket (a spare's moves to another connection with nothing in flight). */
  readonly #sink: HandleWriteSink;
  /**
   * Writes in flight (the kernel did not take them at once); 0: output handed out has all reached the
   * kernel. A field, not a getter: the writer reads it on every write and flush.
   */
  inFlight = 0;

  constructor(sink: HandleWriteSink) {
    this.#sink = sink;
  }

  /** libuv's count of bytes handed to it and not yet written to the kernel. */
  get pendingBytes(): number {
    if (this.inFlight === 0) return 0;
    const handle = this.#handle();
    return handle === null ? 0 : handle.writeQueueSize;
  }

  /** Writes `data`; `pooled` is given back once the kernel has it. */
  write(data: WriteData, pooled: Buffer[] | null): void {
    const handle = this.#handle();
    if (handle === null) return;
    const req = spare ?? spareReq();
    const err = typeof data === 'string' ? handle.writeUtf8String(req, data) : handle.writeBuffer(req, data);
    // The common case first: the kernel took it all at once, so the request was never bound (it stays the spare).
    if (err === 0 && inCallStatus === null && streamState![kLastWriteWasAsync] === 0) {
      if (pooled !== null) releaseAll(pooled);
      return;
    }
    this.#dispatched(req, err, data, pooled);
  }

  /** Writes `chunks` in one writev; `pooled` is given back once the kernel has them. */
  writev(chunks: WriteData[], pooled: Buffer[] | null): void {
    const handle = this.#handle();
    if (handle === null) return;
    const req = spare ?? spareReq();
    let allBuffers = true;
    for (let i = 0; i < chunks.length; i++) if (typeof chunks[i] === 'string') allBuffers = false;
    let list: (WriteData | string)[] = chunks;
    if (!allBuffers) {
      // Node's writev form for mixed input: chunk, encoding, chunk, encoding...
      list = new Array(chunks.length * 2);
      for (let i = 0; i < chunks.length; i++) {
        list[2 * i] = chunks[i]!;
        list[2 * i + 1] = 'utf8';
      }
    }
    const err = handle.writev(req, list, allBuffers);
    this.#dispatched(req, err, chunks, pooled);
  }

  #handle(): StreamHandle | null {
    return (this.#sink.socket as unknown as { _handle: StreamHandle | null })._handle;
  }

  #dispatched(req: WriteReq, err: number, data: WriteData | WriteData[], pooled: Buffer[] | null): void {
    const status = inCallStatus;
    if (status !== null) {
      // Completed inside the call (see inCallStatus): the request is spent, the next write takes a new one.
      inCallStatus = null;
      spare = null;
      if (err === 0 && status < 0) err = status;
      else if (err === 0) {
        if (pooled !== null) releaseAll(pooled);
        return;
      }
    }
    if (err !== 0) {
      // Failed at once (the peer reset, the socket shut down): the request was never used (it stays the spare).
      this.#sink.onHandleError(systemError(err, 'write'));
      return;
    }
    if (streamState![kLastWriteWasAsync] === 0) {
      // The kernel took it all: the request was never bound, the next write reuses it.
      if (pooled !== null) releaseAll(pooled);
      return;
    }
    spare = null;
    req.writer = this;
    req.chunks = data;
    req.pooled = pooled;
    this.inFlight++;
  }

  /** A write in flight completed (`status` < 0: it failed). */
  completed(status: number, pooled: Buffer[] | null): void {
    this.inFlight--;
    // Destroyed meanwhile (a deadline, a reset, a slow consumer): libuv cancelled the write.
    if (this.#sink.socket.destroyed) return;
    if (status < 0) {
      this.#sink.onHandleError(systemError(status, 'write'));
      return;
    }
    if (pooled !== null) releaseAll(pooled);
    if (this.inFlight === 0) this.#sink.onHandleDrained();
  }
}
