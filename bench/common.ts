/**
 * What every benchmark in bench/ shares: pinning to a CPU, spawning a server and waiting until it is ready,
 * stopping it by PID, a server's CPU time and RSS from /proc, running the load generator (`tcpkit bench`) and
 * reading its JSON, medians, the machine's description, client-side ping-pong and churn loops (for
 * benchmarks that sample several processes themselves), and the writer of docs/benchmarks.md's sections.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../packages/cli/src/loadgen/result.js';

/** The repository's root, with a trailing slash; every spawn runs from here. */
export const root = fileURLToPath(new URL('..', import.meta.url));

export const BENCHMARKS_MD = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));

/** Servers go on CPU 0 and clients on CPU 1, when taskset exists and there are two cores to pin to. */
export const hasTaskset = ((): boolean => {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return os.cpus().length >= 2;
  } catch {
    return false;
  }
})();

/** `command` run on `cpu` (through taskset), or as it is when pinning is not possible. */
export function pinned(cpu: number, command: string[]): string[] {
  return hasTaskset ? ['taskset', '-c', String(cpu), ...command] : command;
}

/** Moves this process onto `cpu` (benchmarks whose client runs in-process). */
export function pinSelf(cpu: number): void {
  if (hasTaskset) execFileSync('taskset', ['-pc', String(cpu), String(process.pid)], { stdio: 'ignore' });
}

/** A loopback port that was free a moment ago (the server binds it next). */
export async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}

/** CPU time (user + system) a process has used so far, microseconds (Linux /proc; USER_HZ is 100). */
export function cpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
}

/** The child processes of `pid` (Linux /proc): a primary's workers. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A process's resident set, KiB. */
export function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0);
}

export interface Spawned {
  child: ChildProcess;
  pid: number;
  /** What the process had printed on the watched stream when it was ready. */
  output: string;
  /** Sends `signal` (SIGTERM), then SIGKILL after `graceMs` (10 s); resolves once it exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  /** Pin to this CPU (see `pinned`); unpinned when absent. */
  cpu?: number;
  /** Ready once the watched stream's output so far contains this, or matches it (default: any output). */
  ready?: string | RegExp;
  /** The stream that says it is ready (default stdout); the other one is inherited. */
  stream?: 'stdout' | 'stderr';
  env?: NodeJS.ProcessEnv;
  /** Waits this long for readiness before giving up and killing it (default 30 s). */
  timeoutMs?: number;
  /** Keeps stdin as a pipe (the caller talks to the process). */
  stdin?: boolean;
}

