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
import {
  freePort,
  hasTaskset,
  median,
  otherCpuPercent,
  runLoadgen,
  type Spawned,
  startProcess,
  writeSection,
} from './common.js';

const argv = process.argv.slice(2);
const repeats = Number(argv[argv.indexOf('--repeats') + 1] ?? 3) || 3;
const LOAD = ['--mode', 'echo', '--connections', '1000', '--size', '64', '--duration', '8s', '--ramp-up', '1s'];

/** Starts the CLI's echo server, with the admin endpoint on `adminPort` if given; resolves once listening. */
function startServer(port: number, adminPort: number | undefined): Promise<Spawned> {
  const admin = adminPort === undefined ? [] : ['--admin-port', String(adminPort)];
  return startProcess(
    [
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
    ],
    { cpu: 0, ready: '"msg":"listening"' },
  );
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
    const result = await runLoadgen(port, LOAD, { serverPid: server.pid });
    const cpu = result.server?.cpuUsPerMessage;
    if (cpu === undefined || cpu === null) throw new Error('the generator did not sample the server');
    return {
      metrics,
      cpuUsPerMessage: cpu,
      messagesPerSec: result.messagesPerSec,
      p99Us: result.latencyUs.p99,
      scrapes,
      otherCpu: otherCpuPercent(result) ?? 0,
    };
  } finally {
    clearInterval(scraper);
    await server.stop();
  }
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
