/**
 * Tail latency under a fixed open-loop rate: `tcpkit bench --mode open-loop` (64 B messages sent on a
 * schedule whatever the server does, latency from the intended send time) against tcpkit's echo, the
 * plain node:net echo and the Go echo of the anchors (when built), in the same run; `--c` adds the anchors'
 * C epoll echo, whose tail is the floor the generator and the machine set. Servers on CPU 0,
 * the generator on CPU 1; servers alternate across repeats; the table shows medians and the spread.
 * `--generator c` replaces `tcpkit bench` with the compiled generator of bench/open-loop-gen.c (built with
 * gcc on first use; see bench/c-open-loop.ts), which has no garbage collector to stall its schedule.
 *
 *   node --import tsx bench/open-loop.ts [--generator node|c] [--rate 40000] [--connections 1000] [--duration 10s]
 *       [--warmup 2s] [--tick 0] [--repeats 3] [--c] [--source] [--samples FILE] [--from FILE] [--max-others PCT]
 *       [--write]
 *
 * Runs the builds (`npm run build` first; the before checkout's too): `--source` runs the sources through
 * tsx instead, as before, at the cost of tsx's loader thread in every Node process on the measured cores.
 *   TCPKIT_BEFORE=/path/to/other/checkout adds that checkout's `tcpkit serve echo` as a column ("before").
 *
 * On a shared machine the tail is mostly other processes taking the server's core: each run also
 * records how long the server's threads sat runnable but not running (their run-queue wait, from
 * /proc/PID/task/TID/schedstat) and how much CPU other processes used. `--samples FILE` appends every
 * run as a JSON line, so several short runs (each under the benchmark lock's few minutes) can be pooled;
 * `--from FILE` prints the table of a samples file without running anything.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../packages/cli/src/loadgen/result.js';
import { buildGenerator, runGenerator } from './c-open-loop.js';
import {
  echoServerCommand,
  freePort,
  goEchoBinary,
  machine,
  median,
  otherCpuPercent,
  runLoadgen,
  type Spawned,
  startProcess,
  stat,
  writeSection,
} from './common.js';

const argv = process.argv.slice(2);
const value = (name: string, fallback: string): string => {
  const i = argv.indexOf(name);
  return i === -1 ? fallback : argv[i + 1]!;
};
const RATE = Number(value('--rate', '40000'));
const CONNECTIONS = Number(value('--connections', '1000'));
const DURATION = value('--duration', '10s');
const WARMUP = value('--warmup', '2s');
/** The compiled generator's send rounds (`--tick`): 0 sends each message when due. */
const TICK = value('--tick', '0');
const GENERATOR = value('--generator', 'node');
if (GENERATOR !== 'node' && GENERATOR !== 'c') throw new Error('--generator must be node or c');
const generatorBinary = GENERATOR === 'c' && !argv.includes('--from') ? buildGenerator() : null;
if (GENERATOR === 'c' && generatorBinary === null && !argv.includes('--from')) {
  throw new Error('--generator c needs gcc (it compiles bench/open-loop-gen.c)');
}
/** The anchors' plain node:net echo (compare.py's), when the anchors are there. */
const RAW_ECHO = '/work/shared/anchors/servers/node-echo/raw.mjs';
const REPEATS = Number(value('--repeats', '3'));
const SAMPLES = value('--samples', '');
const FROM = value('--from', '');
/** Leaves out of the table the runs in which other processes used more than this much CPU, % of a core. */
const MAX_OTHERS = Number(value('--max-others', 'Infinity'));
const before = process.env.TCPKIT_BEFORE;
const fromSource = argv.includes('--source');
/** bench/plain-echo.ts as plain JavaScript, for a run without tsx. */
const PLAIN_ECHO = `const net = require('node:net');
const server = net.createServer((socket) => { socket.on('data', (d) => socket.write(d)); socket.on('error', () => {}); });
server.listen({ port: Number(process.argv[1]), host: '127.0.0.1' }, () => process.stdout.write(server.address().port + '\\n'));
process.on('SIGTERM', () => { server.close(); process.exit(0); });`;

interface Server {
  name: string;
  start(port: number): Promise<Spawned>;
}

