// Connection flood: a burst of connection attempts far beyond the cap. The gate must hold the
// line (maxConnections running, maxWaiting queued, the rest rejected and counted), memory must
// stay bounded, and honest clients must be served once the burst ends.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { AttackerProcess, attackerAddress, honestLoad, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';

const ATTEMPTS = 15_000;
/** Attacker processes: each holds its connections, so descriptors are spread under the per-process limit. */
const ATTACKERS = 3;
const MAX_CONNECTIONS = 1_000;
const MAX_WAITING = 1_000;
const MAX_RSS_MIB = 300;

let server: ServerProcess | undefined;
const attackers: AttackerProcess[] = [];
after(async () => {
  await Promise.all(attackers.map((a) => a.stop()));
  await server?.stop();
});

test('connection flood: excess rejected and counted, memory bounded, honest served after', {
  timeout: 90_000,
}, async () => {
  const started = performance.now();
  server = await startServer({
    apps: ['lines'],
    options: { maxConnections: MAX_CONNECTIONS, maxWaiting: MAX_WAITING, whenFull: 'wait', backlog: 1024 },
  });
  const port = server.port;

  for (let i = 0; i < ATTACKERS; i++) {
    attackers.push(
      new AttackerProcess({
        port,
        count: ATTEMPTS / ATTACKERS,
        localAddresses: Array.from({ length: 10 }, (_, j) => attackerAddress(i * 10 + j)),
        inFlight: 500,
        holdMs: 60_000,
      }),
    );
  }
  const results = await Promise.all(attackers.map((a) => a.done()));
  const during = await server.report();
  const s = during.stats;
  const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0);

  assert.ok(server.alive, 'server survived the burst');
  assert.ok(s.active <= MAX_CONNECTIONS, `active ${s.active} within maxConnections`);
  assert.ok(s.waiting <= MAX_WAITING, `waiting ${s.waiting} within maxWaiting`);
  assert.equal(s.accepted, s.served + rejected + s.waiting, 'every accepted socket is admitted, rejected or waiting');
  assert.ok(s.rejected.full > 0, `excess rejected: ${JSON.stringify(s)}`);
  assert.ok(during.maxRssMiB < MAX_RSS_MIB, `server peak RSS ${during.maxRssMiB} MiB`);

  await Promise.all(attackers.map((a) => a.release()));
  await server.until((r) => r.stats.active === 0 && r.stats.waiting === 0, 20_000, 'slots freed after the burst');
  const honest = await honestLoad(port, 50, { requests: 20 });
  assert.equal(honest.failed, 0, `honest failures: ${honest.errors.join('; ')}`);
  assert.equal(honest.ok, 50 * 20);
  const leak = await server.assertNoLeaks();

  const connected = results.reduce((n, r) => n + r.connected, 0);
  const failed: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.failed)) failed[k] = (failed[k] ?? 0) + v;
  const burstMs = Math.max(...results.map((r) => r.durationMs));
  recordResult({
    id: '2-flood',
    title: 'Connection flood',
    load: `${ATTEMPTS} connection attempts in a burst from ${ATTACKERS} processes (${ATTACKERS * 10} source addresses) vs maxConnections ${MAX_CONNECTIONS}, maxWaiting ${MAX_WAITING}`,
    defence: 'Gate: maxConnections + bounded wait queue (maxWaiting), then rejected.full',
    outcome: `server up; ≤ ${MAX_CONNECTIONS} running, ≤ ${MAX_WAITING} waiting, ${s.rejected.full} rejected and counted; peak RSS ${during.maxRssMiB} MiB; honest clients served after`,
    lost: '0 honest requests',
    measured: {
      'attempts / handshakes completed': `${ATTEMPTS} / ${connected}`,
      'attempts failed (client side)': JSON.stringify(failed),
      'burst duration': `${(burstMs / 1000).toFixed(1)} s`,
      'accepted / admitted (served)': `${s.accepted} / ${s.served}`,
      'rejected.full / waitTimeout': `${s.rejected.full} / ${s.rejected.waitTimeout}`,
      'active / waiting at end of burst': `${s.active} / ${s.waiting}`,
      'server peak RSS': `${during.maxRssMiB} MiB`,
      'honest requests after the burst': `${honest.ok} answered, ${honest.failed} failed`,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
