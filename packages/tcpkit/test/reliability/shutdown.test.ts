// Shutdown under load: SIGTERM while hundreds of clients are in request/response loops. Every
// request the server received in full is answered in full, the process exits 0 within
// drainTimeout, and every connection ends with a FIN, never a reset.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { attackerAddress, LineClient, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';

const CLIENTS = 500;
const DRAIN_TIMEOUT = 10_000;
/** SIGTERM once this many responses have arrived in all. */
const SIGNAL_AFTER = CLIENTS * 10;
const BIG = 256 * 1024;

let server: ServerProcess | undefined;
after(() => server?.stop());

test('shutdown under load: zero lost, exit 0 within drainTimeout, FIN for every connection', {
  timeout: 90_000,
}, async () => {
  const started = performance.now();
  server = await startServer({ apps: ['lines'], options: { shutdownOn: ['SIGTERM'], drainTimeout: DRAIN_TIMEOUT } });
  const port = server.port;

  let responses = 0;
  let signalledAt = 0;
  let signal: () => void = () => {};
  new Promise<void>((resolve) => {
    signal = resolve;
  }).then(() => {
    signalledAt = performance.now();
    server!.child.kill('SIGTERM');
  });
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => LineClient.connect(port)));
  const outcomes = await Promise.all(
    clients.map(async (client, c) => {
      let fin = false;
      let error: string | undefined;
      client.socket.on('end', () => {
        fin = true;
      });
      client.socket.on('error', (e: NodeJS.ErrnoException) => {
        error = e.code ?? e.message;
      });
      const done = new Promise((resolve) => client.socket.on('close', resolve));
      let answered = 0;
      let unanswered = 0;
      // Bounded: the server ends every connection once SIGTERM arrives.
      // A quarter ask for 256 KiB responses, a quarter pipeline 4 requests at a time, the rest ping-pong.
      const kind = c % 4;
      for (let i = 0; i < 100_000; i++) {
        const batch =
          kind === 0
            ? [client.request(`big ${BIG}`).then((a) => a.length === BIG)]
            : Array.from({ length: kind === 1 ? 4 : 1 }, (_, j) =>
                client.request(`ping ${c}.${i}.${j}`).then((a) => a === `pong ${c}.${i}.${j}`),
              );
        const results = await Promise.allSettled(batch);
        for (const r of results) {
          if (r.status === 'rejected')
            unanswered++; // on the wire when the server ended the connection
          else {
            assert.ok(r.value, 'response complete and correct');
            answered++;
            if (++responses === SIGNAL_AFTER) signal();
          }
        }
        if (unanswered > 0) break;
      }
      await done;
      return { answered, unanswered, fin, error };
    }),
  );
  const exit = await server.exited;
  const exitMs = performance.now() - signalledAt;
  const final = server.final;

  assert.equal(exit.code, 0, `exit code ${exit.code} (signal ${exit.signal})`);
  assert.ok(exitMs < DRAIN_TIMEOUT, `exited ${Math.round(exitMs)} ms after SIGTERM, within drainTimeout`);
  assert.ok(final !== undefined, 'the server reported its counts as it closed');
  const answered = outcomes.reduce((n, o) => n + o.answered, 0);
  const inFlight = outcomes.reduce((n, o) => n + o.unanswered, 0);
  assert.equal(final.answered, final.received, 'the server answered every request it received');
  assert.equal(answered, final.received, 'every request the server received was answered in full at the client');
  const resets = outcomes.filter((o) => o.error !== undefined);
  assert.deepEqual(resets, [], 'no connection was reset');
  assert.equal(outcomes.filter((o) => o.fin).length, CLIENTS, 'every connection ended with a FIN');
  assert.equal(final.stats.active, 0);

  recordResult({
    id: '7-shutdown',
    title: 'Shutdown under load',
    load: `${CLIENTS} clients in request/response loops (¼ with 256 KiB responses, ¼ pipelining 4 requests); SIGTERM after ${SIGNAL_AFTER} responses`,
    defence: `shutdownOn SIGTERM: stop accepting, drain (reads end at a frame boundary), FIN, lingering close; drainTimeout ${DRAIN_TIMEOUT / 1000} s`,
    outcome: `exit 0 ${(exitMs / 1000).toFixed(1)} s after SIGTERM; ${final.received} requests received, ${answered} answered in full; every connection ended with FIN`,
    lost: `0 (${inFlight} requests still on the wire at the signal were never received, and the client saw FIN for them)`,
    measured: {
      'requests received by the server / answered / responses at clients': `${final.received} / ${final.answered} / ${answered}`,
      'requests in flight at the signal (not received by the server)': inFlight,
      'connections ended with FIN / reset': `${outcomes.filter((o) => o.fin).length} / ${resets.length}`,
      'SIGTERM to exit': `${Math.round(exitMs)} ms`,
      'exit code': String(exit.code),
      'active / waiting at close': `${final.stats.active} / ${final.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});

// Draining is bounded by drainTimeout whatever the peers do: stubborn handlers are destroyed at the
// deadline, and so are closes still lingering because their peer reads nothing.
test('shutdown with stubborn handlers and never-reading peers: exit 0 within drainTimeout', {
  timeout: 90_000,
}, async () => {
  const DRAIN = 3_000;
  const stubborn = await startServer({
    apps: ['lines'],
    options: { shutdownOn: ['SIGTERM'], drainTimeout: DRAIN, maxQueuedBytes: 16 * 1024 * 1024 },
  });
  const sockets: net.Socket[] = [];
  try {
    const requests = [
      ...Array.from({ length: 20 }, () => 'sleep 60000'), // a handler that ignores the drain
      ...Array.from({ length: 20 }, () => `spray ${8 * 1024 * 1024}`), // returns, its last reply stuck in the queue
      ...Array.from({ length: 20 }, () => `big ${64 * 1024 * 1024}`), // blocked in write() on a peer that never reads
    ];
    await Promise.all(
      requests.map(async (line, i) => {
        const socket = net.connect({ host: '127.0.0.1', port: stubborn.port, localAddress: attackerAddress(i % 10) });
        socket.on('error', () => {});
        socket.pause();
        sockets.push(socket);
        await once(socket, 'connect');
        socket.write(`${line}\n`);
      }),
    );
    await stubborn.until((r) => r.received === requests.length, 10_000, 'every request received');
    const signalledAt = performance.now();
    stubborn.child.kill('SIGTERM');
    const exit = await stubborn.exited;
    const exitMs = performance.now() - signalledAt;
    assert.equal(exit.code, 0, `exit code ${exit.code} (signal ${exit.signal})`);
    // The wheel's resolution and process exit add a little; a lingering close would add writeTimeout (30 s).
    assert.ok(exitMs < DRAIN + 1_500, `exited ${Math.round(exitMs)} ms after SIGTERM (drainTimeout ${DRAIN} ms)`);
  } finally {
    for (const s of sockets) s.destroy();
    await stubborn.stop();
  }
});

// A handler that holds a ref'd 120 s timer outlives its drain: without exitOnShutdown the process would
// stay up (closed resolves at drainTimeout); with it, the process exits once every socket is closed.
test('exitOnShutdown: the process exits at the end of its drain, forced, whatever a handler left running', {
  timeout: 60_000,
}, async () => {
  const DRAIN = 2_000;
  const held = await startServer({
    apps: ['lines'],
    options: { shutdownOn: ['SIGTERM'], drainTimeout: DRAIN, exitOnShutdown: true },
  });
  const client = await LineClient.connect(held.port);
  try {
    const answer = client.request('hold 120000').catch((e: Error) => e.message);
    await held.until((r) => r.received === 1, 10_000, 'the hold request received');
    const signalledAt = performance.now();
    held.child.kill('SIGTERM');
    // Bounds a hang only: the timer the handler awaits would keep the process up for 120 s.
    const exit = await Promise.race([
      held.exited,
      new Promise<'alive'>((resolve) => setTimeout(resolve, 40_000, 'alive').unref()),
    ]);
    assert.notEqual(exit, 'alive', 'the process exited after its drain');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(await answer, /closed|ended/, 'the held connection was closed by the forced drain');
    recordResult({
      id: '7b-exit-on-shutdown',
      title: 'Exit at the end of the drain',
      load: "one handler awaiting a ref'd 120 s timer; SIGTERM",
      defence: `shutdownOn SIGTERM with exitOnShutdown, drainTimeout ${DRAIN / 1000} s`,
      outcome: `the handler was forced at drainTimeout and the process exited 0, ${Math.round(performance.now() - signalledAt)} ms after SIGTERM`,
      lost: '0 (the held request was never answered: forced by design)',
      measured: { 'exit code': 0, 'SIGTERM to exit': `${Math.round(performance.now() - signalledAt)} ms` },
      durationMs: Math.round(performance.now() - signalledAt),
    });
  } finally {
    client.close();
    await held.stop();
  }
});
