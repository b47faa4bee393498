/**
 * Accepted plain TCP connections as bare libuv handles, without a `net.Socket`: tcpkit's third hook
 * into Node internals (after shared-read-buffer.ts for reads and handle-writer.ts for writes).
 *
 * A `net.Socket` is a Duplex stream: two stream states, an event emitter, a dozen closures and a
 * cached address object, about 2.5 KiB of an idle connection and most of the CPU of an accept and a
 * close. tcpkit keeps its own queues above the socket and already reads into a shared buffer and
 * writes to the handle, so of the socket it uses only the handle and a few events. With the bare
 * path the listener's `onconnection` (which net.Server sets on its listening handle, and cluster on
 * its round-robin one) is replaced, so each accepted connection arrives as the `TCP` handle itself and
 * is wrapped in a {@link BareSocket}: the part of `net.Socket` that tcpkit uses, driven straight from
 * the handle (`onread` into a shared buffer, `shutdown`, `close`, `getpeername` when asked).
 *
 * Detected once per process: the bare path needs handle writes (handle-writer.ts), the stream binding's
 * read state and a listening handle with `onconnection`. Where a piece is missing, or
 * `TCPKIT_ACCEPT_PATH=socket` (or `TCPKIT_READ_PATH=stream`, whose reads are the stream's) is set, the
 * listener keeps making `net.Socket`s. TLS and unix sockets always take sockets (the PROXY stage reads
 * its header through the bare handle's 'data' events).
 */
import type { Server as NetServer, Socket } from 'node:net';
import { handleWriteBinding } from './handle-writer.js';
import { copyOut, type ReadSink, sharedReadBuffer, waiterReadBuffer } from './shared-read-buffer.js';
import { systemError, UV_ENOTCONN } from './system-error.js';

/** A listener of one of the events tcpkit listens to; `this` is the socket, as with an EventEmitter. */
type Listener = (this: BareSocket, arg?: unknown) => void;
type Listeners = Listener | Listener[] | null;

interface ShutdownReq {
  oncomplete: (this: ShutdownReq, status: number) => void;
  socket: BareSocket | null;
}

interface StreamBinding {
  ShutdownWrap: new () => ShutdownReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
}

