/**
 * `npm run bench`: tcpkit's echo server against a plain node:net echo server and, when it is built, the
 * Go echo server of /work/shared/anchors (/tmp/tcpkit-anchors/go-echo, or $TCPKIT_GO_ECHO), same scenarios,
 * same run. Each run gets a fresh server process (so RSS per connection starts from a clean baseline),
 * pinned to CPU 0, and a generator process pinned to CPU 1 (`taskset`, when present). Servers
 * alternate across repeats (tcpkit first, then last); the table shows medians with min-max and the
 * tcpkit/plain and tcpkit/Go ratios, and is written into the bench section of docs/benchmarks.md.
 *
 *   npm run bench                     full suite, 3 repeats (~10 minutes)
 *   npm run bench -- --quick          short subset, 1 repeat, under a minute; prints only
 *   npm run bench -- --repeats 5 --only echo-64-c1000,idle-10000 [--write] [--no-go]
 *   npm run bench -- --only workers [--write] [--scaling]   workers' cost, spread and scaling (bench/workers.ts)
 *   npm run bench -- --only c100k [--write]   100,000 connections held against 8 workers (bench/c100k.ts)
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import type { BenchResult } from '../packages/cli/src/loadgen/result.js';
import {
  echoServerCommand,
  freePort,
  goEchoBinary,
  machine,
  otherCpuPercent,
  root,
  runLoadgen,
  type Spawned,
  type Stat,
  startProcess,
  stat,
  writeSection,
} from './common.js';

type ServerKind = 'tcpkit' | 'plain' | 'go';
const LABEL: Record<ServerKind, string> = { tcpkit: 'tcpkit', plain: 'plain node:net', go: 'Go' };
type ScenarioKind = 'ping-pong' | 'pipelined' | 'churn' | 'idle';

interface Scenario {
  name: string;
  title: string;
  kind: ScenarioKind;
  args: string[];
}

const SOURCES = ['--source-addresses', '127.0.0.1-127.0.0.16'];
/**
 * Big runs: the window opens once every connection is up or ramp-up + connect timeout has passed.
 * Under load (or on a shared machine) thousands of connects take a while; let them finish first.
 */
const PATIENT = ['--connect-timeout', '15s'];

function pingPong(connections: number, size: number, extra: string[] = []): Scenario {
  return {
    name: `echo-${size === 4096 ? '4k' : size}-c${connections}`,
    title: `${size === 4096 ? '4 KiB' : `${size} B`} ping-pong, ${connections.toLocaleString('en-US')} conns`,
    kind: 'ping-pong',
    args: ['--mode', 'echo', '--connections', String(connections), '--size', String(size), ...extra],
  };
}

const FULL: Scenario[] = [
  pingPong(1, 64, ['--duration', '5s']),
  pingPong(100, 64, ['--duration', '5s']),
  pingPong(1000, 64, ['--duration', '5s', '--ramp-up', '1s']),
  // Connecting 10,000 sockets to a server that is already echoing for the first ones is slow: give
  // the ramp-up and warm-up room so the window sees all of them.
  pingPong(10_000, 64, ['--duration', '5s', '--ramp-up', '8s', '--warmup', '3s', ...SOURCES, ...PATIENT]),
  pingPong(100, 4096, ['--duration', '5s']),
  {
    name: 'pipelined-d16-c100',
    title: '64 B pipelined depth 16, 100 conns',
    kind: 'pipelined',
    args: ['--mode', 'echo', '--connections', '100', '--depth', '16', '--duration', '5s'],
  },
  {
    name: 'churn-c50',
    title: 'churn (connect, 64 B echo, close), 50 loops',
    kind: 'churn',
    // No source addresses here: binding a local address makes the kernel pick the port at bind(), where
    // TIME_WAIT ports cannot be reused and the search slows to a crawl after ~100k connections; a plain
    // connect() picks the port at connect() and reuses TIME_WAIT on loopback (tcp_tw_reuse).
    args: ['--mode', 'churn', '--connections', '50', '--duration', '5s'],
  },
  {
    name: 'idle-10000',
    title: 'idle 10,000 conns',
    kind: 'idle',
    args: ['--mode', 'idle', '--connections', '10000', '--ramp-up', '3s', '--duration', '2s', ...SOURCES, ...PATIENT],
  },
  {
    // ulimit -Hn is 20,000 here: 19,000 sockets plus the process's own descriptors fit in each process.
    name: 'idle-19000',
    title: 'idle 19,000 conns over 16 source addresses',
    kind: 'idle',
    args: ['--mode', 'idle', '--connections', '19000', '--ramp-up', '5s', '--duration', '2s', ...SOURCES, ...PATIENT],
  },
];

