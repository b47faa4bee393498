/**
 * Options of `tcpkit bench`, their defaults and their validation.
 * Durations are in milliseconds here; the CLI parses `10s`, `500ms`, `2m`.
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

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`bench: ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`bench: ${name} must be a finite number >= 0, got ${value}`);
  }
  return value;
}

/** Applies defaults and validates; throws a `RangeError` naming the option. */
export function resolveBenchOptions(options: BenchOptions = {}): ResolvedBenchOptions {
  const mode = options.mode ?? 'echo';
  if (!BENCH_MODES.includes(mode)) throw new RangeError(`bench: mode must be one of ${BENCH_MODES.join(', ')}`);
  const payload = options.payload ?? 'random';
  if (payload !== 'random' && payload !== 'zeros') throw new RangeError('bench: payload must be random or zeros');
  const rate = options.rate ?? null;
  if (mode === 'open-loop') {
    if (rate === null || !(rate > 0) || !Number.isFinite(rate)) {
      throw new RangeError('bench: open-loop mode needs rate > 0 (messages per second across all connections)');
    }
  }
  const connections = positiveInt('connections', options.connections ?? 10, 1);
  const resolved: ResolvedBenchOptions = {
    host: options.host ?? '127.0.0.1',
    port: positiveInt('port', options.port ?? 7000, 1),
    mode,
    connections,
    size: positiveInt('size', options.size ?? 64, 1),
    depth: positiveInt('depth', options.depth ?? 1, 1),
    rate,
    durationMs: nonNegative('duration', options.durationMs ?? 10_000),
    warmupMs: nonNegative('warmup', options.warmupMs ?? 1_000),
    rampUpMs: nonNegative('ramp-up', options.rampUpMs ?? 0),
    connectTimeoutMs: nonNegative('connect-timeout', options.connectTimeoutMs ?? 5_000),
    sourceAddresses: options.sourceAddresses ?? [],
    // More workers than connections would leave some idle.
    workers: Math.min(positiveInt('workers', options.workers ?? 1, 1), connections),
    payload,
    verify: options.verify ?? false,
    serverPid: options.serverPid ?? null,
    intervalMs: positiveInt('interval', options.intervalMs ?? 1_000, 10),
    tls: options.tls ?? false,
    tlsResume: options.tlsResume ?? false,
    servername: options.servername ?? null,
    proxyProtocol: options.proxyProtocol ?? null,
  };
  if (resolved.tlsResume && !resolved.tls) throw new RangeError('bench: tls-resume needs tls');
  if (resolved.proxyProtocol !== null && resolved.proxyProtocol !== 1 && resolved.proxyProtocol !== 2) {
    throw new RangeError('bench: proxy-protocol must be 1 or 2');
  }
  if (resolved.port > 65535) throw new RangeError('bench: port must be <= 65535');
  return resolved;
}

/**
 * Parses a duration: `10s`, `1.5s`, `500ms`, `2m`, or a bare number of seconds.
 * Returns milliseconds.
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
  if (!match) throw new RangeError(`bench: cannot parse duration "${text}" (examples: 10s, 500ms, 2m)`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  return unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000;
}

function ipv4ToInt(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new RangeError(`bench: not an IPv4 address: "${text}"`);
  let value = 0;
  for (const part of parts) {
    const octet = Number(part);
    if (!/^\d{1,3}$/.test(part) || octet > 255) throw new RangeError(`bench: not an IPv4 address: "${text}"`);
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
      throw new RangeError(`bench: bad source address range "${trimmed}"`);
    }
    for (let value = first; value <= last; value++) out.push(intToIpv4(value));
  }
  if (out.length === 0) throw new RangeError('bench: source-addresses is empty');
  return out;
}