interface Sample {
  server: string;
  /** Which generator measured it (absent in samples from before the compiled one: `node`). */
  generator?: 'node' | 'c';
  p50: number;
  p99: number;
  p999: number;
  rate: number;
  errors: number;
  cpuPerMessage: number | null;
  /** The generator's CPU, percent of one core. */
  generatorCpu: number;
  /** CPU other processes used during the window, percent of one core. */
  otherCpu: number | null;
  /** The server's main thread's run-queue wait over the whole run, ms per second of run. */
  serverWaitMsPerS: number | null;
  /** The generator's send lag (how late messages left), µs; its tail is the generator's, not the server's. */
  sendLagP99: number;
  sendLagP999: number;
  /** The worst per-second p99 of the window, µs (a stall shows here); null from the compiled generator. */
  worstSecondP99: number | null;
  /** How long the compiled generator waited for its own core, ms per second of window; null from the Node one. */
  generatorWaitMsPerS?: number | null;
  load1: number;
}

/**
 * Nanoseconds `pid`'s main thread (Node's event loop) has waited on a run queue, runnable but not
 * running; null without /proc. (Go's goroutines run on any of its threads: for Go it is one of them.)
 */
function runQueueWaitNs(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]);
  } catch {
    return null;
  }
}

async function measure(servers: Server[]): Promise<Sample[]> {
  const out: Sample[] = [];
  for (let rep = 0; rep < REPEATS; rep++) {
    for (const server of rep % 2 === 0 ? servers : [...servers].reverse()) {
      const port = await freePort();
      const process_ = await server.start(port);
      try {
        const waitBefore = runQueueWaitNs(process_.pid);
        const startedAt = performance.now();
        const load1 = os.loadavg()[0]!;
        const measured = generatorBinary ? await measureC(generatorBinary, port, process_.pid) : null;
        const r = measured
          ? null
          : await runLoadgen(
              port,
              [
                '--mode',
                'open-loop',
                '--rate',
                String(RATE),
                '--connections',
                String(CONNECTIONS),
                '--duration',
                DURATION,
                '--warmup',
                WARMUP,
                '--ramp-up',
                '1s',
              ],
              { serverPid: process_.pid, built: !fromSource },
            );
        const waitAfter = runQueueWaitNs(process_.pid);
        const seconds = (performance.now() - startedAt) / 1000;
        const serverWaitMsPerS =
          waitBefore === null || waitAfter === null ? null : (waitAfter - waitBefore) / 1e6 / seconds;
        const sample: Sample = measured
          ? { ...measured, server: server.name, serverWaitMsPerS, load1 }
          : fromLoadgen(r!, server.name, serverWaitMsPerS, load1);
        out.push(sample);
        if (SAMPLES) appendFileSync(SAMPLES, `${JSON.stringify(sample)}\n`);
        console.error(
          `${server.name} #${rep + 1}: p50 ${ms(sample.p50)} p99 ${ms(sample.p99)} p99.9 ${ms(sample.p999)} ms, ${Math.round(sample.rate)} msg/s, ` +
            `server ${sample.cpuPerMessage?.toFixed(2)} µs/msg, waited ${sample.serverWaitMsPerS?.toFixed(1)} ms/s, ` +
            `send lag p99 ${ms(sample.sendLagP99)} p99.9 ${ms(sample.sendLagP999)} ms, ` +
            `generator ${sample.generatorCpu}%${sample.generatorWaitMsPerS == null ? '' : ` (waited ${sample.generatorWaitMsPerS.toFixed(1)} ms/s)`}, others ${sample.otherCpu}%, worst second p99 ${sample.worstSecondP99 === null ? '-' : ms(sample.worstSecondP99)} ms, load ${load1.toFixed(2)}`,
        );
      } finally {
        await process_.stop();
      }
    }
  }
  return out;
}

/** A `tcpkit bench` run as a sample. */
function fromLoadgen(r: BenchResult, server: string, serverWaitMsPerS: number | null, load1: number): Sample {
  const window = r.timeline.filter((p) => p.phase === 'measure');
  return {
    server,
    generator: 'node',
    p50: r.latencyUs.p50,
    p99: r.latencyUs.p99,
    p999: r.latencyUs.p999,
    rate: r.messagesPerSec,
    errors: r.errorsTotal,
    cpuPerMessage: r.server?.cpuUsPerMessage ?? null,
    generatorCpu: r.generatorCpuPercent,
    otherCpu: otherCpuPercent(r),
    serverWaitMsPerS,
    worstSecondP99: Math.max(0, ...window.map((p) => p.p99Us)),
    sendLagP99: r.sendLagUs?.p99 ?? 0,
    sendLagP999: r.sendLagUs?.p999 ?? 0,
    load1,
  };
}

