// About 400 lines on purpose: a table. Every serve() option once, with its TSDoc, its default and its resolver.
import type { BlockList } from 'node:net';
import { availableParallelism, constants } from 'node:os';
import type { AdminOptions } from './admin.js';
import { InvalidOptionError } from './errors.js';
import type { Logger } from './logging.js';
import { type ProxyProtocolOptions, type ResolvedProxyProtocol, resolveProxyProtocol } from './proxy-stage.js';
import { resolveTlsOptions, type TlsOptions } from './tls.js';
import { boolean, definedOnly, describe, duration, integer, nonEmptyString, oneOf, optionsObject } from './validate.js';
import { chooseBalance, reusePortSupported } from './workers/balance.js';

/**
 * Options of {@link serve}. Every option is optional. Durations are in milliseconds and `0`
 * means "no limit"; sizes are in bytes.
 */
export interface ServeOptions {
  /** TCP port to listen on; `0` picks an ephemeral port (read it from `server.address`). Default 0. */
  port?: number;
  /** Address to listen on; `''` is refused (use `'::'` for every interface). Default: Node's default (every interface, `::` with IPv4 mapped). */
  host?: string;
  /** Listen on this unix socket path instead of TCP (`port` and `host` are then ignored); at most 107 bytes on Linux (103 elsewhere). */
  path?: string;
  /** Length of the kernel's accept queue (`listen(2)` backlog). Default 511. */
  backlog?: number;
  /** Most connections served at once: the semaphore. A slot frees when the handler ends (or, with output still queued for a non-reading peer, when the socket closes). Default 10000. */
  maxConnections?: number;
  /** What to do with a connection accepted at the cap: hold it unread in a FIFO (`'wait'`) or close it (`'reject'`). Default `'wait'`. */
  whenFull?: 'wait' | 'reject';
  /** Most connections held in the wait queue; beyond it a connection is rejected (`rejected.full`). Default `maxConnections`. */
  maxWaiting?: number;
  /** Longest a connection waits in the queue before it is rejected (`rejected.waitTimeout`). Default 10000 (10 s); 0 = no limit. */
  waitTimeout?: number;
  /**
   * Waiting connections are kept polled (their first 4 KiB of input is read and kept for the handler), so
   * one whose peer resets, or sends FIN before any data, leaves the queue at once (`rejected.abandoned`).
   * With `abortOnClose`, a FIN after data drops it too (HAProxy's `option abortonclose`); without it such a
   * waiter stays queued, its request complete, and its handler sees the data then end of stream. Default false.
   */
  abortOnClose?: boolean;
  /** Most connections, running or waiting, from one remote IP address. Default 0 (no limit). */
  maxConnectionsPerPeer?: number;
  /** Addresses whose connections are closed at accept (`rejected.blocked`), enforced by tcpkit on every Node version. */
  blockList?: BlockList;
  /** Longest time from admission to the first byte from the peer (`ERR_FIRST_BYTE_TIMEOUT`). Default 10000 (10 s). */
  firstByteTimeout?: number;
  /**
   * After the first byte, longest the handler may wait in `read()`/`frames()`/`for await` with no byte
   * arriving (`ERR_IDLE_TIMEOUT`); like Go's read deadline it does not run while the handler is busy or
   * only writing. Default 60000 (60 s).
   */
  idleTimeout?: number;
  /** Longest a frame may take from its first byte to its last in `conn.frames()` (`ERR_FRAME_TIMEOUT`): stops slowloris trickles. Default 30000 (30 s). */
  frameTimeout?: number;
  /** Longest written data may wait unflushed because the peer does not read (`ERR_WRITE_TIMEOUT`). Default 30000 (30 s). */
  writeTimeout?: number;
  /** Longest a connection may live, whatever it does (`ERR_LIFETIME_EXCEEDED`). Default 0 (no limit). */
  maxLifetime?: number;
  /** Bytes of unread input buffered before the socket is paused (the read high-water mark). Default 65536 (64 KiB). */
  maxReadBuffer?: number;
  /** Bytes queued for the peer below which `conn.write()` resolves at once; above it, `write()` waits for the drain. Default 65536 (64 KiB). */
  maxWriteBuffer?: number;
  /** Hard cap on bytes queued for the peer by writes not waiting for the drain; above it the connection is a slow consumer and is destroyed (`ERR_SLOW_CONSUMER`). A write issued below `maxWriteBuffer` is accepted whatever its size. Default 4194304 (4 MiB). */
  maxQueuedBytes?: number;
  /**
   * After the handler ends and FIN is sent, how long input is read and discarded while waiting for the
   * peer's FIN (a lingering close). It runs from when queued output has reached the kernel; until then the
   * connection gets up to `writeTimeout` for it (with `writeTimeout: 0`, at most 30 s). Default 2000 (2 s).
   */
  lingerTimeout?: number;
  /** Disable Nagle's algorithm (`TCP_NODELAY`). Default true. */
  noDelay?: boolean;
  /** TCP keep-alive: `false`/`0` off, `true` on with the OS delay, a number = initial delay in ms. Default false. */
  keepAlive?: boolean | number;
  /** Shut the server down (as `server.shutdown()`) when this signal aborts. */
  signal?: AbortSignal;
  /**
   * Process signals that start a graceful shutdown; the signal again, 1 s or more after the first, forces it
   * (a repeat within 1 s is the same keypress delivered twice, as under `npm start`). Default `[]` (none installed).
   */
  shutdownOn?: NodeJS.Signals[];
  /**
   * With `shutdownOn`: once a shutdown started by one of those signals is done (every socket closed,
   * handlers finished or forced at `drainTimeout`), exit the process with `process.exit()` (code
   * `process.exitCode`, 0 unless set), even if timers or handles left by stubborn handlers would keep it
   * alive. Code awaiting `server.closed` runs first. Requires `shutdownOn`. Default false.
   */
  exitOnShutdown?: boolean;
  /** Default time `shutdown()` waits for handlers before destroying the rest. Default 30000 (30 s). */
  drainTimeout?: number;
  /**
   * At the start of a shutdown (a `shutdownOn` signal, `signal`, `shutdown()`), how long the server goes
   * on accepting and serving after `/readyz` turns 503, so load balancers and Kubernetes endpoints stop
   * routing to it before the listener closes. Default 0 (close at once).
   */
  shutdownDelay?: number;
  /**
   * Serve an admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, `/stats`) on this port, by default on
   * 127.0.0.1. `/metrics` needs the optional peer dependency prom-client. Default: no endpoint.
   */
  admin?: AdminOptions;
  /**
   * A pino-compatible logger: lifecycle (info), accept errors and descriptor shedding (warn), handler
   * errors with the connection id and peer (warn/error), connection open and close (debug). Default: none.
   */
  logger?: Logger;
  /**
   * Serve TLS: Node's `tls.createServer()` options (`key`, `cert`, `ca`, `requestCert`, `rejectUnauthorized`,
   * `ALPNProtocols`, `SNICallback`, `minVersion`, ...). The handshake runs after admission and before the
   * handler; a failed one closes only that connection (`stats().tlsErrors`). Default: plain TCP.
   */
  tls?: TlsOptions;
  /** Longest a TLS handshake may take, from its start to its end (`ERR_HANDSHAKE_TIMEOUT`, `stats().timeouts.handshake`). Default 10000 (10 s); 0 = no limit. */
  handshakeTimeout?: number;
  /**
   * Read a PROXY protocol header (v1 or v2) from trusted load balancers before anything else: the
   * connection's addresses, `blockList` and `maxConnectionsPerPeer` are then the client's. Default: none.
   */
  proxyProtocol?: ProxyProtocolOptions;
  /**
   * Worker processes that serve connections, each a full tcpkit server (gate, deadlines, drain) under a
   * supervising primary: a number, or `'auto'` for `os.availableParallelism()`. Default 1: this process
   * serves by itself, no primary. See the README's "Every core" section for what runs where.
   */
  workers?: number | 'auto';
  /**
   * How connections reach the workers: `'kernel'` (each worker listens with SO_REUSEPORT and the kernel
   * spreads connections; the primary is off the data path; Linux with Node 22.12+), `'primary'` (node:cluster
   * round-robin: the primary accepts and hands each socket to a worker), or `'auto'` (kernel where it works,
   * else primary). Ignored with `workers: 1`. Default `'auto'`.
   */
  balance?: 'auto' | 'kernel' | 'primary';
  /**
   * When the primary stops replacing dead workers: `deaths` deaths within `window` ms (or `deaths`
   * replacements in a row that die before listening) is a crash loop; the primary logs why, drains the
   * other workers and exits with code 1. Default `{ deaths: 5, window: 10000 }`.
   */
  crashLoop?: { deaths?: number; window?: number };
}

