import cluster from 'node:cluster';
import diagnostics_channel from 'node:diagnostics_channel';
import net, { type Socket } from 'node:net';
import { formatAddress } from './address.js';
import type { AdminEndpoint } from './admin.js';
import { type Conn, normalizeAddress } from './conn.js';
import { ConnCore, type ConnHost } from './conn-core.js';
import { CLOSED } from './conn-state.js';
import {
  HandshakeTimeoutError,
  InvalidOptionError,
  type ProxyProtocolError,
  ServerClosingError,
  SlowConsumerError,
  type TimeoutError,
  TlsHandshakeError,
} from './errors.js';
import { Gate, type Lease, UNIX_PEER, type WaitedInput } from './gate.js';
import { attachLogger } from './logging.js';
import { type ResolvedOptions, resolveOptions, type ServeOptions } from './options.js';
import { type ConnOrigin, directOrigin, originOf, type ResolvedProxyProtocol, readProxyHeader } from './proxy-stage.js';
import { resolveTlsOptions, type TlsOptions, TlsTerminator } from './tls.js';
import { claimSocketPath } from './unix-socket.js';
import { WorkerPool } from './workers/primary.js';
import { workerConfig } from './workers/protocol.js';
import type { WorkerStats } from './workers/stats.js';
import { serveInWorker } from './workers/worker.js';

/** A connection handler: the connection's life. When its promise settles the connection is closed. */
export type Handler = (conn: Conn) => Promise<void> | void;

/**
 * Why a connection was turned away; the keys of `stats().rejected`. `abandoned`: its peer reset or
 * closed before its handler could start (while it waited at the cap, see `abortOnClose`, or before the
 * server looked at it); it never ran.
 */
export type RejectReason = 'full' | 'perPeer' | 'blocked' | 'waitTimeout' | 'shutdown' | 'abandoned';

/** Counters of a server, from `server.stats()`. */
export interface ServerStats {
  /** Handlers running now. */
  active: number;
  /** Connections queued at the cap. */
  waiting: number;
  /** Sockets the listener accepted. */
  accepted: number;
  /** Handlers started. */
  served: number;
  /** Connections turned away, by reason. */
  rejected: Record<RejectReason, number>;
  /** Connections ended by a deadline, by deadline. */
  timeouts: { firstByte: number; idle: number; frame: number; write: number; lifetime: number; handshake: number };
  /** TLS handshakes that failed (bad version, unknown CA, not TLS, timed out, ...): closed before any handler ran. */
  tlsErrors: number;
  /** Connections closed for a missing, malformed, late or untrusted PROXY header, before any handler ran. */
  proxyErrors: number;
  /** Connections destroyed for queueing more than `maxQueuedBytes`. */
  slowConsumers: number;
  /** Handlers that ended by throwing, whatever the cause. */
  errors: number;
  /**
   * Connections shed at accept because the process was out of descriptors: tcpkit's own budget (the
   * open-file limit less what was open at listen, less a reserve of 32) and accept errors the listener reported.
   */
  acceptErrors: number;
  /** Connections whose handler ended and whose socket is still open (flushing output, lingering close). */
  lingering: number;
  /** Bytes written by handlers and not yet handed to the kernel, summed over open connections. */
  queuedBytes: number;
  /** Sockets this server holds (running, waiting, lingering) and the most it may hold before shedding at accept (0 = unknown, no budget). */
  descriptors: { open: number; budget: number };
  /** The caps the counts above run against: `maxConnections` and `maxWaiting` as configured. */
  limits: { maxConnections: number; maxWaiting: number };
  bytesRead: number;
  bytesWritten: number;
  /** In a primary with workers: one row per worker process (the counters above are their sums). */
  workers?: WorkerStats[];
}

/** What `shutdown()` resolves to. */
export interface ShutdownResult {
  /** Handlers that finished by themselves while draining. */
  graceful: number;
  /** Handlers destroyed at the deadline. */
  forced: number;
  /** From the start of the shutdown to the last socket closed, including `shutdownDelay`. */
  durationMs: number;
}

/** What `restart()` resolves to: the old workers' drains summed. */
export interface RestartResult {
  /** Workers replaced. */
  restarted: number;
  /** Handlers of the old workers that finished by themselves while draining. */
  graceful: number;
  /** Handlers of the old workers destroyed at the drain deadline. */
  forced: number;
  durationMs: number;
}

