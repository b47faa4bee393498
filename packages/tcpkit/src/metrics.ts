/**
 * `tcpkit/metrics`: Prometheus metrics of a server through prom-client (an optional peer dependency,
 * so the core stays dependency-free). Counters and gauges are read from `server.stats()` when the
 * registry is scraped, so they equal `stats()` exactly and cost nothing between scrapes; the
 * histograms are fed by the diagnostics channels, to which nothing subscribes until
 * `collectMetrics()` is called. The metric table is in docs/deploy.md.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry, register } from 'prom-client';
import { formatAddress } from './address.js';
import type { Conn } from './conn.js';
import { eventLoop } from './event-loop.js';
import type { Server, ServerStats } from './server.js';
import type { WorkerStats } from './workers/stats.js';

/** Options of {@link collectMetrics}. */
export interface MetricsOptions {
  /** Registry the metrics are registered in. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Prefix of every metric name. Default `'tcpkit_'`. */
  prefix?: string;
  /**
   * Also register prom-client's default metrics (`process_*` CPU, memory and descriptors, `nodejs_*`
   * heap, GC and event loop) in the same registry. Default false: a registry may already have them.
   * Those that list every descriptor or handle (`process_open_fds`, `nodejs_active_handles`, ...) are
   * refreshed at most every 10 s.
   */
  processMetrics?: boolean;
}

/** What {@link collectMetrics} returns. */
export interface MetricsCollector {
  /** The registry the metrics live in. */
  readonly registry: Registry;
  /** Unsubscribes from the channels and removes the metrics from the registry. */
  close(): void;
}

/**
 * prom-client's default metrics that list every descriptor or handle of the process: with a thousand
 * connections open they cost about 3 ms of CPU per scrape, two thirds of a whole scrape. They are
 * refreshed at most this often (ms); a scrape in between serves the last values.
 */
const LISTING_REFRESH_MS = 10_000;
const LISTING_METRICS = new Set([
  'process_open_fds',
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
  'nodejs_active_requests',
  'nodejs_active_requests_total',
]);

/** Seconds: from 1 ms to an hour, for connections that last a request or a day. */
const DURATION_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600];
/** Seconds in the wait queue: waitTimeout defaults to 10 s. */
const WAIT_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds from the start of the drain to a connection's close: drainTimeout defaults to 30 s. */
const DRAIN_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60];

type ConnMessage = { server: Server; conn: Conn; waitMs?: number };

/**
 * Registers the metrics of `server` in a prom-client registry and keeps them up to date until
 * `close()`. Names follow Prometheus conventions (`tcpkit_connections_active`,
 * `tcpkit_connections_rejected_total{reason="full"}`, `_seconds`, `_bytes`).
 * Two servers in one registry need different prefixes.
 */
export function collectMetrics(server: Server, options: MetricsOptions = {}): MetricsCollector {
  return collectParts(server, options, { stats: true, events: true });
}

/**
 * @internal Which metrics to collect. With workers the primary collects `stats` (its stats() sums the
 * workers' reports) and each worker its `events` (event-loop delay and the histograms, which only it sees).
 */
export interface MetricParts {
  /** Counters and gauges read from stats() at scrape time, with per-worker series in a primary. */
  stats: boolean;
  /** The event-loop delay and the histograms fed by the diagnostics channels. */
  events: boolean;
}

/** @internal {@link collectMetrics} of some parts only. */
export function collectParts(server: Server, options: MetricsOptions, parts: MetricParts): MetricsCollector {
  const registry = options.registry ?? register;
  const p = options.prefix ?? 'tcpkit_';
  const registers = [registry];
  const names: string[] = [];

  const closers: (() => void)[] = [];
  if (parts.stats) statsMetrics(server, p, registers, names);
  if (parts.events) closers.push(eventMetrics(server, p, registers, names));

  if (options.processMetrics === true) {
    const before = new Set(registry.getMetricsAsArray().map((m) => m.name));
    collectDefaultMetrics({ register: registry });
    for (const m of registry.getMetricsAsArray()) {
      if (before.has(m.name)) continue;
      names.push(m.name);
      if (LISTING_METRICS.has(m.name)) refreshAtMost(m, LISTING_REFRESH_MS);
    }
  }

  let closed = false;
  return {
    registry,
    close() {
      if (closed) return;
      closed = true;
      for (const closer of closers) closer();
      for (const name of names) registry.removeSingleMetric(name);
    },
  };
}

