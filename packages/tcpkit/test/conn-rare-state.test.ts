// ConnCore's state made on first use (the abort signal, the close promise) and ConnTimers reading the
// server's timeouts until setTimeouts(): what a parked connection sees and what its neighbours keep.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Conn, serve } from '../src/index.js';
import { codeOf, connect, deferred, LOOPBACK, portOf, stop, until, within } from './helpers.js';

const TEST = { timeout: 30_000 };

describe('Conn: state made on first use', () => {
  it("setTimeouts() on a parked connection applies to it, never to the server's other connections", TEST, async () => {
    const outcomes = new Map<string, unknown>();
    const firsts = new Set<string>();
    const server = await serve({ ...LOOPBACK, idleTimeout: 0, firstByteTimeout: 0 }, async (conn) => {
      const first = (await conn.read())!.toString();
      if (first === 'short') {
        const parked = conn.read();
        conn.setTimeouts({ idleTimeout: 200 });
        outcomes.set(first, await parked.then(() => 'resolved', codeOf));
        return;
      }
      firsts.add(first);
      for (let chunk = await conn.read(); chunk !== null; chunk = await conn.read()) await conn.write(chunk);
    });
    try {
      const port = portOf(server);
      const keep = await connect(port);
      keep.write('keep');
      const short = await connect(port);
      short.write('short');
      await short.waitClosed(20_000);
      await until(() => outcomes.has('short'), 'the short connection to time out', 20_000);
      assert.equal(outcomes.get('short'), 'ERR_IDLE_TIMEOUT');
      // A connection made after the change gets the server's timeouts too (the shared options untouched).
      const later = await connect(port);
      later.write('later');
      await until(() => firsts.has('later'), 'the later connection to be read', 10_000);
      keep.write('ping');
      later.write('pong');
      assert.equal((await keep.receive(4, 10_000)).toString(), 'ping');
      assert.equal((await later.receive(4, 10_000)).toString(), 'pong');
      assert.equal(server.stats().timeouts.idle, 1);
      keep.end();
      later.end();
      await keep.waitClosed();
      await later.waitClosed();
    } finally {
      await stop(server);
    }
  });

  it('a reset while parked rejects the read, and signal and closed looked at only afterwards agree', TEST, async () => {
    const done = deferred<{ code: unknown; aborted: boolean; sameReason: boolean }>();
    const firstRead = deferred();
    const server = await serve({ ...LOOPBACK }, async (conn: Conn) => {
      await conn.read();
      firstRead.resolve();
      const error = await conn.read().then(
        () => null,
        (e: unknown) => e,
      );
      await within(conn.closed, 10_000, 'conn.closed');
      done.resolve({ code: codeOf(error), aborted: conn.signal.aborted, sameReason: conn.signal.reason === error });
    });
    try {
      const client = await connect(portOf(server));
      client.write('x');
      await within(firstRead.promise, 10_000, 'the first read');
      client.socket.resetAndDestroy();
      assert.deepEqual(await within(done.promise, 20_000, 'the handler'), {
        code: 'ERR_CONNECTION_CLOSED',
        aborted: true,
        sameReason: true,
      });
    } finally {
      await stop(server);
    }
  });

  it(
    'signal looked at first after a clean close is aborted with ERR_CONNECTION_CLOSED; closed resolves',
    TEST,
    async () => {
      const done = deferred<{ aborted: boolean; code: unknown }>();
      const server = await serve({ ...LOOPBACK }, async (conn: Conn) => {
        while ((await conn.read()) !== null) {}
        await conn.close();
        done.resolve({ aborted: conn.signal.aborted, code: codeOf(conn.signal.reason) });
      });
      try {
        const client = await connect(portOf(server));
        client.end('bye');
        await client.waitClosed(20_000);
        assert.deepEqual(await within(done.promise, 20_000, 'the handler'), {
          aborted: true,
          code: 'ERR_CONNECTION_CLOSED',
        });
      } finally {
        await stop(server);
      }
    },
  );
});
