/**
 * What metrics cost: `tcpkit serve echo` with metrics off against the same server with the admin
 * endpoint on (the collector, event-loop watch and default process metrics) and /metrics scraped every
 * second, on 64 B ping-pong at 1,000 connections. Same run, alternating off/on (ABBA), fresh server
 * each time, server pinned to CPU 0 and generator to CPU 1. The figure is server CPU per message.
 *
 *   node --import tsx bench/metrics.ts [--repeats 3] [--no-write] [--no-scrape]
 *
 * --no-scrape leaves the endpoint unscraped: the resident cost alone (subscriptions, timers).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../packages/cli/src/loadgen/result.js';
import { writeSection } from './docs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);
const repeats = Number(argv[argv.indexOf('--repeats') + 1] ?? 3) || 3;
const LOAD = ['--mode', 'echo', '--connections', '1000', '--size', '64', '--duration', '8s', '--ramp-up', '1s'];

const hasTaskset = ((): boolean => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return os.cpus().length >= 2;
  } catch {
    return false;
  }
})();
const pinned = (cpu: number, command: string[]): string[] =>
  hasTaskset ? ['taskset', '-c', String(cpu), ...command] : command;

async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}

/** Starts the CLI's echo server, with the admin endpoint on `adminPort` if given; resolves once listening. */
async function startServer(port: number, adminPort: number | undefined): Promise<ChildProcess> {
  const admin = adminPort === undefined ? [] : ['--admin-port', String(adminPort)];
  const command = pinned(0, [
    process.execPath,
    '--conditions=tcpkit-source',
    '--import',
    'tsx',
    'packages/cli/src/main.ts',
    'serve',
    'echo',
    '--port',
    String(port),
    '--max-connections',
    '30000',
    ...admin,
  ]);
  const child = spawn(command[0]!, command.slice(1), { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"msg":"listening"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
  return child;
}

async function generate(port: number, serverPid: number): Promise<BenchResult> {
  const command = pinned(1, [
    process.execPath,
    '--import',
    'tsx',
    'bench/loadgen.ts',
    'bench',
    '--port',
    String(port),
    '--server-pid',
    String(serverPid),
    '--json',
    '--quiet',
    ...LOAD,
  ]);
  const child = spawn(command[0]!, command.slice(1), { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  await once(child, 'exit');
  clearTimeout(timer);
  return JSON.parse(stdout) as BenchResult;
}

interface Run {
  metrics: boolean;
  cpuUsPerMessage: number;
  messagesPerSec: number;
  p99Us: number;
  scrapes: number;
  otherCpu: number;
}

async function run(metrics: boolean): Promise<Run> {
  const port = await freePort();
  const adminPort = metrics ? await freePort() : undefined;
  const server = await startServer(port, adminPort);
  let scrapes = 0;
  const scraper =
    adminPort === undefined || argv.includes('--no-scrape')
      ? undefined
      : setInterval(() => {
          fetch(`http://127.0.0.1:${adminPort}/metrics`)
            .then((r) => r.text())
            .then(
              () => scrapes++,
              () => {},
            );
        }, 1000);
  try {
    const result = await generate(port, server.pid!);
    const cpu = result.server?.cpuUsPerMessage;
    if (cpu === undefined || cpu === null) throw new Error('the generator did not sample the server');
    return {
      metrics,
      cpuUsPerMessage: cpu,
      messagesPerSec: result.messagesPerSec,
      p99Us: result.latencyUs.p99,
      scrapes,
      otherCpu:
        result.machineCpuPercent === null
          ? 0
          : Math.max(0, result.machineCpuPercent - result.generatorCpuPercent - (result.server?.cpuPercent ?? 0)),
    };
  } finally {
    clearInterval(scraper);
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await once(server, 'exit');
    clearTimeout(timer);
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const runs: Run[] = [];
for (let i = 0; i < repeats; i++) {
  // ABBA: off, on, on, off, ... so a drift in the machine's load hits both sides alike.
  for (const metrics of i % 2 === 0 ? [false, true] : [true, false]) {
    const r = await run(metrics);
    console.log(
      `${metrics ? 'on ' : 'off'}  ${r.cpuUsPerMessage.toFixed(2)} µs CPU/msg  ${Math.round(r.messagesPerSec)} msg/s  p99 ${(r.p99Us / 1000).toFixed(2)} ms  scrapes ${r.scrapes}  other CPU ${r.otherCpu.toFixed(0)}%`,
    );
    runs.push(r);
  }
}
const side = (metrics: boolean): Run[] => runs.filter((r) => r.metrics === metrics);
const cpuOff = median(side(false).map((r) => r.cpuUsPerMessage));
const cpuOn = median(side(true).map((r) => r.cpuUsPerMessage));
const row = (label: string, rs: Run[]): string =>
  `| ${label} | ${median(rs.map((r) => r.cpuUsPerMessage)).toFixed(2)} (${rs.map((r) => r.cpuUsPerMessage.toFixed(2)).join(', ')}) | ${Math.round(median(rs.map((r) => r.messagesPerSec))).toLocaleString('en-US')} | ${(median(rs.map((r) => r.p99Us)) / 1000).toFixed(2)} | ${median(rs.map((r) => r.otherCpu)).toFixed(0)} |`;
const block = [
  `Measured ${new Date().toISOString().slice(0, 10)}: 64 B ping-pong, 1,000 connections, 8 s windows, ${repeats} runs a side alternating (ABBA), server pinned to CPU 0, generator to CPU 1${hasTaskset ? '' : ' (taskset missing: unpinned)'}. "On" is \`tcpkit serve echo --admin-port N\` (collector, event-loop watch, default process metrics) with \`/metrics\` fetched every second during the window.`,
  '',
  '| metrics | server CPU µs/msg, median (runs) | messages/s | p99 ms | other processes CPU % |',
  '|---|---|---|---|---|',
  row('off', side(false)),
  row('on, scraped every second', side(true)),
  '',
  `Cost: ${(((cpuOn - cpuOff) / cpuOff) * 100).toFixed(1)}% server CPU per message (goal: at most 3%).`,
].join('\n');
console.log(`\n${block}`);
if (!argv.includes('--no-write')) writeSection('metrics', block);
