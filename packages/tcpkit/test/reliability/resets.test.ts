// Abrupt resets: clients that send RST mid-request and mid-response, some while queued at the
// cap. No unhandled error, every slot comes back, and honest clients are served throughout.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { attackerAddress, honestLoad, pool, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';

const CLIENTS = 1_000;
const MAX_CONNECTIONS = 200;

type Kind = 'mid-request' | 'mid-response (awaited writes)' | 'mid-response (fire-and-forget writes)';
const KINDS: Kind[] = ['mid-request', 'mid-response (awaited writes)', 'mid-response (fire-and-forget writes)'];

/** Connects, and resets the connection (RST) at the chosen moment. */
async function resetter(port: number, i: number, kind: Kind): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: attackerAddress(i % 20) });
  socket.on('error', () => {});
  await once(socket, 'connect');
  if (kind === 'mid-request') {
    socket.write('ping half-a-requ');
    // Let the bytes leave before the reset, so the server holds a partial frame.
    await new Promise<void>((resolve) => socket.write('', () => resolve()));
    socket.resetAndDestroy();
    return;
  }
  socket.write(`${kind === 'mid-response (awaited writes)' ? 'big' : 'push'} ${8 * 1024 * 1024}\n`);
  await Promise.race([once(socket, 'data'), once(socket, 'close')]);
  if (!socket.destroyed) socket.resetAndDestroy();
}

let server: ServerProcess | undefined;
after(() => server?.stop());

test('abrupt resets: no unhandled error, stats().active back to 0', { timeout: 90_000 }, async () => {
  const started = performance.now();
  server = await startServer({
    apps: ['lines'],
    options: { maxConnections: MAX_CONNECTIONS, maxWaiting: CLIENTS, whenFull: 'wait' },
  });
  const port = server.port;

  let attackOver = false;
  const [, honest] = await Promise.all([
    pool(
      Array.from({ length: CLIENTS }, (_, i) => i),
      300,
      (i) => resetter(port, i, KINDS[i % KINDS.length]!),
    ).finally(() => {
      attackOver = true;
    }),
    honestLoad(port, 20, { requests: 100_000, min: 10, stop: () => attackOver }),
  ]);
  const settled = await server.until(
    (r) => r.stats.active === 0 && r.stats.waiting === 0,
    30_000,
    'every slot released',
  );

  assert.ok(server.alive, 'server survived (no unhandled error)');
  assert.equal(honest.failed, 0, `honest failures: ${honest.errors.join('; ')}`);
  const s = settled.stats;
  assert.equal(s.accepted, CLIENTS + 20, 'every connection accepted');
  // A connection reset before the listener handed it over, or while queued at the cap, leaves without being admitted or rejected.
  const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0);
  const resetBeforeAdmission = s.accepted - s.served - rejected;
  assert.ok(resetBeforeAdmission >= 0 && resetBeforeAdmission <= CLIENTS);
  const leak = await server.assertNoLeaks();

  recordResult({
    id: '5-resets',
    title: 'Abrupt resets',
    load: `${CLIENTS} clients send RST (resetAndDestroy) mid-request, mid-response (awaited writes) and mid-response (fire-and-forget writes), maxConnections ${MAX_CONNECTIONS} so many wait in the queue + 20 honest clients`,
    defence: 'reset rejects pending reads/writes with ERR_CONNECTION_CLOSED; the handler ends, its slot is released',
    outcome: `server up, no unhandled error; active back to 0; ${honest.ok} honest requests answered`,
    lost: '0 honest requests',
    measured: {
      'accepted / admitted / reset before admission / rejected': `${s.accepted} / ${s.served} / ${resetBeforeAdmission} / ${rejected}`,
      'handler errors (stats.errors)': s.errors,
      'codes seen': Object.entries(settled.codes)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', '),
      'honest requests answered / failed': `${honest.ok} / ${honest.failed}`,
      'server peak RSS': `${settled.maxRssMiB} MiB`,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
