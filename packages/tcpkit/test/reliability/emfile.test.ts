// EMFILE: the server runs out of file descriptors (ulimit -n 256) under a flood of connections.
// It must neither crash nor spin, must count the accept errors, and must serve again once the
// flood ends.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import {
  AttackerProcess,
  attackerAddress,
  closed,
  honestLoad,
  pool,
  type ServerProcess,
  startServer,
} from './harness.js';
import { recordResult } from './report.js';

const ULIMIT = 256;
const FLOOD = 1_000;

let server: ServerProcess | undefined;
let attacker: AttackerProcess | undefined;
after(async () => {
  await attacker?.stop();
  await server?.stop();
});

test('EMFILE: survives without spinning, sheds the excess, serves again after', { timeout: 90_000 }, async () => {
  const started = performance.now();
  server = await startServer({ apps: ['lines'], options: {} }, { ulimit: ULIMIT });
  const port = server.port;

  attacker = new AttackerProcess({
    port,
    count: FLOOD,
    localAddresses: Array.from({ length: 4 }, (_, j) => attackerAddress(j)),
    inFlight: 200,
    holdMs: 60_000,
  });
  const burst = await attacker.done();
  // The server takes what its descriptors allow.
  const during = await server.until((r) => r.stats.accepted >= ULIMIT - 40, 10_000, 'descriptors exhausted');
  const held = during.stats;
  assert.ok(server.alive, 'server survived running out of descriptors');
  assert.ok(held.served < ULIMIT, `admitted ${held.served} connections under ulimit -n ${ULIMIT}`);
  // tcpkit's descriptor budget sheds the excess itself, so it is counted (libuv's own EMFILE
  // handling would shed it silently).
  assert.ok(held.acceptErrors > 0, `connections shed for want of descriptors are counted (${held.acceptErrors})`);
  assert.equal(burst.connected, FLOOD, 'the kernel completed every handshake');
  // No spinning: over a one-second window with the flood held, the descriptors gone and more
  // connections arriving, the server uses a small fraction of a core.
  const windowStart = performance.now();
  let more = 0;
  await Promise.all([
    new Promise((resolve) => setTimeout(resolve, 1_000)),
    pool(
      Array.from({ length: 200 }, (_, i) => i),
      20,
      async () => {
        const socket = net.connect({ host: '127.0.0.1', port, localAddress: attackerAddress(9) });
        const result = closed(socket);
        socket.on('connect', () => {
          more++;
          socket.setTimeout(500, () => socket.destroy());
        });
        await result;
      },
    ),
  ]);
  const after = await server.report();
  const cpuShare = (after.cpuMs - during.cpuMs) / (performance.now() - windowStart);
  assert.ok(cpuShare < 0.5, `server CPU ${(cpuShare * 100).toFixed(0)} % of a core while out of descriptors`);

  const result = await attacker.release();
  // Shed connections (by the descriptor budget, or by libuv's reserve-descriptor trick) are closed at
  // once, so those peers see their connection closed rather than hanging.
  assert.ok(result.closedByServer > 0, 'shed connections were closed');
  await server.until((r) => r.stats.active === 0 && r.stats.waiting === 0, 20_000, 'slots freed after the flood');
  const honest = await honestLoad(port, 20, { requests: 10 });
  assert.equal(honest.failed, 0, `honest failures after the flood: ${honest.errors.join('; ')}`);
  assert.equal(honest.ok, 200);
  const leak = await server.assertNoLeaks();
  assert.ok(server.alive);

  recordResult({
    id: '6-emfile',
    title: 'EMFILE',
    load: `server under ulimit -n ${ULIMIT}, flooded with ${FLOOD} connections held open`,
    defence:
      "descriptor budget (open-file limit less what was open at listen, less 32): excess closed at accept and counted in acceptErrors; libuv's reserve-descriptor trick behind it",
    outcome: `server up, no spin; ${held.served} admitted, ${result.closedByServer} shed and closed, acceptErrors ${held.acceptErrors}; 20 honest clients served after`,
    lost: '0 honest requests after the flood',
    measured: {
      'handshakes completed (client side)': result.connected,
      'closed by the server during the flood (client side)': result.closedByServer,
      'attempts failed (client side)': JSON.stringify(result.failed),
      'accepted / admitted at the limit': `${held.accepted} / ${held.served}`,
      acceptErrors: held.acceptErrors,
      'server CPU while out of descriptors (1 s window, 200 more connections arriving)': `${(cpuShare * 100).toFixed(0)} % of a core (${more} handshakes completed)`,
      'honest requests after the flood': `${honest.ok} answered, ${honest.failed} failed`,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
