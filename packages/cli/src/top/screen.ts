// The screen of `tcpkit top` as lines of text (label, content), laid out for 80 columns: a pure
// function of the history, so the layout is tested without a terminal.
import { type History, sparkline } from './sample.js';

/** One screen line: a bold label column and its content. */
export interface Line {
  label: string;
  text: string;
}

/** Width of the label column; the content gets the rest of 80 columns. */
export const LABEL_WIDTH = 12;
const SPARK = 20;

function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

function pairs(record: Record<string, number>): string {
  return Object.entries(record)
    .map(([k, v]) => `${k} ${count(v)}`)
    .join('  ');
}

/** The lines of one frame; `error` is the last failure to reach the endpoint, if any. */
export function screen(history: History, source: string, error: string | undefined): Line[] {
  const sample = history.samples.at(-1);
  const lines: Line[] = [];
  if (sample === undefined) {
    lines.push({ label: 'tcpkit top', text: `waiting for ${source}` });
    if (error !== undefined) lines.push({ label: 'error', text: error });
    lines.push({ label: '', text: 'q quit' });
    return lines;
  }
  const s = sample.stats;
  const rate = history.rates.at(-1) ?? { accepts: 0, closes: 0, bytesIn: 0, bytesOut: 0 };
  const uptime = sample.startedAt === undefined ? '' : `up ${duration(Date.now() / 1000 - sample.startedAt)}`;
  lines.push({
    label: 'tcpkit top',
    text: `${sample.address ?? '?'}  ${uptime}  ${sample.ready ? 'ready' : 'NOT READY (shutting down)'}`,
  });
  const active = history.samples.map((x) => x.stats.active);
  lines.push({
    label: 'active',
    text: `${count(s.active).padStart(7)} / ${count(s.limits.maxConnections).padEnd(7)} ${sparkline(active, SPARK)}`,
  });
  lines.push({
    label: 'waiting',
    text: `${count(s.waiting).padStart(7)} / ${count(s.limits.maxWaiting).padEnd(7)} lingering ${count(s.lingering)}`,
  });
  const accepts = history.rates.map((r) => r.accepts);
  lines.push({
    label: 'accepts/s',
    text: `${count(rate.accepts).padStart(7)}  ${sparkline(accepts, SPARK)}  closes/s ${count(rate.closes)}`,
  });
  const bytesIn = history.rates.map((r) => r.bytesIn);
  lines.push({
    label: 'bytes in/s',
    text: `${bytes(rate.bytesIn).padStart(11)}  ${sparkline(bytesIn, SPARK)}  out/s ${bytes(rate.bytesOut)}`,
  });
  lines.push({ label: 'rejected', text: pairs(s.rejected) });
  lines.push({ label: 'timeouts', text: pairs(s.timeouts) });
  lines.push({
    label: 'errors',
    text: `handler ${count(s.errors)}  slow consumers ${count(s.slowConsumers)}  accept ${count(s.acceptErrors)}`,
  });
  const rss = sample.rssBytes === undefined ? '?' : bytes(sample.rssBytes);
  const loop =
    sample.loopP99Ms === undefined
      ? '?'
      : `p99 ${sample.loopP99Ms.toFixed(1)} ms  max ${(sample.loopMaxMs ?? 0).toFixed(1)} ms`;
  lines.push({ label: 'process', text: `rss ${rss}  event loop ${loop}` });
  lines.push({
    label: 'descriptors',
    text: `${count(s.descriptors.open)} open / ${s.descriptors.budget === 0 ? 'no budget' : count(s.descriptors.budget)}  queued out ${bytes(s.queuedBytes)}`,
  });
  for (const [i, w] of (s.workers ?? []).entries()) {
    lines.push({
      label: `worker ${w.slot + 1}${i > 0 && s.workers![i - 1]!.slot === w.slot ? "'" : ''}`,
      text: `pid ${w.pid}  ${w.state}  active ${count(w.active)}  waiting ${count(w.waiting)}  accepted ${count(w.accepted)}  errors ${count(w.errors)}`,
    });
  }
  if (error !== undefined) lines.push({ label: 'error', text: error });
  lines.push({ label: '', text: 'q quit' });
  return lines;
}
