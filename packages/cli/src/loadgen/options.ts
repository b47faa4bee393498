/**
 * Options of `tcpkit bench`, their defaults and their validation.
 * Durations are in milliseconds here; the CLI reads them as `10s`, `500ms`, `2m` (see cli/parse.ts).
 */

/** What each connection does. */
export type BenchMode = 'echo' | 'churn' | 'idle' | 'open-loop';

/** The bytes of each message. */
export type PayloadKind = 'random' | 'zeros';

export const BENCH_MODES: readonly BenchMode[] = ['echo', 'churn', 'idle', 'open-loop'];

/** Options of one load-generation run. Every field is optional; defaults are listed per field. */
export interface BenchOptions {
  /** Target host. Default `'127.0.0.1'`. */
  host?: string;
  /** Target port. Default `7000`. */
  port?: number;
  /**
   * `echo`: send a message, wait for its full echo, repeat (closed loop; `depth` messages in flight); traffic
   * starts once every connection is up (or the connect phase has timed out).
   * `churn`: connect, send one message, receive its echo, close, repeat (measures connections/s).
   * `idle`: open the connections, exchange one message on each, then hold them (memory per connection).
   * `open-loop`: send `rate` messages/s in total whatever the server does, latency measured from the
   * intended send time (coordinated-omission corrected, as wrk2 does).
   * Default `'echo'`.
   */
  mode?: BenchMode;
  /** Concurrent connections (in `churn`: concurrent connect-send-close loops). Default `10`. */
  connections?: number;
  /** Message size in bytes. Default `64`. */
  size?: number;
  /** Messages in flight per connection (pipelining) in `echo` and `open-loop`. Default `1`. */
  depth?: number;
  /** Messages per second across all connections; required by `open-loop`, ignored elsewhere. */
  rate?: number;
  /** Length of the measured window in ms; the run stops by itself at its end. Default `10_000`. */
  durationMs?: number;
  /** Load applied but not measured before the window, in ms. Default `1_000`. */
  warmupMs?: number;
  /** Connections are opened evenly over this many ms (0: as fast as the connect limit allows). Default `0`. */
  rampUpMs?: number;
  /** A connect attempt that takes longer fails with `ETIMEDOUT`, in ms. Default `5_000`. */
  connectTimeoutMs?: number;
  /**
   * Local addresses to bind, round-robin over connections, so that more connections than one
   * address's ephemeral ports (~28k) can be open. Default: none (the kernel picks).
   */
  sourceAddresses?: string[];
  /** Worker threads generating load; 1 runs in the calling thread. Default `1`. */
  workers?: number;
  /**
   * Child processes generating load, each with its share of the connections and its own open-file
   * limit (past ~20,000 connections one process runs out of descriptors); their results are merged.
   * With at least as many `sourceAddresses`, each process binds its own of them. 1 runs in this
   * process. Not with `workers` above 1. Default `1`.
   */
  processes?: number;
  /** Payload bytes: `random` makes `verify` meaningful, `zeros` is cheapest. Default `'random'`. */
  payload?: PayloadKind;
  /** Compare every echoed byte with what was sent; a mismatch is an error of kind `verify`. Default `false`. */
  verify?: boolean;
  /** Sample this process's CPU time and RSS from /proc during the run. Default: none. */
  serverPid?: number;
  /** Interval between timeline points and progress lines, in ms. Default `1_000`. */
  intervalMs?: number;
  /** Connect over TLS (the server's certificate is not verified: this measures, it does not trust). Default `false`. */
  tls?: boolean;
  /** With `tls`: offer each connection the session of its slot's previous one (resumption, in churn). Default `false`. */
  tlsResume?: boolean;
  /** With `tls`: the SNI server name to send. Default: none. */
  servername?: string;
  /** Send a PROXY protocol header of this version (1 or 2) first on every connection, as a load balancer would. Default: none. */
  proxyProtocol?: 1 | 2;
}

/** `BenchOptions` with every default applied and every value checked. */
export type ResolvedBenchOptions = Required<
  Omit<BenchOptions, 'rate' | 'serverPid' | 'servername' | 'proxyProtocol'>
> & {
  rate: number | null;
  serverPid: number | null;
  servername: string | null;
  proxyProtocol: 1 | 2 | null;
};

/** The default of every option that has one; `tcpkit bench --help` shows these. */
export const BENCH_DEFAULTS = {
  host: '127.0.0.1',
  port: 7000,
  mode: 'echo',
  connections: 10,
  size: 64,
  depth: 1,
  durationMs: 10_000,
  warmupMs: 1_000,
  rampUpMs: 0,
  connectTimeoutMs: 5_000,
  workers: 1,
  processes: 1,
  payload: 'random',
  verify: false,
  intervalMs: 1_000,
  tls: false,
  tlsResume: false,
} as const satisfies BenchOptions;