/** Per-connection timeouts that `conn.setTimeouts()` may change. */
export interface ConnTimeouts {
  firstByteTimeout?: number;
  idleTimeout?: number;
  frameTimeout?: number;
  writeTimeout?: number;
  maxLifetime?: number;
}

/** The name of an option of {@link serve}. */
export type OptionName = keyof ServeOptions;

/** Resolved types that differ from what the user passes (a default filled in, or a choice made). */
interface ResolvedTypes {
  admin: Required<AdminOptions> | undefined;
  proxyProtocol: ResolvedProxyProtocol | undefined;
  workers: number;
  balance: 'kernel' | 'primary';
  crashLoop: { deaths: number; window: number };
}

/** Options without a default: still `undefined` once resolved when the user did not set them. */
type WithoutDefault = 'host' | 'path' | 'blockList' | 'signal' | 'logger' | 'tls';

/**
 * Options after defaults and validation (internal: not exported from the package): every {@link ServeOptions}
 * key, required, so an option is declared once (in `ServeOptions`, with its docs) and resolved once (`RESOLVERS`).
 */
export type ResolvedOptions = {
  // Over the union of names (not `keyof ServeOptions` itself), so the map does not copy ServeOptions' `?`: every
  // key is required, and an option without a default keeps `undefined` in its type.
  [K in OptionName]: K extends keyof ResolvedTypes
    ? ResolvedTypes[K]
    : K extends WithoutDefault
      ? ServeOptions[K] | undefined
      : Exclude<ServeOptions[K], undefined>;
};

