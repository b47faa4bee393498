// Never-reading clients: each asks for a large response and never reads it. A handler that awaits
// its writes is stopped by writeTimeout; one that fires writes without awaiting (a broadcaster)
// is stopped by maxQueuedBytes. Memory stays bounded and other clients do not notice.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { attackerAddress, closed, honestLoad, LineClient, pool, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';

const READERS = 200;
const RESPONSE = 64 * 1024 * 1024;
const WRITE_TIMEOUT = 2_000;
const MAX_QUEUED = 1024 * 1024;
const MAX_RSS_MIB = 300;

let server: ServerProcess | undefined;
after(() => server?.stop());

test('never-reading clients: cut by writeTimeout or maxQueuedBytes, others unaffected', {
  timeout: 90_000,
}, async () => {
  const started = performance.now();
  server = await startServer({
    apps: ['lines'],
    options: { writeTimeout: WRITE_TIMEOUT, maxQueuedBytes: MAX_QUEUED, maxWriteBuffer: 64 * 1024 },
  });
  const port = server.port;

  // Half ask the awaiting handler (`big`), half the fire-and-forget one (`push`).
  const sockets: { socket: net.Socket; result: Promise<{ fin: boolean; error?: string }>; got: number }[] = [];
  await pool(
    Array.from({ length: READERS }, (_, i) => i),
    100,
    async (i) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: attackerAddress(i % 10) });
      socket.pause();
      const entry = { socket, result: closed(socket), got: 0 };
      sockets.push(entry);
      await once(socket, 'connect');
      socket.write(`${i % 2 === 0 ? 'big' : 'push'} ${RESPONSE}\n`);
    },
  );

  let attackOver = false;
  const cut = server
    .until((r) => r.stats.timeouts.write + r.stats.slowConsumers >= READERS, 60_000, 'every never-reader cut')
    .finally(() => {
      attackOver = true;
    });
  // Honest traffic throughout: small round trips, and large responses that are read.
  const [honest, bigs] = await Promise.all([
    honestLoad(port, 50, { requests: 100_000, min: 20, stop: () => attackOver }),
    (async () => {
      let ok = 0;
      for (let round = 0; round < 5 && (round === 0 || !attackOver); round++) {
        await Promise.all(
          Array.from({ length: 10 }, async () => {
            const c = await LineClient.connect(port);
            const body = await c.request('big 1048576');
            if (body.length === 1048576) ok++;
            c.close();
          }),
        );
      }
      return ok;
    })(),
  ]);
  const report = await cut;

  // The never-readers now read what reached them: never the whole response.
  for (const s of sockets) {
    s.socket.on('data', (d: Buffer) => {
      s.got += d.length;
    });
    s.socket.resume();
  }
  await Promise.all(sockets.map((s) => s.result));
  const maxGot = Math.max(...sockets.map((s) => s.got));

  assert.ok(server.alive, 'server survived');
  assert.equal(honest.failed, 0, `honest failures: ${honest.errors.join('; ')}`);
  assert.ok(bigs >= 10, 'large responses to reading clients arrived whole');
  assert.equal(report.stats.timeouts.write + report.stats.slowConsumers, READERS, 'each never-reader cut once');
  assert.equal((report.codes.ERR_WRITE_TIMEOUT ?? 0) + (report.codes.ERR_SLOW_CONSUMER ?? 0), READERS);
  assert.ok(maxGot < RESPONSE, 'no never-reader received its whole response');
  assert.ok(report.maxRssMiB < MAX_RSS_MIB, `server peak RSS ${report.maxRssMiB} MiB`);
  const leak = await server.assertNoLeaks();

  recordResult({
    id: '3-never-reading',
    title: 'Never-reading clients',
    load: `${READERS} clients request ${RESPONSE / 2 ** 20} MiB and never read (half from an awaiting handler, half from a fire-and-forget one) + 50 honest clients`,
    defence: `writeTimeout (${WRITE_TIMEOUT / 1000} s), maxQueuedBytes (${MAX_QUEUED / 2 ** 20} MiB)`,
    outcome: `all ${READERS} cut (${report.stats.timeouts.write} by writeTimeout, ${report.stats.slowConsumers} as slow consumers); peak RSS ${report.maxRssMiB} MiB; honest traffic unaffected`,
    lost: '0 honest requests',
    measured: {
      'cut by writeTimeout (timeouts.write)': report.stats.timeouts.write,
      'cut by maxQueuedBytes (slowConsumers)': report.stats.slowConsumers,
      'most bytes a never-reader had received': maxGot,
      'honest round trips answered / failed': `${honest.ok} / ${honest.failed}`,
      'honest 1 MiB responses read whole': bigs,
      'server peak RSS': `${report.maxRssMiB} MiB`,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
