// Deadline bookkeeping at 10,000 connections: tcpkit's timer wheel (one interval; a read is a field
// write; an entry re-checks lazily when it fires) against a setTimeout per socket refreshed on every
// read (what socket.setTimeout does). Each variant runs alone in a child process for the same
// simulated traffic; we report CPU time and heap per connection.
// Usage: node --import tsx bench/timers.ts [--no-write]   (10,000 connections, 1,000,000 reads/s, 4 s, 5 runs)
// Writes the timers section of docs/benchmarks.md.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { type DeadlineEntry, Deadlines } from '../packages/tcpkit/src/deadlines.js';
import { writeSection } from './common.js';

const [connections = 10_000, readsPerSecond = 1_000_000, seconds = 4] = process.argv.slice(3).map(Number);
const IDLE = 1_000; // idle timeout (ms): short so entries really fire and re-arm during the run
const variant = ['none', 'wheel', 'timeout'].includes(process.argv[2] ?? '') ? process.argv[2] : undefined;

function simulate(onRead: (i: number) => void): Promise<void> {
  // Spread reads evenly over the connections, in 10 ms batches, for `seconds`.
  const perBatch = Math.round(readsPerSecond / 100);
  let next = 0;
  let batches = seconds * 100;
  return new Promise((resolve) => {
    const t = setInterval(() => {
      for (let k = 0; k < perBatch; k++) {
        onRead(next);
        next = (next + 1) % connections;
      }
      if (--batches === 0) {
        clearInterval(t);
        resolve();
      }
    }, 10);
  });
}

async function runVariant(): Promise<void> {
  let fired = 0;
  const heapBefore = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  if (variant === 'none') {
    const last = new Float64Array(connections);
    await simulate((i) => {
      last[i] = i;
    });
    report(0, fired, cpu0);
  } else if (variant === 'timeout') {
    const timers: NodeJS.Timeout[] = [];
    for (let i = 0; i < connections; i++) {
      timers.push(
        setTimeout(() => {
          fired++;
        }, IDLE),
      );
    }
    const heap = process.memoryUsage().heapUsed - heapBefore;
    await simulate((i) => timers[i]!.refresh());
    for (const t of timers) clearTimeout(t);
    report(heap, fired, cpu0);
  } else {
    const wheel = new Deadlines(100);
    class Entry implements DeadlineEntry {
      tick = -1;
      wheelPrev: DeadlineEntry | null = null;
      wheelNext: DeadlineEntry | null = null;
      lastReadAt = wheel.now();
      onDeadline(now: number): void {
        if (now >= this.lastReadAt + IDLE) fired++;
        wheel.schedule(this, Math.max(now, this.lastReadAt) + IDLE);
      }
    }
    const entries: Entry[] = [];
    for (let i = 0; i < connections; i++) {
      const e = new Entry();
      entries.push(e);
      wheel.schedule(e, e.lastReadAt + IDLE);
    }
    const heap = process.memoryUsage().heapUsed - heapBefore;
    await simulate((i) => {
      entries[i]!.lastReadAt = wheel.now();
    });
    for (const e of entries) wheel.cancel(e);
    report(heap, fired, cpu0);
  }
}

function report(heap: number, fired: number, cpu0: NodeJS.CpuUsage): void {
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, heapPerConn: heap / connections, fired }));
}

if (variant !== undefined) {
  await runVariant();
} else {
  const self = fileURLToPath(import.meta.url);
  const rows: Record<string, { cpuMs: number; heapPerConn: number }[]> = { none: [], wheel: [], timeout: [] };
  for (let r = 0; r < 5; r++) {
    for (const v of ['none', 'wheel', 'timeout']) {
      const out = spawnSync(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', self, v, String(connections), String(readsPerSecond), String(seconds)],
        { encoding: 'utf8' },
      );
      rows[v]!.push(JSON.parse(out.stdout.trim().split('\n').pop()!));
    }
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[2]!;

  const base = med(rows.none!.map((x) => x.cpuMs));
  const lines = [
    `${connections} connections, ${readsPerSecond} reads/s for ${seconds} s, idle timeout ${IDLE} ms; Node ${process.version}, ${os.cpus()[0]?.model}, ${os.cpus().length} cores; median of 5.`,
    '',
    '| deadlines | CPU ms for deadlines (run minus no-deadline baseline) | heap bytes per connection |',
    '|---|---|---|',
  ];
  for (const v of ['wheel', 'timeout'] as const) {
    const label = v === 'wheel' ? 'tcpkit timer wheel' : 'setTimeout per socket, refresh() per read';
    const cpu = med(rows[v]!.map((x) => x.cpuMs)) - base;
    lines.push(`| ${label} | ${cpu.toFixed(0)} | ${med(rows[v]!.map((x) => x.heapPerConn)).toFixed(0)} |`);
  }
  lines.push('', `(No-deadline baseline: ${base.toFixed(0)} ms of CPU for the simulated reads themselves.)`);
  console.log(lines.join('\n'));
  if (!process.argv.includes('--no-write')) writeSection('timers', lines.join('\n'));
}