/** Counters and gauges of `server.stats()`, read when scraped; in a primary, a series per worker too. */
function statsMetrics(server: Server, p: string, registers: Registry[], names: string[]): void {
  // One stats() per scrape: a scrape collects every metric in one synchronous pass.
  let snapshot: ServerStats | null = null;
  const stats = (): ServerStats => {
    if (snapshot === null) {
      snapshot = server.stats();
      queueMicrotask(() => {
        snapshot = null;
      });
    }
    return snapshot;
  };

  const gauge = (name: string, help: string, read: (s: ServerStats) => number): void => {
    names.push(p + name);
    new Gauge({
      name: p + name,
      help,
      registers,
      collect() {
        this.set(read(stats()));
      },
    });
  };
  const counter = (name: string, help: string, read: (s: ServerStats) => number): void => {
    names.push(p + name);
    new Counter({
      name: p + name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read(stats()));
      },
    });
  };
  const labelled = <K extends string>(
    name: string,
    help: string,
    label: string,
    read: (s: ServerStats) => Record<K, number>,
  ): void => {
    names.push(p + name);
    new Counter({
      name: p + name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [key, value] of Object.entries<number>(read(stats()))) this.inc({ [label]: key }, value);
      },
    });
  };

  gauge('connections_active', 'Handlers running now.', (s) => s.active);
  gauge('connections_waiting', 'Connections queued at the cap, not yet admitted.', (s) => s.waiting);
  gauge('connections_lingering', 'Connections whose handler ended, in their lingering close.', (s) => s.lingering);
  gauge('connections_max', 'The cap on handlers running at once (maxConnections).', (s) => s.limits.maxConnections);
  gauge('connections_waiting_max', 'The bound of the wait queue (maxWaiting).', (s) => s.limits.maxWaiting);
  gauge('queued_output_bytes', 'Bytes written by handlers and not yet handed to the kernel.', (s) => s.queuedBytes);
  gauge('descriptors_open', 'Sockets the server holds open (running, waiting, lingering).', (s) => s.descriptors.open);
  gauge(
    'descriptors_max',
    'Sockets the server may hold before it sheds new connections at accept (the descriptor budget).',
    (s) => (Number.isFinite(s.descriptors.budget) ? s.descriptors.budget : -1),
  );
  counter('connections_accepted_total', 'Sockets the listener accepted.', (s) => s.accepted);
  counter('connections_served_total', 'Handlers started.', (s) => s.served);
  labelled('connections_rejected_total', 'Connections turned away, by reason.', 'reason', (s) => s.rejected);
  labelled('timeouts_total', 'Connections ended by a deadline, by deadline.', 'kind', (s) => s.timeouts);
  counter('handler_errors_total', 'Handlers that ended by throwing.', (s) => s.errors);
  counter(
    'slow_consumers_total',
    'Connections destroyed for queueing more than maxQueuedBytes.',
    (s) => s.slowConsumers,
  );
  counter('accept_errors_total', 'Connections shed at accept for want of descriptors.', (s) => s.acceptErrors);
  counter(
    'tls_handshake_failures_total',
    'TLS handshakes that failed (not TLS, bad version, rejected certificate, timed out): closed before any handler ran.',
    (s) => s.tlsErrors,
  );
  counter(
    'proxy_header_failures_total',
    'PROXY protocol headers refused (malformed, from an untrusted peer, missing, timed out): closed before the gate.',
    (s) => s.proxyErrors,
  );
  counter('read_bytes_total', 'Bytes received from peers.', (s) => s.bytesRead);
  counter('written_bytes_total', 'Bytes handed to the kernel for peers.', (s) => s.bytesWritten);

  const startedAt = Date.now() / 1000;
  names.push(`${p}server_start_time_seconds`, `${p}server_info`);
  new Gauge({
    name: `${p}server_start_time_seconds`,
    help: 'When the server started listening, in seconds since the Unix epoch.',
    registers,
    collect() {
      this.set(startedAt);
    },
  });
  new Gauge({
    name: `${p}server_info`,
    help: 'The address the server listens on.',
    labelNames: ['address'],
    registers,
  }).set({ address: formatAddress(server.address) }, 1);

  if (server.stats().workers !== undefined) workerMetrics(p, registers, names, () => stats().workers ?? []);
}

