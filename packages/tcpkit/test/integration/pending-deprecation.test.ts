// tcpkit reaches Node internals through process.binding(), whose deprecation (DEP0111) is printed only
// under --pending-deprecation. There tcpkit takes the stream paths instead, so no warning is printed and
// --throw-deprecation does not crash the server, whichever way the option is spelled.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runNode } from './fallback-paths.js';

const child = 'test/integration/fixtures/deprecation-child.ts';

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
      const { code, stdout, stderr } = await runNode([...c.args, child], c.env);
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stderr, /DEP0111/);
      assert.deepEqual(JSON.parse(stdout.trim()), { echo: 'ping' });
    });
  }
});
