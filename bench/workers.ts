/**
 * `npm run bench -- --only workers`: what workers cost and how they spread the load.
 *
 * - CPU per 64 B echo message summed over every server process (primary included), workers 2 vs 1,
 *   1,000 connections; the servers share CPU 0 and the load runs on CPU 1 (taskset), so the figure
 *   is the overhead of the processes, not a speed-up. Closed loop (each server at the rate it
 *   reaches) and paced at the same offered load for every server (`--paced`, 10,000 messages/s).
 *   `--reps N` rounds (default 3), each running every configuration in turn (interleaved, so a change
 *   in the machine's load hits all of them), medians; beside tcpkit the same topology in plain
 *   node:net under node:cluster (bench/workers-plain-echo.ts), the floor of what a second process
 *   costs on one core; with the paced figure, the event-loop wake-ups and preemptions per 100 messages
 *   of all the server's processes (their main threads' voluntary and involuntary context switches in
 *   /proc), which show how a second process on the same core costs what it costs;
 * - the primary's CPU per connection under churn, for each balance this Node supports;
 * - how evenly connections spread: max/min connections per worker at 1,000 connections;
 * - messages/s from 1 to N workers (N = cores), unpinned, with the load generator's threads: only
 *   meaningful on a machine with cores to spare for the generator (skipped below 4 cores unless --scaling).
 *
 * Options: --seconds N (4) per measurement window, --paced N (10000), --reps N (3), --before DIR,
 * --before-name TEXT and --kinds (above), --cpu-prof DIR (profiles of every server process, primary and workers, written as
 * they exit), --scaling, --write (the `workers-nodeNN` section of docs/benchmarks.md, NN the major
 * version of Node that ran it).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { reusePortSupported } from '../packages/tcpkit/src/workers/balance.js';
import {
  childrenOf,
  churnLoop,
  cpuUs,
  median,
  pingPongLoop,
  pinned,
  pinSelf,
  root,
  runLoadgen,
  writeSection,
} from './common.js';

const argv = process.argv.slice(2);
const option = (name: string, fallback: string): string =>
  argv.includes(name) ? argv[argv.indexOf(name) + 1]! : fallback;
const SECONDS = Number(option('--seconds', '4'));
/** The offered load of the paced measurement, messages/s over the 1,000 connections. */
const PACED = Number(option('--paced', '10000'));
/** Rounds of the CPU-per-message comparison; each runs every configuration once. */
const REPS = Number(option('--reps', '3'));
/** --cpu-prof DIR: the servers' processes (primary and workers) write CPU profiles there as they exit. */
const PROFILE = option('--cpu-prof', '');
/**
 * --before DIR: a checkout of an earlier tcpkit (with its node_modules), measured as one more server in
 * the same rounds, for a before/after comparison; --kinds picks the servers (default tcpkit,plain).
 */
const BEFORE = option('--before', '');
/** How the tables name the --before server (default: its directory). */
const BEFORE_NAME = option('--before-name', BEFORE);
const KINDS = option('--kinds', BEFORE === '' ? 'tcpkit,pair,plain' : 'tcpkit,before').split(',') as Kind[];
/**
 * `pair`: two independent one-process tcpkit servers on CPU 0, each with half the connections: what any
 * second process on the core costs, without node:cluster, a primary or IPC (the control for workers: 2).
 */
type Kind = 'tcpkit' | 'before' | 'plain' | 'pair';
/** Counted before this process pins itself to one CPU (which availableParallelism() would then report). */
const CORES = os.availableParallelism();
pinSelf(1);

interface Row {
  pid: number;
  active: number;
}

/**
 * Context switches of a process's main thread, its event loop (Linux /proc): a voluntary one is a wait
 * for events that ended in a wake-up, an involuntary one a preemption by another process on its CPU.
 */
function switches(pid: number): { wakeups: number; preemptions: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { wakeups: field('voluntary_ctxt_switches'), preemptions: field('nonvoluntary_ctxt_switches') };
}

class EchoServer {
  readonly child: ChildProcess;
  readonly kind: Kind;
  port = 0;
  #lines: ((line: string) => void)[] = [];

