// Connections waiting at the cap are kept polled: a peer that resets or closes leaves the queue at
// once (rejected.abandoned, never served), input sent while waiting is handed to the handler, and
// a FIN after data keeps the waiter unless abortOnClose.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Conn, type ServeOptions, type Server, serve } from '../src/index.js';
import { type Client, connect, deferred, LOOPBACK, portOf, stop, until } from './helpers.js';

const TEST = { timeout: 30_000 };

/**
 * A server with one slot, held by a first client until `release()`; every later connection waits.
 * Each handler echoes what it reads, then writes `|end` at end of stream.
 */
async function oneSlot(options: ServeOptions = {}): Promise<{
  server: Server;
  port: number;
  holder: Client;
  release: () => void;
  served: Conn[];
}> {
  const gate = deferred();
  const served: Conn[] = [];
  const server = await serve({ ...LOOPBACK, maxConnections: 1, waitTimeout: 20_000, ...options }, async (conn) => {
    served.push(conn);
    if (served.length === 1) {
      await gate.promise;
      return;
    }
    for await (const chunk of conn) await conn.write(chunk);
    await conn.write('|end');
  });
  const port = portOf(server);
  const holder = await connect(port);
  await until(() => served.length === 1, 'the first connection to hold the slot');
  return { server, port, holder, release: () => gate.resolve(), served };
}

describe('Gate: waiting connections', () => {
  for (const how of ['FIN', 'RST'] as const) {
    it(`a waiter whose peer sends ${how} before any data leaves the queue as abandoned`, TEST, async () => {
      const { server, port, release, served } = await oneSlot();
      try {
        const dead = await connect(port);
        await until(() => server.stats().waiting === 1, 'the second connection to wait');
        if (how === 'FIN') dead.end();
        else dead.socket.resetAndDestroy();
        await until(() => server.stats().waiting === 0, 'the dead waiter to leave the queue');
        const s = server.stats();
        assert.equal(s.rejected.abandoned, 1);
        assert.equal(s.rejected.full + s.rejected.waitTimeout, 0);
        // An honest newcomer is next in line and is served once the slot frees; the dead one never is.
        const honest = await connect(port);
        await until(() => server.stats().waiting === 1, 'the newcomer to wait');
        honest.write('hi');
        release();
        await honest.receive(2);
        assert.equal(honest.received().toString(), 'hi');
        assert.equal(served.length, 2);
        assert.equal(server.stats().errors, 0);
        honest.end();
        await honest.waitClosed();
      } finally {
        await stop(server);
      }
    });
  }

  it('hands what a waiter sent to its handler, in order, then the FIN that followed', TEST, async () => {
    const { server, port, release } = await oneSlot();
    try {
      const client = await connect(port, { allowHalfOpen: true });
      await until(() => server.stats().waiting === 1, 'the connection to wait');
      const payload = Buffer.alloc(256 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
      client.end(payload);
      await until(() => server.stats().waiting === 1 && client.socket.writableFinished, 'the request sent');
      release();
      const got = await client.receive(payload.length + 4, 20_000);
      assert.ok(got.subarray(0, payload.length).equals(payload), 'every byte, in order');
      assert.equal(got.subarray(payload.length).toString(), '|end');
      assert.equal(server.stats().rejected.abandoned, 0);
      await client.waitClosed();
    } finally {
      await stop(server);
    }
  });

  it('with abortOnClose, a FIN after data drops the waiter too', TEST, async () => {
    const { server, port, release, served } = await oneSlot({ abortOnClose: true });
    try {
      const client = await connect(port, { allowHalfOpen: true });
      await until(() => server.stats().waiting === 1, 'the connection to wait');
      client.end('request');
      await until(() => server.stats().waiting === 0, 'the waiter to be dropped');
      assert.equal(server.stats().rejected.abandoned, 1);
      release();
      await client.waitClosed();
      assert.equal(client.receivedLength, 0);
      assert.equal(served.length, 1);
    } finally {
      await stop(server);
    }
  });
});
