// The primary's stats(): the workers' counters summed, plus one row per worker process.
import type { ServerStats } from '../server.js';
import type { WorkerReport } from './protocol.js';

/** One worker process in a primary's `stats().workers`. */
export interface WorkerStats {
  /** The worker's process id. */
  pid: number;
  /** Its position among the workers (0-based); a replacement takes the slot of the worker it replaces. */
  slot: number;
  /** `'starting'` until it listens, `'serving'`, then `'draining'` once asked to stop (restart or shutdown). */
  state: 'starting' | 'serving' | 'draining';
  /** Handlers running in it now. */
  active: number;
  /** Connections queued at its share of the cap. */
  waiting: number;
  /** Sockets it accepted. */
  accepted: number;
  /** Handlers it started. */
  served: number;
  /** Its handlers that ended by throwing. */
  errors: number;
  /** Its resident set size, in bytes. */
  rssBytes: number;
  /** Its user plus system CPU time since it started, in microseconds. */
  cpuUs: number;
}

/** Counters that describe the present (not a count since start): a departed worker's no longer apply. */
const GAUGES = ['active', 'waiting', 'lingering', 'queuedBytes', 'descriptors', 'limits', 'workers'] as const;

type Counters = { [key: string]: number | Counters };

/** Adds every number of `from` into `into`, recursively (so counters added to ServerStats later are summed too). */
function addInto(into: Counters, from: Counters): void {
  for (const [key, value] of Object.entries(from)) {
    if (typeof value === 'number') into[key] = ((into[key] as number | undefined) ?? 0) + value;
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      if (into[key] === undefined) into[key] = {};
      addInto(into[key] as Counters, value);
    }
  }
}

/** Counters of workers that have exited, so the primary's totals keep counting from its start. */
export class StatsTotals {
  #retired: Counters = {};
  /** Every counter at zero, in the shape of the workers' reports (so a total never lacks a field). */
  #zero: Counters = {};

  /** Learns the counters' shape from a report. */
  seen(report: WorkerReport): void {
    if (Object.keys(this.#zero).length === 0) this.#zero = zeroed(report.stats as unknown as Counters);
  }

  /** Folds a departed worker's last report into the totals (gauges like `active` do not carry over). */
  retire(report: WorkerReport | undefined): void {
    if (report === undefined) return;
    const cumulative = { ...report.stats } as Partial<ServerStats>;
    for (const gauge of GAUGES) delete cumulative[gauge];
    addInto(this.#retired, cumulative as unknown as Counters);
  }

  /** The sum of the retired workers and the live ones' last reports, with one row per live worker. */
  sum(live: { report: WorkerReport | undefined; row: Omit<WorkerStats, keyof WorkerCounters> }[]): ServerStats {
    const total = structuredClone(this.#zero);
    addInto(total, this.#retired);
    const workers: WorkerStats[] = [];
    for (const { report, row } of live) {
      if (report !== undefined) {
        const { workers: _workers, ...stats } = report.stats;
        addInto(total, stats as unknown as Counters);
      }
      workers.push({ ...row, ...counters(report) });
    }
    return { ...(total as unknown as ServerStats), workers };
  }
}

function zeroed(from: Counters): Counters {
  const out: Counters = {};
  for (const [key, value] of Object.entries(from)) {
    if (typeof value === 'number') out[key] = 0;
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) out[key] = zeroed(value);
  }
  return out;
}

type WorkerCounters = Pick<WorkerStats, 'active' | 'waiting' | 'accepted' | 'served' | 'errors' | 'rssBytes' | 'cpuUs'>;

function counters(report: WorkerReport | undefined): WorkerCounters {
  if (report === undefined) return { active: 0, waiting: 0, accepted: 0, served: 0, errors: 0, rssBytes: 0, cpuUs: 0 };
  const s = report.stats;
  return {
    active: s.active,
    waiting: s.waiting,
    accepted: s.accepted,
    served: s.served,
    errors: s.errors,
    rssBytes: report.rssBytes,
    cpuUs: report.cpuUs,
  };
}
