// tcpkit reaches Node internals through process.binding(), whose deprecation (DEP0111) is printed only
// under --pending-deprecation. There tcpkit takes the stream paths instead, so no warning is printed and
// --throw-deprecation does not crash the server, whichever way the option is spelled.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const child = 'test/integration/fixtures/deprecation-child.ts';

async function run(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const proc = spawn(process.execPath, ['--import', 'tsx', ...args, child], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  return { code, stdout, stderr };
}

const cases: { name: string; args: string[]; env: Record<string, string> }[] = [
  { name: 'no option (the hooks are used, silently)', args: [], env: {} },
  { name: '--pending-deprecation', args: ['--pending-deprecation'], env: {} },
  { name: '--pending_deprecation', args: ['--pending_deprecation'], env: {} },
  { name: 'NODE_OPTIONS=--pending_deprecation', args: [], env: { NODE_OPTIONS: '--pending_deprecation' } },
  { name: 'NODE_PENDING_DEPRECATION=1', args: [], env: { NODE_PENDING_DEPRECATION: '1' } },
  {
    name: '--throw-deprecation --pending_deprecation',
    args: ['--throw-deprecation', '--pending_deprecation'],
    env: {},
  },
];

describe('pending deprecations', () => {
  for (const c of cases) {
    it(`${c.name}: echoes, exits 0, prints no DEP0111`, { timeout: 60_000 }, async () => {
      const { code, stdout, stderr } = await run(c.args, c.env);
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stderr, /DEP0111/);
      assert.deepEqual(JSON.parse(stdout.trim()), { echo: 'ping' });
    });
  }
});