/** Spawns `command` from the root and resolves once it says it is ready; rejects if it exits first. */
export async function startProcess(command: string[], options: SpawnOptions = {}): Promise<Spawned> {
  const [file, ...args] = options.cpu === undefined ? command : pinned(options.cpu, command);
  const watched = options.stream ?? 'stdout';
  const child = spawn(file!, args, {
    cwd: root,
    env: options.env ? { ...process.env, ...options.env } : process.env,
    stdio: [
      options.stdin ? 'pipe' : 'ignore',
      watched === 'stdout' ? 'pipe' : 'inherit',
      watched === 'stderr' ? 'pipe' : 'inherit',
    ],
  });
  const exited = once(child, 'exit');
  const stream = watched === 'stdout' ? child.stdout! : child.stderr!;
  const ready = options.ready;
  const isReady = (text: string): boolean =>
    ready === undefined ? text.length > 0 : typeof ready === 'string' ? text.includes(ready) : ready.test(text);
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`${command.join(' ')} was not ready within ${options.timeoutMs ?? 30_000} ms: ${output}`)),
        options.timeoutMs ?? 30_000,
      );
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        if (isReady(output)) {
          clearTimeout(timer);
          stream.off('data', onData);
          resolve();
        }
      };
      stream.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${command.join(' ')} exited with ${code}: ${output}`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  // Keep draining what it prints, so a full pipe never blocks the server.
  stream.resume();
  return {
    child,
    pid: child.pid!,
    output,
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A `node -e script` server pinned to CPU 0 whose first stdout line is the port it listens on. */
export async function startInline(script: string): Promise<Spawned & { port: number }> {
  const server = await startProcess([process.execPath, '-e', script], { cpu: 0, ready: /^\d+\n/ });
  return { ...server, port: Number.parseInt(server.output, 10) };
}

export interface LoadgenOptions {
  /** Sample this server process's CPU and RSS (`--server-pid`). */
  serverPid?: number;
  /** Pin the generator to CPU 1 (default true). */
  pin?: boolean;
  /** Kills a hung generator after this long (default 120 s); every run stops by itself well before. */
  timeoutMs?: number;
  /**
   * Run the built CLI (`packages/cli/dist/main.js`, after `npm run build`) instead of the source through tsx,
   * whose module-loader thread (and its garbage collections) would share the generator's core.
   */
  built?: boolean;
}

/** Runs `tcpkit bench --json --quiet` from source (bench/loadgen.ts) against a loopback port; its parsed result. */
export async function runLoadgen(port: number, args: string[], options: LoadgenOptions = {}): Promise<BenchResult> {
  const command = [
    process.execPath,
    ...(options.built ? ['packages/cli/dist/main.js'] : ['--import', 'tsx', 'bench/loadgen.ts']),
    'bench',
    '--port',
    String(port),
    ...(options.serverPid === undefined ? [] : ['--server-pid', String(options.serverPid)]),
    '--json',
    '--quiet',
    ...args,
  ];
  const [file, ...rest] = options.pin === false ? command : pinned(1, command);
  const child = spawn(file!, rest, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  try {
    return JSON.parse(stdout) as BenchResult;
  } catch {
    throw new Error(`the generator exited with ${code} and no JSON`);
  }
}

/** CPU that other processes used during a generator's window, percent of one core; null without /proc. */
export function otherCpuPercent(result: BenchResult): number | null {
  if (result.machineCpuPercent === null) return null;
  return Math.max(0, result.machineCpuPercent - result.generatorCpuPercent - (result.server?.cpuPercent ?? 0));
}

export interface Stat {
  median: number;
  min: number;
  max: number;
}

/** Median (the mean of the middle two for an even count), min and max of the values present; null if none. */
export function stat(values: Array<number | null>): Stat | null {
  const present = values.filter((v): v is number => v !== null && !Number.isNaN(v)).sort((a, b) => a - b);
  if (present.length === 0) return null;
  const mid = present.length >> 1;
  const median = present.length % 2 ? present[mid]! : (present[mid - 1]! + present[mid]!) / 2;
  return { median, min: present[0]!, max: present[present.length - 1]! };
}

/** The median of the values (NaN if there are none). */
export function median(values: number[]): number {
  return stat(values)?.median ?? Number.NaN;
}

/** The CPU model as /proc/cpuinfo names it (os.cpus() as a fallback). */
export function cpuModel(): string {
  try {
    const match = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) return match[1]!.trim();
  } catch {}
  return os.cpus()[0]?.model ?? 'unknown';
}

/** The machine as a markdown list: CPU, memory, OS and descriptor limit, Node, pinning. */
export function machine(): string {
  let hardLimit = '?';
  try {
    hardLimit = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  } catch {}
  return [
    `- CPU: ${cpuModel()}, ${os.cpus().length} cores; ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`,
    `- OS: ${os.type()} ${os.release()}; open-file hard limit ${hardLimit}`,
    `- Node.js ${process.version}`,
    `- Pinning: ${hasTaskset ? 'servers on CPU 0, load on CPU 1 (taskset)' : 'none (taskset missing or one core)'}`,
  ].join('\n');
}

/** The Go echo server of /work/shared/anchors, when it is built (`TCPKIT_GO_ECHO` names another binary). */
/**
 * The command line of an echo server under test, listening on 127.0.0.1:`port`: tcpkit's CLI echo from
 * the checkout at `checkout` (run from source), or the plain node:net echo. `--max-connections` is above
 * the largest idle run: the default cap (10,000) would queue the rest.
 */
export function echoServerCommand(kind: 'tcpkit' | 'plain', port: number, checkout = root): string[] {
  const script =
    kind === 'tcpkit'
      ? [
          `${checkout}/packages/cli/src/main.ts`,
          'serve',
          'echo',
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--max-connections',
          '30000',
        ]
      : [`${root}/bench/plain-echo.ts`, String(port), '127.0.0.1'];
  return [process.execPath, '--import', 'tsx', ...script];
}

export function goEchoBinary(): string | null {
  const path = process.env.TCPKIT_GO_ECHO ?? '/tmp/tcpkit-anchors/go-echo';
  return existsSync(path) ? path : null;
}

/** A client measurement window: `mark()` is called at its start and its end (to sample server CPU). */
export type Mark = () => void | Promise<void>;

async function window(ms: number, mark: Mark, count: () => number): Promise<number> {
  await mark();
  const before = count();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const done = count() - before;
  await mark();
  return done;
}

/**
 * 64 B ping-pong from this process on `connections` sockets (connected 100 at a time), 1 s of warm-up, then
 * a window of `ms`; resolves with the messages echoed in the window. Closed loop (each answer sends the next
 * message) when `rate` is 0; else paced at `rate` messages/s over all the sockets, sent every 10 ms by
 * sockets whose last message was answered (fewer if none is free), so that two servers are compared at
 * the same offered load rather than each at the rate it reaches. With several ports, the sockets are
 * dealt over them in turn (one load over independent servers).
 */
export async function pingPongLoop(
  port: number | number[],
  connections: number,
  ms: number,
  mark: Mark,
  rate = 0,
): Promise<number> {
  const message = Buffer.alloc(64, 120);
  let count = 0;
  let running = true;
  const sockets: net.Socket[] = [];
  /** Paced: sockets with no message in flight, in the order their answers came. */
  const free: net.Socket[] = [];
  const ports = [port].flat();
  const connectOne = (): Promise<void> =>
    new Promise((resolve) => {
      const to = ports[sockets.length % ports.length];
      const socket = net.connect({ port: to, host: '127.0.0.1', noDelay: true }, () => resolve());
      let got = 0;
      socket.on('data', (data) => {
        got += data.length;
        while (got >= 64) {
          got -= 64;
          count++;
          if (rate > 0) free.push(socket);
          else if (running) socket.write(message);
        }
      });
      socket.on('error', () => {});
      sockets.push(socket);
    });
  for (let i = 0; i < connections; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, connections - i) }, connectOne));
  }
  let pacer: NodeJS.Timeout | undefined;
  if (rate === 0) for (const socket of sockets) socket.write(message);
  else {
    free.push(...sockets);
    const perTick = rate / 100;
    let owed = 0;
    pacer = setInterval(() => {
      owed += perTick;
      for (; owed >= 1 && free.length > 0; owed--) free.shift()!.write(message);
      // What could not be sent for want of a free socket is not owed later (no catch-up bursts).
      if (free.length === 0) owed = 0;
    }, 10);
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const done = await window(ms, mark, () => count);
  running = false;
  clearInterval(pacer);
  for (const socket of sockets) socket.destroy();
  return done;
}

/** Connect, 64 B echo, close, in `loops` parallel loops: 1 s of warm-up, then a window of `ms`; cycles in it. */
export async function churnLoop(port: number, loops: number, ms: number, mark: Mark): Promise<number> {
  let cycles = 0;
  let running = true;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(Buffer.alloc(64, 1)));
      socket.on('data', () => {
        cycles++;
        socket.end();
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve());
    });
  const loop = async (): Promise<void> => {
    while (running) await one();
  };
  const all = Array.from({ length: loops }, loop);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const done = await window(ms, mark, () => cycles);
  running = false;
  await Promise.all(all);
  return done;
}

/**
 * Writes one benchmark's results into its own section of docs/benchmarks.md, between
 * `<!-- NAME:begin ... -->` and `<!-- NAME:end -->`, leaving the rest of the page as it is.
 */
export function writeSection(name: string, markdown: string, file = BENCHMARKS_MD): void {
  const begin = `<!-- ${name}:begin (generated; edit outside these markers) -->`;
  const end = `<!-- ${name}:end -->`;
  const current = readFileSync(file, 'utf8');
  const at = current.indexOf(begin);
  const stop = current.indexOf(end);
  if (at < 0 || stop < at) throw new Error(`${file} has no ${name} markers`);
  writeFileSync(file, `${current.slice(0, at + begin.length)}\n${markdown.trim()}\n${current.slice(stop)}`);
  console.log(`wrote the ${name} section of ${file}`);
}

// ---- heap sampling profiles (bench/alloc.ts, bench/tls-alloc.ts) ---------------------------------

/** Bytes and objects allocated at one site of a sampling heap profile. */
export interface Site {
  site: string;
  bytes: number;
  objects: number;
}

/** A node of the inspector's `HeapProfiler.getSamplingProfile` tree, the fields read here. */
export interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  id: number;
  children: ProfileNode[];
}

/** A sampling heap profile: its tree and its samples. */
export interface SamplingProfile {
  head: ProfileNode;
  samples: Array<{ nodeId: number; size: number }>;
}

/** A frame as "function file:line", the file relative to packages/, node_modules/ or bench/. */
export const frameName = (f: ProfileNode['callFrame']): string =>
  `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(packages|node_modules|bench)\//, '').replace(/^node:/, '')}:${f.lineNumber + 1}`;