const QUICK: Scenario[] = [
  pingPong(100, 64, ['--duration', '2s', '--warmup', '500ms']),
  {
    ...FULL[5]!,
    args: ['--mode', 'echo', '--connections', '100', '--depth', '16', '--duration', '2s', '--warmup', '500ms'],
  },
  {
    ...FULL[6]!,
    args: ['--mode', 'churn', '--connections', '50', '--duration', '2s', '--warmup', '500ms'],
  },
  {
    name: 'idle-2000',
    title: 'idle 2,000 conns',
    kind: 'idle',
    args: ['--mode', 'idle', '--connections', '2000', '--ramp-up', '500ms', '--duration', '1s', '--warmup', '0'],
  },
];

/** Generator ceiling: the plain server with deep pipelining, so the generator saturates first. */
const CEILING: Array<{ label: string; args: string[]; pinned: boolean }> = [
  {
    label: '64 B ping-pong, 100 conns, 1 thread pinned to one core',
    args: ['--connections', '100', '--duration', '4s'],
    pinned: true,
  },
  {
    label: '64 B pipelined depth 64, 100 conns, 1 thread pinned to one core',
    args: ['--connections', '100', '--depth', '64', '--duration', '4s'],
    pinned: true,
  },
  {
    label: '64 B pipelined depth 64, 100 conns, 2 worker threads, unpinned',
    args: ['--connections', '100', '--depth', '64', '--duration', '4s', '--workers', '2'],
    pinned: false,
  },
];

interface Args {
  quick: boolean;
  repeats: number;
  only: string[] | null;
  write: boolean;
  ceiling: boolean;
  go: boolean;
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const repeats = Number(value('--repeats') ?? (quick ? 1 : 3));
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error('--repeats must be an integer >= 1');
  return {
    quick,
    repeats,
    only: value('--only')?.split(',') ?? null,
    write: argv.includes('--write') || (!quick && !argv.includes('--no-write') && !value('--only')),
    ceiling: !quick && !argv.includes('--no-ceiling') && !value('--only'),
    go: !argv.includes('--no-go'),
  };
}

const goEcho = goEchoBinary();

/** A server under test: tcpkit's CLI echo, the plain node:net echo, and the Go anchor when it is built. */
async function startServer(kind: ServerKind): Promise<Spawned & { port: number }> {
  const port = await freePort();
  if (kind === 'go') {
    // The Go design tcpkit started from (a goroutine per connection, a semaphore); it says so on stderr.
    const server = await startProcess([goEcho!, '-max-conns', '100000', String(port)], {
      cpu: 0,
      ready: 'listening',
      stream: 'stderr',
    });
    return { ...server, port };
  }
  const server = await startProcess(echoServerCommand(kind, port), {
    cpu: 0,
    timeoutMs: 20_000,
  });
  return { ...server, port };
}

interface Sample {
  rate: number;
  p99Us: number;
  cpuPerMessage: number | null;
  rssPerConnection: number | null;
  generatorCpu: number;
  serverCpu: number;
  /** CPU that other processes on the machine used during the window, percent of one core. */
  otherCpu: number | null;
  errors: number;
  established: number;
}

function toSample(result: BenchResult): Sample {
  return {
    rate: result.messagesPerSec,
    p99Us: result.latencyUs.p99,
    cpuPerMessage: result.server?.cpuUsPerMessage ?? null,
    rssPerConnection: result.server?.rssPerConnectionBytes ?? null,
    generatorCpu: result.generatorCpuPercent,
    serverCpu: result.server?.cpuPercent ?? 0,
    otherCpu: otherCpuPercent(result),
    errors: result.errorsTotal,
    established: result.connections.open,
  };
}

