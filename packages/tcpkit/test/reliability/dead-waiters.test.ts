// Dead waiters: with every slot held by long-lived clients, bursts of connections that connect and
// at once close (FIN, then separately RST) must not fill the wait queue. Waiters are kept polled,
// so each dead one leaves the queue at once (rejected.abandoned), is never admitted, and an honest
// newcomer is queued and served as soon as a slot frees.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { AttackerProcess, attackerAddress, LineClient, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';

const MAX_CONNECTIONS = 10;
const MAX_WAITING = 100;
/** Long, so that on a server that cannot see dead waiters they would block the queue for the whole test. */
const WAIT_TIMEOUT = 120_000;
const BURST = 300;

let server: ServerProcess | undefined;
after(() => server?.stop());

test('dead waiters: connect-and-close bursts never lock honest clients out of the queue', {
  timeout: 90_000,
}, async () => {
  const started = performance.now();
  server = await startServer({
    apps: ['lines'],
    options: { maxConnections: MAX_CONNECTIONS, whenFull: 'wait', maxWaiting: MAX_WAITING, waitTimeout: WAIT_TIMEOUT },
  });
  const port = server.port;
  const holders = await Promise.all(Array.from({ length: MAX_CONNECTIONS }, () => LineClient.connect(port)));
  for (const [i, h] of holders.entries()) assert.equal(await h.request(`ping h${i}`), `pong h${i}`);

  const rounds: Record<string, string | number> = {};
  let before = await server.report();
  for (const [round, how] of (['fin', 'rst'] as const).entries()) {
    const attacker = new AttackerProcess({
      port,
      count: BURST,
      localAddresses: Array.from({ length: 10 }, (_, j) => attackerAddress(j)),
      inFlight: 50,
      holdMs: 30_000,
      closeAtOnce: how,
    });
    const burst = await attacker.done();
    await attacker.stop();
    assert.equal(burst.connected, BURST, `every ${how} connection was accepted: ${JSON.stringify(burst.failed)}`);
    // Every one of them leaves the queue by itself: dropped as abandoned, or turned away at a full queue.
    const settled = await server.until(
      (r) =>
        r.stats.waiting === 0 &&
        r.stats.rejected.abandoned +
          r.stats.rejected.full -
          (before.stats.rejected.abandoned + before.stats.rejected.full) ===
          BURST,
      20_000,
      `the ${how} burst gone from the queue`,
    );
    const abandoned = settled.stats.rejected.abandoned - before.stats.rejected.abandoned;
    assert.ok(abandoned > 0, `dropped waiters counted as abandoned (${abandoned})`);

    // An honest newcomer waits its turn and is served when a holder leaves, ahead of nobody dead.
    const newcomer = await LineClient.connect(port);
    const answer = newcomer.request(`ping n${round}`);
    await server.until((r) => r.stats.waiting === 1, 10_000, 'the newcomer queued');
    holders[round]!.close();
    assert.equal(await answer, `pong n${round}`);
    const after = await server.report();
    assert.equal(after.stats.served - before.stats.served, 1, 'only the newcomer was admitted');
    assert.equal(after.stats.errors, before.stats.errors, 'no dead waiter ran a handler');
    holders[round] = newcomer;
    rounds[`${how.toUpperCase()} burst: abandoned / full`] =
      `${abandoned} / ${settled.stats.rejected.full - before.stats.rejected.full}`;
    before = after;
  }

  for (const h of holders) h.close();
  const leak = await server.assertNoLeaks();
  recordResult({
    id: '8-dead-waiters',
    title: 'Dead waiters',
    load: `${MAX_CONNECTIONS} long-lived clients hold every slot (maxWaiting ${MAX_WAITING}, waitTimeout ${WAIT_TIMEOUT / 1000} s); ${BURST} connections that connect and close at once, by FIN, then by RST`,
    defence: 'waiters kept polled (4 KiB each): a reset or a FIN before any data drops the waiter (rejected.abandoned)',
    outcome:
      'the queue empties after each burst; an honest newcomer is queued and served when one slot frees, no dead waiter admitted',
    lost: '0 honest requests',
    measured: {
      ...rounds,
      'served by dead waiters': 0,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
