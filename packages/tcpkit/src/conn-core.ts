/**
 * `ConnCore`: the internal state behind one `Conn` (conn.ts), which the server drives: the lifecycle
 * (phases in conn-state.ts), failure, the lingering close, socket events and the connection's wheel
 * entry. The read path is in conn-reader.ts, the write path in conn-writer.ts (and handle-writer.ts), the deadline policy in
 * conn-deadlines.ts, the read-buffer hook in shared-read-buffer.ts.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { BareSocket } from './bare-socket.js';
import { type Conn, newConn } from './conn.js';
import { ConnTimers, expiredTimeout, nextDeadline, recheckAt } from './conn-deadlines.js';
import { ConnReader } from './conn-reader.js';
import { CLOSED, LINGERING, OPEN, type Phase } from './conn-state.js';
import { ConnWriter } from './conn-writer.js';
import { type DeadlineEntry, deadlines } from './deadlines.js';
import { ConnectionClosedError, type SlowConsumerError, type TimeoutError } from './errors.js';
import type { Lease } from './gate.js';
import { type ConnTimeouts, type ResolvedOptions, validateTimeouts } from './options.js';
import type { ConnOrigin } from './proxy-stage.js';
import { useSharedReadBuffer } from './shared-read-buffer.js';
import { hiddenReset } from './tls.js';

/** What a connection needs from its server. */
export interface ConnHost {
  readonly options: ResolvedOptions;
  /**
   * The local end of every socket the listener accepts, known once it listens: a TCP listener bound to
   * one address gives each accepted socket that address and its port (so no getsockname per connection);
   * `address` is null for a wildcard listener (0.0.0.0, ::), where each socket is asked. A unix socket: '' and 0.
   */
  readonly local: { address: string | null; port: number };
  onTimeout(core: ConnCore, error: TimeoutError): void;
  onSlowConsumer(core: ConnCore, error: SlowConsumerError): void;
  /** A finished connection's queued output has all reached the kernel. */
  onOutputFlushed(core: ConnCore): void;
  onSocketClosed(core: ConnCore): void;
  /** The handler settled: returned (`threw` false) or threw `error`. */
  onHandlerEnded(core: ConnCore, threw: boolean, error: unknown): void;
}

const RESOLVED = Promise.resolve();
/** How long a drain waits for a just-admitted connection's first input, in ms (see ConnCore#drain). */
const NEW_CONNECTION_GRACE = 1_000;

/**
 * With `writeTimeout: 0` (no limit), the longest a closing connection's queued output may take to reach
 * a peer that does not read before the lingering close gives up and destroys the socket: a close must end.
 */
export const LINGER_FLUSH_LIMIT = 30_000;

const kCore = Symbol('tcpkit.conn');

/**
 * What few connections need: a `signal` someone looked at, a failure's reason, a drain that waits for
 * the first input, a close someone awaits. Made on first use, so an idle connection holds none of it.
 */
class RareState {
  abort: AbortController | null = null;
  /** Why `signal` aborts (once it is made); set once. */
  abortReason: Error | null = null;
  /** A drain waiting for this new connection's first input (see ConnCore#drain). */
  drainDeferred: Error | null = null;
  closePromise: Promise<void> | null = null;
  closeResolve: (() => void) | null = null;
}
type SocketWithCore = Socket & { [kCore]: ConnCore };

/**
 * The state behind one accepted connection; the server holds it, the handler gets `conn`. Its timers
 * (conn-deadlines.ts) are its own fields, inherited (one object less per connection).
 */
export class ConnCore extends ConnTimers implements DeadlineEntry {
  readonly conn: Conn;
  readonly socket: Socket;
  readonly host: ConnHost;
  readonly reader: ConnReader;
  /** Created on the first write. */
  writer: ConnWriter | null = null;
  phase: Phase = OPEN;
  /** Why the connection failed (timeout, reset, slow consumer); pending and later operations reject with it. */
  error: Error | null = null;
  /** DeadlineEntry slot and links. */
  tick = -1;
  wheelPrev: DeadlineEntry | null = null;
  wheelNext: DeadlineEntry | null = null;
  /**
   * Its shares of the server's limits (slot, per-peer count, descriptor, as gate.ts's bits), handed
   * over from its Lease at admission and given back by the server through Gate#give.
   */
  shares: number;
  /** Settles when the handler has settled (set by the server). */
  handlerSettled: Promise<void> = RESOLVED;