// Errors name the option by its BenchOptions key; the CLI rewrites keys into its flag names.
function positiveInt(name: keyof BenchOptions, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

function nonNegative(name: keyof BenchOptions, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
  }
  return value;
}

/** Applies defaults and validates; throws a `RangeError` naming the option. */
export function resolveBenchOptions(options: BenchOptions = {}): ResolvedBenchOptions {
  const d = BENCH_DEFAULTS;
  const mode = options.mode ?? d.mode;
  if (!BENCH_MODES.includes(mode)) throw new RangeError(`mode must be one of ${BENCH_MODES.join(', ')}`);
  const payload = options.payload ?? d.payload;
  if (payload !== 'random' && payload !== 'zeros') throw new RangeError('payload must be random or zeros');
  const rate = options.rate ?? null;
  if (mode === 'open-loop') {
    if (rate === null || !(rate > 0) || !Number.isFinite(rate)) {
      throw new RangeError('rate must be > 0 in open-loop mode (messages per second across all connections)');
    }
  }
  const connections = positiveInt('connections', options.connections ?? d.connections, 1);
  const resolved: ResolvedBenchOptions = {
    host: options.host ?? d.host,
    port: positiveInt('port', options.port ?? d.port, 1),
    mode,
    connections,
    size: positiveInt('size', options.size ?? d.size, 1),
    depth: positiveInt('depth', options.depth ?? d.depth, 1),
    rate,
    durationMs: nonNegative('durationMs', options.durationMs ?? d.durationMs),
    warmupMs: nonNegative('warmupMs', options.warmupMs ?? d.warmupMs),
    rampUpMs: nonNegative('rampUpMs', options.rampUpMs ?? d.rampUpMs),
    connectTimeoutMs: nonNegative('connectTimeoutMs', options.connectTimeoutMs ?? d.connectTimeoutMs),
    sourceAddresses: options.sourceAddresses ?? [],
    // More workers than connections would leave some idle.
    workers: Math.min(positiveInt('workers', options.workers ?? d.workers, 1), connections),
    processes: Math.min(positiveInt('processes', options.processes ?? d.processes, 1), connections),
    payload,
    verify: options.verify ?? d.verify,
    serverPid: options.serverPid ?? null,
    intervalMs: positiveInt('intervalMs', options.intervalMs ?? d.intervalMs, 10),
    tls: options.tls ?? d.tls,
    tlsResume: options.tlsResume ?? d.tlsResume,
    servername: options.servername ?? null,
    proxyProtocol: options.proxyProtocol ?? null,
  };
  if (resolved.tlsResume && !resolved.tls) throw new RangeError('tlsResume needs tls');
  if (resolved.workers > 1 && resolved.processes > 1) throw new RangeError('use workers or processes, not both');
  if (resolved.proxyProtocol !== null && resolved.proxyProtocol !== 1 && resolved.proxyProtocol !== 2) {
    throw new RangeError('proxyProtocol must be 1 or 2');
  }
  if (resolved.port > 65535) throw new RangeError('port must be <= 65535');
  return resolved;
}

function ipv4ToInt(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new RangeError(`not an IPv4 address: "${text}"`);
  let value = 0;
  for (const part of parts) {
    const octet = Number(part);
    if (!/^\d{1,3}$/.test(part) || octet > 255) throw new RangeError(`not an IPv4 address: "${text}"`);
    value = value * 256 + octet;
  }
  return value;
}

function intToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/**
 * Parses `127.0.0.1-127.0.0.16` (an inclusive IPv4 range), a comma-separated list, or a mix
 * (`127.0.0.1-127.0.0.4,::1`). Ranges are capped at 65,536 addresses.
 */
export function parseSourceAddresses(text: string): string[] {
  const out: string[] = [];
  for (const item of text.split(',')) {
    const trimmed = item.trim();
    if (trimmed === '') continue;
    const dash = trimmed.indexOf('-');
    if (dash < 0) {
      out.push(trimmed);
      continue;
    }
    const first = ipv4ToInt(trimmed.slice(0, dash).trim());
    const last = ipv4ToInt(trimmed.slice(dash + 1).trim());
    if (last < first || last - first >= 65_536) {
      throw new RangeError(`bad source address range "${trimmed}"`);
    }
    for (let value = first; value <= last; value++) out.push(intToIpv4(value));
  }
  if (out.length === 0) throw new RangeError('source-addresses is empty');
  return out;
}
