// Kubernetes-shaped shutdown of a real `tcpkit serve` process: at SIGTERM /readyz turns 503 while the
// server goes on accepting and serving for --shutdown-delay; then the listener closes and the drain
// proceeds as always; /healthz answers 200 until the process exits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, connect, connectError, exchange, within } from '../../tcpkit/test/helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

async function status(admin: string, path: string): Promise<number> {
  const res = await within(fetch(`http://${admin}${path}`), 10_000, `GET ${path}`);
  await res.text();
  return res.status;
}

describe('tcpkit serve --shutdown-delay', () => {
  it('goes unready at SIGTERM, serves through the delay, then drains; /healthz 200 until exit', {
    timeout: 90_000,
  }, async () => {
    // The delay only bounds how long the test may take to connect during it; the linger keeps the
    // process in its drain (FIN sent, waiting for ours) while the test looks at it.
    const proc = new Child(process.execPath, [
      '--import',
      'tsx',
      MAIN,
      'serve',
      'echo',
      '--port',
      '0',
      '--admin-port',
      '0',
      '--shutdown-delay',
      '8s',
      '--linger-timeout',
      '60s',
    ]);
    try {
      const listening = JSON.parse(await proc.line((l) => l.includes('"msg":"listening"'), 'listening', 30_000)) as {
        address: string;
        admin: string;
      };
      const port = Number(listening.address.split(':')[1]);
      const admin = listening.admin;
      assert.equal(await status(admin, '/readyz'), 200);
      proc.signal('SIGTERM');
      await proc.line((l) => l.includes('not ready'), 'the shutting-down line');
      assert.equal(await status(admin, '/readyz'), 503, 'unready as soon as the shutdown began');
      assert.equal(await status(admin, '/healthz'), 200);

      // A connection made during the delay is accepted and served.
      const held = await connect(port, { allowHalfOpen: true });
      const ended = new Promise<void>((resolve) => held.socket.once('end', resolve));
      held.write('during the delay');
      await held.receive('during the delay'.length);
      assert.equal((await exchange(port, 'another')).toString(), 'another');
      assert.ok(!proc.lines.some((l) => l.includes('"msg":"draining"')), 'still within the delay');

      await proc.line((l) => l.includes('"msg":"draining"'), 'the drain to start', 30_000);
      assert.equal(await connectError(port), 'ECONNREFUSED', 'the listener is closed');
      await within(ended, 10_000, 'the drain to end the held connection with FIN');
      assert.equal(await status(admin, '/healthz'), 200, 'alive while draining');
      assert.equal(await status(admin, '/readyz'), 503);
      held.end();
      const exit = await within(proc.exited, 30_000, 'the process to exit');
      assert.deepEqual(exit, { code: 0, signal: null }, proc.stderr);
      const done = JSON.parse(proc.lines.find((l) => l.includes('"msg":"shut down"')) ?? '{}') as { graceful?: number };
      assert.equal(done.graceful, 1);
    } finally {
      proc.kill();
    }
  });
});
