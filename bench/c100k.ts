/**
 * `npm run bench -- --only c100k`: 100,000 concurrent connections held against `tcpkit serve echo
 * --workers N`, opened by `tcpkit bench --mode idle --processes P` over 16 source addresses. Each
 * connection echoes one 64 B message when it opens and one before it closes. Reports the time to open
 * all of them, the errors (refused, reset, timed out: none expected), the server's total RSS per
 * connection (primary and workers, from /proc, at the peak of held connections) and the spread over
 * the workers. Bounded in time; every process it starts is stopped by its pid.
 *
 * Options: --connections N (100000), --workers N (8), --processes N (8), --hold 10s, --write (the
 * `c100k-nodeNN` section of docs/benchmarks.md, NN the major version of Node that ran it).
 * One process may hold at most its open-file limit (20,000 here) of descriptors: workers and load
 * processes are each given a share well under it.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { BenchResult } from '../packages/cli/src/loadgen/result.js';
import { childrenOf, rssKiB, runLoadgen, startProcess, writeSection } from './common.js';

const cli = 'packages/cli/src/main.ts';
const argv = process.argv.slice(2);
const option = (name: string, fallback: string): string =>
  argv.includes(name) ? argv[argv.indexOf(name) + 1]! : fallback;
const CONNECTIONS = Number(option('--connections', '100000'));
const WORKERS = Number(option('--workers', '8'));
const PROCESSES = Number(option('--processes', '8'));
const HOLD = option('--hold', '10s');
/** The generator is killed past this, whatever happens (the run itself takes a minute or two). */
const BOUND_MS = 300_000;

function sysctl(name: string): string {
  return readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8')
    .trim()
    .replace(/\s+/g, ' ');
}

const limits = {
  somaxconn: sysctl('net.core.somaxconn'),
  portRange: sysctl('net.ipv4.ip_local_port_range'),
  fileMax: sysctl('fs.file-max'),
  nrOpen: sysctl('fs.nr_open'),
};
console.log(`kernel: ${JSON.stringify(limits)}`);

const server = await startProcess(
  [
    process.execPath,
    '--import',
    'tsx',
    cli,
    'serve',
    'echo',
    '--port',
    '0',
    '--workers',
    String(WORKERS),
    '--max-connections',
    String(CONNECTIONS * 2),
    '--idle-timeout',
    '0',
    '--first-byte-timeout',
    '0',
    '--backlog',
    '4096',
    '--admin-port',
    '0',
    '--log-format',
    'json',
  ],
  {
    ready: /"admin":"[^"]+","msg":"listening"/,
    env: { NODE_OPTIONS: '--conditions=tcpkit-source' },
    timeoutMs: 120_000,
  },
);
const listening = JSON.parse(server.output.split('\n').find((l) => l.includes('"admin"'))!) as {
  address: string;
  admin: string;
  /** What `balance: 'auto'` chose on this Node: 'kernel' (SO_REUSEPORT) or 'primary' (round-robin). */
  balance: string;
};
const port = Number(listening.address.split(':').pop());
const serverPids = (): number[] => [server.pid, ...childrenOf(server.pid)];
/** Resident set of the primary and every worker, bytes. */
const rss = (): number =>
  serverPids().reduce((sum, pid) => {
    try {
      return sum + rssKiB(pid) * 1024;
    } catch {
      return sum;
    }
  }, 0);
const stats = async (): Promise<{ active: number; workers: { active: number }[] }> =>
  (await fetch(`http://${listening.admin}/stats`)).json() as Promise<{ active: number; workers: { active: number }[] }>;
const baseline = rss();

// While the connections open and are held: the most held at once, the servers' RSS then, the spread.
let peak = { active: 0, rss: 0, perWorker: [] as number[] };
const sampler = setInterval(async () => {
  try {
    const s = await stats();
    if (s.active >= peak.active) peak = { active: s.active, rss: rss(), perWorker: s.workers.map((w) => w.active) };
  } catch {}
}, 500);
let result: BenchResult;
try {
  result = await runLoadgen(
    port,
    [
      '--mode',
      'idle',
      '--connections',
      String(CONNECTIONS),
      '--processes',
      String(PROCESSES),
      '--source-addresses',
      '127.0.0.1-127.0.0.16',
      '--duration',
      HOLD,
      '--warmup',
      '0',
      // The connect phase lasts up to this plus a second: 100,000 opens take tens of seconds on 2 busy cores.
      '--connect-timeout',
      '90s',
      '--allow-errors',
    ],
    { pin: false, timeoutMs: BOUND_MS },
  );
} finally {
  clearInterval(sampler);
  // The primary drains its workers; past the grace it and they are killed by pid.
  const workers = childrenOf(server.pid);
  await server.stop('SIGTERM', 30_000);
  for (const pid of workers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
}
const perConn = peak.active > 0 ? (peak.rss - baseline) / peak.active : 0;
const spread = peak.perWorker.length > 0 ? Math.max(...peak.perWorker) / Math.max(1, Math.min(...peak.perWorker)) : 0;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(2)} KiB`;
const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const lines = [
  `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on Node ${process.version}, ${os.cpus()[0]?.model}, ${os.cpus().length} cores, ${mib(os.totalmem())} RAM, load average ${os
    .loadavg()
    .map((v) => v.toFixed(2))
    .join(
      ' ',
    )} at the end (shared machine). Kernel: somaxconn ${limits.somaxconn}, ip_local_port_range ${limits.portRange}, file-max ${limits.fileMax}, nr_open ${limits.nrOpen}; open files ${20_000} per process.`,
  '',
  `\`tcpkit serve echo --workers ${WORKERS}\` against \`tcpkit bench --mode idle -c ${CONNECTIONS.toLocaleString('en-US')} --processes ${PROCESSES} --source-addresses 127.0.0.1-127.0.0.16\`, held ${HOLD}:`,
  '',
  '| figure | value |',
  '|---|---:|',
  `| balance (auto chose) | ${listening.balance} |`,
  `| connections established | ${result.connections.established.toLocaleString('en-US')} of ${CONNECTIONS.toLocaleString('en-US')} |`,
  `| held at once (server's active, peak) | ${peak.active.toLocaleString('en-US')} |`,
  `| time to open all (connected and echoed once) | ${result.connections.openMs === null ? 'not all opened' : `${(result.connections.openMs / 1000).toFixed(1)} s`} |`,
  `| echoed again before closing | ${result.messages.toLocaleString('en-US')} |`,
  `| errors | ${result.errorsTotal}${
    result.errorsTotal > 0
      ? ` (${Object.entries(result.errors)
          .map(([k, n]) => `${k}: ${n}`)
          .join(', ')})`
      : ''
  } |`,
  `| failed connects | ${result.connections.failed} |`,
  `| server RSS, all ${WORKERS + 1} processes: baseline → held | ${mib(baseline)} → ${mib(peak.rss)} |`,
  `| server RSS per connection | ${kib(perConn)} |`,
  `| connections per worker, max/min | ${spread.toFixed(2)} (${peak.perWorker.join(' / ')}) |`,
  `| generator processes (pids) | ${result.generators.length} (${result.generators.map((g) => g.established).join(' / ')} connections) |`,
];
console.log(lines.join('\n'));
if (argv.includes('--write')) writeSection(`c100k-node${process.versions.node.split('.')[0]}`, lines.join('\n'));