/** The address a server listens on. */
export interface ServerAddress {
  address: string;
  family: string;
  port: number;
}

const channels = {
  open: diagnostics_channel.channel('tcpkit:connection:open'),
  close: diagnostics_channel.channel('tcpkit:connection:close'),
  reject: diagnostics_channel.channel('tcpkit:connection:reject'),
  timeout: diagnostics_channel.channel('tcpkit:connection:timeout'),
  error: diagnostics_channel.channel('tcpkit:connection:error'),
  acceptError: diagnostics_channel.channel('tcpkit:server:accept-error'),
  tlsError: diagnostics_channel.channel('tcpkit:tls:error'),
  proxyError: diagnostics_channel.channel('tcpkit:proxy:error'),
};

const TIMEOUT_KEYS = {
  ERR_FIRST_BYTE_TIMEOUT: 'firstByte',
  ERR_IDLE_TIMEOUT: 'idle',
  ERR_FRAME_TIMEOUT: 'frame',
  ERR_WRITE_TIMEOUT: 'write',
  ERR_LIFETIME_EXCEEDED: 'lifetime',
} as const;

function ignore(): void {}

/**
 * A listening tcpkit server, from {@link serve}: one process, or with `workers` the primary that
 * supervises them (its `stats()` sums theirs, its `shutdown()` drains them all).
 */
export interface Server extends AsyncDisposable {
  /** Where the server listens: `{ address, family, port }`, or the unix socket path. */
  readonly address: ServerAddress | string;
  /** Aborts (with `ERR_SERVER_CLOSING`) when shutdown begins; every `conn.signal` follows. */
  readonly signal: AbortSignal;
  /** Resolves once the server has shut down and every socket is closed. */
  readonly closed: Promise<void>;
  /** Where the admin endpoint listens (`serve({ admin })`; in the primary with workers), or undefined without one. */
  readonly adminAddress: ServerAddress | undefined;
  /** A snapshot of the counters (in a primary: the workers' sums, and a row per worker). */
  stats(): ServerStats;
  /**
   * Graceful shutdown: stop listening, reject waiting connections, abort `signal` and every
   * `conn.signal`, let reads end at the input already received, wait up to `timeout` ms
   * (default `drainTimeout`; 0 = no limit) for handlers, then destroy the rest.
   */
  shutdown(options?: { timeout?: number; delay?: number }): Promise<ShutdownResult>;
  /**
   * Rolling restart of the workers, one at a time: a new worker starts with freshly loaded code and
   * listens, then an old one drains (within `drainTimeout`) and exits; no connection is refused or reset.
   * Rejects with `ERR_INVALID_OPTION` on a server without workers, `ERR_WORKER_START` if a new worker
   * cannot start (the running ones keep serving).
   */
  restart(): Promise<RestartResult>;
  /**
   * Replaces the TLS certificate and key (or any other secure-context option of `tls`) for handshakes
   * from now on; connections already established keep theirs.
   * @throws InvalidOptionError if the server was started without `tls` or Node rejects the options; in a
   * primary with workers (each worker holds its own context: `restart()` makes new workers read the files again).
   */
  setSecureContext(options: TlsOptions): void;
}

/** Where a worker's listener listens, set by the worker bootstrap. */
export interface ListenTarget {
  /** A listening socket the primary sent (kernel balance): listen on it instead of binding. */
  handle?: object;
  /** Bind with SO_REUSEPORT (kernel balance). */
  reusePort?: boolean;
  /** Called with the listener once listening. */
  onListening?: (listener: net.Server) => void;
}

/** Constructs and starts a ProcessServer; set in its static block, so the constructor stays private. */
let startServer: (options: ResolvedOptions, handler: Handler, target?: ListenTarget) => Promise<Server>;

/**
 * A shutdown signal repeated sooner than this after the first is the same signal delivered twice, not a
 * request to force: a terminal's Ctrl-C reaches the whole process group, and npm (or pnpm, yarn) forwards
 * it to its child once more, so a server run by `npm start` receives SIGINT twice for one keypress.
 */
export const REPEATED_SIGNAL_MS = 1000;

