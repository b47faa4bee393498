import cluster from 'node:cluster';
import net, { type Socket } from 'node:net';
import { formatAddress } from './address.js';
import type { AdminEndpoint } from './admin.js';
import type { Conn } from './conn.js';
import { InvalidOptionError, ServerClosingError } from './errors.js';
import { toListenError } from './listen-error.js';
import { attachLogger } from './logging.js';
import { keepAliveOf, type ResolvedOptions, resolveOptions, type ServeOptions } from './options.js';
import { Connections } from './server-connections.js';
import { readStats } from './server-events.js';
import { drainConnections } from './server-shutdown.js';
import { resolveTlsOptions, type TlsOptions } from './tls.js';
import { claimSocketPath } from './unix-socket.js';
import { WorkerPool } from './workers/primary.js';
import { workerConfig } from './workers/protocol.js';
import type { WorkerStats } from './workers/stats.js';
import { serveInWorker } from './workers/worker.js';

/** A connection handler: the connection's life. When its promise settles the connection is closed. */
export type Handler = (conn: Conn) => Promise<void> | void;

/**
 * Why a connection was turned away; the keys of `stats().rejected`. `abandoned`: its peer reset or
 * closed before its handler could start (while it waited at the cap, see `abortOnClose`, before the
 * server looked at it, or over TLS before sending its first TLS byte: a health check); it never ran.
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

function ignore(): void {}

/**
 * @internal At the end of a shutdown: takes the `shutdownOn` listeners off the process, so it handles
 * those signals as before. When the process is about to exit (`exiting`), each is replaced by one that
 * ignores the signal instead: with no listener left, a signal arriving between the drain's end and the
 * exit takes its default action and the process dies of it (exit status 128+n instead of 0; npm then
 * re-raises it) — what npm's forwarded copy of a Ctrl-C does when it comes later than the drain took.
 * Nothing is left to force then. Returns the listeners now installed.
 */
export function releaseSignals(
  handlers: [NodeJS.Signals, () => void][],
  exiting: boolean,
): [NodeJS.Signals, () => void][] {
  for (const [sig, fn] of handlers) {
    process.off(sig, fn);
    if (exiting) process.on(sig, ignore);
  }
  return exiting ? handlers.map(([sig]) => [sig, ignore]) : [];
}

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
  #listener: net.Server;
  /** Every connection from accept to close, and the stages it passes through. */
  #conns: Connections;
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
  /** A shutdownOn signal started the shutdown and the process exits once it is done (`exitOnShutdown`). */
  #exiting = false;
  /** When a shutdownOn signal started the shutdown (performance.now()); 0 when something else did. */
  #firstSignalAt = 0;
  #signalHandlers: [NodeJS.Signals, () => void][] = [];
  #removeAbortListener: () => void = ignore;
  /** Resolves once the server has shut down and every socket is closed. */
  readonly closed: Promise<void>;

  // Made and started by serve() only (see the static block).
  private constructor(options: ResolvedOptions, handler: Handler) {
    this.#options = options;
    const conns = new Connections(this, options, handler, this.#abort.signal);
    this.#conns = conns;
    this.closed = new Promise((resolve) => {
      this.#closedResolve = resolve;
    });
    const { keepAlive, keepAliveDelay } = keepAliveOf(options);
    this.#listener = net.createServer({
      pauseOnConnect: true,
      allowHalfOpen: true,
      // A 1-byte high-water mark on accepted sockets: the writable side then reports exactly when
      // output waits for the kernel ('drain' when it is all out), and a paused readable side holds
      // at most the one chunk already read. tcpkit does its own buffering and backpressure above it.
      highWaterMark: 1,
      noDelay: options.noDelay,
      keepAlive,
      keepAliveInitialDelay: keepAliveDelay,
    });
    this.#listener.on('connection', (socket: Socket) => conns.onConnection(socket));
  }

  static {
    startServer = async (options, handler, target = {}) => {
      const server = new ProcessServer(options, handler);
      await server.#listen(target);
      return server;
    };
  }

  /** Claims the unix path (a process of its own) and listens: where the system can refuse. */
  async #bind(target: ListenTarget): Promise<void> {
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
  }

  async #listen(target: ListenTarget): Promise<void> {
    const o = this.#options;
    try {
      await this.#bind(target);
    } catch (error) {
      throw toListenError(error, o);
    }
    target.onListening?.(this.#listener);
    this.#conns.gate.countDescriptors();
    const a = this.#listener.address();
    this.#address =
      a === null ? (o.path ?? '') : typeof a === 'string' ? a : { address: a.address, family: a.family, port: a.port };
    this.#conns.listening(this.#address);
    this.#conns.acceptBare(this.#listener);
    // After listen, errors are accept errors (EMFILE, ENFILE, ...): libuv keeps the listener
    // alive and backs off, so count them and go on serving.
    this.#listener.on('error', (error: Error) => this.#conns.onAcceptError(error));
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
        if (o.exitOnShutdown) {
          this.#exiting = true;
          this.closed.then(() => setImmediate(() => process.exit()));
        }
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
    return readStats(this.#conns, this.#options);
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
    const tls = this.#conns.tls;
    if (tls === null) throw new InvalidOptionError('tls', 'setSecureContext() needs a server started with tls');
    tls.setSecureContext(resolveTlsOptions(options)!);
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
    const conns = this.#conns;
    // Closed before the line goes out: whoever reads "draining" must find the listener refusing.
    this.#listener.close();
    log?.info({ active: conns.running.size, waiting: conns.gate.waiting, drainTimeoutMs: timeout }, 'draining');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      this.#forceNow = resolve;
      if (this.#forced) resolve();
      else if (timeout > 0) timer = setTimeout(resolve, timeout);
    });
    const { graceful, forced } = await drainConnections(conns, reason, (r) => this.#abort.abort(r), deadline);
    clearTimeout(timer);
    this.#signalHandlers = releaseSignals(this.#signalHandlers, this.#exiting);
    this.#removeAbortListener();
    await this.#admin?.close();
    this.#detachLogger();
    const result = { graceful, forced, durationMs: Math.round(performance.now() - start) };
    const s = conns.counters;
    log?.info({ ...result, accepted: s.accepted, served: s.served, errors: s.errors }, 'shut down');
    this.#closedResolve();
    return result;
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
    if (resolved.path !== undefined)
      await claimSocketPath(resolved.path).catch((e) => Promise.reject(toListenError(e, resolved)));
    const pool = new WorkerPool(resolved);
    await pool.start();
    return pool;
  }
  return startServer(resolved, handler);
}
