// The CLI's answers to a user's mistakes that the other CLI tests do not cover.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, within } from '../../tcpkit/test/helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SLOW = { timeout: 40_000 };

function tcpkit(...args: string[]): Child {
  return new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
}

describe('tcpkit serve: an admin port in use', () => {
  it('exit 1 and one line naming --admin-port, as for --port', SLOW, async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    const proc = tcpkit('serve', 'echo', '--port', '0', '--admin-port', String(port));
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 1, proc.stderr);
      assert.equal(
        proc.stderr,
        `tcpkit: admin port ${port} is in use on 127.0.0.1; choose another with --admin-port\n`,
      );
    } finally {
      proc.kill();
      taken.close();
    }
  });
});