/** The server of one process. Create it with {@link serve}. */
class ProcessServer implements Server {
  #options: ResolvedOptions;
  /** What its connections call back into (kept off the public type). */
  #connHost: ConnHost;
  #handler: Handler;
  #listener: net.Server;
  #gate: Gate;
  /** Connections whose handler is running. */
  #running = new Set<ConnCore>();
  #abort = new AbortController();
  #shutdown: Promise<ShutdownResult> | null = null;
  #closedResolve!: () => void;
  #forceNow: (() => void) | null = null;
  /** A second shutdown signal arrived: skip what is left of shutdownDelay and of the drain. */
  #forced = false;
  /** Listening and not shutting down: what `/readyz` reports. */
  #ready = false;
  #admin: AdminEndpoint | null = null;
  #detachLogger: () => void = ignore;
  /** When a shutdownOn signal started the shutdown (performance.now()); 0 when something else did. */
  #firstSignalAt = 0;
  #signalHandlers: [NodeJS.Signals, () => void][] = [];
  #removeAbortListener: () => void = ignore;
  #stats = {
    accepted: 0,
    served: 0,
    rejected: { full: 0, perPeer: 0, blocked: 0, waitTimeout: 0, shutdown: 0, abandoned: 0 },
    timeouts: { firstByte: 0, idle: 0, frame: 0, write: 0, lifetime: 0, handshake: 0 },
    tlsErrors: 0,
    proxyErrors: 0,
    slowConsumers: 0,
    errors: 0,
    acceptErrors: 0,
    bytesRead: 0,
    bytesWritten: 0,
  };

  /** Resolves once the server has shut down and every socket is closed. */
  readonly closed: Promise<void>;

  // Made and started by serve() only (see the static block).
  private constructor(options: ResolvedOptions, handler: Handler) {
    this.#options = options;
    this.#handler = handler;
    this.#gate = new Gate(options, {
      admit: (socket, lease, waitMs, waited) => this.#admit(socket, lease, waitMs, waited),
      reject: (socket, peer, reason) => this.#reject(socket, peer, reason),
      shed: (socket) => this.#shed(socket),
    });
    this.#tls = options.tls === undefined ? null : new TlsTerminator(options.tls, options.handshakeTimeout);
    this.#connHost = {
      options,
      onTimeout: (core, error) => this.#onTimeout(core, error),
      onSlowConsumer: (core, error) => this.#onSlowConsumer(core, error),
      onOutputFlushed: (core) => this.#releaseSlot(core),
      onSocketClosed: (core) => this.#onSocketClosed(core),
    };
    this.closed = new Promise((resolve) => {
      this.#closedResolve = resolve;
    });
    const keepAlive = options.keepAlive !== false && options.keepAlive !== 0;
    this.#listener = net.createServer({
      pauseOnConnect: true,
      allowHalfOpen: true,
      // A 1-byte high-water mark on accepted sockets: the writable side then reports exactly when
      // output waits for the kernel ('drain' when it is all out), and a paused readable side holds
      // at most the one chunk already read. tcpkit does its own buffering and backpressure above it.
      highWaterMark: 1,
      noDelay: options.noDelay,
      keepAlive,
      keepAliveInitialDelay: typeof options.keepAlive === 'number' ? options.keepAlive : 0,
    });
    this.#listener.on('connection', (socket: Socket) => this.#onConnection(socket));
  }

  static {
    startServer = async (options, handler, target = {}) => {
      const server = new ProcessServer(options, handler);
      await server.#listen(target);
      return server;
    };
  }

  async #listen(target: ListenTarget): Promise<void> {
    const o = this.#options;
    // In a cluster worker the path is the primary's (shared, and live): only a process of its own claims it.
    if (o.path !== undefined && target.handle === undefined && cluster.isPrimary) await claimSocketPath(o.path);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#listener.once('error', onError);
      const done = (): void => {
        this.#listener.off('error', onError);
        resolve();
      };
      if (target.handle !== undefined) this.#listener.listen(target.handle, o.backlog, done);
      else if (o.path !== undefined) this.#listener.listen({ path: o.path, backlog: o.backlog }, done);
      else {
        // exclusive: a cluster worker binds its own SO_REUSEPORT socket instead of asking the primary.
        const reuse = target.reusePort === true ? { reusePort: true, exclusive: true } : {};
        this.#listener.listen({ port: o.port, host: o.host, backlog: o.backlog, ...reuse }, done);
      }
    });
    target.onListening?.(this.#listener);
    this.#gate.countDescriptors();
    const a = this.#listener.address();
    this.#address =
      a === null ? (o.path ?? '') : typeof a === 'string' ? a : { address: a.address, family: a.family, port: a.port };
    // After listen, errors are accept errors (EMFILE, ENFILE, ...): libuv keeps the listener
    // alive and backs off, so count them and go on serving.
    this.#listener.on('error', (error: Error) => {
      this.#stats.acceptErrors++;
      if (channels.acceptError.hasSubscribers) channels.acceptError.publish({ server: this, error });
    });
    if (o.admin !== undefined) {
      try {
        const { startAdmin } = await import('./admin.js');
        this.#admin = await startAdmin({ server: this, ready: () => this.#ready }, o.admin);
      } catch (error) {
        this.#listener.close();
        throw error;
      }
    }
    for (const sig of o.shutdownOn) {
      const onSignal = (): void => {
        if (this.#shutdown !== null) {
          // A repeat within REPEATED_SIGNAL_MS is the same signal delivered twice (npm start): not a force.
          if (performance.now() - this.#firstSignalAt < REPEATED_SIGNAL_MS) return;
          this.#forced = true;
          this.#forceNow?.();
          return;
        }
        this.#firstSignalAt = performance.now();
        this.shutdown().catch(ignore);
        // The drain is the end of the program: whatever else (a stubborn handler's timer, a client pool)
        // would keep the process alive, it exits once every socket is closed, forced or not. Deferred
        // past the promise reactions, so code awaiting `closed` still runs first (its last log line, say).
        if (o.exitOnShutdown) this.closed.then(() => setImmediate(() => process.exit()));
      };
      process.on(sig, onSignal);
      this.#signalHandlers.push([sig, onSignal]);
    }
    if (o.signal !== undefined) {
      const onAbort = (): void => {
        this.shutdown().catch(ignore);
      };
      o.signal.addEventListener('abort', onAbort, { once: true });
      this.#removeAbortListener = () => o.signal?.removeEventListener('abort', onAbort);
    }
    this.#ready = true;
    // Last, once the signal handlers are in place: whoever reads this line may send SIGTERM at once.
    if (o.logger !== undefined) {
      this.#detachLogger = attachLogger(this, o.logger);
      const admin = this.#admin === null ? {} : { admin: formatAddress(this.#admin.address) };
      o.logger.info({ address: formatAddress(this.#address), ...admin }, 'listening');
    }
  }

  /** Where the server listens: `{ address, family, port }`, or the unix socket path. */
  get address(): ServerAddress | string {
    return this.#address;
  }

  /** Captured once listening, so it still reads after shutdown. */
  #address: ServerAddress | string = '';

  /** Where the admin endpoint listens (`serve({ admin })`), or undefined without one. */
  get adminAddress(): ServerAddress | undefined {
    return this.#admin?.address;
  }

  /** Aborts (with `ERR_SERVER_CLOSING`) when shutdown begins; every `conn.signal` follows. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** A snapshot of the counters. */
  stats(): ServerStats {
    const s = this.#stats;
    let bytesRead = s.bytesRead;
    let bytesWritten = s.bytesWritten;
    let queuedBytes = 0;
    for (const c of this.#unclosed) {
      bytesRead += c.socket.bytesRead;
      bytesWritten += c.socket.bytesWritten;
      queuedBytes += c.queuedBytes;
    }
    return {
      active: this.#running.size,
      waiting: this.#gate.waiting,
      accepted: s.accepted,
      served: s.served,
      rejected: { ...s.rejected },
      timeouts: { ...s.timeouts },
      tlsErrors: s.tlsErrors,
      proxyErrors: s.proxyErrors,
      slowConsumers: s.slowConsumers,
      errors: s.errors,
      acceptErrors: s.acceptErrors,
      lingering: this.#unclosed.size - this.#running.size,
      queuedBytes,
      descriptors: this.#gate.descriptors,
      limits: { maxConnections: this.#options.maxConnections, maxWaiting: this.#options.maxWaiting },
      bytesRead,
      bytesWritten,
    };
  }

  /**
   * Graceful shutdown: turn `/readyz` 503 and go on serving for `delay` ms (default `shutdownDelay`),
   * then stop listening, reject waiting connections, abort `signal` and every `conn.signal`, let reads
   * end at the input already received, wait up to `timeout` ms (default `drainTimeout`; 0 = no limit)
   * for handlers, then destroy the rest. Later calls return the first call's promise.
   */
  shutdown(options: { timeout?: number; delay?: number } = {}): Promise<ShutdownResult> {
    if (this.#shutdown === null) {
      this.#shutdown = this.#doShutdown(
        options.timeout ?? this.#options.drainTimeout,
        options.delay ?? this.#options.shutdownDelay,
      );
    }
    return this.#shutdown;
  }

  /**
   * Replaces the TLS certificate and key (or any other secure-context option of `tls`) for handshakes
   * from now on; connections already established keep theirs. For certificate rotation without a restart.
   * @throws InvalidOptionError if the server was started without `tls` or Node rejects the options.
   */
  setSecureContext(options: TlsOptions): void {
    if (this.#tls === null) throw new InvalidOptionError('tls', 'setSecureContext() needs a server started with tls');
    this.#tls.setSecureContext(resolveTlsOptions(options)!);
  }

  /** Rejects: one process has no workers to restart. */
  restart(): Promise<RestartResult> {
    return Promise.reject(
      new InvalidOptionError('workers', 'restart() replaces worker processes: serve with workers: 2 or more'),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #doShutdown(timeout: number, delay: number): Promise<ShutdownResult> {
    const start = performance.now();
    const log = this.#options.logger;
    this.#ready = false;
    if (delay > 0 && !this.#forced) {
      log?.info({ shutdownDelayMs: delay }, 'shutting down: not ready, still serving for shutdownDelay');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#forceNow = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const reason = new ServerClosingError();
    // Closed before the line goes out: whoever reads "draining" must find the listener refusing.
    this.#listener.close();
    log?.info({ active: this.#running.size, waiting: this.#gate.waiting, drainTimeoutMs: timeout }, 'draining');
    this.#gate.close();
    this.#abort.abort(reason);
    // Connections still before their handler (reading a PROXY header, in a TLS handshake) have sent no request.
    for (const socket of this.#inProxyStage) socket.destroy();
    this.#tls?.abortAll(new TlsHandshakeError('server shut down during the TLS handshake'));
    const draining = [...this.#running];
    for (const c of draining) c.drain(reason);
    const handlersDone = Promise.all(draining.map((c) => c.handlerSettled));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      this.#forceNow = resolve;
      if (this.#forced) resolve();
      else if (timeout > 0) timer = setTimeout(resolve, timeout);
    });
    await Promise.race([handlersDone, deadline]);
    let forced = 0;
    for (const c of draining) {
      if (this.#running.has(c)) {
        forced++;
        c.destroy(new ServerClosingError('server shut down: drain timeout reached'));
      }
    }
    // Lingering closes of finished handlers get what is left of the timeout: one whose output
    // still waits for a peer that does not read would otherwise linger up to writeTimeout.
    const open = [...this.#unclosed];
    const socketsClosed = Promise.all(open.map((c) => c.closed()));
    await Promise.race([socketsClosed, deadline]);
    clearTimeout(timer);
    for (const c of open) c.destroy();
    await socketsClosed;
    for (const [sig, fn] of this.#signalHandlers) process.off(sig, fn);
    this.#removeAbortListener();
    await this.#admin?.close();
    this.#detachLogger();
    const result = { graceful: draining.length - forced, forced, durationMs: Math.round(performance.now() - start) };
    const s = this.#stats;
    log?.info({ ...result, accepted: s.accepted, served: s.served, errors: s.errors }, 'shut down');
    this.#closedResolve();
    return result;
  }

  /** Every connection whose socket is not yet closed: running or lingering (waiting ones are the gate's). */
  #unclosed = new Set<ConnCore>();

  #onConnection(socket: Socket): void {
    this.#stats.accepted++;
    socket.on('error', ignore);
    // A unix-socket peer has no address (''); a TCP socket without one was reset before we looked.
    if (this.#options.path !== undefined) {
      this.#gate.offer(socket, UNIX_PEER);
      return;
    }
    const address = socket.remoteAddress;
    const peer = address === undefined ? undefined : normalizeAddress(address);
    const pp = this.#options.proxyProtocol;
    if (pp === undefined || peer === undefined) this.#gate.offer(socket, peer);
    else this.#proxyStage(socket, peer, pp);
  }

  /** Sockets reading their PROXY header (before the gate). */
  #inProxyStage = new Set<Socket>();
  /** What the PROXY stage learnt of a socket, from its header until its Conn is made. */
  #origins = new WeakMap<Socket, ConnOrigin>();
  #tls: TlsTerminator | null;

  /**
   * The PROXY stage: gate by the socket's own address (a blocked balancer or peer is never read), read
   * the header, then offer the socket to the gate under the client's real address. (Its descriptor
   * joins the gate's budget then: until, it is bounded by proxyProtocol.timeout and trusted peers.)
   */
  #proxyStage(socket: Socket, balancer: string, pp: ResolvedProxyProtocol): void {
    if (this.#options.blockList?.check(balancer, balancer.includes(':') ? 'ipv6' : 'ipv4')) {
      this.#reject(socket, balancer, 'blocked');
      return;
    }
    this.#inProxyStage.add(socket);
    readProxyHeader(socket, pp, balancer, (error, header, rest) => {
      this.#inProxyStage.delete(socket);
      if (this.#abort.signal.aborted) {
        this.#reject(socket, balancer, 'shutdown');
      } else if (error !== null) {
        this.#proxyFailed(socket, balancer, error);
      } else if (header === null) {
        // No header and none required: the bytes read to tell are the stream's first.
        if (rest !== null) this.#origins.set(socket, directOrigin(socket, balancer, rest));
        this.#gate.offer(socket, balancer);
      } else {
        const origin = originOf(socket, balancer, header, rest);
        this.#origins.set(socket, origin);
        this.#gate.offer(socket, origin.remoteAddress);
      }
    });
  }

  #proxyFailed(socket: Socket, balancer: string, error: ProxyProtocolError): void {
    this.#stats.proxyErrors++;
    if (channels.proxyError.hasSubscribers)
      channels.proxyError.publish({ server: this, remoteAddress: balancer, error });
    socket.destroy();
  }

  /** The gate shed a socket at accept: the process is out of descriptors. */
  #shed(socket: Socket): void {
    this.#stats.acceptErrors++;
    if (channels.acceptError.hasSubscribers) {
      const error = Object.assign(new Error('out of file descriptors: connection closed at accept'), {
        code: 'EMFILE',
      });
      channels.acceptError.publish({ server: this, error });
    }
    socket.destroy();
  }

  /** The gate admitted a socket: start its handler (after the TLS handshake, with `tls`). */
  #admit(socket: Socket, lease: Lease, waitMs: number, waited?: WaitedInput): void {
    if (this.#tls === null) this.#start(socket, lease, socket, waitMs, waited);
    else this.#handshake(this.#tls, socket, lease, waitMs, waited);
  }

  #handshake(tls: TlsTerminator, socket: Socket, lease: Lease, waitMs: number, waited?: WaitedInput): void {
    const origin = this.#origins.get(socket);
    // Bytes already read (with the PROXY header, then while waiting in the gate) are the ClientHello's
    // first, in that order: TLS takes them from the socket's buffer, so they go back into it.
    const first = [...(origin?.initial ? [origin.initial] : []), ...(waited?.chunks ?? [])];
    if (origin !== undefined) origin.initial = null;
    for (let i = first.length - 1; i >= 0; i--) socket.unshift(first[i]!);
    tls.handshake(socket, (error, secure) => {
      if (secure !== null) {
        this.#start(secure, lease, socket, waitMs);
        return;
      }
      if (this.#abort.signal.aborted) {
        this.#stats.rejected.shutdown++;
      } else {
        this.#stats.tlsErrors++;
        if (error instanceof HandshakeTimeoutError) this.#stats.timeouts.handshake++;
        if (channels.tlsError.hasSubscribers)
          channels.tlsError.publish({ server: this, remoteAddress: lease.peer, error });
      }
      socket.destroy();
      lease.release();
    });
  }

  /** Starts the handler on `socket`: the accepted one, or the TLS socket over `accepted`. */
  #start(socket: Socket, lease: Lease, accepted: Socket, waitMs: number, waited?: WaitedInput): void {
    if (socket === accepted) socket.off('error', ignore);
    const core = new ConnCore(socket, this.#connHost, lease, this.#origins.get(accepted));
    if (waited !== undefined) {
      // What it sent while it waited comes first, as if it had just arrived.
      for (const chunk of waited.chunks) core.reader.onData(chunk);
      if (waited.ended) core.reader.onEnd();
    }
    const conn = core.conn;
    this.#stats.served++;
    this.#running.add(core);
    this.#unclosed.add(core);
    if (this.#abort.signal.aborted) core.drain(this.#abort.signal.reason as Error);
    if (channels.open.hasSubscribers) channels.open.publish({ server: this, conn, waitMs });
    // Plain promise reactions rather than an async wrapper: a suspended async function keeps a
    // generator and its registers alive per connection (about 300 bytes of an idle connection).
    let settled: Promise<void> | void;
    try {
      settled = this.#handler(conn);
    } catch (error) {
      settled = Promise.reject(error);
    }
    core.handlerSettled = Promise.resolve(settled).then(
      () => this.#handlerEnded(core, false, undefined),
      (error: unknown) => this.#handlerEnded(core, true, error),
    );
  }

  #handlerEnded(core: ConnCore, threw: boolean, error: unknown): void {
    if (!threw) {
      core.handlerEnded();
    } else {
      this.#stats.errors++;
      // Published as thrown (even a non-Error), so a subscriber sees exactly what the handler threw;
      // a slow-consumer error rethrown by the handler was published when it happened.
      const seen = error instanceof SlowConsumerError && core.signal.reason === error;
      if (channels.error.hasSubscribers && !seen) channels.error.publish({ server: this, conn: core.conn, error });
      core.handlerEnded(error instanceof Error ? error : new Error(String(error)));
    }
    this.#running.delete(core);
    this.#releaseSlot(core);
  }

  /**
   * A connection's slot (and per-peer count) is freed when its handler ends, as Go's semaphore is
   * released after Close; but a finished handler whose output is still queued for a peer that does not
   * read keeps its slot until the socket closes, so such sockets (memory and a descriptor each) stay
   * bounded by maxConnections and maxConnectionsPerPeer. Called at handler end and at socket close.
   */
  #releaseSlot(core: ConnCore): void {
    if (this.#running.has(core)) return;
    if (core.phase !== CLOSED && core.queuedBytes > 0) return;
    core.lease.releaseSlot();
  }

  /** The gate turned a socket away. */
  #reject(socket: Socket, peer: string, reason: RejectReason): void {
    this.#stats.rejected[reason]++;
    if (channels.reject.hasSubscribers) channels.reject.publish({ server: this, remoteAddress: peer, reason });
    socket.destroy();
  }

  #onTimeout(core: ConnCore, error: TimeoutError): void {
    const key = TIMEOUT_KEYS[error.code as keyof typeof TIMEOUT_KEYS];
    if (key !== undefined) this.#stats.timeouts[key]++;
    if (channels.timeout.hasSubscribers) channels.timeout.publish({ server: this, conn: core.conn, error });
  }

  #onSlowConsumer(core: ConnCore, error: SlowConsumerError): void {
    this.#stats.slowConsumers++;
    if (channels.error.hasSubscribers) channels.error.publish({ server: this, conn: core.conn, error });
  }

  #onSocketClosed(core: ConnCore): void {
    this.#unclosed.delete(core);
    core.lease.releaseDescriptor();
    this.#releaseSlot(core);
    this.#stats.bytesRead += core.socket.bytesRead;
    this.#stats.bytesWritten += core.socket.bytesWritten;
    if (channels.close.hasSubscribers) channels.close.publish({ server: this, conn: core.conn });
  }
}

/**
 * Starts a server that runs `handler` for every admitted connection. Resolves once listening.
 * @throws InvalidOptionError (`ERR_INVALID_OPTION`) naming the first invalid option.
 */
export async function serve(options: ServeOptions, handler: Handler): Promise<Server> {
  const resolved = resolveOptions(options);
  if (typeof handler !== 'function') throw new TypeError('serve: handler must be a function');
  if (resolved.signal?.aborted) throw new ServerClosingError('serve: signal already aborted');
  // node:cluster re-runs the program in each worker, which calls serve() again: there it serves.
  const config = workerConfig();
  if (config !== undefined) return serveInWorker(config, resolved, handler, startServer);
  if (resolved.workers > 1) {
    // The workers bind through the primary's handle, which never checks the path: claim it here, once.
    if (resolved.path !== undefined) await claimSocketPath(resolved.path);
    const pool = new WorkerPool(resolved);
    await pool.start();
    return pool;
  }
  return startServer(resolved, handler);
}