/**
 * Bytes and objects per allocating function, largest first; with `callerUrl`, per allocating function and the
 * innermost frame under it whose URL matches, so what Node allocates on a caller's behalf is named by its caller.
 */
export function sitesOf(profile: SamplingProfile, callerUrl?: RegExp): Site[] {
  const byNode = new Map<number, ProfileNode>();
  const parentOf = new Map<number, ProfileNode>();
  const walk = (n: ProfileNode): void => {
    byNode.set(n.id, n);
    for (const c of n.children) {
      parentOf.set(c.id, n);
      walk(c);
    }
  };
  walk(profile.head);
  const sites = new Map<string, Site>();
  for (const s of profile.samples) {
    const node = byNode.get(s.nodeId)!;
    let key = frameName(node.callFrame);
    if (callerUrl !== undefined) {
      let caller = '';
      for (let n: ProfileNode | undefined = node; n !== undefined; n = parentOf.get(n.id)) {
        if (callerUrl.test(n.callFrame.url)) {
          caller = frameName(n.callFrame);
          break;
        }
      }
      if (caller !== '' && caller !== key) key = `${key} <- ${caller}`;
    }
    const site = sites.get(key) ?? { site: key, bytes: 0, objects: 0 };
    site.bytes += s.size;
    site.objects++;
    sites.set(key, site);
  }
  return [...sites.values()].sort((a, b) => b.bytes - a.bytes);
}