type Fmt = (v: number) => string;
const fmtRate: Fmt = (v) => Math.round(v).toLocaleString('en-US');
const fmtMs: Fmt = (v) => (v / 1000).toFixed(2);
const fmtUs: Fmt = (v) => v.toFixed(2);
const fmtKiB: Fmt = (v) => (v / 1024).toFixed(2);

function cell(s: Stat | null, fmt: Fmt, repeats: number): string {
  if (!s) return '–';
  return repeats > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);
}

interface MetricRow {
  label: string;
  pick: (s: Sample) => number | null;
  fmt: Fmt;
  /** Goal on the tcpkit/plain ratio (or difference), and whether it is met. */
  goal?: (t: Stat, p: Stat) => { text: string; met: boolean };
}

function metricsFor(kind: ScenarioKind): MetricRow[] {
  const perMessage = kind === 'churn' ? 'conn' : 'msg';
  const rate: MetricRow = {
    label: kind === 'churn' ? 'connections/s' : 'messages/s',
    pick: (s) => s.rate,
    fmt: fmtRate,
    goal:
      kind === 'ping-pong' || kind === 'churn'
        ? (t, p) => ({ text: '≥ 0.9', met: t.median >= 0.9 * p.median })
        : undefined,
  };
  const p99: MetricRow = { label: 'p99 latency (ms)', pick: (s) => s.p99Us, fmt: fmtMs };
  const cpu: MetricRow = {
    label: `server CPU µs/${perMessage}`,
    pick: (s) => s.cpuPerMessage,
    fmt: fmtUs,
    goal: kind === 'ping-pong' ? (t, p) => ({ text: '≤ 1.15', met: t.median <= 1.15 * p.median }) : undefined,
  };
  if (kind === 'idle') {
    return [
      {
        label: 'server RSS KiB/conn',
        pick: (s) => s.rssPerConnection,
        fmt: fmtKiB,
        goal: (t, p) => ({ text: '≤ plain + 1 KiB', met: t.median <= p.median + 1024 }),
      },
    ];
  }
  return [rate, p99, cpu];
}

interface ScenarioOutcome {
  scenario: Scenario;
  samples: Record<ServerKind, Sample[]>;
}

const ratio = (a: Stat | null, b: Stat | null): string =>
  a && b && b.median !== 0 ? (a.median / b.median).toFixed(2) : '–';

function resultsTable(outcomes: ScenarioOutcome[], repeats: number, kinds: ServerKind[]): string {
  const go = kinds.includes('go');
  const lines = [
    `| Scenario | Metric | tcpkit | plain node:net |${go ? ' Go |' : ''} tcpkit/plain |${go ? ' tcpkit/Go |' : ''} Goal (on tcpkit/plain) |`,
    `|---|---|---:|---:|${go ? '---:|' : ''}---:|${go ? '---:|' : ''}---|`,
  ];
  for (const { scenario, samples } of outcomes) {
    for (const metric of metricsFor(scenario.kind)) {
      const t = stat(samples.tcpkit.map(metric.pick));
      const p = stat(samples.plain.map(metric.pick));
      const g = stat(samples.go.map(metric.pick));
      const goal = metric.goal && t && p ? metric.goal(t, p) : null;
      const goalText = goal ? `${goal.text} ${goal.met ? '✅ met' : '❌ short'}` : '';
      const goCells = go ? ` ${cell(g, metric.fmt, repeats)} |` : '';
      lines.push(
        `| ${scenario.title} | ${metric.label} | ${cell(t, metric.fmt, repeats)} | ${cell(p, metric.fmt, repeats)} |${goCells} ${ratio(t, p)} |${go ? ` ${ratio(t, g)} |` : ''} ${goalText} |`,
      );
    }
  }
  return lines.join('\n');
}

/** Which side ran out of CPU: the one near 100% of its core. Neither: latency-bound (round trips). */
function boundBy(generatorCpu: number, serverCpu: number): string {
  if (generatorCpu >= 90 && serverCpu < 90) return 'generator';
  if (serverCpu >= 90 && generatorCpu < 90) return 'server';
  if (serverCpu >= 90 && generatorCpu >= 90) return 'both';
  return 'neither (round trips, or CPU taken by other processes)';
}