/** The `TCP` handle of an accepted connection, as much of it as the bare path uses. */
interface TcpHandle {
  onread: (this: TcpHandle) => void;
  [kBare]?: BareSocket;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
  shutdown(req: ShutdownReq): number;
  close(callback: (this: TcpHandle) => void): void;
  getpeername(out: { address?: string; port?: number }): number;
  getsockname(out: { address?: string; port?: number }): number;
  setNoDelay(on: boolean): number;
  setKeepAlive(on: boolean, delaySeconds: number): number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

const kBare = Symbol('tcpkit.bare');
const UV_EOF = -4095;

/** The state bits of a BareSocket (one small integer rather than a field each). */
const READING = 1;
const PAUSED = 2;
const EOF = 4;
const ENDING = 8;
const FINISHED = 16;
const DESTROY_WHEN_FINISHED = 32;
const SMALL_READS = 64;
const DESTROYED = 128;
const SINK_READS = 256;

/** Where the reads of sockets switched to sinkReads go (one function for the whole process, as in shared-read-buffer.ts). */
let readSink: ReadSink | null = null;

/** undefined: not probed yet; null: the bare path is not available in this process. */
let binding: StreamBinding | null | undefined;
/** The binding's shared state array and the slot where a read reports its byte count (read per read). */
let streamState: Int32Array | null = null;
let kReadBytesOrError = 0;

function probe(): void {
  binding = null;
  const env = process.env;
  if (env.TCPKIT_ACCEPT_PATH === 'socket' || env.TCPKIT_READ_PATH === 'stream') return;
  // Null also under --pending-deprecation, where reaching the binding would print a warning.
  const b = handleWriteBinding() as Partial<StreamBinding> | null;
  if (b === null || typeof b.ShutdownWrap !== 'function' || typeof b.kReadBytesOrError !== 'number') return;
  binding = b as StreamBinding;
  streamState = binding.streamBaseState;
  kReadBytesOrError = binding.kReadBytesOrError;
}

/** How accepted handles are set up, from the server's options (net.Server would do it for its sockets). */
export interface BareAcceptOptions {
  noDelay: boolean;
  /** TCP keep-alive probes on; `keepAliveDelay` is the idle time before the first, in ms (0: the system's). */
  keepAlive: boolean;
  keepAliveDelay: number;
}

/**
 * Makes `listener` (listening) hand each accepted plain TCP connection to `onSocket` as a
 * {@link BareSocket} (typed as the `Socket` whose part it implements) instead of emitting
 * 'connection' with a `net.Socket`; accept errors go to `onError`, as the listener's 'error' would
 * carry them. Returns false, changing nothing, where the bare path is unavailable.
 */
export function acceptBareHandles(
  listener: NetServer,
  options: BareAcceptOptions,
  onSocket: (socket: Socket) => void,
  onError: (error: Error) => void,
): boolean {
  if (binding === undefined) probe();
  if (binding === null) return false;
  type OnConnection = (this: unknown, status: number, handle?: TcpHandle) => void;
  const listening = (listener as unknown as { _handle: { onconnection?: OnConnection } | null })._handle;
  const original = listening?.onconnection;
  if (listening == null || typeof original !== 'function') return false;
  const delay = Math.floor(options.keepAliveDelay / 1000);
  listening.onconnection = function (this: unknown, status, handle): void {
    if (status !== 0 || handle === undefined) {
      onError(systemError(status, 'accept'));
    } else if (!isUsable(handle)) {
      // Not the handle this module knows (another runtime): net.Server's own accept from here on.
      listening.onconnection = original;
      original.call(this, status, handle);
    } else {
      if (options.noDelay) handle.setNoDelay(true);
      if (options.keepAlive) handle.setKeepAlive(true, delay);
      onSocket(new BareSocket(handle) as unknown as Socket);
    }
  };
  return true;
}

function isUsable(handle: Partial<TcpHandle>): handle is TcpHandle {
  return (
    typeof handle.readStart === 'function' &&
    typeof handle.useUserBuffer === 'function' &&
    typeof handle.shutdown === 'function' &&
    typeof handle.getpeername === 'function'
  );
}

function onBareRead(this: TcpHandle): void {
  const socket = this[kBare]!;
  const n = streamState![kReadBytesOrError]!;
  if (n > 0) socket._read(n);
  else if (n === UV_EOF) socket._eof();
  else if (n < 0) socket.destroy(systemError(n, 'read'));
}

function onBareClose(this: TcpHandle): void {
  this[kBare]!._closed();
}

function onBareShutdown(this: ShutdownReq): void {
  const socket = this.socket!;
  this.socket = null;
  socket._finished();
}

function emit(listeners: Listeners, socket: BareSocket, arg?: unknown): void {
  if (listeners === null) return;
  if (typeof listeners === 'function') listeners.call(socket, arg);
  else for (const l of listeners.slice()) l.call(socket, arg);
}

function add(listeners: Listeners, l: Listener): Listeners {
  if (listeners === null) return l;
  return typeof listeners === 'function' ? [listeners, l] : [...listeners, l];
}

function remove(listeners: Listeners, l: Listener): Listeners {
  if (listeners === l) return null;
  if (listeners === null || typeof listeners === 'function') return listeners;
  const rest = listeners.filter((x) => x !== l && (x as { listener?: Listener }).listener !== l);
  return rest.length === 0 ? null : rest.length === 1 ? rest[0]! : rest;
}

/**
 * One accepted TCP connection on its bare handle: the part of `net.Socket` that tcpkit's connection,
 * gate and writers use (its events 'data', 'end', 'error', 'close', one listener list each; pause and
 * resume; end, destroySoon and destroy; the byte counts and addresses), with the semantics tcpkit's
 * listener gives its sockets: paused at accept, half-open allowed, closed once both directions ended.
 * Output never passes through it: handle-writer.ts writes to `_handle`.
 */
export class BareSocket {
  /** The TCP handle; null once closing (handle-writer.ts reads it). */
  _handle: TcpHandle | null;
  #state = PAUSED;
  #data: Listeners = null;
  #end: Listeners = null;
  #error: Listeners = null;
  #close: Listeners = null;
  /** The callbacks of end(): called once the FIN is sent, or with an error if the socket closed first. */
  #ended: ((error?: Error | null) => void)[] | null = null;
  /** The counts, kept when the handle closes. */
  #bytesRead = 0;
  #bytesWritten = 0;
  #remoteAddress: string | undefined = undefined;
  #remotePort: number | undefined = undefined;

