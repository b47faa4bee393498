// What `tcpkit top` shows, as data: one sample a second from the admin endpoint (/stats and /metrics),
// the rates between two samples, a minute of history, and the sparklines drawn from it.
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { ServerStats } from 'tcpkit';

/** `stats()` as /stats serves it; `workers` lists the worker processes of a server with workers. */
export type TopStats = ServerStats;

/** One reading of the admin endpoint. */
export interface Sample {
  /** performance.now() when taken, ms. */
  at: number;
  stats: TopStats;
  address: string | undefined;
  /** When the server started listening, Unix seconds. */
  startedAt: number | undefined;
  rssBytes: number | undefined;
  loopMaxMs: number | undefined;
  loopP99Ms: number | undefined;
  ready: boolean;
}

/** Per-second rates between two samples. */
export interface Rates {
  accepts: number;
  closes: number;
  bytesIn: number;
  bytesOut: number;
}

/** Seconds of history the sparklines cover. */
export const HISTORY = 60;

/** Connections whose socket has closed after being served. */
function closedTotal(s: ServerStats): number {
  return s.served - s.active - s.lingering;
}

export function rates(prev: Sample, next: Sample): Rates {
  const dt = Math.max(1e-3, (next.at - prev.at) / 1000);
  const per = (a: number, b: number): number => Math.max(0, (b - a) / dt);
  return {
    accepts: per(prev.stats.accepted, next.stats.accepted),
    closes: per(closedTotal(prev.stats), closedTotal(next.stats)),
    bytesIn: per(prev.stats.bytesRead, next.stats.bytesRead),
    bytesOut: per(prev.stats.bytesWritten, next.stats.bytesWritten),
  };
}

/** The last minute: samples and the rates between them, newest last. */
export class History {
  samples: Sample[] = [];
  rates: Rates[] = [];

  push(sample: Sample): void {
    const prev = this.samples.at(-1);
    if (prev !== undefined) this.rates.push(rates(prev, sample));
    this.samples.push(sample);
    if (this.samples.length > HISTORY + 1) this.samples.shift();
    if (this.rates.length > HISTORY) this.rates.shift();
  }
}

const BARS = '▁▂▃▄▅▆▇█';

/** A sparkline of `values` (newest last) in at most `width` cells, scaled to their maximum. */
export function sparkline(values: number[], width: number): string {
  const shown = values.slice(-width);
  const max = Math.max(...shown, 0);
  return shown
    .map((v) => (max === 0 ? BARS[0] : BARS[Math.min(BARS.length - 1, Math.floor((v / max) * (BARS.length - 1)))]))
    .join('')
    .padEnd(width);
}

/** Reads /stats and /metrics of the admin endpoint at `base` (e.g. http://127.0.0.1:9090). */
export async function takeSample(base: string, timeoutMs = 2000): Promise<Sample> {
  const signal = AbortSignal.timeout(timeoutMs);
  const [stats, metrics, ready] = await Promise.all([
    fetch(`${base}/stats`, { signal }).then(async (r) => {
      if (!r.ok) throw new Error(`/stats answered ${r.status}`);
      return (await r.json()) as TopStats;
    }),
    fetch(`${base}/metrics`, { signal }).then((r) => (r.ok ? r.text() : '')),
    fetch(`${base}/readyz`, { signal }).then(async (r) => {
      await r.text();
      return r.ok;
    }),
  ]);
  const families = new Map(parsePrometheusTextFormat(metrics).map((f) => [f.name, f.metrics]));
  const value = (name: string): number | undefined => {
    const v = families.get(name)?.[0]?.value;
    return v === undefined ? undefined : Number(v);
  };
  const loopMax = value('tcpkit_event_loop_delay_max_seconds');
  const loopP99 = value('tcpkit_event_loop_delay_p99_seconds');
  return {
    at: performance.now(),
    stats,
    address: families.get('tcpkit_server_info')?.[0]?.labels?.address,
    startedAt: value('tcpkit_server_start_time_seconds'),
    rssBytes: value('process_resident_memory_bytes'),
    loopMaxMs: loopMax === undefined ? undefined : loopMax * 1000,
    loopP99Ms: loopP99 === undefined ? undefined : loopP99 * 1000,
    ready,
  };
}
