// End to end: `tcpkit bench --json` in every mode against the tcpkit echo server (the idiomatic
// handler from src/apps/echo.ts), on 127.0.0.1, each run about a second long.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Server, serve } from 'tcpkit';
import { echo } from '../src/apps/echo.js';
import type { BenchResult } from '../src/loadgen/result.js';

const run = promisify(execFile);
const cli = new URL('../src/main.ts', import.meta.url).pathname;
const PACKAGE_JSON = new URL('../../tcpkit/package.json', import.meta.url);

/** Runs the real CLI and resolves its exit code and output, whatever the code. */
async function benchProcess(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'bench', '--json', '--quiet', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

async function bench(port: number, args: string[]): Promise<BenchResult> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', cli, 'bench', '--port', String(port), '--json', '--quiet', ...args],
    { timeout: 30_000 },
  );
  return JSON.parse(stdout) as BenchResult;
}

/** The JSON shape every mode shares. */
function assertShape(result: BenchResult): void {
  assert.equal(result.tool, 'tcpkit bench');
  assert.equal(typeof result.startedAt, 'string');
  assert.match(result.environment.commandLine, /^tcpkit bench --port \d+ --json --quiet /);
  assert.equal(result.environment.tcpkitVersion, JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')).version);
  assert.equal(result.environment.nodeVersion, process.version);
  assert.equal(result.environment.cpuCount, cpus().length);
  assert.equal(result.environment.cpuModel, cpus()[0]!.model.trim());
  assert.equal(result.interrupted, false);
  for (const key of ['measuredMs', 'messages', 'messagesPerSec', 'bytesSent', 'bytesReceived', 'mibPerSec'] as const) {
    assert.equal(typeof result[key], 'number', key);
  }
  for (const key of ['count', 'min', 'mean', 'p50', 'p90', 'p99', 'p999', 'max'] as const) {
    assert.equal(typeof result.latencyUs[key], 'number', `latencyUs.${key}`);
  }
  assert.ok(result.latencyUs.p50 <= result.latencyUs.p99 && result.latencyUs.p99 <= result.latencyUs.max);
  assert.ok(Array.isArray(result.percentiles));
  assert.deepEqual(result.errors, {});
  assert.equal(result.errorsTotal, 0);
  assert.equal(typeof result.connections.established, 'number');
  assert.equal(result.connections.failed, 0);
  assert.equal(typeof result.generatorCpuPercent, 'number');
  assert.ok(result.timeline.length > 0);
  assert.ok(result.timeline.some((point) => point.phase === 'measure'));
  assert.ok(result.server !== null);
  for (const key of ['cpuUs', 'cpuPercent', 'rssBaselineBytes', 'rssEndBytes', 'rssPeakBytes'] as const) {
    assert.equal(typeof result.server[key], 'number', `server.${key}`);
  }
}

describe('tcpkit bench end to end', () => {
  let server: Server;
  let port: number;
  const common = ['--duration', '1s', '--warmup', '250ms', '--server-pid', String(process.pid)];

  before(async () => {
    server = await serve({ host: '127.0.0.1', port: 0 }, echo);
    port = (server.address as { port: number }).port;
  });
  after(async () => {
    await server.shutdown({ timeout: 2_000 });
  });

  it('echo: ping-pong with --verify over two worker threads', async () => {
    const result = await bench(port, [...common, '--connections', '8', '--workers', '2', '--verify']);
    assertShape(result);
    assert.equal(result.options.mode, 'echo');
    assert.equal(result.connections.established, 8);
    assert.ok(result.messages > 0);
    assert.equal(result.latencyUs.count, result.messages);
    assert.equal(typeof result.server!.cpuUsPerMessage, 'number');
    assert.ok(result.server!.userUsPerMessage! <= result.server!.cpuUsPerMessage!);
  });

  it('echo: pipelined 4 KiB messages, with an HTML report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcpkit-bench-'));
    try {
      const file = join(dir, 'report.html');
      const result = await bench(port, [
        ...common,
        '--connections',
        '4',
        '--size',
        '4096',
        '--depth',
        '8',
        '--verify',
        '--html',
        file,
      ]);
      assertShape(result);
      assert.equal(result.bytesReceived, result.messages * 4096);
      const html = readFileSync(file, 'utf8');
      assert.match(html, /<svg /);
      assert.ok(html.includes(`<th>command</th><td>${result.environment.commandLine}</td>`));
      assert.ok(html.includes(`tcpkit ${result.environment.tcpkitVersion}, Node.js ${process.version}`));
      assert.ok(html.includes(`${cpus().length} × ${result.environment.cpuModel}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('open-loop: paced messages', async () => {
    const result = await bench(port, [...common, '--mode', 'open-loop', '--rate', '2000', '--connections', '10']);
    assertShape(result);
    assert.equal(result.options.rate, 2000);
    assert.ok(result.messages > 0);
  });

  it('churn: connect, echo, close, repeat', async () => {
    const result = await bench(port, [...common, '--mode', 'churn', '--connections', '4', '--verify']);
    assertShape(result);
    assert.ok(result.connectionsPerSec! > 0);
    assert.ok(result.connections.established > 4);
  });

  it('Ctrl-C stops a long run early and prints what was measured', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', cli, 'bench', '--port', String(port), '--json', '--duration', '60s', '--warmup', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let interrupted = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    // The first progress line of the measured window: there is something to report.
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      // Once: a second Ctrl-C means "give up at once".
      if (chunk.includes('measure') && child.signalCode === null && !interrupted) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0);
    const result = JSON.parse(stdout) as BenchResult;
    assert.equal(result.interrupted, true);
    assert.ok(result.measuredMs < 60_000);
    assert.ok(result.messages > 0);
    assert.equal(result.errorsTotal, 0);
  });

  it('idle: holds connections over several source addresses', async () => {
    const result = await bench(port, [
      ...common,
      '--mode',
      'idle',
      '--connections',
      '200',
      '--source-addresses',
      '127.0.0.1-127.0.0.4',
    ]);
    assertShape(result);
    assert.equal(result.connections.established, 200);
    assert.equal(result.connections.open, 200);
    assert.equal(typeof result.server!.rssPerConnectionBytes, 'number');
  });
});

describe('tcpkit bench exit status', () => {
  const short = ['--duration', '300ms', '--warmup', '0', '--connections', '3'];

  it('exits 1 when no connection was established (a closed port on loopback), even with --allow-errors', async () => {
    // A port that was just free: bound, then closed, so nothing listens on it.
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as net.AddressInfo;
    probe.close();
    await once(probe, 'close');
    for (const extra of [[], ['--allow-errors']]) {
      const { code, stdout, stderr } = await benchProcess(['--port', String(port), ...short, ...extra]);
      assert.equal(code, 1);
      assert.match(stderr, /^tcpkit: no connection was established \(connect ECONNREFUSED: \d+\)$/m);
      const result = JSON.parse(stdout) as BenchResult;
      assert.equal(result.connections.established, 0);
      assert.ok(result.errors['connect ECONNREFUSED']! > 0);
    }
  });

  it('exits 1 when any error occurred, and 0 with --allow-errors', async () => {
    // Echoes on every other connection and resets the rest.
    let accepted = 0;
    const server = net.createServer((socket) => {
      socket.on('error', () => {}); // the generator resets its connections at the end
      if (accepted++ % 2 === 1) socket.resetAndDestroy();
      else socket.pipe(socket);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    try {
      const strict = await benchProcess(['--port', String(port), ...short, '--connections', '4']);
      assert.equal(strict.code, 1);
      assert.match(strict.stderr, /^tcpkit: \d+ errors \(.*\); --allow-errors exits 0 despite them$/m);
      const result = JSON.parse(strict.stdout) as BenchResult;
      assert.ok(result.connections.established > 0);
      assert.ok(result.errorsTotal > 0);
      const allowed = await benchProcess(['--port', String(port), ...short, '--connections', '4', '--allow-errors']);
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.ok((JSON.parse(allowed.stdout) as BenchResult).errorsTotal > 0);
    } finally {
      server.close();
    }
  });
});