  constructor(handle: TcpHandle) {
    this._handle = handle;
    handle[kBare] = this;
    handle.onread = onBareRead;
    handle.useUserBuffer(sharedReadBuffer());
  }

  // ---- what net.Socket has ----------------------------------------------------------------------

  /** A bit of the state rather than a field of its own: an idle connection holds 8 bytes less. */
  get destroyed(): boolean {
    return (this.#state & DESTROYED) !== 0;
  }

  get remoteAddress(): string | undefined {
    if (this.#remoteAddress === undefined) this.#peer();
    return this.#remoteAddress;
  }

  get remotePort(): number | undefined {
    if (this.#remotePort === undefined) this.#peer();
    return this.#remotePort;
  }

  get localAddress(): string | undefined {
    const out: { address?: string; port?: number } = {};
    return this._handle?.getsockname(out) === 0 ? out.address : undefined;
  }

  get bytesRead(): number {
    return this._handle === null ? this.#bytesRead : this._handle.bytesRead;
  }

  get bytesWritten(): number {
    return this._handle === null ? this.#bytesWritten : this._handle.bytesWritten;
  }

  /** Output never waits here (it goes to the handle), nor input (it is delivered as read). */
  get writableLength(): number {
    return 0;
  }
  get readableLength(): number {
    return 0;
  }
  read(): null {
    return null;
  }

  on(event: string, listener: Listener): this {
    if (event === 'data') this.#data = add(this.#data, listener);
    else if (event === 'end') this.#end = add(this.#end, listener);
    else if (event === 'error') this.#error = add(this.#error, listener);
    else if (event === 'close') this.#close = add(this.#close, listener);
    // 'drain' is never emitted: handle-writer.ts reports its own completions.
    return this;
  }

  once(event: string, listener: Listener): this {
    const once = function (this: BareSocket, arg?: unknown): void {
      this.off(event, once);
      listener.call(this, arg);
    };
    (once as { listener?: Listener }).listener = listener;
    return this.on(event, once);
  }

  off(event: string, listener: Listener): this {
    if (event === 'data') this.#data = remove(this.#data, listener);
    else if (event === 'end') this.#end = remove(this.#end, listener);
    else if (event === 'error') this.#error = remove(this.#error, listener);
    else if (event === 'close') this.#close = remove(this.#close, listener);
    return this;
  }

  pause(): this {
    this.#state |= PAUSED;
    if (this.#state & READING) {
      this.#state &= ~READING;
      this._handle?.readStop();
    }
    return this;
  }

  resume(): this {
    this.#state &= ~PAUSED;
    if (!(this.#state & (READING | EOF)) && this._handle !== null) {
      this.#state |= READING;
      const err = this._handle.readStart();
      if (err !== 0) this.destroy(systemError(err, 'read'));
    }
    return this;
  }

  /**
   * Reads of at most WAITER_READ_SIZE bytes (`small`, while the connection waits at the cap, so its
   * unread input is bounded as on the socket path), or into the shared 64 KiB buffer again (both shared-read-buffer.ts).
   */
  smallReads(small: boolean): void {
    if (this._handle === null || small === ((this.#state & SMALL_READS) !== 0)) return;
    this.#state ^= SMALL_READS;
    this._handle.useUserBuffer(small ? waiterReadBuffer() : sharedReadBuffer());
  }

  /**
   * Hands each read to `onRead` as the read buffer's bytes, not copied (the sink copies them; one
   * function for every socket), instead of emitting 'data' with a copy: an admitted connection's
   * reader may copy a read straight into a lent buffer (lent-buffers.ts).
   */
  sinkReads(onRead: ReadSink): void {
    readSink = onRead;
    this.#state |= SINK_READS;
  }

  /** Sends FIN once the writes on the handle are out; `callback` then (or with an error if it closes first). */
  end(callback?: (error?: Error | null) => void): this {
    if (callback !== undefined) {
      if (this.#state & FINISHED) queueMicrotask(() => callback(null));
      else if (this.destroyed) queueMicrotask(() => callback(closedError()));
      else if (this.#ended === null) this.#ended = [callback];
      else this.#ended.push(callback);
    }
    if (this.#state & ENDING || this.destroyed) return this;
    this.#state |= ENDING;
    const req = new binding!.ShutdownWrap();
    req.oncomplete = onBareShutdown;
    req.socket = this;
    const err = this._handle!.shutdown(req);
    // Done at once (1), or nothing to shut down: the callbacks still run later, as a net.Socket's would.
    if (err === 1 || err === UV_ENOTCONN) queueMicrotask(() => this._finished());
    else if (err !== 0) this.destroy(systemError(err, 'shutdown'));
    return this;
  }

  /** Ends, then closes once the FIN is sent. */
  destroySoon(): void {
    if (this.#state & FINISHED) {
      this.destroy();
      return;
    }
    this.#state |= DESTROY_WHEN_FINISHED;
    this.end();
  }

  /** Closes the handle (writes in flight are cancelled); 'error' first with `error`, then 'close'. */
  destroy(error?: Error): this {
    if (this.destroyed) return this;
    this.#state |= DESTROYED;
    const handle = this._handle!;
    this.#bytesRead = handle.bytesRead;
    this.#bytesWritten = handle.bytesWritten;
    this.#state &= ~READING;
    this._handle = null;
    handle.close(onBareClose);
    if (error !== undefined) emit(this.#error, this, error);
    return this;
  }

  // ---- driven by the handle ---------------------------------------------------------------------

  /** @internal `n` bytes were read into the handle's buffer. */
  _read(n: number): void {
    if (this.destroyed) return;
    const source = this.#state & SMALL_READS ? waiterReadBuffer() : sharedReadBuffer();
    if (this.#state & SINK_READS) readSink!(this as unknown as Socket, source, n);
    else emit(this.#data, this, copyOut(source, n));
  }

  /** @internal The peer's FIN: 'end', and the close if our FIN is out too (half-open until then). */
  _eof(): void {
    if (this.destroyed) return;
    this.#state = (this.#state | EOF) & ~READING;
    emit(this.#end, this);
    if (this.#state & FINISHED) this.destroy();
  }

  /** @internal Our FIN is sent. */
  _finished(): void {
    if (this.destroyed) return;
    this.#state |= FINISHED;
    const ended = this.#ended;
    this.#ended = null;
    if (ended !== null) for (const cb of ended) cb(null);
    if (this.#state & (EOF | DESTROY_WHEN_FINISHED)) this.destroy();
  }

  /** @internal The handle closed. */
  _closed(): void {
    const ended = this.#ended;
    this.#ended = null;
    if (ended !== null) for (const cb of ended) cb(closedError());
    emit(this.#close, this);
  }

  #peer(): void {
    const out: { address?: string; port?: number } = {};
    if (this._handle === null || this._handle.getpeername(out) !== 0) return;
    this.#remoteAddress = out.address;
    this.#remotePort = out.port;
  }
}

function closedError(): Error {
  return Object.assign(new Error('socket closed before its FIN was sent'), { code: 'ERR_STREAM_DESTROYED' });
}
