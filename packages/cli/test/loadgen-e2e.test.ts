// End to end: `tcpkit bench --json` in every mode against the tcpkit echo server (the idiomatic
// handler from src/apps/echo.ts), on 127.0.0.1, each run about a second long.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Server, serve } from 'tcpkit';
import { echo } from '../src/apps/echo.js';
import type { BenchResult } from '../src/loadgen/result.js';

const run = promisify(execFile);
const cli = new URL('../src/main.ts', import.meta.url).pathname;

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
      assert.match(readFileSync(file, 'utf8'), /<svg /);
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