function cpuTable(outcomes: ScenarioOutcome[], kinds: ServerKind[]): string {
  const lines = [
    '| Scenario | Server | generator CPU % | server CPU % | other processes CPU % | bound by | errors | conns open at end |',
    '|---|---|---:|---:|---:|---|---:|---:|',
  ];
  for (const { scenario, samples } of outcomes) {
    for (const kind of kinds) {
      const g = stat(samples[kind].map((s) => s.generatorCpu));
      const s = stat(samples[kind].map((x) => x.serverCpu));
      const errors = samples[kind].reduce((sum, x) => sum + x.errors, 0);
      const open = stat(samples[kind].map((x) => x.established));
      const other = stat(samples[kind].map((x) => x.otherCpu));
      const bound = scenario.kind === 'idle' ? 'n/a (idle)' : g && s ? boundBy(g.median, s.median) : '–';
      lines.push(
        `| ${scenario.title} | ${LABEL[kind]} | ${g ? g.median.toFixed(0) : '–'} | ${s ? s.median.toFixed(0) : '–'} | ${other ? other.median.toFixed(0) : '–'} | ${bound} | ${errors} | ${open ? fmtRate(open.median) : '–'} |`,
      );
    }
  }
  return lines.join('\n');
}

/** Ctrl-C reaches the servers and the generator too (one process group): the current run ends early. */
let interrupted = false;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error('interrupted: finishing with what was measured; docs/benchmarks.md is left as it was');
  });
  if (!existsSync(`${root}packages/cli/src/main.ts`))
    throw new Error('packages/cli/src/main.ts is missing: no tcpkit server to measure');
  if (args.only?.includes('workers')) {
    // Its own suite (several server processes, no plain counterpart): bench/workers.ts.
    await import('./workers.js');
    return;
  }
  if (args.only?.includes('c100k')) {
    // Its own run (a minute or two of the whole machine): bench/c100k.ts, which reads the flags itself.
    await import('./c100k.js');
    return;
  }
  const all = args.quick ? QUICK : FULL;
  const scenarios = args.only ? all.filter((s) => args.only!.includes(s.name)) : all;
  if (scenarios.length === 0)
    throw new Error(`no scenario matches --only; known: ${all.map((s) => s.name).join(', ')}`);
  const kinds: ServerKind[] = args.go && goEcho ? ['tcpkit', 'plain', 'go'] : ['tcpkit', 'plain'];
  const goNote = !args.go
    ? '- Go echo server: left out (--no-go).'
    : goEcho
      ? `- Go echo server: ${goEcho} (/work/shared/anchors/servers/go-echo), pinned like the others.`
      : '- Go echo server: not built, so its column is left out (build it with /work/shared/anchors/setup.sh).';
  if (args.go && !goEcho) console.log(goNote.slice(2));
  const began = Date.now();
  const loadBefore = os.loadavg();
  console.log(`${machine()}\n- load average before: ${loadBefore.map((v) => v.toFixed(2)).join(' ')}\n`);

  const outcomes: ScenarioOutcome[] = [];
  const totalRuns = scenarios.length * args.repeats * kinds.length;
  let runIndex = 0;
  for (const scenario of scenarios) {
    const outcome: ScenarioOutcome = { scenario, samples: { tcpkit: [], plain: [], go: [] } };
    for (let rep = 0; rep < args.repeats; rep++) {
      // Alternate the order (ABC, CBA, ...), so drift in the machine hits every server alike.
      const order = rep % 2 === 0 ? kinds : [...kinds].reverse();
      for (const kind of order) {
        if (interrupted) break;
        runIndex++;
        const server = await startServer(kind);
        try {
          const result = await runLoadgen(server.port, scenario.args, { serverPid: server.pid });
          const sample = toSample(result);
          outcome.samples[kind].push(sample);
          const extra =
            scenario.kind === 'idle'
              ? `${fmtKiB(sample.rssPerConnection ?? 0)} KiB/conn, ${fmtRate(sample.established)} open`
              : `${fmtRate(sample.rate)}/s  p99 ${fmtMs(sample.p99Us)} ms  ${sample.cpuPerMessage ?? '–'} µs CPU/msg`;
          console.log(
            `[${runIndex}/${totalRuns}] ${scenario.name} ${kind.padEnd(6)} rep ${rep + 1}: ${extra}  gen ${sample.generatorCpu}%  srv ${sample.serverCpu}%  other ${sample.otherCpu?.toFixed(0) ?? '?'}%  errors ${sample.errors}${sample.errors ? ` ${JSON.stringify(result.errors)}` : ''}`,
          );
        } catch (error) {
          // One failed run leaves a gap in the medians, not a lost suite.
          console.error(
            `[${runIndex}/${totalRuns}] ${scenario.name} ${kind} rep ${rep + 1}: ${(error as Error).message}`,
          );
        } finally {
          await server.stop();
        }
      }
    }
    outcomes.push(outcome);
  }

  const ceilingLines: string[] = [];
  if (args.ceiling && !interrupted) {
    ceilingLines.push(
      '| Generator setup | messages/s | generator CPU % | plain server CPU % |',
      '|---|---:|---:|---:|',
    );
    for (const probe of CEILING) {
      if (interrupted) break;
      const server = await startServer('plain');
      try {
        const result = await runLoadgen(server.port, ['--mode', 'echo', ...probe.args], {
          serverPid: server.pid,
          pin: probe.pinned,
        });
        ceilingLines.push(
          `| ${probe.label} | ${fmtRate(result.messagesPerSec)} | ${result.generatorCpuPercent} | ${result.server?.cpuPercent ?? '–'} |`,
        );
        console.log(`[ceiling] ${probe.label}: ${fmtRate(result.messagesPerSec)}/s gen ${result.generatorCpuPercent}%`);
      } finally {
        await server.stop();
      }
    }
  }

  // Idle windows are quiet on our side and insensitive to contention: leave them out.
  const others = stat(
    outcomes
      .filter((o) => o.scenario.kind !== 'idle')
      .flatMap((o) => kinds.flatMap((kind) => o.samples[kind]))
      .map((x) => x.otherCpu),
  );
  const contention =
    others && others.median >= 20
      ? `- ⚠ Other processes used a median ${others.median.toFixed(0)}% of a core (up to ${others.max.toFixed(0)}%) during the measured windows: this run shared the machine, so messages/s and latency are skewed (low and high) for both servers; server CPU per message and RSS per connection are the figures least affected.`
      : `- Other processes used a median ${others ? others.median.toFixed(0) : '?'}% of a core during the measured windows.`;
  const loadAfter = os.loadavg();
  const minutes = ((Date.now() - began) / 60_000).toFixed(1);
  const repeatsNote =
    args.repeats > 1 ? `median of ${args.repeats} runs (min–max)` : 'single run (use the full suite for medians)';
  const block = [
    `Measured ${new Date().toISOString().slice(0, 10)} in ${minutes} min; each cell is the ${repeatsNote}.`,
    '',
    machine(),
    '- tcpkit and the plain server run from source under tsx',
    goNote,
    `- Load average before / after the run: ${loadBefore.map((v) => v.toFixed(2)).join(' ')} / ${loadAfter.map((v) => v.toFixed(2)).join(' ')}`,
    contention,
    '',
    `### tcpkit against plain node:net${kinds.includes('go') ? ' and Go' : ''}`,
    '',
    resultsTable(outcomes, args.repeats, kinds),
    '',
    '### Where each run was bound',
    '',
    'CPU use of each side during the measured window, in percent of one core (medians; each side is pinned to its own core). A side near 100% is the bottleneck; when it is the generator, messages/s and p99 measure the generator, and server CPU per message is the fair comparison. "Other processes" is the rest of the machine\'s busy CPU in the window: well above zero means the run competed with other work and its messages/s and latency are skewed low and high (CPU per message is the figure least affected).',
    '',
    cpuTable(outcomes, kinds),
    ...(ceilingLines.length
      ? ['', '### Generator ceiling (against the plain server)', '', ceilingLines.join('\n')]
      : []),
  ].join('\n');
  console.log(`\n${block}`);
  // Raw samples for whoever wants to dig further (.tmp/ is git-ignored).
  mkdirSync(`${root}.tmp`, { recursive: true });
  writeFileSync(`${root}.tmp/bench-results.json`, `${JSON.stringify(outcomes, null, 2)}\n`);
  if (args.write && !interrupted) writeSection('bench', block);
}

await main();
