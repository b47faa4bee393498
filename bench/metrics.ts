/**
 * What metrics cost: `tcpkit serve echo` with metrics off, against the same server with the admin
 * endpoint on (the collector, event-loop watch and default process metrics) left unscraped ("on": the
 * resident cost alone), and against it with /metrics scraped every second ("scraped": resident plus
 * scrape), on 64 B ping-pong at 1,000 connections. Same run, the sides interleaved in a rotating order
 * (off, on, scraped; on, scraped, off; ...) so a drift in the machine's load hits every side alike;
 * fresh server each time, server pinned to CPU 0 and generator to CPU 1. The figure is server CPU per
 * message: per side the median of the runs, and the median over the repeats of each run's ratio to the
 * off run of the same repeat.
 *
 *   NODE_OPTIONS=--conditions=tcpkit-source node --import tsx bench/metrics.ts [--repeats 5] [--duration 6s] [--no-scrape] [--rate N] [--no-write] [--cpu-prof DIR]
 *
 * --no-scrape leaves out the scraped side (off against on only).
 * --rate N sends N messages a second in all (open loop) instead of ping-pong, and writes its own section.
 * --cpu-prof DIR profiles every server (`node --cpu-prof`, into DIR) and reports, per side, the CPU
 * sampled in the window in code of the metrics path (metrics.ts, admin.ts, event-loop.ts, prom-client,
 * node:http) per message: a count that the machine's load does not blur. The profiler slows the server,
 * so such a run does not rewrite docs/benchmarks.md.
 *
 * Then the cost of one scrape on its own, which the per-message figure on a loaded machine cannot
 * resolve: the server's CPU over 200 back-to-back scrapes with 1,000 idle connections open, less its
 * idle CPU over the same time (3 rounds, median).
 */
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  cpuModel,
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
import { mainThreadProfile, windowCpu } from './cpu-profile.js';

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const at = argv.indexOf(name);
  return at < 0 ? undefined : argv[at + 1];
};
const repeats = Number(flag('--repeats') ?? 5) || 5;
const duration = flag('--duration') ?? '6s';
const windowSeconds = Number.parseFloat(duration);
const profileDir = flag('--cpu-prof');
const write = !argv.includes('--no-write') && profileDir === undefined;
const rate = flag('--rate');
// Open loop at a fixed rate: every side does the same work per second, so no side's figure moves with
// how much its messages batch (a server that falls behind batches more and pays less per message).
const mode = rate === undefined ? ['--mode', 'echo'] : ['--mode', 'open-loop', '--rate', rate];
const LOAD = [...mode, '--connections', '1000', '--size', '64', '--duration', duration, '--ramp-up', '1s'];

type Side = 'off' | 'on' | 'scraped';
const SIDES: Side[] = argv.includes('--no-scrape') ? ['off', 'on'] : ['off', 'on', 'scraped'];
const LABELS: Record<Side, string> = {
  off: 'off',
  on: 'on, not scraped (resident cost)',
  scraped: 'on, scraped every second',
};

/** The metrics path, by the URL of a profile frame. */
const METRICS_CODE = /\/src\/(metrics|admin|event-loop)\.ts$|node_modules\/prom-client\/|^node:_?http/;

