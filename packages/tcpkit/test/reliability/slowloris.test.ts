// Slowloris: thousands of connections each trickle one byte a second into a line protocol, so an
// idle timeout (refreshed by every byte) never fires. frameTimeout must cut them while honest
// clients are served throughout.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { attackerAddress, closed, honestLoad, LineClient, pool, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';
import type { CodecApp } from './server.js';

const TRICKLERS = 2_000;
const HONEST_CLIENTS = 50;
const FRAME_TIMEOUT = 2_000;
/** Each trickler means to send this many bytes, one a second, and never a newline. */
const TRICKLE_BYTES = 30;
const MAX_RSS_MIB = 256;

let server: ServerProcess | undefined;
after(() => server?.stop());

test('slowloris: tricklers are cut by frameTimeout, honest clients are all served', { timeout: 90_000 }, async () => {
  const started = performance.now();
  server = await startServer({ apps: ['lines'], options: { frameTimeout: FRAME_TIMEOUT, idleTimeout: 60_000 } });
  const port = server.port;

  const tricklers: { socket: net.Socket; sent: number; result: Promise<{ fin: boolean; error?: string }> }[] = [];
  await pool(
    Array.from({ length: TRICKLERS }, (_, i) => i),
    200,
    async (i) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: attackerAddress(i % 10) });
      const t = { socket, sent: 0, result: closed(socket) };
      tricklers.push(t);
      await once(socket, 'connect');
      socket.write('G');
      t.sent = 1;
    },
  );
  // One shared clock for the trickle: one byte a second on every open trickler, bounded.
  let ticks = 0;
  const clock = setInterval(() => {
    if (++ticks >= TRICKLE_BYTES) clearInterval(clock);
    for (const t of tricklers) {
      if (!t.socket.destroyed && t.sent < TRICKLE_BYTES) {
        t.socket.write('E');
        t.sent++;
      }
    }
  }, 1_000);

  let attackOver = false;
  const allCut = Promise.all(tricklers.map((t) => t.result)).then((r) => {
    attackOver = true;
    return r;
  });
  const honest = await honestLoad(port, HONEST_CLIENTS, { requests: 100_000, min: 20, stop: () => attackOver });
  const outcomes = await allCut;
  clearInterval(clock);

  const report = await server.report();
  assert.ok(server.alive, 'server survived');
  assert.equal(honest.failed, 0, `honest failures: ${honest.errors.join('; ')}`);
  assert.ok(honest.ok >= HONEST_CLIENTS * 20);
  const maxSent = Math.max(...tricklers.map((t) => t.sent));
  assert.ok(maxSent < TRICKLE_BYTES, `every trickler was cut before it finished (max sent ${maxSent})`);
  assert.equal(report.stats.timeouts.frame, TRICKLERS, 'each trickler was cut by frameTimeout');
  assert.equal(report.codes.ERR_FRAME_TIMEOUT, TRICKLERS);
  assert.equal(report.stats.timeouts.idle, 0, 'the idle timeout never fired (every byte refreshes it)');
  assert.ok(report.maxRssMiB < MAX_RSS_MIB, `server peak RSS ${report.maxRssMiB} MiB`);
  const leak = await server.assertNoLeaks();

  recordResult({
    id: '1-slowloris',
    title: 'Slowloris',
    load: `${TRICKLERS} connections trickling 1 byte/s into a line protocol (no newline) + ${HONEST_CLIENTS} honest request/response clients`,
    defence: `frameTimeout (${FRAME_TIMEOUT / 1000} s)`,
    outcome: `all ${TRICKLERS} tricklers cut after ≤ ${maxSent} bytes; ${honest.ok} honest requests all answered; peak RSS ${report.maxRssMiB} MiB`,
    lost: '0 honest requests',
    measured: {
      'honest requests answered / failed': `${honest.ok} / ${honest.failed}`,
      'tricklers cut (timeouts.frame)': report.stats.timeouts.frame,
      'most bytes a trickler sent before the cut': maxSent,
      'tricklers that saw a reset / a FIN': `${outcomes.filter((o) => o.error).length} / ${outcomes.filter((o) => o.fin && !o.error).length}`,
      'timeouts.idle': report.stats.timeouts.idle,
      'server peak RSS': `${report.maxRssMiB} MiB`,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});

// The frame deadline is the peer's: a frame that arrived whole while the handler was busy with
// the previous one (pipelining behind a slow backend) must not be cut.
test('slowloris: complete frames queued behind a busy handler are not cut by frameTimeout', {
  timeout: 60_000,
}, async () => {
  const busy = await startServer({ apps: ['lines'], options: { frameTimeout: 1_000 } });
  try {
    const client = await LineClient.connect(busy.port);
    // One write: three complete requests; the first two keep the handler busy past frameTimeout.
    const answers = await Promise.all([
      client.request('sleep 1500'),
      client.request('sleep 1500'),
      client.request('ping z'),
    ]);
    assert.deepEqual(answers, ['slept 1500', 'slept 1500', 'pong z']);
    const r = await busy.report();
    assert.equal(r.stats.timeouts.frame, 0);
    client.close();
  } finally {
    await busy.stop();
  }
});

// A stalled half-frame (a request line begun, then silence) is idle time on the peer's side: with
// frameTimeout off, idleTimeout must still cut it.
test('slowloris: a stalled partial frame is cut by idleTimeout when frameTimeout is off', {
  timeout: 60_000,
}, async () => {
  const STALLED = 200;
  const stalledServer = await startServer({ apps: ['lines'], options: { frameTimeout: 0, idleTimeout: 1_500 } });
  try {
    const sockets: net.Socket[] = [];
    await Promise.all(
      Array.from({ length: STALLED }, async (_, i) => {
        const socket = net.connect({
          host: '127.0.0.1',
          port: stalledServer.port,
          localAddress: attackerAddress(i % 10),
        });
        socket.on('error', () => {});
        sockets.push(socket);
        await once(socket, 'connect');
        socket.write('GET /half-a-request');
      }),
    );
    try {
      await stalledServer.until(
        (r) => r.stats.timeouts.idle >= STALLED,
        10_000,
        'stalled connections cut by idleTimeout',
      );
    } finally {
      for (const s of sockets) s.destroy();
    }
    await stalledServer.assertNoLeaks();
  } finally {
    await stalledServer.stop();
  }
});

// At the cap, tricklers hold every slot and the queue: frameTimeout reclaims the slots wave after
// wave, so honest clients queued behind them (FIFO) are admitted and served before waitTimeout.
test('slowloris at the cap: frameTimeout frees the slots for honest clients queued behind', {
  timeout: 60_000,
}, async () => {
  const CAP = 100;
  const WAVES = 3;
  const capped = await startServer({
    apps: ['lines'],
    options: { maxConnections: CAP, maxWaiting: CAP * WAVES, frameTimeout: 1_000, waitTimeout: 10_000 },
  });
  const sockets: net.Socket[] = [];
  let clock: NodeJS.Timeout | undefined;
  try {
    for (let i = 0; i < CAP * WAVES; i++) {
      const socket = net.connect({ host: '127.0.0.1', port: capped.port, localAddress: attackerAddress(i % 10) });
      socket.on('error', () => {});
      sockets.push(socket);
      await once(socket, 'connect');
      socket.write('G');
    }
    let ticks = 0;
    clock = setInterval(() => {
      if (++ticks >= 30) clearInterval(clock);
      for (const s of sockets) if (!s.destroyed) s.write('E');
    }, 1_000);
    await capped.until((r) => r.stats.waiting === CAP * (WAVES - 1), 10_000, 'tricklers fill the slots and the queue');
    const honest = await honestLoad(capped.port, 20, { requests: 5 });
    assert.equal(honest.failed, 0, `honest failures: ${honest.errors.join('; ')}`);
    // The last wave may still be running when the honest clients (admitted as its first members are cut) are done.
    const r = await capped.until((x) => x.stats.timeouts.frame >= CAP * WAVES, 10_000, 'every trickler cut');
    assert.equal(r.stats.timeouts.frame, CAP * WAVES, 'every trickler cut by frameTimeout');
    assert.equal(r.stats.rejected.waitTimeout, 0);
    await capped.assertNoLeaks();
  } finally {
    clearInterval(clock);
    for (const s of sockets) s.destroy();
    await capped.stop();
  }
});

// The frame deadline is the framing layer's, not the line codec's: a valid but unfinished frame
// trickled into any codec is cut the same way.
test('slowloris against every codec: a trickled frame is cut by frameTimeout', { timeout: 60_000 }, async () => {
  const PER_CODEC = 50;
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1000);
  const prefixes: Record<CodecApp, Buffer> = {
    lines: Buffer.from('GET /a-line-that-never-ends'),
    'lines-utf8': Buffer.from('GET /a-line-that-never-ends'),
    delimited: Buffer.from('a-frame-that-never-ends'),
    lengthPrefixed: Buffer.concat([header, Buffer.alloc(40, 'p')]),
    fixed: Buffer.from('sixteen bytes!!!').subarray(0, 15),
    resp: Buffer.from('*2\r\n$3\r\nSET\r\n$100\r\nvvvvvvvvvvvvvvvvvvvvvvvv'),
  };
  const apps = Object.keys(prefixes) as CodecApp[];
  const multi = await startServer({ apps, options: { frameTimeout: 1_500 }, trackPeers: true });
  const sockets: { socket: net.Socket; app: CodecApp; sent: number; result: Promise<{ fin: boolean }> }[] = [];
  let clock: NodeJS.Timeout | undefined;
  try {
    for (const [a, app] of apps.entries()) {
      for (let i = 0; i < PER_CODEC; i++) {
        const socket = net.connect({ host: '127.0.0.1', port: multi.ports[a]!, localAddress: attackerAddress(i % 10) });
        sockets.push({ socket, app, sent: 0, result: closed(socket) });
      }
    }
    const trickle = (): void => {
      for (const t of sockets) {
        const prefix = prefixes[t.app];
        if (!t.socket.destroyed && t.socket.writable && t.sent < prefix.length) {
          t.socket.write(prefix.subarray(t.sent, t.sent + 1));
          t.sent++;
        }
      }
    };
    await Promise.all(sockets.map((t) => once(t.socket, 'connect')));
    // (The address is gone once the socket closes.)
    const keys = sockets.map((t) => `${t.socket.localAddress}:${t.socket.localPort}`);
    trickle();
    let ticks = 0;
    clock = setInterval(() => {
      if (++ticks >= 15) clearInterval(clock);
      trickle();
    }, 1_000);
    await Promise.all(sockets.map((t) => t.result));
    const r = await multi.report();
    const codes = sockets.map((t, i) => `${t.app}: ${r.peers[keys[i]!] ?? 'none'}`);
    const wrong = codes.filter((c) => !c.endsWith('ERR_FRAME_TIMEOUT'));
    assert.deepEqual(wrong, [], 'every trickled frame cut by frameTimeout');
    assert.ok(Math.max(...sockets.map((t) => t.sent)) < 15, 'cut long before the frame could complete');
    assert.equal(r.stats.timeouts.frame, apps.length * PER_CODEC);
    await multi.assertNoLeaks();
  } finally {
    clearInterval(clock);
    for (const t of sockets) t.socket.destroy();
    await multi.stop();
  }
});
