/**
 * What metrics cost: `tcpkit serve echo` with metrics off against the same server with the admin
 * endpoint on (the collector, event-loop watch and default process metrics) and /metrics scraped every
 * second, on 64 B ping-pong at 1,000 connections. Same run, alternating off/on (ABBA), fresh server
 * each time, server pinned to CPU 0 and generator to CPU 1. The figure is server CPU per message.
 *
 *   node --import tsx bench/metrics.ts [--repeats 3] [--no-write] [--no-scrape]
 *
 * --no-scrape leaves the endpoint unscraped: the resident cost alone (subscriptions, timers).
 *
 * Then the cost of one scrape on its own, which the per-message figure on a loaded machine cannot
 * resolve: the server's CPU over 200 back-to-back scrapes with 1,000 idle connections open, less its
 * idle CPU over the same time (3 rounds, median).
 */
import { once } from 'node:events';
import net from 'node:net';
import {
  cpuUs,
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
function startServer(port: number, adminPort: number | undefined, extra: string[] = []): Promise<Spawned> {
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
      ...extra,
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

/** Server CPU of one /metrics scrape with 1,000 idle connections open, ms (median of 3 rounds). */
async function scrapeCostMs(): Promise<number> {
  const SCRAPES = 200;
  const port = await freePort();
  const adminPort = await freePort();
  const server = await startServer(port, adminPort, ['--first-byte-timeout', '0', '--idle-timeout', '0']);
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < 1000; i++) {
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      sockets.push(socket);
    }
    const scrape = async (): Promise<void> => {
      await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    };
    await scrape();
    const rounds: number[] = [];
    for (let round = 0; round < 3; round++) {
      const idleStart = performance.now();
      const idleCpu = cpuUs(server.pid);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const idleRate = (cpuUs(server.pid) - idleCpu) / (performance.now() - idleStart);
      const start = performance.now();
      const cpu = cpuUs(server.pid);
      for (let i = 0; i < SCRAPES; i++) await scrape();
      const used = cpuUs(server.pid) - cpu - idleRate * (performance.now() - start);
      rounds.push(used / SCRAPES / 1000);
    }
    console.log(`scrape: ${rounds.map((ms) => ms.toFixed(2)).join(', ')} ms of server CPU`);
    return median(rounds);
  } finally {
    for (const socket of sockets) socket.destroy();
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
const scrapeMs = await scrapeCostMs();
// Server CPU per second at the measured rate, ms: what one scrape a second is a share of.
const busyMsPerSec = (cpuOff * median(side(false).map((r) => r.messagesPerSec))) / 1000;
const block = [
  `Measured ${new Date().toISOString().slice(0, 10)}: 64 B ping-pong, 1,000 connections, 8 s windows, ${repeats} runs a side alternating (ABBA), server pinned to CPU 0, generator to CPU 1${hasTaskset ? '' : ' (taskset missing: unpinned)'}. "On" is \`tcpkit serve echo --admin-port N\` (collector, event-loop watch, default process metrics) with \`/metrics\` fetched every second during the window.`,
  '',
  '| metrics | server CPU µs/msg, median (runs) | messages/s | p99 ms | other processes CPU % |',
  '|---|---|---|---|---|',
  row('off', side(false)),
  row('on, scraped every second', side(true)),
  '',
  `Cost: ${(((cpuOn - cpuOff) / cpuOff) * 100).toFixed(1)}% server CPU per message (goal: at most 3%).`,
  '',
  `One scrape on its own (1,000 idle connections open, 200 scrapes, 3 rounds, median): ${scrapeMs.toFixed(2)} ms of server CPU; at the "off" rate above (${busyMsPerSec.toFixed(0)} ms of server CPU a second) a scrape a second is ${((scrapeMs / busyMsPerSec) * 100).toFixed(1)}%.`,
].join('\n');
console.log(`\n${block}`);
if (!argv.includes('--no-write')) writeSection('metrics', block);