/** Starts the CLI's echo server, with the admin endpoint on `adminPort` if given; resolves once listening. */
function startServer(port: number, adminPort: number | undefined, node: string[] = [], extra: string[] = []) {
  const admin = adminPort === undefined ? [] : ['--admin-port', String(adminPort)];
  return startProcess(
    [
      process.execPath,
      ...node,
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
  side: Side;
  repeat: number;
  cpuUsPerMessage: number;
  /** Its user part: the server's own code, where the metrics run. */
  userUsPerMessage: number;
  messagesPerSec: number;
  p99Us: number;
  scrapes: number;
  otherCpu: number;
  /** With --cpu-prof: sampled CPU per message in the window, all of it and the metrics path's. */
  sampled?: { busyUs: number; metricsUs: number };
}

async function run(side: Side, repeat: number): Promise<Run> {
  const port = await freePort();
  const adminPort = side === 'off' ? undefined : await freePort();
  const dir = profileDir === undefined ? undefined : path.resolve(profileDir, `${side}-${repeat}`);
  if (dir !== undefined) mkdirSync(dir, { recursive: true });
  const node = dir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  const server: Spawned = await startServer(port, adminPort, node);
  let scrapes = 0;
  const scraper =
    side !== 'scraped'
      ? undefined
      : setInterval(() => {
          fetch(`http://127.0.0.1:${adminPort}/metrics`)
            .then((r) => r.text())
            .then(
              () => scrapes++,
              () => {},
            );
        }, 1000);
  let result: Awaited<ReturnType<typeof runLoadgen>>;
  let endUs: number;
  try {
    result = await runLoadgen(port, LOAD, { serverPid: server.pid });
    endUs = Number(process.hrtime.bigint() / 1000n);
  } finally {
    clearInterval(scraper);
    await server.stop();
  }
  const cpu = result.server?.cpuUsPerMessage;
  if (cpu === undefined || cpu === null) throw new Error('the generator did not sample the server');
  const r: Run = {
    side,
    repeat,
    cpuUsPerMessage: cpu,
    userUsPerMessage: result.server?.userUsPerMessage ?? Number.NaN,
    messagesPerSec: result.messagesPerSec,
    p99Us: result.latencyUs.p99,
    scrapes,
    otherCpu: otherCpuPercent(result) ?? 0,
  };
  if (dir !== undefined) {
    // The window's last seconds, less the generator's farewell and exit: inside its measurement.
    const to = endUs - 400_000;
    const from = to - (windowSeconds - 1) * 1e6;
    const w = windowCpu(mainThreadProfile(dir), from, to, (url) => METRICS_CODE.test(url));
    const messages = result.messagesPerSec * (windowSeconds - 1);
    r.sampled = { busyUs: w.busyUs / messages, metricsUs: w.matchedUs / messages };
    // For a closer look with other tools: the profile, its window (monotonic µs) and the messages in it.
    console.log(`profile ${mainThreadProfile(dir)} window ${from} ${to} messages ${Math.round(messages)}`);
  }
  return r;
}

/** Server CPU of one /metrics scrape with 1,000 idle connections open, ms (median of 3 rounds). */
async function scrapeCostMs(): Promise<number> {
  const SCRAPES = 200;
  const port = await freePort();
  const adminPort = await freePort();
  const server = await startServer(port, adminPort, [], ['--first-byte-timeout', '0', '--idle-timeout', '0']);
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

const load = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' / ');
const loadBefore = load();
const started = performance.now();
const runs: Run[] = [];
for (let i = 0; i < repeats; i++) {
  // Rotating order: each side comes first, second and last equally often.
  for (let k = 0; k < SIDES.length; k++) {
    const side = SIDES[(i + k) % SIDES.length]!;
    const r = await run(side, i);
    const sampled =
      r.sampled === undefined
        ? ''
        : `  sampled ${r.sampled.busyUs.toFixed(2)} µs/msg, metrics path ${r.sampled.metricsUs.toFixed(3)}`;
    console.log(
      `${side.padEnd(7)}  ${r.cpuUsPerMessage.toFixed(2)} µs CPU/msg (user ${r.userUsPerMessage.toFixed(2)})  ${Math.round(r.messagesPerSec)} msg/s  p99 ${(r.p99Us / 1000).toFixed(2)} ms  scrapes ${r.scrapes}  other CPU ${r.otherCpu.toFixed(0)}%${sampled}`,
    );
    runs.push(r);
  }
}
const of = (side: Side): Run[] => runs.filter((r) => r.side === side);
type Figure = 'cpuUsPerMessage' | 'userUsPerMessage';
const cpuOff = median(of('off').map((r) => r.cpuUsPerMessage));
/** Each run's figure against the off run of its repeat. */
const pairedRatios = (side: Side, figure: Figure): number[] =>
  of(side).map((r) => r[figure] / of('off').find((o) => o.repeat === r.repeat)![figure]);
const percent = (ratio: number): string => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
/** The median and runs of a figure, and its cost against off: of the medians / median of the paired ratios. */
const cells = (side: Side, figure: Figure): string => {
  const values = of(side).map((r) => r[figure]);
  const mid = median(values);
  const runsText = `${mid.toFixed(2)} (${values.map((v) => v.toFixed(2)).join(', ')})`;
  if (side === 'off') return `${runsText} | -`;
  const paired = pairedRatios(side, figure);
  const off = median(of('off').map((r) => r[figure]));
  return `${runsText} | ${percent(mid / off)} / ${percent(median(paired))} (${paired.map(percent).join(', ')})`;
};
const row = (side: Side): string => {
  const rs = of(side);
  return `| ${LABELS[side]} | ${cells(side, 'cpuUsPerMessage')} | ${cells(side, 'userUsPerMessage')} | ${Math.round(median(rs.map((r) => r.messagesPerSec))).toLocaleString('en-US')} | ${(median(rs.map((r) => r.p99Us)) / 1000).toFixed(2)} | ${median(rs.map((r) => r.otherCpu)).toFixed(0)} |`;
};
if (profileDir !== undefined) {
  for (const side of SIDES) {
    const sampled = of(side).map((r) => r.sampled!);
    const metricsUs = median(sampled.map((s) => s.metricsUs));
    const busyUs = median(sampled.map((s) => s.busyUs));
    console.log(
      `${side}: sampled ${busyUs.toFixed(2)} µs/msg, of which the metrics path ${metricsUs.toFixed(3)} µs (${((metricsUs / busyUs) * 100).toFixed(2)}%)`,
    );
  }
}
const scrapeMs = SIDES.includes('scraped') ? await scrapeCostMs() : undefined;
const minutes = ((performance.now() - started) / 60_000).toFixed(1);
// Server CPU per second at the measured rate, ms: what one scrape a second is a share of.
const busyMsPerSec = (cpuOff * median(of('off').map((r) => r.messagesPerSec))) / 1000;
const block = [
  `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (${minutes} min): 64 B ${rate === undefined ? 'ping-pong' : `echo at a fixed ${Number(rate).toLocaleString('en-US')} messages/s in all (open loop)`}, 1,000 connections, ${duration} windows, ${repeats} runs a side in a rotating order, server pinned to CPU 0, generator to CPU 1${hasTaskset ? '' : ' (taskset missing: unpinned)'}; ${cpuModel()}, ${os.cpus().length} cores, Node.js ${process.version}; load average (1 / 5 / 15 min) ${loadBefore} before, ${load()} after. "On" is \`tcpkit serve echo --admin-port N\` (collector, event-loop watch, default process metrics); "scraped" also fetches \`/metrics\` every second during the window.`,
  '',
  '| metrics | server CPU µs/msg, median (runs) | cost against off: of the medians / median of the paired runs (each repeat) | of which user CPU µs/msg | user cost against off | messages/s | p99 ms | other processes CPU % |',
  '|---|---|---|---|---|---|---|---|',
  ...SIDES.map(row),
  '',
  "Goal: at most +3% server CPU per message with metrics on and scraped every second. User CPU is the server's own code, where the metrics run; the rest is the kernel's socket work, which on loopback also carries part of the peer's and varies most from run to run.",
  ...(scrapeMs === undefined
    ? []
    : [
        '',
        `One scrape on its own (1,000 idle connections open, 200 scrapes, 3 rounds, median): ${scrapeMs.toFixed(2)} ms of server CPU; at the "off" rate above (${busyMsPerSec.toFixed(0)} ms of server CPU a second) a scrape a second is ${((scrapeMs / busyMsPerSec) * 100).toFixed(1)}%.`,
      ]),
].join('\n');
console.log(`\n${block}`);
if (write) writeSection(rate === undefined ? 'metrics' : 'metrics-open-loop', block);
