/** Human-readable output of `tcpkit bench`: the progress line and the final summary. */
import type { BenchResult, TimelinePoint } from './result.js';

/** Formats microseconds as µs, ms or s with three significant digits. */
export function formatLatency(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toPrecision(3)} ms`;
  return `${(us / 1_000_000).toPrecision(3)} s`;
}

/** Formats bytes as B, KiB or MiB. */
export function formatBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '';
  const value = Math.abs(bytes);
  if (value < 1024) return `${sign}${Math.round(value)} B`;
  if (value < 1024 * 1024) return `${sign}${(value / 1024).toFixed(2)} KiB`;
  return `${sign}${(value / 1024 / 1024).toFixed(1)} MiB`;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatCount(value: number): string {
  return integer.format(value);
}

/** One progress line: elapsed, phase, rate, p99, errors, open connections. */
export function progressLine(point: TimelinePoint): string {
  return [
    `${point.t.toFixed(1).padStart(6)}s`,
    point.phase.padEnd(7),
    `${formatCount(point.messagesPerSec).padStart(10)} msg/s`,
    `${point.mibPerSec.toFixed(1).padStart(7)} MiB/s`,
    `p99 ${formatLatency(point.p99Us).padStart(9)}`,
    `errors ${point.errors}`,
    `conns ${formatCount(point.openConnections)}`,
  ].join('  ');
}

/** The final summary, as printed without `--json`. */
export function formatSummary(result: BenchResult): string {
  const { options, latencyUs: l } = result;
  const lines: string[] = [];
  const target = `${options.host}:${options.port}`;
  const load =
    options.mode === 'open-loop'
      ? `rate ${formatCount(options.rate ?? 0)}/s, depth ${options.depth}`
      : options.mode === 'echo'
        ? `depth ${options.depth}`
        : '';
  lines.push(
    `tcpkit bench ${options.mode} -> ${target}: ${formatCount(options.connections)} connections, ${options.size} B messages${load ? `, ${load}` : ''}, ${options.processes > 1 ? `${options.processes} processes` : `${options.workers} worker(s)`}`,
  );
  lines.push(
    `measured ${(result.measuredMs / 1000).toFixed(2)} s${result.interrupted ? ' (interrupted)' : ''}, after ${options.warmupMs / 1000} s warm-up`,
  );
  lines.push('');
  if (options.mode === 'idle') {
    // Each connection exchanged one message while connecting and one after the silent window.
    lines.push(`  held         ${formatCount(result.connections.open)} connections idle through the window`);
    lines.push(`  echoed       ${formatCount(result.messages)} of them once more at the end`);
  } else {
    // Over TLS every churn cycle is one handshake (a resumed one with --tls-resume).
    const unit = options.mode !== 'churn' ? 'messages   ' : options.tls ? 'handshakes ' : 'connections';
    lines.push(`  ${unit}  ${formatCount(result.messages)} (${formatCount(result.messagesPerSec)}/s)`);
    lines.push(`  throughput   ${result.mibPerSec.toFixed(2)} MiB/s received`);
    lines.push(
      `  latency      p50 ${formatLatency(l.p50)}  p90 ${formatLatency(l.p90)}  p99 ${formatLatency(l.p99)}  p99.9 ${formatLatency(l.p999)}  max ${formatLatency(l.max)}`,
    );
    const lag = result.sendLagUs;
    if (lag !== null) {
      lines.push(
        `  send lag     p50 ${formatLatency(lag.p50)}  p90 ${formatLatency(lag.p90)}  p99 ${formatLatency(lag.p99)}  p99.9 ${formatLatency(lag.p999)}  max ${formatLatency(lag.max)}  (the generator's own lateness, included in the latency)`,
      );
    }
  }
  lines.push(
    `  connections  ${formatCount(result.connections.established)} established${options.tls ? ` (${formatCount(result.connections.resumed)} resumed)` : ''}, ${formatCount(result.connections.failed)} failed, ${formatCount(result.connections.open)} open at end${result.connections.openMs === null ? '' : `; all open after ${(result.connections.openMs / 1000).toFixed(2)} s`}`,
  );
  const kinds = Object.entries(result.errors);
  lines.push(
    `  errors       ${result.errorsTotal}${kinds.length ? ` (${kinds.map(([k, n]) => `${k}: ${n}`).join(', ')})` : ''}`,
  );
  lines.push(
    `  generator    ${result.generatorCpuPercent}% CPU of one core${result.machineCpuPercent === null ? '' : `; whole machine ${result.machineCpuPercent}%`}`,
  );
  if (result.server) {
    const s = result.server;
    lines.push(
      `  server       pid ${s.pid}: ${s.cpuPercent}% CPU, ${s.cpuUsPerMessage ?? '-'} µs CPU per ${options.mode !== 'churn' ? 'message' : options.tls ? 'handshake' : 'connection'}, RSS ${formatBytes(s.rssEndBytes)} (baseline ${formatBytes(s.rssBaselineBytes)})${options.mode !== 'idle' || s.rssPerConnectionBytes === null ? '' : `, ${formatBytes(s.rssPerConnectionBytes)} per connection`}`,
    );
  }
  const env = result.environment;
  lines.push(
    `  host         ${env.cpuCount} × ${env.cpuModel}; tcpkit ${env.tcpkitVersion}, Node.js ${env.nodeVersion}, ${env.os}`,
  );
  return lines.join('\n');
}

/** Exit status of `tcpkit bench`: 0 for a clean run, 1 (with the reason) for a run that must not pass a CI gate. */
export function benchOutcome(result: BenchResult, allowErrors: boolean): { code: 0 | 1; reason?: string } {
  const kinds = Object.entries(result.errors)
    .map(([kind, n]) => `${kind}: ${n}`)
    .join(', ');
  if (result.connections.established === 0) {
    return { code: 1, reason: `no connection was established${kinds ? ` (${kinds})` : ''}` };
  }
  if (result.errorsTotal > 0 && !allowErrors) {
    return { code: 1, reason: `${result.errorsTotal} errors (${kinds}); --allow-errors exits 0 despite them` };
  }
  return { code: 0 };
}
