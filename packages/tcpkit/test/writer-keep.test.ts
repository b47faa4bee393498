// Which parked connections keep their writer (src/writer-keep.ts): a connection parked on a read keeps it
// until a sweep finds it still parked; then it holds none, unless its writer still holds output for it.
// The sweeps are run by hand here (sweepKept), so nothing waits for the interval.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Server, serve } from '../src/index.js';
import { keptWriters, sweepKept } from '../src/writer-keep.js';
import { type Client, connect, deferred, LOOPBACK, portOf, stop, until, within } from './helpers.js';

const TEST = { timeout: 30_000 };

/** Runs `body` against an echo server with one connected client, which it may close; stops the server. */
async function withEchoClient(body: (client: Client, server: Server) => Promise<void>): Promise<void> {
  const server = await serve({ ...LOOPBACK }, async (conn) => {
    for await (const chunk of conn) await conn.write(chunk);
  });
  try {
    await body(await connect(portOf(server)), server);
  } finally {
    await stop(server);
  }
}

describe('writers kept by parked connections', () => {
  it('keeps the writer of a connection that answered and parked, until two sweeps find it parked', TEST, () =>
    withEchoClient(async (client) => {
      client.write('ping');
      await client.receive(4);
      // Its reply was flushed when the handler parked for the next read: it keeps the writer.
      assert.equal(keptWriters(), 1);
      sweepKept(); // parked since: marked
      assert.equal(keptWriters(), 1);
      sweepKept(); // still parked, not parked again: given back
      assert.equal(keptWriters(), 0);
      // It writes again with a writer taken anew.
      client.write('pong');
      assert.equal((await client.receive(8)).toString(), 'pingpong');
      assert.equal(keptWriters(), 1);
      client.end();
      await client.waitClosed();
    }),
  );

  it('a connection that parks again between sweeps keeps its writer', TEST, () =>
    withEchoClient(async (client) => {
      let expected = '';
      for (let i = 0; i < 3; i++) {
        client.write(`m${i};`);
        expected += `m${i};`;
        await client.receive(expected.length);
        sweepKept();
        assert.equal(keptWriters(), 1, `kept after round ${i}`);
      }
      client.end();
      await client.waitClosed();
    }),
  );

  it('drops a closed connection from the kept writers without a sweep', TEST, () =>
    withEchoClient(async (client, server) => {
      client.write('ping');
      await client.receive(4);
      assert.equal(keptWriters(), 1);
      client.socket.resetAndDestroy();
      await until(
        () => server.stats().active === 0 && server.stats().lingering === 0,
        'the connection to close',
        10_000,
      );
      assert.equal(keptWriters(), 0);
    }),
  );

  it('keeps a writer whose output still waits for the peer, and sends all of it', TEST, async () => {
    const size = 32 * 1024 * 1024;
    const parked = deferred();
    const server = await serve({ ...LOOPBACK, writeTimeout: 0 }, async (conn) => {
      await conn.read();
      const big = Buffer.alloc(size, 'z');
      // Larger than the socket buffers of a peer that does not read: part of it waits in flight.
      void conn.write(big);
      parked.resolve();
      await conn.read();
      await conn.write('end\n');
    });
    try {
      const client = await connect(portOf(server));
      client.socket.pause();
      client.write('go');
      await within(parked.promise, 10_000, 'the handler to park');
      sweepKept();
      sweepKept();
      assert.equal(keptWriters(), 1, 'output in flight: the writer stays');
      client.socket.resume();
      await client.receive(size, 20_000);
      client.write('more');
      const all = await client.receive(size + 4, 20_000);
      assert.equal(all.subarray(size).toString(), 'end\n');
      assert.equal(
        all.subarray(0, size).every((b) => b === 0x7a),
        true,
      );
      await client.waitClosed(10_000);
    } finally {
      await stop(server);
    }
  });
});
