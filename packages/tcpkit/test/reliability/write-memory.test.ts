// Memory held by queued output: handlers that write without awaiting to clients that never read.
// maxQueuedBytes must bound memory, not only payload: a flood of tiny replies (one un-awaited
// writeFrame per request line) and a million un-awaited one-byte writes are cut as slow consumers
// with the server's RSS within a stated multiple of maxQueuedBytes per connection.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { attackerAddress, honestLoad, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';

const CLIENTS = 4;
const MAX_QUEUED = 4 * 1024 * 1024;
/** Lines each flooding client sends (`a\n`), each answered by an un-awaited `ok\n`. */
const LINES = 4_000_000;
const TINY_WRITES = 1_000_000;
/** The bound asserted: peak RSS growth per cut connection, as a multiple of maxQueuedBytes. */
const RSS_MULTIPLE = 8;

let server: ServerProcess | undefined;
after(() => server?.stop());

/** A client that sends `bytes` and never reads; resolves once the server has closed it. */
async function neverReader(port: number, i: number, bytes: Buffer): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: attackerAddress(i) });
  socket.pause();
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(bytes);
  return socket;
}

test('un-awaited tiny writes to never-reading clients: cut as slow consumers, RSS bounded', {
  timeout: 120_000,
}, async () => {
  const started = performance.now();
  server = await startServer({
    apps: ['lines-unawaited', 'lines'],
    options: { maxQueuedBytes: MAX_QUEUED, writeTimeout: 0 },
  });
  const [unawaitedPort, linesPort] = server.ports as [number, number];
  const base = await server.report();

  // Round 1: every request line answered by an un-awaited 3-byte reply.
  const flood = Buffer.from('a\n'.repeat(LINES));
  const floods = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => neverReader(unawaitedPort, i, flood)));
  const cut1 = await server.until((r) => r.stats.slowConsumers >= CLIENTS, 90_000, 'every flooding client cut');
  for (const s of floods) s.destroy();
  const floodGrowth = cut1.maxRssMiB - base.rssMiB;

  // Round 2: a million one-byte writes in one turn, none awaited.
  const tiny = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => neverReader(linesPort, i, Buffer.from(`tiny ${TINY_WRITES}\n`))),
  );
  const cut2 = await server.until((r) => r.stats.slowConsumers >= 2 * CLIENTS, 60_000, 'every tiny-write client cut');
  for (const s of tiny) s.destroy();
  const tinyGrowth = cut2.maxRssMiB - base.rssMiB;

  const honest = await honestLoad(linesPort, 20, { requests: 50 });
  assert.equal(honest.failed, 0, `honest failures: ${honest.errors.join('; ')}`);
  assert.equal(cut2.stats.slowConsumers, 2 * CLIENTS, 'each client cut once, as a slow consumer');
  const bound = (RSS_MULTIPLE * CLIENTS * MAX_QUEUED) / 2 ** 20;
  assert.ok(floodGrowth <= bound, `reply flood: peak RSS grew ${floodGrowth} MiB, bound ${bound} MiB`);
  assert.ok(tinyGrowth <= bound, `tiny writes: peak RSS grew ${tinyGrowth} MiB, bound ${bound} MiB`);
  const leak = await server.assertNoLeaks();

  recordResult({
    id: '9-write-memory',
    title: 'Un-awaited tiny writes',
    load: `${CLIENTS} never-reading clients each send ${LINES / 1e6}M lines answered by un-awaited 3-byte writeFrame replies; then ${CLIENTS} more each trigger ${TINY_WRITES / 1e6}M un-awaited 1-byte writes in one turn`,
    defence: `maxQueuedBytes (${MAX_QUEUED / 2 ** 20} MiB) charging every queued piece and waiting write 64 B; tiny writes appended into one buffer; one shared promise per drain`,
    outcome: `all ${2 * CLIENTS} cut as slow consumers; peak RSS growth ${floodGrowth} / ${tinyGrowth} MiB (bound ${RSS_MULTIPLE}× maxQueuedBytes per connection = ${bound} MiB)`,
    lost: '0 honest requests',
    measured: {
      'RSS at start': `${base.rssMiB} MiB`,
      'peak RSS after the reply flood': `${cut1.maxRssMiB} MiB`,
      'peak RSS after the tiny writes': `${cut2.maxRssMiB} MiB`,
      'requests received in the reply flood': cut1.received,
      'cut as slow consumers': cut2.stats.slowConsumers,
      'honest round trips answered / failed': `${honest.ok} / ${honest.failed}`,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