/** A primary's series per worker, labelled `worker` (the slot) and `pid` (a replacement is a new series). */
function workerMetrics(p: string, registers: Registry[], names: string[], rows: () => WorkerStats[]): void {
  const STATES = ['starting', 'serving', 'draining'] as const;
  names.push(`${p}workers`);
  new Gauge({
    name: `${p}workers`,
    help: 'Worker processes, by state.',
    labelNames: ['state'],
    registers,
    collect() {
      for (const state of STATES) this.set({ state }, rows().filter((w) => w.state === state).length);
    },
  });
  const labelNames = ['worker', 'pid'];
  const labelsOf = (w: WorkerStats) => ({ worker: String(w.slot), pid: String(w.pid) });
  /** A gauge or a counter with one series per worker, rebuilt at each scrape (both count up from a reset). */
  const series =
    (Metric: typeof Gauge | typeof Counter) =>
    (name: string, help: string, read: (w: WorkerStats) => number): void => {
      names.push(p + name);
      new Metric({
        name: p + name,
        help,
        labelNames,
        registers,
        collect(this: Gauge | Counter) {
          this.reset();
          for (const w of rows()) this.inc(labelsOf(w), read(w));
        },
      });
    };
  const gauge = series(Gauge);
  const counter = series(Counter);
  gauge('worker_connections_active', 'Handlers running in the worker.', (w) => w.active);
  gauge('worker_connections_waiting', "Connections queued at the worker's share of the cap.", (w) => w.waiting);
  counter('worker_connections_accepted_total', 'Sockets the worker accepted.', (w) => w.accepted);
  gauge('worker_resident_memory_bytes', 'Resident set size of the worker process.', (w) => w.rssBytes);
  counter('worker_cpu_seconds_total', 'User and system CPU time of the worker process.', (w) => w.cpuUs / 1e6);
}

/** The event-loop delay, and the histograms fed by the diagnostics channels; returns the unsubscriber. */
function eventMetrics(server: Server, p: string, registers: Registry[], names: string[]): () => void {
  eventLoop.start();
  names.push(`${p}event_loop_delay_max_seconds`, `${p}event_loop_delay_p99_seconds`);
  new Gauge({
    name: `${p}event_loop_delay_max_seconds`,
    help: 'Longest event-loop delay of the last 10 seconds.',
    registers,
    collect() {
      this.set(eventLoop.maxMs() / 1000);
    },
  });
  new Gauge({
    name: `${p}event_loop_delay_p99_seconds`,
    help: 'Largest per-second 99th percentile of the event-loop delay over the last 10 seconds.',
    registers,
    collect() {
      this.set(eventLoop.p99Ms() / 1000);
    },
  });

  names.push(`${p}connection_duration_seconds`, `${p}wait_duration_seconds`, `${p}drain_duration_seconds`);
  const connDuration = new Histogram({
    name: `${p}connection_duration_seconds`,
    help: 'Life of a served connection, from admission to the socket closed.',
    buckets: DURATION_BUCKETS,
    registers,
  });
  const waitDuration = new Histogram({
    name: `${p}wait_duration_seconds`,
    help: 'Time an admitted connection spent in the wait queue (0 when admitted at once).',
    buckets: WAIT_BUCKETS,
    registers,
  });
  const drainDuration = new Histogram({
    name: `${p}drain_duration_seconds`,
    help: 'From the start of the drain to the close of each connection open at that moment.',
    buckets: DRAIN_BUCKETS,
    registers,
  });

  const openedAt = new Map<Conn, number>();
  let drainStart = 0;
  let draining: Set<Conn> | null = null;
  const onOpen = (message: unknown): void => {
    const m = message as ConnMessage;
    if (m.server !== server) return;
    openedAt.set(m.conn, performance.now());
    waitDuration.observe((m.waitMs ?? 0) / 1000);
  };
  const onClose = (message: unknown): void => {
    const m = message as ConnMessage;
    if (m.server !== server) return;
    const start = openedAt.get(m.conn);
    if (start === undefined) return;
    openedAt.delete(m.conn);
    const now = performance.now();
    connDuration.observe((now - start) / 1000);
    if (draining?.delete(m.conn)) drainDuration.observe((now - drainStart) / 1000);
  };
  const onDrain = (): void => {
    drainStart = performance.now();
    draining = new Set(openedAt.keys());
  };
  const open = diagnostics_channel.channel('tcpkit:connection:open');
  const close = diagnostics_channel.channel('tcpkit:connection:close');
  open.subscribe(onOpen);
  close.subscribe(onClose);
  server.signal.addEventListener('abort', onDrain, { once: true });
  return () => {
    open.unsubscribe(onOpen);
    close.unsubscribe(onClose);
    server.signal.removeEventListener('abort', onDrain);
    eventLoop.stop();
  };
}

/** Makes `metric` collect at most once every `ms`; the scrapes in between serve the values it last set. */
function refreshAtMost(metric: { collect?: (this: unknown) => unknown }, ms: number): void {
  const collect = metric.collect;
  if (collect === undefined) return;
  let last = Number.NEGATIVE_INFINITY;
  metric.collect = function (this: unknown) {
    const now = performance.now();
    if (now - last < ms) return;
    last = now;
    return collect.call(this);
  };
}