  #rare: RareState | null = null;
  #lingerUntil = 0;

  /**
   * `lease`: what the gate admitted it under (its shares move to the connection); `origin`: the
   * addresses and first bytes a PROXY header gave, if any.
   */
  constructor(socket: Socket, host: ConnHost, lease: Lease, origin?: ConnOrigin) {
    super(host.options, deadlines.now());
    this.socket = socket;
    this.shares = lease.handOver();
    this.host = host;
    this.reader = new ConnReader(this, socket, host.options.maxReadBuffer);
    this.conn = newConn(this, lease.peer, origin);
    (socket as SocketWithCore)[kCore] = this;
    // A TLS socket's stream may hold input decrypted with the handshake (sent with the client's Finished):
    // it comes first. Then its handle reads decrypted bytes into the shared buffer, as a TCP handle does.
    if (socket instanceof TLSSocket && socket.readableLength > 0) {
      for (let c = socket.read(); c !== null; c = socket.read()) this.reader.onData(c);
    }
    // A bare handle reads into the shared buffer itself (bare-socket.ts) and hands each read to the reader.
    if (socket instanceof BareSocket) {
      socket.smallReads(false);
      socket.sinkReads(onRead);
    } else if (!useSharedReadBuffer(socket, onRead)) socket.on('data', onData);
    socket.on('end', socket instanceof TLSSocket ? onTlsEnd : onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('drain', onDrain);
    this.arm();
    if (origin?.initial) this.reader.onData(origin.initial);
    socket.resume();
  }

  /** The connection's timeouts and clock readings: its own fields (see the class). */
  get timers(): ConnTimers {
    return this;
  }

  /** The server's options (read through the host: one field less per connection). */
  get options(): ResolvedOptions {
    return this.host.options;
  }

  get signal(): AbortSignal {
    const rare = this.#rareState();
    if (rare.abort === null) {
      rare.abort = new AbortController();
      // A connection that closed cleanly gets its reason made only when someone looks (see onClose).
      if (rare.abortReason === null && this.phase === CLOSED) rare.abortReason = new ConnectionClosedError();
      if (rare.abortReason !== null) rare.abort.abort(rare.abortReason);
    }
    return rare.abort.signal;
  }

  #rareState(): RareState {
    if (this.#rare === null) this.#rare = new RareState();
    return this.#rare;
  }

  getWriter(): ConnWriter {
    if (this.writer === null) this.writer = ConnWriter.acquire(this, this.socket);
    return this.writer;
  }

  /**
   * The handler waits for input: what it wrote leaves now, and a writer left with nothing to do goes
   * back to the spares (conn-writer.ts), so a parked connection holds none.
   */
  flushWrites(): void {
    const writer = this.writer;
    if (writer === null) return;
    writer.flushIfScheduled();
    if (this.error === null && writer.release()) this.writer = null;
  }

  get queuedBytes(): number {
    return this.writer === null ? this.socket.writableLength : this.writer.queuedBytes;
  }

  close(): Promise<void> {
    this.#close();
    return this.closed();
  }

  /** The close itself, without the promise of its end (which the handler's own end does not need). */
  #close(): void {
    if (this.phase < LINGERING) {
      if (this.error !== null) this.socket.destroy();
      else {
        void this.getWriter().end();
        this.#linger();
      }
    }
  }

  destroy(error?: Error): void {
    if (this.phase === CLOSED) return;
    this.#fail(error ?? new ConnectionClosedError('connection destroyed'));
  }

  setTimeouts(timeouts: ConnTimeouts): void {
    validateTimeouts(timeouts);
    this.timers.set(timeouts);
    if (this.phase < LINGERING) this.arm();
  }

  /** Waits for the socket to close (without starting the close: a waiter must not keep close() from its work). */
  closed(): Promise<void> {
    if (this.phase === CLOSED) return RESOLVED;
    const rare = this.#rareState();
    if (rare.closePromise === null) {
      rare.closePromise = new Promise((resolve) => {
        rare.closeResolve = resolve;
      });
    }
    return rare.closePromise;
  }

