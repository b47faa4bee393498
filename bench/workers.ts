/**
 * `npm run bench -- --only workers`: what workers cost and how they spread the load.
 *
 * - CPU per 64 B echo message summed over every server process (primary included), workers 2 vs 1,
 *   1,000 connections; the servers share CPU 0 and the load runs on CPU 1 (taskset), so the figure
 *   is the overhead of the processes, not a speed-up;
 * - the primary's CPU per connection under churn, for each balance this Node supports;
 * - how evenly connections spread: max/min connections per worker at 1,000 connections;
 * - messages/s from 1 to N workers (N = cores), unpinned, with the load generator's threads: only
 *   meaningful on a machine with cores to spare for the generator (skipped below 4 cores unless --scaling).
 *
 * Writes the `workers` section of docs/benchmarks.md with --write.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { reusePortSupported } from '../packages/tcpkit/src/workers/balance.js';
import { churnLoop, cpuUs, pingPongLoop, pinned, pinSelf, root, runLoadgen, writeSection } from './common.js';

const argv = process.argv.slice(2);
const SECONDS = argv.includes('--seconds') ? Number(argv[argv.indexOf('--seconds') + 1]) : 5;
/** Counted before this process pins itself to one CPU (which availableParallelism() would then report). */
const CORES = os.availableParallelism();
pinSelf(1);

interface Row {
  pid: number;
  active: number;
}

class EchoServer {
  readonly child: ChildProcess;
  port = 0;
  #lines: ((line: string) => void)[] = [];

  constructor(workers: number, balance: string, pin: boolean) {
    const command = [process.execPath, '--import', 'tsx', 'bench/workers-echo.ts', '0', String(workers), balance];
    const [file, ...args] = pin ? pinned(0, command) : command;
    this.child = spawn(file!, args, {
      cwd: root,
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '--conditions=tcpkit-source' },
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
say(`### CPU per 64 B echo message, 1,000 connections, ${SECONDS} s (servers on CPU 0, load on CPU 1)`);
say('');
say(
  '| server | balance | messages/s | server CPU µs/msg (all processes) | ratio to 1 process | max/min conns per worker |',
);
say('|---|---|---:|---:|---:|---:|');
let single = 0;
for (const [workers, balance] of [[1, 'auto'], ...balances.map((b) => [2, b] as const)] as [number, string][]) {
  const server = await new EchoServer(workers, balance, true).started();
  const pids = await server.pids();
  let t0 = 0;
  let t1 = 0;
  let spread = '–';
  let samples = 0;
  const n = await pingPongLoop(server.port, 1000, SECONDS * 1000, async () => {
    const total = pids.reduce((sum, pid) => sum + cpuUs(pid), 0);
    if (samples++ === 0) {
      t0 = total;
      if (workers > 1) {
        const active = (await server.rows()).map((r) => r.active);
        spread = `${(Math.max(...active) / Math.max(1, Math.min(...active))).toFixed(2)} (${active.join(' / ')})`;
      }
    } else t1 = total;
  });
  await server.stop();
  const perMessage = (t1 - t0) / n;
  if (workers === 1) single = perMessage;
  say(
    `| ${workers === 1 ? 'one process' : `workers: ${workers}`} | ${workers === 1 ? '–' : balance} | ${Math.round(n / SECONDS).toLocaleString('en-US')} | ${perMessage.toFixed(2)} | ${(perMessage / single).toFixed(2)} | ${spread} |`,
  );
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

if (argv.includes('--write')) writeSection('workers', lines.join('\n'));
