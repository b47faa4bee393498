// Runs test files again in a child process with one of tcpkit's Node-internals hooks switched off
// (TCPKIT_READ_PATH=stream, TCPKIT_WRITE_PATH=stream, TCPKIT_ACCEPT_PATH=socket), so the fallback
// paths are tested on every Node version CI runs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** What a child Node process printed and how it ended. */
export interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx ...args` in packages/tcpkit with `env` added, outside the parent's test run. */
export async function runNode(args: string[], env: Record<string, string>): Promise<ChildRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  // Set for the files node:test runs; a `node --test` that sees it skips its files and exits 0.
  delete childEnv.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

/** Runs `files` (relative to packages/tcpkit) under `env`; fails with the tail of their output. */
export async function runOnFallback(env: Record<string, string>, files: string[]): Promise<void> {
  // TCPKIT_FALLBACK_RUN: the reliability suites record no results (reliability/report.ts).
  const { code, stdout, stderr } = await runNode(['--test', '--test-reporter=tap', ...files], {
    ...env,
    TCPKIT_FALLBACK_RUN: '1',
  });
  const output = stdout + stderr;
  assert.equal(code, 0, `fallback (${JSON.stringify(env)}) failed:\n${output.slice(-4000)}`);
  const passed = Number(/^# pass (\d+)$/m.exec(stdout)?.[1] ?? 0);
  assert.ok(passed > 0, `no test ran on the fallback (${JSON.stringify(env)}):\n${output.slice(-2000)}`);
}
