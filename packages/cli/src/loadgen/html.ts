/**
 * `--html FILE`: one self-contained page (inline CSS and SVG, no script, no network) with the
 * summary, a latency-by-percentile chart and a throughput-over-time chart.
 */
import { formatBytes, formatCount, formatLatency } from './report.js';
import type { BenchResult } from './result.js';

interface Series {
  label: string;
  color: string;
  points: Array<[number, number]>;
  /** Plot against the right-hand axis. */
  right?: boolean;
}

interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  yRightLabel?: string;
  xTicks: Array<[number, string]>;
  xMax: number;
  series: Series[];
  yFormat: (v: number) => string;
  yRightFormat?: (v: number) => string;
  /** Shaded x ranges (phases). */
  bands?: Array<{ from: number; to: number; label: string; color: string }>;
}

const W = 900;
const H = 340;
const M = { left: 80, right: 80, top: 40, bottom: 50 };

function escapeXml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `value`. */
function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function lineChart(spec: ChartSpec): string {
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const left = spec.series.filter((s) => !s.right);
  const right = spec.series.filter((s) => s.right);
  const yMax = niceMax(Math.max(0, ...left.flatMap((s) => s.points.map((p) => p[1]))));
  const yRightMax = niceMax(Math.max(0, ...right.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (v: number) => M.left + (spec.xMax > 0 ? (v / spec.xMax) * plotW : 0);
  const y = (v: number, onRight = false) => M.top + plotH - (v / (onRight ? yRightMax : yMax)) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">`);
  parts.push(`<title>${escapeXml(spec.title)}</title>`);
  parts.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="600">${escapeXml(spec.title)}</text>`,
  );
  for (const band of spec.bands ?? []) {
    const bx = x(band.from);
    const bw = Math.max(0, x(band.to) - bx);
    parts.push(`<rect x="${bx}" y="${M.top}" width="${bw}" height="${plotH}" fill="${band.color}"/>`);
    if (bw > 40) {
      parts.push(
        `<text x="${bx + bw / 2}" y="${M.top + 14}" text-anchor="middle" font-size="11" fill="#666">${escapeXml(band.label)}</text>`,
      );
    }
  }
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    const py = y(v);
    parts.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${py}" y2="${py}" stroke="#ddd"/>`);
    parts.push(
      `<text x="${M.left - 6}" y="${py + 4}" text-anchor="end" font-size="11">${escapeXml(spec.yFormat(v))}</text>`,
    );
    if (right.length && spec.yRightFormat) {
      parts.push(
        `<text x="${M.left + plotW + 6}" y="${py + 4}" font-size="11">${escapeXml(spec.yRightFormat((yRightMax * i) / 5))}</text>`,
      );
    }
  }
  for (const [v, label] of spec.xTicks) {
    const px = x(v);
    parts.push(`<line x1="${px}" x2="${px}" y1="${M.top}" y2="${M.top + plotH}" stroke="#eee"/>`);
    parts.push(
      `<text x="${px}" y="${M.top + plotH + 16}" text-anchor="middle" font-size="11">${escapeXml(label)}</text>`,
    );
  }
  parts.push(
    `<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`,
    `<text x="${M.left + plotW / 2}" y="${H - 10}" text-anchor="middle" font-size="12">${escapeXml(spec.xLabel)}</text>`,
    `<text transform="translate(16 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(spec.yLabel)}</text>`,
  );
  if (spec.yRightLabel) {
    parts.push(
      `<text transform="translate(${W - 12} ${M.top + plotH / 2}) rotate(90)" text-anchor="middle" font-size="12">${escapeXml(spec.yRightLabel)}</text>`,
    );
  }
  spec.series.forEach((series, i) => {
    const points = series.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py, series.right).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${points}" fill="none" stroke="${series.color}" stroke-width="2"/>`);
    for (const [px, py] of series.points.length <= 60 ? series.points : []) {
      parts.push(
        `<circle cx="${x(px).toFixed(1)}" cy="${y(py, series.right).toFixed(1)}" r="2.5" fill="${series.color}"/>`,
      );
    }
    const lx = M.left + 10 + i * 190;
    parts.push(
      `<rect x="${lx}" y="${M.top + plotH + 26}" width="12" height="4" fill="${series.color}"/>`,
      `<text x="${lx + 16}" y="${M.top + plotH + 32}" font-size="11">${escapeXml(series.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** x position of a percentile on the 1/(1-p) log axis: 0 at 0%, 1 at 90%, 2 at 99%, ... */
function percentileX(percentile: number): number {
  return percentile >= 100 ? 5 : Math.min(5, Math.log10(100 / (100 - percentile)));
}

export function latencyChart(result: BenchResult): string {
  const points = result.percentiles.map((p): [number, number] => [percentileX(p.percentile), p.valueUs / 1000]);
  return lineChart({
    title: 'Latency by percentile',
    xLabel: 'percentile',
    yLabel: 'latency (ms)',
    xTicks: [
      [0, '0%'],
      [1, '90%'],
      [2, '99%'],
      [3, '99.9%'],
      [4, '99.99%'],
      [5, '99.999%'],
    ],
    xMax: 5,
    series: [{ label: 'latency (ms)', color: '#1f77b4', points }],
    yFormat: (v) => `${Number(v.toPrecision(3))}`,
  });
}

export function throughputChart(result: BenchResult): string {
  const timeline = result.timeline;
  const xMax = Math.max(1, ...timeline.map((p) => p.t));
  const bands: NonNullable<ChartSpec['bands']> = [];
  let from = 0;
  for (let i = 0; i < timeline.length; i++) {
    const point = timeline[i]!;
    const next = timeline[i + 1];
    if (!next || next.phase !== point.phase) {
      const color = point.phase === 'measure' ? '#ffffff' : point.phase === 'warmup' ? '#fff6d8' : '#eeeeee';
      bands.push({ from, to: point.t, label: point.phase, color });
      from = point.t;
    }
  }
  const step = niceMax(xMax / 10);
  const xTicks: Array<[number, string]> = [];
  for (let t = 0; t <= xMax + 1e-9; t += step) xTicks.push([t, `${Number(t.toFixed(2))}s`]);
  const unit = result.options.mode === 'churn' ? 'connections/s' : 'messages/s';
  return lineChart({
    title: 'Throughput over time',
    xLabel: 'time since start (s)',
    yLabel: unit,
    yRightLabel: 'p99 latency (ms)',
    xTicks,
    xMax,
    bands,
    series: [
      { label: unit, color: '#2ca02c', points: timeline.map((p) => [p.t, p.messagesPerSec]) },
      { label: 'p99 latency (ms)', color: '#d62728', points: timeline.map((p) => [p.t, p.p99Us / 1000]), right: true },
    ],
    yFormat: (v) => formatCount(v),
    yRightFormat: (v) => `${Number(v.toPrecision(3))}`,
  });
}

/** The whole report page. */
export function renderHtml(result: BenchResult): string {
  const { options: o, latencyUs: l } = result;
  const rows: Array<[string, string]> = [
    ['target', `${o.host}:${o.port}`],
    [
      'load',
      `${o.mode}, ${formatCount(o.connections)} connections, ${o.size} B, depth ${o.depth}${o.rate ? `, rate ${formatCount(o.rate)}/s` : ''}, ${o.workers} worker(s)`,
    ],
    ['measured', `${(result.measuredMs / 1000).toFixed(2)} s${result.interrupted ? ' (interrupted)' : ''}`],
    [o.mode === 'churn' ? 'connections/s' : 'messages/s', formatCount(result.messagesPerSec)],
    ['throughput', `${result.mibPerSec.toFixed(2)} MiB/s`],
    [
      'latency',
      `p50 ${formatLatency(l.p50)}, p90 ${formatLatency(l.p90)}, p99 ${formatLatency(l.p99)}, p99.9 ${formatLatency(l.p999)}, max ${formatLatency(l.max)}`,
    ],
    [
      'connections',
      `${formatCount(result.connections.established)} established, ${formatCount(result.connections.failed)} failed`,
    ],
    [
      'errors',
      `${result.errorsTotal} ${Object.entries(result.errors)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ')}`,
    ],
    ['generator CPU', `${result.generatorCpuPercent}% of one core`],
  ];
  const lag = result.sendLagUs;
  if (lag !== null) {
    rows.splice(rows.length - 3, 0, [
      'send lag',
      `p50 ${formatLatency(lag.p50)}, p99 ${formatLatency(lag.p99)}, p99.9 ${formatLatency(lag.p999)}, max ${formatLatency(lag.max)} (the generator's own lateness, included in the latency)`,
    ]);
  }
  const env = result.environment;
  rows.push(
    ['command', env.commandLine],
    ['versions', `tcpkit ${env.tcpkitVersion}, Node.js ${env.nodeVersion}`],
    ['host', `${env.cpuCount} × ${env.cpuModel}, ${env.os}`],
  );
  if (result.server) {
    const s = result.server;
    rows.push([
      'server',
      `pid ${s.pid}, ${s.cpuPercent}% CPU, ${s.cpuUsPerMessage ?? '-'} µs CPU/message, RSS ${formatBytes(s.rssEndBytes)}${o.mode !== 'idle' || s.rssPerConnectionBytes === null ? '' : `, ${formatBytes(s.rssPerConnectionBytes)}/connection`}`,
    ]);
  }
  const table = rows.map(([k, v]) => `<tr><th>${escapeXml(k)}</th><td>${escapeXml(v)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tcpkit bench report: ${escapeXml(o.mode)} ${escapeXml(o.host)}:${o.port}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin-bottom: 24px; }
th { text-align: left; padding: 4px 16px 4px 0; color: #555; font-weight: 600; }
td { padding: 4px 0; }
svg { display: block; margin: 16px 0; font-family: system-ui, sans-serif; }
</style>
</head>
<body>
<h1>tcpkit bench report</h1>
<p>Started ${escapeXml(result.startedAt)}</p>
<table>
${table}
</table>
${latencyChart(result)}
${throughputChart(result)}
</body>
</html>
`;
}
