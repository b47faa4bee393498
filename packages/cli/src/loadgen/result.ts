/** The shape of a finished run, as printed by `tcpkit bench --json`. */
import type { BenchEnvironment } from './environment.js';
import type { LatencySummary, PercentilePoint } from './histogram.js';
import type { ResolvedBenchOptions } from './options.js';

/** The run's phases: connections opening, unmeasured warm-up, the measured window. */
export type Phase = 'connect' | 'warmup' | 'measure';

/** One reporting interval, for the progress line and the throughput-over-time chart. */
export interface TimelinePoint {
  /** Seconds since the run started, at the end of the interval. */
  t: number;
  phase: Phase;
  messagesPerSec: number;
  mibPerSec: number;
  /** Latency of the interval, microseconds. */
  p50Us: number;
  p99Us: number;
  /** Errors in the interval. */
  errors: number;
  openConnections: number;
}

/** Server-side cost, when `serverPid` was given. */
export interface ServerCost {
  pid: number;
  /** Server CPU time (user+system) during the measured window, microseconds. */
  cpuUs: number;
  /** Server CPU time per message (per connection cycle in churn); null without messages. */
  cpuUsPerMessage: number | null;
  /**
   * The user part of `cpuUsPerMessage` (the server's own code, without the kernel's socket work, which
   * on loopback also carries the peer's side and varies most from run to run); null without messages.
   */
  userUsPerMessage: number | null;
  /** Server CPU use during the window, percent of one core. */
  cpuPercent: number;
  /** RSS before the first connection, at the end of the window, and the highest sampled. */
  rssBaselineBytes: number;
  rssEndBytes: number;
  rssPeakBytes: number;
  /** (RSS at end - baseline) / connections open at the end; null without open connections. Meaningful in idle mode; elsewhere it also counts buffers and heap grown by the traffic. */
  rssPerConnectionBytes: number | null;
}

export interface BenchResult {
  tool: 'tcpkit bench';
  startedAt: string;
  /** The command line, tcpkit and Node.js versions, OS and CPU of the generator's host. */
  environment: BenchEnvironment;
  options: ResolvedBenchOptions;
  /** True if the run was stopped early (Ctrl-C); the figures cover what was measured. */
  interrupted: boolean;
  /** Actual length of the measured window, ms. */
  measuredMs: number;
  /** Completed messages in the window (completed connect-send-receive-close cycles in churn). */
  messages: number;
  messagesPerSec: number;
  /** Connection cycles per second in churn mode; null in other modes. */
  connectionsPerSec: number | null;
  bytesSent: number;
  bytesReceived: number;
  /** Received MiB/s in the window. */
  mibPerSec: number;
  /**
   * Latency in microseconds: send to full echo; connect to echo in churn; intended send time to echo in open-loop,
   * where a message still unanswered when the run stops counts with its latency so far (so `count` may exceed
   * `messages` by what was outstanding).
   */
  latencyUs: LatencySummary;
  /**
   * Open-loop only (null otherwise): how long after its intended send time each message of the window left,
   * microseconds. The latency includes it; a high tail here is the generator's own stall (its GC, its core
   * taken by another process), not the server's.
   */
  sendLagUs: LatencySummary | null;
  percentiles: PercentilePoint[];
  /** Errors of the whole run (all phases) by kind, e.g. `ECONNRESET`, `connect ECONNREFUSED`, `verify`. */
  errors: Record<string, number>;
  errorsTotal: number;
  connections: {
    target: number;
    /** Established over the whole run (every cycle in churn). */
    established: number;
    /** Of those, TLS connections whose session the server resumed (0 without `--tls`). */
    resumed: number;
    failed: number;
    /** Open at the end of the window. */
    open: number;
    /** Time from the start until every connection had connected (or failed) once, ms; null if the connect phase timed out first. */
    openMs: number | null;
  };
  /** One row per engine (thread or process): the process it ran in and its connection counts over the run. */
  generators: { pid: number; established: number; failed: number }[];
  /** The generator's own CPU during the window, percent of one core (all threads). Near 100 x cores used = generator-bound. */
  generatorCpuPercent: number;
  /**
   * The whole machine's busy CPU during the window, percent of one core (200 = two cores busy); null
   * without /proc. Well above generator + server means other processes competed for the CPUs.
   */
  machineCpuPercent: number | null;
  server: ServerCost | null;
  timeline: TimelinePoint[];
}
