/**
 * tcpkit kv against a real redis-server, same machine, same run:
 * `redis-benchmark -t ping,set,get -c 50 -n 200000`, without and with `-P 16`. Each server is
 * pinned to core 0 and redis-benchmark to core 1 (taskset), so each server gets one core as
 * Redis has one main thread. Writes the kv section of docs/benchmarks.md.
 *
 * Run: `npm run build && node --import tsx bench/kv.ts` (two to three minutes; stops by itself). The kv
 * servers are `tcpkit serve kv` of the builds (this checkout's, and KV_BENCH_BEFORE's).
 * Env: KV_BENCH_REQUESTS (default 200000), KV_BENCH_REPEAT (runs per cell, default 3),
 * KV_BENCH_OUT (default docs/benchmarks.md; the file must have the kv section markers), KV_BENCH_BEFORE (another
 * checkout, e.g. a clone of main: its kv runs as a third server in the same run, a "before" column).
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  BENCHMARKS_MD,
  cpuModel,
  freePort,
  hasTaskset,
  median,
  pinned,
  type Spawned,
  startProcess,
  writeSection,
} from './common.js';

/** Another checkout whose kv app runs as a third server in the same run (a "before" column). */
// An empty KV_BENCH_BEFORE is no before checkout, as if unset.
const BEFORE = process.env.KV_BENCH_BEFORE || undefined;
type Which = 'redis' | 'kv' | 'before';
const REQUESTS = Number(process.env.KV_BENCH_REQUESTS ?? 200_000);
const OUT = process.env.KV_BENCH_OUT ?? BENCHMARKS_MD;
const CLIENTS = 50;
/** Runs per server, test and pipeline depth; the table shows the median. */
const REPEAT = Number(process.env.KV_BENCH_REPEAT ?? 3);
const TESTS = 'ping,set,get';
/** No single redis-benchmark run may take longer than this: the bench always ends. */
const RUN_TIMEOUT_MS = 120_000;

const cores = os.cpus().length;
const pin = (core: number, cmd: string, args: string[]): [string, string[]] => {
  const [file, ...rest] = pinned(core, [cmd, ...args]);
  return [file!, rest];
};

function tryExec(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return undefined;
  }
}

interface Row {
  test: string;
  rps: number;
  p99: number;
}