/** One run of the compiled generator (its warm-up, then the window), as a sample but for the server's wait. */
async function measureC(
  binary: string,
  port: number,
  serverPid: number,
): Promise<Omit<Sample, 'server' | 'serverWaitMsPerS' | 'load1'>> {
  const duration = seconds(DURATION);
  const {
    result: r,
    code,
    stderr,
  } = await runGenerator(binary, {
    port,
    connections: CONNECTIONS,
    rate: RATE,
    warmup: seconds(WARMUP),
    duration,
    tick: seconds(TICK),
    serverPid,
  });
  if (r === null) throw new Error(`the compiled generator exited with ${code} and no JSON: ${stderr}`);
  const known = (x: number): number | null => (x < 0 ? null : x);
  return {
    generator: 'c',
    p50: r.latency_us.p50,
    p99: r.latency_us.p99,
    p999: r.latency_us.p999,
    rate: r.msgs_per_s,
    errors: r.errors + r.lost,
    cpuPerMessage: known(r.server_cpu_us_per_msg),
    generatorCpu: Math.round(r.generator_cpu_pct),
    otherCpu:
      r.machine_cpu_pct < 0
        ? null
        : Math.round(Math.max(0, r.machine_cpu_pct - r.generator_cpu_pct - Math.max(0, r.server_cpu_pct))),
    worstSecondP99: null,
    generatorWaitMsPerS: r.generator_wait_ms < 0 ? null : r.generator_wait_ms / duration,
    sendLagP99: r.send_lag_us.p99,
    sendLagP999: r.send_lag_us.p999,
  };
}

/** `10s`, `500ms` or `10` (seconds) as seconds. */
function seconds(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(us|ms|s)?$/.exec(text);
  if (!match) throw new Error(`${text} is not a duration (10s, 500ms, 200us)`);
  return Number(match[1]) / (match[2] === 'ms' ? 1e3 : match[2] === 'us' ? 1e6 : 1);
}

const ms = (us: number): string => (us / 1000).toFixed(2);
const spread = (xs: number[]): string => {
  const s = stat(xs)!;
  return `${ms(s.median)} (${ms(s.min)}–${ms(s.max)})`;
};
const fixed = (xs: Array<number | null>, digits: number): string => {
  const s = stat(xs);
  return s === null ? '-' : s.median.toFixed(digits);
};

function table(samples: Sample[], names: string[]): string {
  const rows = names.map((name) => {
    const xs = samples.filter((x) => x.server === name);
    return `| ${name} | ${xs.length} | ${ms(median(xs.map((x) => x.p50)))} | ${spread(xs.map((x) => x.p99))} | ${spread(xs.map((x) => x.p999))} | ${Math.round(median(xs.map((x) => x.rate))).toLocaleString('en-US')} | ${fixed(
      xs.map((x) => x.cpuPerMessage),
      2,
    )} | ${spread(xs.map((x) => x.sendLagP99))} | ${ms(median(xs.map((x) => x.sendLagP999)))} | ${fixed(
      xs.map((x) => x.generatorCpu),
      0,
    )} | ${fixed(
      xs.map((x) => x.serverWaitMsPerS),
      1,
    )} | ${fixed(
      xs.map((x) => x.otherCpu),
      0,
    )} | ${xs.reduce((n, x) => n + x.errors, 0)} |`;
  });
  return `| server | runs | p50 ms | p99 ms, median (min–max) | p99.9 ms, median (min–max) | msg/s | server CPU µs/msg | generator send lag p99 ms | send lag p99.9 ms | generator CPU % | server run-queue wait ms/s | other processes' CPU % | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}`;
}