  #linger(): void {
    if (this.phase >= LINGERING) return;
    this.phase = LINGERING;
    this.reader.linger();
    const linger = this.options.lingerTimeout;
    // The peer already sent FIN: once ours is flushed the socket closes by itself.
    if (!this.reader.eof && linger === 0) this.socket.destroySoon();
    // Lingering starts once our data is out: allow the write timeout for what is still queued.
    const flushTime = this.queuedBytes > 0 ? this.timers.writeTimeout || LINGER_FLUSH_LIMIT : 0;
    this.#lingerUntil = deadlines.now() + Math.max(linger, flushTime);
    deadlines.schedule(this, this.#lingerUntil);
  }

  /** While lingering, all output is out: the linger period runs from now, and the server may free the slot. */
  outputFlushed(): void {
    if (this.queuedBytes > 0 || this.phase === CLOSED) return;
    const until = deadlines.now() + this.options.lingerTimeout;
    if (until < this.#lingerUntil) {
      this.#lingerUntil = until;
      deadlines.schedule(this, until);
    }
    this.host.onOutputFlushed(this);
  }

  // ---- driven by the server --------------------------------------------------------------------

  /**
   * The server is draining: deliver what was received, then end reads. A connection that has
   * received nothing yet and was admitted less than NEW_CONNECTION_GRACE ago may have its first
   * message in flight (the client connected an instant before the drain): as Go's
   * `http.Server.Shutdown` does for a new connection, its drain waits for that first input (then
   * applies at once: the input is delivered, later reads end) or the end of the grace.
   */
  drain(reason: Error): void {
    if (this.phase === CLOSED || this.reader.draining || this.#drainPending()) return;
    const grace = this.timers.startedAt + NEW_CONNECTION_GRACE - deadlines.now();
    if (this.timers.lastReadAt === 0 && grace > 0) {
      this.#rareState().drainDeferred = reason;
      setTimeout(() => this.#drainNow(), grace).unref();
      return;
    }
    this.#endReads(reason);
  }

  /** The first byte arrived (the reader has taken it): a drain that waited for it applies now. */
  onFirstInput(): void {
    this.arm();
    // After the chunk reached the reader or its queue: the handler gets it, then its reads end.
    if (this.#drainPending()) queueMicrotask(() => this.#drainNow());
  }

  #drainPending(): boolean {
    return this.#rare !== null && this.#rare.drainDeferred !== null;
  }

  /** The deferred drain, at the connection's first input or the end of its grace. */
  #drainNow(): void {
    const rare = this.#rare;
    const reason = rare === null ? null : rare.drainDeferred;
    if (reason === null) return;
    rare!.drainDeferred = null;
    if (this.phase !== CLOSED) this.#endReads(reason);
  }

  /** What the drain does: reads end after the input received, and `conn.signal` aborts. */
  #endReads(reason: Error): void {
    this.reader.drain();
    this.#abortWith(reason);
  }

  /**
   * The handler settled; `error` is what it threw, if it threw. What it wrote is still flushed (a
   * `write()` that resolved was a promise to send), then FIN and a lingering close, so an error reply
   * such as a protocol error reaches the peer; a connection that already failed (timeout, reset) is
   * destroyed.
   */
  handlerEnded(error?: Error): void {
    if (this.phase === CLOSED) return;
    if (this.error !== null) {
      this.socket.destroy();
      return;
    }
    if (error !== undefined) this.#abortWith(error);
    this.#close();
  }

  // ---- failure ---------------------------------------------------------------------------------

