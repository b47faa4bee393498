/**
 * The compiled open-loop generator (bench/open-loop-gen.c) against real loopback servers started here: it
 * counts every message of its schedule, notices a changed byte, ends by itself when the server never answers,
 * and refuses a non-loopback address. Skipped when gcc is missing.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { buildGenerator, type GeneratorOptions, runGenerator } from '../c-open-loop.js';

const binary = buildGenerator();
const skip = binary === null ? 'gcc is not installed (the generator is compiled at run time)' : false;
const servers: net.Server[] = [];
after(() => {
  for (const server of servers) server.close();
});

/** One unpinned run with no warm-up, whose drain only bounds a slow machine (it ends once every echo is in). */
const run = (options: GeneratorOptions) => runGenerator(binary!, { warmup: 0, drain: 60, cpu: null, ...options });

/** A loopback server whose connections get `onData(socket, chunk, offset)`; resolves with it and its port. */
async function serve(
  onData: (socket: net.Socket, chunk: Buffer, offset: number) => void,
): Promise<{ port: number; bytes: () => number }> {
  let bytes = 0;
  const server = net.createServer((socket) => {
    let offset = 0;
    socket.on('data', (chunk) => {
      bytes += chunk.length;
      onData(socket, chunk, offset);
      offset += chunk.length;
    });
    socket.on('error', () => {});
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, bytes: () => bytes };
}

test('counts every message of its schedule, each echoed and verified, against a real echo server', {
  skip,
}, async () => {
  const server = await serve((socket, chunk) => socket.write(chunk));
  // 2,000 msg/s for 0.2 s of warm-up and a 1 s window: 400 + 2,000 messages; the drain only bounds a slow machine.
  const outcome = await run({
    port: server.port,
    connections: 20,
    rate: 2000,
    warmup: 0.2,
    duration: 1,
  });
  assert.equal(outcome.code, 0, outcome.stderr);
  const r = outcome.result!;
  assert.equal(r.scheduled, 2000);
  assert.equal(r.msgs, 2000);
  assert.deepEqual([r.errors, r.outstanding, r.lost], [0, 0, 0]);
  assert.equal(server.bytes(), 2400 * 64, 'the server saw the whole schedule, warm-up included');
  assert.ok(r.latency_us.p50 > 0 && r.latency_us.p50 <= r.latency_us.p99 && r.latency_us.p99 <= r.latency_us.max);
  assert.ok(r.send_lag_us.max >= 0 && r.send_lag_us.max <= r.latency_us.max);
});

test('in rounds (--tick), still sends and counts every message of the schedule', { skip }, async () => {
  const server = await serve((socket, chunk) => socket.write(chunk));
  const outcome = await run({
    port: server.port,
    connections: 10,
    rate: 1000,
    duration: 0.5,
    tick: 0.02,
  });
  assert.equal(outcome.code, 0, outcome.stderr);
  assert.deepEqual([outcome.result!.scheduled, outcome.result!.msgs, outcome.result!.errors], [500, 500, 0]);
  assert.equal(outcome.result!.tick_us, 20000);
  assert.equal(server.bytes(), 500 * 64);
});

test('reports a changed byte in an echo as an error', { skip }, async () => {
  // Byte 100 of every connection's stream (inside its second message) comes back changed.
  const server = await serve((socket, chunk, offset) => {
    const copy = Buffer.from(chunk);
    if (offset <= 100 && offset + copy.length > 100) copy[100 - offset] ^= 0xff;
    socket.write(copy);
  });
  const outcome = await run({
    port: server.port,
    connections: 5,
    rate: 500,
    duration: 0.5,
  });
  assert.equal(outcome.code, 1);
  const r = outcome.result!;
  assert.equal(r.error_kinds.corrupt, 5, 'one mismatch per connection, each then closed');
  assert.equal(r.errors, 5);
  assert.equal(r.msgs + r.lost, r.scheduled);
  assert.ok(r.lost > 0);
});

test('ends by itself when the server never answers, counting the unanswered messages', { skip }, async () => {
  const server = await serve(() => {});
  const outcome = await run({
    port: server.port,
    connections: 10,
    rate: 1000,
    duration: 0.5,
    drain: 0.3,
  });
  assert.equal(outcome.code, 0, 'exited on its own (a kill would leave no exit code)');
  const r = outcome.result!;
  assert.equal(r.msgs, 0);
  assert.equal(r.outstanding, r.scheduled);
  assert.equal(r.scheduled, 500);
  assert.ok(r.latency_us.p50 > 0, 'unanswered messages count with their latency so far');
});

test('refuses an address outside loopback before connecting anywhere', { skip }, async () => {
  const outcome = await run({ port: 9, host: '192.0.2.1' });
  assert.equal(outcome.code, 2);
  assert.equal(outcome.result, null);
  assert.match(outcome.stderr, /--host must be a loopback address/);
});