let samples: Sample[];
const quiet = (s: Sample): boolean => s.otherCpu === null || s.otherCpu <= MAX_OTHERS;
let names: string[];
const loadStart = os.loadavg();
if (FROM) {
  samples = readFileSync(FROM, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Sample);
  names = [...new Set(samples.map((s) => s.server))];
} else {
  const go = goEchoBinary();
  const c = process.env.TCPKIT_C_ECHO ?? '/tmp/tcpkit-anchors/c-echo';
  // From the builds by default: run through tsx, every Node process (servers and generator) would carry
  // tsx's module-loader thread, whose garbage collections (one of 19 ms seen) take the pinned core.
  const tcpkitAt =
    (checkout: string): Server['start'] =>
    (port) =>
      fromSource
        ? startProcess(echoServerCommand('tcpkit', port, checkout), {
            cpu: 0,
            timeoutMs: 20_000,
            env: { NODE_OPTIONS: '--conditions=tcpkit-source' },
          })
        : startProcess(
            [
              process.execPath,
              `${checkout}/packages/cli/dist/main.js`,
              ...echoServerCommand('tcpkit', port, checkout).slice(4),
              // As compare.py runs it: no deadline or connection cap in the way.
              ...['--idle-timeout', '0', '--first-byte-timeout', '0', '--max-connections', '200000'],
            ],
            { cpu: 0, timeoutMs: 20_000 },
          );
  const servers: Server[] = [
    { name: 'tcpkit', start: tcpkitAt(fileURLToPath(new URL('..', import.meta.url))) },
    ...(before ? [{ name: 'tcpkit (before)', start: tcpkitAt(before) }] : []),
    {
      name: 'plain node:net',
      start: (port) =>
        fromSource
          ? startProcess(echoServerCommand('plain', port), { cpu: 0, timeoutMs: 20_000 })
          : existsSync(RAW_ECHO)
            ? startProcess([process.execPath, RAW_ECHO, String(port)], {
                cpu: 0,
                timeoutMs: 20_000,
                ready: 'listening',
                stream: 'stderr',
              })
            : startProcess([process.execPath, '-e', PLAIN_ECHO, String(port)], { cpu: 0, timeoutMs: 20_000 }),
    },
    ...(go
      ? [
          {
            name: 'Go',
            start: (port: number) =>
              startProcess([go, '-max-conns', '100000', String(port)], {
                cpu: 0,
                env: { GOMAXPROCS: '1' },
                ready: 'listening',
                stream: 'stderr',
              }),
          },
        ]
      : []),
    // The floor: an epoll loop in C costs the least a server can, so its tail is the generator's and the machine's.
    ...(argv.includes('--c') && existsSync(c)
      ? [
          {
            name: 'C epoll (floor)',
            start: (port: number) => startProcess([c, String(port)], { cpu: 0, ready: 'listening', stream: 'stderr' }),
          },
        ]
      : []),
  ];
  names = servers.map((s) => s.name);
  samples = await measure(servers);
}
const loads = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
const compiled = FROM ? samples.every((s) => s.generator === 'c') : GENERATOR === 'c';
const md = `Generated by \`node --import tsx bench/open-loop.ts${compiled ? ' --generator c' : ''}\` on ${new Date().toISOString().slice(0, 10)}.

${
  compiled
    ? `The compiled generator (bench/open-loop-gen.c: one thread, epoll) at ${RATE} msg/s over ${CONNECTIONS} connections, ${WARMUP} warm-up, ${DURATION} window${TICK === '0' ? '' : `, sends in rounds every ${TICK}`}`
    : `\`tcpkit bench --mode open-loop --rate ${RATE} --connections ${CONNECTIONS} --duration ${DURATION}\``
} (64 B messages;
latency from each message's intended send time, so a stall counts for every message it delays). Runs per
server as counted, alternating the order; medians, with the lowest and highest run. "Send lag" is how late
the generator itself sent (its own stalls, included in the latency); "run-queue wait" is the time the server's
main thread was runnable while another thread held its core. Compare the columns of one run, not runs.

${machine()}
${FROM ? '' : `- Load average at the start ${loads(loadStart)}, at the end ${loads(os.loadavg())}\n`}
${
  Number.isFinite(MAX_OTHERS)
    ? `Runs in which other processes used more than ${MAX_OTHERS}% of a core are left out (${samples.filter((s) => !quiet(s)).length} of ${samples.length}).\n\n`
    : ''
}${table(samples.filter(quiet), names)}
`;
console.log(md);
if (argv.includes('--write')) writeSection(compiled ? 'open-loop-c' : 'open-loop', md);