/** Longest unix socket path: `sun_path` holds 108 bytes on Linux (104 on macOS and the BSDs), the last a NUL. */
const MAX_UNIX_PATH = process.platform === 'linux' ? 107 : 103;

export const DEFAULTS = {
  port: 0,
  backlog: 511,
  maxConnections: 10_000,
  whenFull: 'wait',
  waitTimeout: 10_000,
  maxConnectionsPerPeer: 0,
  firstByteTimeout: 10_000,
  idleTimeout: 60_000,
  frameTimeout: 30_000,
  writeTimeout: 30_000,
  maxLifetime: 0,
  maxReadBuffer: 64 * 1024,
  maxWriteBuffer: 64 * 1024,
  maxQueuedBytes: 4 * 1024 * 1024,
  lingerTimeout: 2_000,
  noDelay: true,
  abortOnClose: false,
  exitOnShutdown: false,
  keepAlive: false,
  drainTimeout: 30_000,
  shutdownDelay: 0,
  handshakeTimeout: 10_000,
} as const satisfies { [K in keyof ServeOptions]?: ServeOptions[K] };

/** Defaults of `admin` beside its required `port`. */
export const ADMIN_DEFAULTS = { host: '127.0.0.1', maxEventLoopDelay: 2000, processMetrics: true } as const;

/** Defaults of `crashLoop`. */
const CRASH_LOOP_DEFAULTS = { deaths: 5, window: 10_000 } as const;

const PER_CONNECTION_TIMEOUTS = ['firstByteTimeout', 'idleTimeout', 'frameTimeout', 'writeTimeout', 'maxLifetime'];

/**
 * Validates one option, its default already applied, and returns its resolved value. `before` holds the options
 * resolved so far: those declared above it in `ServeOptions` (so `maxWaiting` can default to `maxConnections`).
 */
type Resolver<K extends keyof ServeOptions> = (value: unknown, before: Readonly<ResolvedOptions>) => ResolvedOptions[K];

