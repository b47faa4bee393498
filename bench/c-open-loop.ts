/**
 * The compiled open-loop generator (bench/open-loop-gen.c): built with gcc on first use into the temporary
 * directory (one binary per version of the source, so an edit rebuilds it and concurrent runs share it), run
 * against a loopback port, its one JSON line parsed. No binary is committed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pinned } from './common.js';

const SOURCE = fileURLToPath(new URL('./open-loop-gen.c', import.meta.url));
/** The header the source includes (its histogram): part of what names a build. */
const HEADER = fileURLToPath(new URL('./open-loop-gen-histogram.h', import.meta.url));

/** Latency percentiles of one histogram, microseconds (HdrHistogram-style: a bucket's highest value). */
export interface GeneratorSummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** What the generator prints (snake_case, as the anchors' Go load generator does). */
export interface GeneratorResult {
  generator: 'c';
  connections: number;
  rate: number;
  size: number;
  warmup_s: number;
  duration_s: number;
  tick_us: number;
  /** Messages whose intended send time fell in the measured window. */
  scheduled: number;
  /** Of those, the ones fully echoed (every byte verified). */
  msgs: number;
  msgs_per_s: number;
  /** Window messages still unanswered at the end (on live connections; counted in the latency with their age). */
  outstanding: number;
  /** Window messages that died with their connection. */
  lost: number;
  errors: number;
  error_kinds: Record<'connect' | 'closed' | 'reset' | 'corrupt' | 'unexpected' | 'write', number>;
  /** From each message's intended send time to its last echoed byte. */
  latency_us: GeneratorSummary;
  /** How late each message's last byte went to the kernel after its intended time: the generator's own lateness. */
  send_lag_us: GeneratorSummary;
  /** Percent of one core over the window; -1 when /proc could not be read (or no --server-pid). */
  generator_cpu_pct: number;
  /** How long the generator waited runnable for its core during the window, ms. */
  generator_wait_ms: number;
  server_cpu_pct: number;
  /** Busy CPU of the whole machine (every core), percent of one core. */
  machine_cpu_pct: number;
  server_cpu_us_per_msg: number;
}

export interface GeneratorOptions {
  port: number;
  /** A loopback address (the generator refuses any other). Default 127.0.0.1. */
  host?: string;
  /** Default 1,000. */
  connections?: number;
  /** Messages/s over all connections. Default 40,000. */
  rate?: number;
  /** Bytes per message. Default 64. */
  size?: number;
  /** Unmeasured load before the window, s. Default 2. */
  warmup?: number;
  /** The measured window, s. Default 10. */
  duration?: number;
  /** How long to wait for the last echoes after the schedule ends, s. Default 2. */
  drain?: number;
  /**
   * Send in rounds at most this often, s: every message still leaves at or after its intended time (and its
   * latency counts from there), but due messages wait for the next round. Default 0: each when it is due.
   */
  tick?: number;
  /** Sample this process's CPU over the window. */
  serverPid?: number;
  /** Pin the generator to this CPU (taskset); unpinned when null. Default 1. */
  cpu?: number | null;
}

export interface GeneratorRun {
  /** The parsed JSON line; null if the generator printed none (bad options, or killed). */
  result: GeneratorResult | null;
  /** 0 clean, 1 errors occurred, 2 bad options, 3 overstayed its own bound. */
  code: number | null;
  stderr: string;
}

/** The generator's binary, built if needed; null when gcc is not installed. */
export function buildGenerator(): string | null {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  const source = Buffer.concat([readFileSync(SOURCE), readFileSync(HEADER)]);
  const binary = path.join(
    os.tmpdir(),
    `tcpkit-open-loop-gen-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`,
  );
  if (existsSync(binary)) return binary;
  // Built beside its final name and renamed into place, so a concurrent run never executes half a file.
  const partial = `${binary}.${process.pid}.tmp`;
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', partial, SOURCE, '-lm'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  renameSync(partial, binary);
  return binary;
}

/** Runs the generator once (it stops by itself); `timeoutMs` only bounds a hang (default 60 s past its own bound). */
export async function runGenerator(
  binary: string,
  options: GeneratorOptions,
  timeoutMs?: number,
): Promise<GeneratorRun> {
  const o = {
    host: '127.0.0.1',
    connections: 1000,
    rate: 40000,
    size: 64,
    warmup: 2,
    duration: 10,
    drain: 2,
    tick: 0,
    ...options,
  };
  const args = [
    '--host',
    o.host,
    '--port',
    String(o.port),
    '--connections',
    String(o.connections),
    '--rate',
    String(o.rate),
    '--size',
    String(o.size),
    '--warmup',
    String(o.warmup),
    '--duration',
    String(o.duration),
    '--drain',
    String(o.drain),
    '--tick',
    String(o.tick),
    ...(o.serverPid === undefined ? [] : ['--server-pid', String(o.serverPid)]),
  ];
  const cpu = options.cpu === undefined ? 1 : options.cpu;
  const [file, ...rest] = cpu === null ? [binary, ...args] : pinned(cpu, [binary, ...args]);
  const child = spawn(file!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const bound = timeoutMs ?? (o.warmup + o.duration + o.drain + 10 + 60) * 1000;
  const timer = setTimeout(() => child.kill('SIGKILL'), bound);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  const line = stdout.trim().split('\n').pop();
  return { result: line ? (JSON.parse(line) as GeneratorResult) : null, code, stderr };
}