  #fail(error: Error): void {
    if (this.error === null) this.error = error;
    this.#abortWith(error);
    deadlines.cancel(this);
    this.writer?.discard();
    this.socket.destroy();
    this.reader.notify();
    this.writer?.rejectWriters(this.error);
  }

  /** The writer found more than `maxQueuedBytes` piled up. */
  slowConsumer(error: SlowConsumerError): void {
    this.host.onSlowConsumer(this, error);
    this.#fail(error);
  }

  #abortWith(reason: Error): void {
    const rare = this.#rareState();
    if (rare.abortReason !== null) return;
    rare.abortReason = reason;
    rare.abort?.abort(reason);
  }

  // ---- socket events ---------------------------------------------------------------------------

  onError(err: Error): void {
    if (this.error === null) this.error = new ConnectionClosedError(`connection closed: ${err.message}`, err);
  }

  onDrain(): void {
    this.writer?.onDrain();
    if (this.phase === LINGERING) this.outputFlushed();
  }

  onClose(): void {
    const wasLingering = this.phase === LINGERING;
    this.phase = CLOSED;
    deadlines.cancel(this);
    if (this.error === null && !this.reader.eof && !wasLingering && !this.reader.draining) {
      // Closed without FIN or error (destroyed locally): pending reads see the closure.
      this.error = new ConnectionClosedError();
    }
    // Errors capture a stack trace, a real cost per connection: make them only for an observer.
    if (this.error !== null) this.#abortWith(this.error);
    else if (this.#rare !== null && this.#rare.abort !== null) this.#abortWith(new ConnectionClosedError());
    this.reader.notify();
    // Only for writes still waiting: an error per closed connection would be a stack trace per close.
    if (this.writer?.hasWaiters) this.writer.rejectWriters(this.error ?? new ConnectionClosedError());
    this.#rare?.closeResolve?.();
    this.host.onSocketClosed(this);
  }

  // ---- deadlines -------------------------------------------------------------------------------

  /** Files the wheel entry at the earliest deadline now in force (or takes it off the wheel). */
  arm(): void {
    const at = nextDeadline(this.timers);
    if (at === Number.POSITIVE_INFINITY) deadlines.cancel(this);
    else deadlines.schedule(this, at);
  }

  /** Makes sure the entry fires no later than `at`. */
  armAt(at: number): void {
    if (this.tick === -1 || this.tick * deadlines.resolution > at) deadlines.schedule(this, at);
  }

  /** DeadlineEntry: check which deadline, if any, has really passed. */
  onDeadline(now: number): void {
    if (this.phase === CLOSED) return;
    const t = this.timers;
    if (this.phase === LINGERING) {
      // Output still on its way to a peer that reads, slowly but steadily: the flush may go on.
      if (now >= this.#lingerUntil && this.queuedBytes > 0 && this.writer?.progressed()) {
        this.#lingerUntil = now + (t.writeTimeout || LINGER_FLUSH_LIMIT);
      }
      if (now >= this.#lingerUntil) this.socket.destroy();
      else deadlines.schedule(this, this.#lingerUntil);
      return;
    }
    // writeTimeout runs from the last time the kernel took output, not from when output began to wait.
    if (t.writeTimeout > 0 && t.writeBlockedSince > 0 && now >= t.writeBlockedSince + t.writeTimeout) {
      if (this.writer?.progressed()) t.writeBlockedSince = now;
    }
    const error = expiredTimeout(t, now, this.reader);
    if (error !== null) {
      this.host.onTimeout(this, error);
      this.#fail(error);
      return;
    }
    const at = recheckAt(t, now, deadlines.resolution);
    if (at !== Number.POSITIVE_INFINITY) deadlines.schedule(this, at);
  }
}

function onRead(socket: Socket, source: Buffer, n: number): void {
  (socket as SocketWithCore)[kCore].reader.onRead(source, n);
}
function onData(this: SocketWithCore, chunk: Buffer): void {
  this[kCore].reader.onData(chunk);
}
function onEnd(this: SocketWithCore): void {
  this[kCore].reader.onEnd();
}
/** A TLS socket's end of input may be a reset Node's TLS layer hid (see hiddenReset): then it fails as one. */
function onTlsEnd(this: SocketWithCore & TLSSocket): void {
  const reset = hiddenReset(this);
  if (reset === null) this[kCore].reader.onEnd();
  else this.destroy(reset);
}
function onError(this: SocketWithCore, err: Error): void {
  this[kCore].onError(err);
}
function onDrain(this: SocketWithCore): void {
  this[kCore].onDrain();
}
function onClose(this: SocketWithCore): void {
  this[kCore].onClose();
}