/** One resolver per option, in the order of `ServeOptions`; the type makes a missing one a compile error. */
const RESOLVERS: { [K in keyof ServeOptions]-?: Resolver<K> } = {
  port: (v) => integer('port', v, 0, 65535),
  host: (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new InvalidOptionError('host', `must be a string, got ${describe(v)}`);
    // Node listens on every interface for '', which is never what an empty value from a config meant.
    if (v === '') {
      throw new InvalidOptionError(
        'host',
        "must not be empty: give an address such as '127.0.0.1', or '::' to listen on every interface",
      );
    }
    return v;
  },
  path: (v) => {
    if (v === undefined) return undefined;
    const path = nonEmptyString('path', v);
    if (Buffer.byteLength(path) > MAX_UNIX_PATH) {
      throw new InvalidOptionError(
        'path',
        `must be at most ${MAX_UNIX_PATH} bytes (the kernel's unix socket address holds no more; a longer one is bound cut short), got ${Buffer.byteLength(path)}: use a shorter path`,
      );
    }
    return path;
  },
  backlog: (v) => integer('backlog', v, 1),
  maxConnections: (v) => integer('maxConnections', v, 1),
  whenFull: (v) => oneOf('whenFull', v, ['wait', 'reject']),
  maxWaiting: (v, before) => integer('maxWaiting', v ?? before.maxConnections, 0),
  waitTimeout: (v) => duration('waitTimeout', v),
  abortOnClose: (v) => boolean('abortOnClose', v),
  maxConnectionsPerPeer: (v) => integer('maxConnectionsPerPeer', v, 0),
  blockList: (v) => {
    if (v !== undefined && typeof (v as BlockList | null)?.check !== 'function') {
      throw new InvalidOptionError('blockList', `must be a net.BlockList, got ${describe(v)}`);
    }
    return v as BlockList | undefined;
  },
  firstByteTimeout: (v) => duration('firstByteTimeout', v),
  idleTimeout: (v) => duration('idleTimeout', v),
  frameTimeout: (v) => duration('frameTimeout', v),
  writeTimeout: (v) => duration('writeTimeout', v),
  maxLifetime: (v) => duration('maxLifetime', v),
  maxReadBuffer: (v) => integer('maxReadBuffer', v, 1),
  maxWriteBuffer: (v) => integer('maxWriteBuffer', v, 1),
  maxQueuedBytes: (v, before) => {
    const bytes = integer('maxQueuedBytes', v, 1);
    if (bytes < before.maxWriteBuffer) {
      throw new InvalidOptionError(
        'maxQueuedBytes',
        `must be >= maxWriteBuffer (${before.maxWriteBuffer}), got ${bytes}`,
      );
    }
    return bytes;
  },
  lingerTimeout: (v) => duration('lingerTimeout', v),
  noDelay: (v) => boolean('noDelay', v),
  keepAlive: (v) => {
    if (typeof v === 'boolean') return v;
    const delay = duration('keepAlive', v);
    // The kernel counts keep-alive idle time in whole seconds; below one second Node would use the OS default (hours).
    if (delay > 0 && delay < 1000) {
      throw new InvalidOptionError(
        'keepAlive',
        `must be false, true, 0 (off) or at least 1000 ms (TCP keep-alive counts whole seconds), got ${delay}`,
      );
    }
    return delay;
  },
  signal: (v) => {
    if (v !== undefined && !(v instanceof AbortSignal)) {
      throw new InvalidOptionError('signal', `must be an AbortSignal, got ${describe(v)}`);
    }
    return v;
  },
  shutdownOn: (v = []) => {
    // SIGKILL and SIGSTOP cannot be caught: process.on() would throw after the listener is open.
    const catchable = (s: unknown): boolean =>
      typeof s === 'string' && s in constants.signals && s !== 'SIGKILL' && s !== 'SIGSTOP';
    if (!Array.isArray(v) || !v.every(catchable)) {
      throw new InvalidOptionError(
        'shutdownOn',
        `must be an array of catchable signal names such as 'SIGTERM', got ${describe(v)}`,
      );
    }
    return v as NodeJS.Signals[];
  },
  exitOnShutdown: (v, before) => {
    if (boolean('exitOnShutdown', v) && before.shutdownOn.length === 0) {
      throw new InvalidOptionError(
        'exitOnShutdown',
        "needs shutdownOn (the signals that start the shutdown), e.g. ['SIGTERM']",
      );
    }
    return v as boolean;
  },
  drainTimeout: (v) => duration('drainTimeout', v),
  shutdownDelay: (v) => duration('shutdownDelay', v),
  admin: (v) => (v === undefined ? undefined : resolveAdmin(v)),
  logger: (v) => (v === undefined ? undefined : resolveLogger(v)),
  tls: (v) => resolveTlsOptions(v),
  handshakeTimeout: (v) => duration('handshakeTimeout', v),
  proxyProtocol: (v, before) => {
    // A unix socket's peers have no address for `trusted` to vouch for: refused, rather than serving the
    // header to the handler as the stream's first bytes.
    if (v !== undefined && before.path !== undefined) {
      throw new InvalidOptionError(
        'proxyProtocol',
        'reads PROXY headers on TCP listeners only: a unix socket peer has no address to check against trusted (listen on a TCP port, or drop proxyProtocol)',
      );
    }
    return resolveProxyProtocol(v);
  },
  workers: (v = 1, before) => {
    const workers = v === 'auto' ? availableParallelism() : integer('workers', v, 1, 1024);
    if (workers > before.maxConnections) {
      throw new InvalidOptionError(
        'maxConnections',
        `is split over the workers and must be at least workers (${workers}), got ${before.maxConnections}`,
      );
    }
    return workers;
  },
  balance: (v = 'auto', before) => {
    const requested = oneOf('balance', v, ['auto', 'kernel', 'primary']);
    const unixSocket = before.path !== undefined;
    if (before.workers > 1 && requested === 'kernel') {
      if (unixSocket) throw new InvalidOptionError('balance', "'kernel' needs a TCP port; unix sockets use 'primary'");
      if (!reusePortSupported()) {
        throw new InvalidOptionError(
          'balance',
          `'kernel' needs SO_REUSEPORT in listen(): Linux with Node 22.12+ (this is Node ${process.versions.node} on ${process.platform}); use 'primary' or 'auto'`,
        );
      }
    }
    return chooseBalance(requested, unixSocket);
  },
  crashLoop: (v = {}) => {
    const given = optionsObject('crashLoop', v, ['deaths', 'window'], '{ deaths: 5, window: 10000 }');
    const c = { ...CRASH_LOOP_DEFAULTS, ...definedOnly(given) };
    return { deaths: integer('crashLoop.deaths', c.deaths, 1), window: duration('crashLoop.window', c.window) };
  },
};