/** One redis-benchmark run; rows from its --csv output. */
async function benchmark(port: number, pipeline: number, tests: string): Promise<Row[]> {
  const [cmd, args] = pin(1, 'redis-benchmark', [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    tests,
    '-c',
    String(CLIENTS),
    '-n',
    String(REQUESTS),
    '-P',
    String(pipeline),
    '--csv',
  ]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`redis-benchmark exited with ${code}: ${stderr}${stdout}`);
  const lines = stdout.trim().split('\n');
  const header = lines[0]!.split(',').map((f) => f.replace(/"/g, ''));
  const col = (name: string): number => header.indexOf(name);
  return lines.slice(1).map((line) => {
    const f = line.split(',').map((x) => x.replace(/"/g, ''));
    return { test: f[col('test')]!, rps: Number(f[col('rps')]), p99: Number(f[col('p99_latency_ms')]) };
  });
}

/** Per test name, the median requests/s and the median p99 of its runs. */
function medians(rows: Row[]): Row[] {
  const names = [...new Set(rows.map((r) => r.test))];
  return names.map((test) => {
    const mine = rows.filter((r) => r.test === test);
    return { test, rps: median(mine.map((r) => r.rps)), p99: median(mine.map((r) => r.p99)) };
  });
}

async function main(): Promise<void> {
  if (tryExec('redis-server', ['--version']) === undefined || tryExec('redis-benchmark', ['--version']) === undefined) {
    console.error('redis-server and redis-benchmark are needed: apt-get install redis-server redis-tools');
    process.exit(1);
  }
  const redisVersion = /v=(\S+)/.exec(tryExec('redis-server', ['--version']) ?? '')?.[1] ?? 'unknown';
  const load = os.loadavg()[0]!.toFixed(2);
  const [redisPort, kvPort] = await Promise.all([freePort(), freePort()]);
  // Every server started is stopped at the end, also when a later one fails to start.
  const started: Spawned[] = [];
  const track = async (server: Promise<Spawned>): Promise<Spawned> => {
    const s = await server;
    started.push(s);
    return s;
  };
  process.once('exit', () => {
    for (const s of started) s.child.kill('SIGKILL');
  });
  await track(
    startProcess(
      pinned(0, [
        'redis-server',
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
      ]),
      { ready: 'Ready to accept connections', timeoutMs: 15_000 },
    ),
  );
  const kvAt = (checkout: string, port: number): Promise<Spawned> =>
    track(
      // As users run it: the built CLI (tsx's transform of the source runs some paths slower).
      startProcess(
        pinned(0, [
          process.execPath,
          `${checkout}/packages/cli/dist/main.js`,
          'serve',
          'kv',
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
        ]),
        { ready: '"msg":"listening"', timeoutMs: 15_000 },
      ),
    );
  await kvAt(fileURLToPath(new URL('..', import.meta.url)), kvPort);
  const beforePort = BEFORE === undefined ? 0 : await freePort();
  const kvBefore = BEFORE === undefined ? null : await kvAt(BEFORE, beforePort);
  const ports: Record<Which, number> = { redis: redisPort, kv: kvPort, before: beforePort };
  const servers: Which[] = kvBefore === null ? ['redis', 'kv'] : ['redis', 'kv', 'before'];
  const results: Array<{ pipeline: number } & Record<Which, Row[]>> = [];
  try {
    for (const pipeline of [1, 16]) {
      // A short warm-up lets V8 optimise the kv hot path before it is measured.
      for (const which of servers.slice(1)) {
        const [wc, wa] = pin(1, 'redis-benchmark', [
          '-h',
          '127.0.0.1',
          '-p',
          String(ports[which]),
          '-t',
          TESTS,
          '-n',
          '20000',
          '-q',
        ]);
        execFileSync(wc, wa, { stdio: 'ignore', timeout: RUN_TIMEOUT_MS });
      }
      const runs: Record<Which, Row[]> = { redis: [], kv: [], before: [] };
      // Test by test, rotating which server goes first, repeated: the cores are shared, so
      // interleaving spreads any outside load over every server instead of one block of runs.
      for (const test of TESTS.split(',')) {
        for (let rep = 0; rep < REPEAT; rep++) {
          const order = [...servers.slice(rep % servers.length), ...servers.slice(0, rep % servers.length)];
          for (const which of order) {
            console.error(`-P ${pipeline} ${test} #${rep + 1}: ${which}`);
            const got = await benchmark(ports[which], pipeline, test);
            // Every run's figures, not only the medians the table shows: the spread is part of the result.
            for (const row of got) console.error(`  ${row.test} ${fmt(row.rps)} req/s, p99 ${row.p99.toFixed(3)} ms`);
            runs[which].push(...got);
          }
        }
      }
      results.push({ pipeline, redis: medians(runs.redis), kv: medians(runs.kv), before: medians(runs.before) });
    }
  } finally {
    await Promise.all(started.map((server) => server.stop()));
  }

  const rows: string[] = [];
  for (const { pipeline, redis: r, kv: k, before: b } of results) {
    for (const rr of r) {
      const kk = k.find((x) => x.test === rr.test);
      if (kk === undefined) continue;
      const bb = b.find((x) => x.test === rr.test);
      const beforeCells =
        kvBefore === null ? '' : bb === undefined ? ' - | - |' : ` ${fmt(bb.rps)} | ${(bb.rps / rr.rps).toFixed(2)}x |`;
      rows.push(
        `| ${rr.test} | ${pipeline} | ${fmt(rr.rps)} | ${rr.p99.toFixed(3)} | ${fmt(kk.rps)} | ${kk.p99.toFixed(3)} | ${(kk.rps / rr.rps).toFixed(2)}x |${beforeCells}`,
      );
    }
  }
  const sum = (rows: Row[]): number => rows.reduce((s, x) => s + x.rps, 0);
  const ratioAt = (pipeline: number, which: Which = 'kv'): number => {
    const r = results.find((x) => x.pipeline === pipeline)!;
    return sum(r[which]) / Math.max(1, sum(r.redis));
  };
  const ratio = ratioAt(1);
  const md = `Generated by \`node --import tsx bench/kv.ts\` on ${new Date().toISOString().slice(0, 10)}.

### tcpkit's Redis-protocol example against redis-server

\`redis-benchmark -t ${TESTS} -c ${CLIENTS} -n ${REQUESTS}\`, without and with \`-P 16\`, against a real
\`redis-server\` ${redisVersion} and \`tcpkit serve kv\` in the same run. ${
    hasTaskset && cores > 1
      ? 'Each server is pinned to core 0 and redis-benchmark to core 1 (`taskset`)'
      : 'No pinning (taskset or a second core is missing)'
  }; both servers are up for the whole run. Each test runs ${REPEAT} times per server, alternating
which server goes first; the table shows the median requests/s and the median p99.

- Machine: ${cpuModel()}, ${cores} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}
- Node.js ${process.version} (kv: \`tcpkit serve kv\` from the build), redis-server ${redisVersion} (Debian package)
- Load average when the run started: ${load}${Number(load) > 0.5 ? ' — other work was running on these cores, so treat absolute numbers as approximate; the ratio is measured under the same conditions for both' : ''}

| test | pipeline | redis-server req/s | redis p99 ms | tcpkit kv req/s | kv p99 ms | kv / redis |${kvBefore === null ? '' : ' kv before req/s | before / redis |'}
|---|---:|---:|---:|---:|---:|---:|${kvBefore === null ? '' : '---:|---:|'}
${rows.join('\n')}

Without pipelining tcpkit kv serves **${ratio.toFixed(2)}x** Redis's requests per second (sum over all
rows; goal: at least 0.8x${ratio >= 0.8 ? ', met' : ', not met'}); with \`-P 16\` it serves **${ratioAt(16).toFixed(2)}x** (goal: at least 0.5x${ratioAt(16) >= 0.5 ? ', met' : ', not met'}).${
    kvBefore === null
      ? ''
      : ` The checkout given as KV_BENCH_BEFORE (${BEFORE}), in the same run: ${ratioAt(1, 'before').toFixed(2)}x and ${ratioAt(16, 'before').toFixed(2)}x.`
  }
`;
  writeSection('kv', md, OUT);
  console.log(md);
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

await main();