  constructor(workers: number, balance: string, pin: boolean, kind: Kind = 'tcpkit') {
    this.kind = kind;
    const script =
      kind === 'plain'
        ? ['bench/workers-plain-echo.ts', String(workers), balance]
        : ['bench/workers-echo.ts', '0', String(workers), balance];
    const command = [process.execPath, '--import', 'tsx', ...script];
    const [file, ...args] = pin ? pinned(0, command) : command;
    const profile = PROFILE === '' ? '' : ` --cpu-prof --cpu-prof-dir=${PROFILE}`;
    this.child = spawn(file!, args, {
      cwd: kind === 'before' ? BEFORE : root,
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: `--conditions=tcpkit-source${profile}` },
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.#lines.shift()?.(line));
  }

  #next(): Promise<string> {
    return new Promise((resolve) => this.#lines.push(resolve));
  }

  async started(): Promise<this> {
    this.port = (JSON.parse(await this.#next()) as { port: number }).port;
    return this;
  }

  async rows(): Promise<Row[]> {
    this.child.stdin!.write('stats\n');
    const { stats } = JSON.parse(await this.#next()) as { stats: { workers?: Row[]; active: number } };
    return stats.workers ?? [{ pid: this.child.pid!, active: stats.active }];
  }

  /** Every process of the server: the primary and its workers. */
  async pids(): Promise<number[]> {
    if (this.kind === 'plain') return [this.child.pid!, ...childrenOf(this.child.pid!)];
    const rows = await this.rows();
    return [...new Set([this.child.pid!, ...rows.map((r) => r.pid)])];
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

const balances = reusePortSupported() ? ['primary', 'kernel'] : ['primary'];
const lines: string[] = [];
const say = (line: string): void => {
  console.log(line);
  lines.push(line);
};

say(
  `Measured ${new Date().toISOString().slice(0, 10)} on Node ${process.version}, ${os.cpus()[0]?.model}, ${os.cpus().length} cores, load average ${os
    .loadavg()
    .map((v) => v.toFixed(2))
    .join(
      ' ',
    )} at the start (the machine was shared with other work: rates are noisy, CPU per message is the steadier figure).`,
);
say('');
say(
  `### CPU per 64 B echo message, 1,000 connections, ${SECONDS} s windows, ${REPS} interleaved rounds (every server process on CPU 0, the load on CPU 1)`,
);
say('');
say(
  `Both workers share CPU 0 with each other (and the primary), as one process has it to itself: the same pinning for every row, so the ratio is the overhead of the processes, not a speed-up. Each server is measured closed loop (every answer sends the next message: each server at the rate it reaches, so CPU per message also moves with how many events one wake-up of the event loop finds) and paced at ${PACED.toLocaleString('en-US')} messages/s (the same offered load for every server). Medians of the rounds; a ratio is the median of each round's ratio to the one process of the same round (measured next to it). "Two independent one-process servers" is the control: two ordinary servers on CPU 0 with half the connections each, no node:cluster, primary or IPC, so what any second process on the core costs (its ratio is to tcpkit's one process). Wake-ups and preemptions are the voluntary and involuntary context switches of every server process's main thread (its event loop) per 100 messages of the paced window.`,
);
say('');
say(
  `| server | balance | closed loop: messages/s | µs/msg (all processes) | ratio to 1 process (rounds) | paced ${PACED.toLocaleString('en-US')}/s: µs/msg | ratio (rounds) | paced: wake-ups / preemptions per 100 msgs | max/min conns per worker |`,
);
say('|---|---|---:|---:|---:|---:|---:|---:|---:|');
interface Config {
  kind: Kind;
  workers: number;
  balance: string;
}
interface Measured {
  rate: number;
  perMessage: number;
  pacedPerMessage: number;
  /** Paced, summed over the server's processes: event-loop wake-ups and preemptions per 100 messages. */
  pacedWakeups: number;
  pacedPreemptions: number;
  spread: string;
}
const configs: Config[] = KINDS.flatMap((kind): Config[] =>
  kind === 'pair'
    ? [{ kind, workers: 2, balance: 'none' }]
    : [{ kind, workers: 1, balance: 'auto' }, ...balances.map((balance) => ({ kind, workers: 2, balance }))],
);
const runs = new Map<Config, Measured[]>(configs.map((c) => [c, []]));
for (let round = 0; round < REPS; round++) {
  // Each round in another order, so no configuration always follows the same one.
  const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
  for (const config of order) runs.get(config)!.push(await cpuPerMessage(config));
}
const ratioCell = (mine: number[], single: number[]): string => {
  const ratios = mine.map((v, i) => v / single[i]!);
  return `${median(ratios).toFixed(2)} (${ratios.map((r) => r.toFixed(2)).join(' / ')})`;
};
for (const config of configs) {
  const mine = runs.get(config)!;
  const singleKind = config.kind === 'pair' ? 'tcpkit' : config.kind;
  const single = runs.get(configs.find((c) => c.kind === singleKind && c.workers === 1)!)!;
  const closed = mine.map((r) => r.perMessage);
  const paced = mine.map((r) => r.pacedPerMessage);
  const name =
    config.kind === 'pair'
      ? 'two independent one-process servers (500 conns each)'
      : `${{ tcpkit: '', before: `before (${BEFORE_NAME}), `, plain: 'plain node:net, ' }[config.kind]}${config.workers === 1 ? 'one process' : `workers: ${config.workers}`}`;
  say(
    `| ${name} | ${config.workers === 1 ? '–' : config.balance} | ${Math.round(median(mine.map((r) => r.rate))).toLocaleString('en-US')} | ${median(closed).toFixed(2)} | ${ratioCell(
      closed,
      single.map((r) => r.perMessage),
    )} | ${median(paced).toFixed(2)} | ${ratioCell(
      paced,
      single.map((r) => r.pacedPerMessage),
    )} | ${median(mine.map((r) => r.pacedWakeups)).toFixed(1)} / ${median(mine.map((r) => r.pacedPreemptions)).toFixed(1)} | ${mine[0]!.spread} |`,
  );
}

async function cpuPerMessage(config: Config): Promise<Measured> {
  const servers =
    config.kind === 'pair'
      ? await Promise.all([0, 1].map(() => new EchoServer(1, 'auto', true).started()))
      : [await new EchoServer(config.workers, config.balance, true, config.kind).started()];
  const server = servers[0]!;
  const ports = servers.map((s) => s.port);
  const pids = (await Promise.all(servers.map((s) => s.pids()))).flat();
  const serverCpu = (): number => pids.reduce((sum, pid) => sum + cpuUs(pid), 0);
  let spread = '–';
  const marks: number[] = [];
  const n = await pingPongLoop(ports, 1000, SECONDS * 1000, async () => {
    marks.push(serverCpu());
    // At the window's end (after its CPU sample): every connection has been echoing for seconds.
    if (marks.length === 2 && (config.kind === 'tcpkit' || config.kind === 'before') && config.workers > 1) {
      // A stats() asks each worker for a fresh report and returns the last ones: ask until the rows
      // hold every connection (bounded), so the spread is of this moment, not of a report from before.
      let active: number[] = [];
      for (let tries = 0; tries < 30; tries++) {
        active = (await server.rows()).map((r) => r.active);
        if (active.reduce((sum, a) => sum + a, 0) >= 1000) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      spread = `${(Math.max(...active) / Math.max(1, Math.min(...active))).toFixed(2)} (${active.join(' / ')})`;
    }
  });
  const pacedMarks: { cpu: number; wakeups: number; preemptions: number }[] = [];
  const paced = await pingPongLoop(
    ports,
    1000,
    SECONDS * 1000,
    () => {
      const counts = pids.map(switches);
      pacedMarks.push({
        cpu: serverCpu(),
        wakeups: counts.reduce((sum, c) => sum + c.wakeups, 0),
        preemptions: counts.reduce((sum, c) => sum + c.preemptions, 0),
      });
    },
    PACED,
  );
  await Promise.all(servers.map((s) => s.stop()));
  const [start, end] = pacedMarks as [(typeof pacedMarks)[0], (typeof pacedMarks)[0]];
  return {
    rate: n / SECONDS,
    perMessage: (marks[1]! - marks[0]!) / n,
    pacedPerMessage: (end.cpu - start.cpu) / paced,
    pacedWakeups: ((end.wakeups - start.wakeups) * 100) / paced,
    pacedPreemptions: ((end.preemptions - start.preemptions) * 100) / paced,
    spread,
  };
}

say('');
say(`### Connection churn (connect, 64 B echo, close), 50 loops, ${SECONDS} s, workers: 2`);
say('');
say('| balance | connections/s | primary CPU µs/conn | all server processes CPU µs/conn |');
say('|---|---:|---:|---:|');
for (const balance of balances) {
  const server = await new EchoServer(2, balance, true).started();
  const pids = await server.pids();
  const primary = server.child.pid!;
  const marks: { primary: number; all: number }[] = [];
  const n = await churnLoop(server.port, 50, SECONDS * 1000, async () => {
    marks.push({ primary: cpuUs(primary), all: pids.reduce((sum, pid) => sum + cpuUs(pid), 0) });
  });
  await server.stop();
  const [a, b] = marks as [{ primary: number; all: number }, { primary: number; all: number }];
  say(
    `| ${balance} | ${Math.round(n / SECONDS).toLocaleString('en-US')} | ${((b.primary - a.primary) / n).toFixed(2)} | ${((b.all - a.all) / n).toFixed(2)} |`,
  );
}

if (CORES >= 4 || argv.includes('--scaling')) {
  say('');
  say('### Scaling: 64 B pipelined echo (depth 4), 1,000 connections, unpinned');
  say('');
  say('| workers | messages/s | x one worker |');
  say('|---:|---:|---:|');
  const cores = CORES;
  let base = 0;
  for (let w = 1; w <= Math.max(2, Math.floor(cores / 2)); w++) {
    const server = await new EchoServer(w, 'auto', false).started();
    const result = await runLoadgen(
      server.port,
      [
        '--connections',
        '1000',
        '--depth',
        '4',
        '--duration',
        `${SECONDS}s`,
        '--workers',
        String(Math.max(1, Math.floor(cores / 2))),
      ],
      { pin: false },
    );
    await server.stop();
    const rate = result.messagesPerSec;
    if (w === 1) base = rate;
    say(`| ${w} | ${Math.round(rate).toLocaleString('en-US')} | ${(rate / base).toFixed(2)} |`);
  }
} else {
  say('');
  say(
    `Scaling from 1 to N workers is not measured here: ${CORES} cores leave none for the generator. On a machine with more cores, \`npm run bench -- --only workers\` adds the table (workers 1 to cores/2, the generator on the other half).`,
  );
}

if (argv.includes('--write')) writeSection(`workers-node${process.versions.node.split('.')[0]}`, lines.join('\n'));