/** Every option `serve()` knows, in the order of `ServeOptions`. */
export const OPTION_NAMES = Object.keys(RESOLVERS) as (keyof ServeOptions)[];

/**
 * The resolved `keepAlive` as the socket layer takes it: probes on or off, and the idle time before
 * the first probe in ms (0: the system's). One reading for net.Server's sockets and the bare handles.
 */
export function keepAliveOf(o: ResolvedOptions): { keepAlive: boolean; keepAliveDelay: number } {
  return {
    keepAlive: o.keepAlive !== false && o.keepAlive !== 0,
    keepAliveDelay: typeof o.keepAlive === 'number' ? o.keepAlive : 0,
  };
}

/** Validates per-connection timeouts (for `conn.setTimeouts`). */
export function validateTimeouts(t: ConnTimeouts): ConnTimeouts {
  if (t === null || typeof t !== 'object') throw new InvalidOptionError('timeouts', 'must be an object');
  for (const key of Object.keys(t)) {
    if (!PER_CONNECTION_TIMEOUTS.includes(key)) throw new InvalidOptionError(key, 'is not a per-connection timeout');
    duration(key, (t as Record<string, unknown>)[key]);
  }
  return t;
}

/** Applies defaults and validates; throws `InvalidOptionError` naming the first bad option. */
export function resolveOptions(options: ServeOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  for (const key of Object.keys(options)) {
    if (!(key in RESOLVERS)) throw new InvalidOptionError(key, 'is not a known option');
  }
  const given = { ...DEFAULTS, ...definedOnly(options) } as Record<string, unknown>;
  const resolved = {} as Record<string, unknown>;
  for (const name of OPTION_NAMES) {
    resolved[name] = (RESOLVERS[name] as Resolver<typeof name>)(given[name], resolved as ResolvedOptions);
  }
  // A copy: an object filled key by key in a loop is left in V8's dictionary mode, where every read
  // of an option (several per message on the hot path) is a lookup call instead of a field load.
  return { ...resolved } as ResolvedOptions;
}

function resolveAdmin(v: unknown): Required<AdminOptions> {
  const given = optionsObject('admin', v, ['port', ...Object.keys(ADMIN_DEFAULTS)], '{ port: 9090 }');
  const a: Record<string, unknown> = { ...ADMIN_DEFAULTS, ...definedOnly(given) };
  return {
    port: integer('admin.port', a.port, 0, 65535),
    host: nonEmptyString('admin.host', a.host),
    maxEventLoopDelay: duration('admin.maxEventLoopDelay', a.maxEventLoopDelay),
    processMetrics: boolean('admin.processMetrics', a.processMetrics),
  };
}

function resolveLogger(v: unknown): Logger {
  const l = v as Record<string, unknown> | null;
  for (const level of ['error', 'warn', 'info', 'debug']) {
    if (typeof l?.[level] !== 'function') {
      throw new InvalidOptionError(
        'logger',
        `must be a pino-compatible logger (pino, or an object with error, warn, info and debug methods); it has no ${level}() method`,
      );
    }
  }
  return v as Logger;
}
