// Runs test files again in a child process with one of tcpkit's Node-internals hooks switched off
// (TCPKIT_READ_PATH=stream, TCPKIT_WRITE_PATH=stream, TCPKIT_ACCEPT_PATH=socket), so the fallback
// paths are tested on every Node version CI runs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `files` (relative to packages/tcpkit) under `env`; fails with the tail of their output. */
export async function runOnFallback(env: Record<string, string>, files: string[]): Promise<void> {
  // TCPKIT_FALLBACK_RUN: the reliability suites record no results (reliability/report.ts).
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, TCPKIT_FALLBACK_RUN: '1' };
  // Set for the files node:test runs; a `node --test` that sees it skips its files and exits 0.
  delete childEnv.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...files], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, `fallback (${JSON.stringify(env)}) failed:\n${output.slice(-4000)}`);
  const passed = Number(/^# pass (\d+)$/m.exec(output)?.[1] ?? 0);
  assert.ok(passed > 0, `no test ran on the fallback (${JSON.stringify(env)}):\n${output.slice(-2000)}`);
}
