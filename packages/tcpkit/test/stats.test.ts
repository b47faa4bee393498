// Server#stats fields and diagnostics-channel message fields that the metrics and the logger read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Conn, type Server, serve } from '../src/index.js';
import { ChannelProbe, type Client, connect, deferred, LOOPBACK, portOf, stop, until } from './helpers.js';

const TEST = { timeout: 20_000 };

describe('Server#stats', () => {
  it('counts lingering connections, queued output and held descriptors', TEST, async () => {
    const release = deferred<void>();
    const server = await serve({ ...LOOPBACK, maxConnections: 1, whenFull: 'wait' }, async (conn: Conn) => {
      // A peer that never reads: the output stays queued in tcpkit once the kernel buffers are full.
      conn.write(Buffer.alloc(8 * 1024 * 1024)).catch(() => {});
      await release.promise;
    });
    const clients: Client[] = [];
    try {
      const port = portOf(server);
      clients.push(await connect(port, { read: false }));
      await until(() => server.stats().queuedBytes > 0, 'output queued for the non-reading peer');
      clients.push(await connect(port));
      await until(() => server.stats().waiting === 1, 'the second connection to wait');
      const s = server.stats();
      assert.equal(s.descriptors.open, 2, 'a running and a waiting socket');
      assert.ok(s.descriptors.budget > 0, 'Linux: a budget is known');
      assert.equal(s.lingering, 0);
      release.resolve();
      await until(() => server.stats().active === 0, 'the handler to end');
      assert.equal(server.stats().lingering, 1, 'its output still queued, the socket stays open');
    } finally {
      for (const c of clients) c.destroy();
      await stop(server);
    }
  });

  it('counts a running handler whose socket closed as active, not lingering, its bytes once', TEST, async () => {
    const release = deferred<void>();
    const closes = new ChannelProbe<{ conn: Conn }>('tcpkit:connection:close');
    const server = await serve({ ...LOOPBACK }, async (conn: Conn) => {
      await conn.read();
      await conn.read().catch(() => {}); // the reset
      await release.promise; // still running after its socket closed
    });
    try {
      const client = await connect(portOf(server));
      client.write('hello');
      await until(() => server.stats().bytesRead === 5, 'the server to read the five bytes');
      client.socket.resetAndDestroy();
      await closes.next(() => true);
      const s = server.stats();
      assert.deepEqual([s.active, s.lingering, s.bytesRead], [1, 0, 5]);
      release.resolve();
      await until(() => server.stats().active === 0, 'the handler to end');
      assert.deepEqual([server.stats().lingering, server.stats().bytesRead], [0, 5]);
    } finally {
      closes.stop();
      await stop(server);
    }
  });
});

describe('diagnostics channels', () => {
  it('names the server in every message and gives the wait time at open', TEST, async () => {
    const open = new ChannelProbe<{ server: Server; conn: Conn; waitMs: number }>('tcpkit:connection:open');
    const close = new ChannelProbe<{ server: Server; conn: Conn }>('tcpkit:connection:close');
    const reject = new ChannelProbe<{ server: Server; reason: string }>('tcpkit:connection:reject');
    const first = deferred<void>();
    const server = await serve({ ...LOOPBACK, maxConnections: 1, maxWaiting: 1 }, async () => {
      if (handlers++ === 0) await first.promise;
    });
    let handlers = 0;
    const clients: Client[] = [];
    try {
      const port = portOf(server);
      clients.push(await connect(port));
      const firstId = (await open.next((m) => m.server === server)).conn.id;
      clients.push(await connect(port));
      await until(() => server.stats().waiting === 1, 'a waiter');
      clients.push(await connect(port));
      const rejected = await reject.next((m) => m.server === server);
      assert.equal(rejected.reason, 'full');
      first.resolve();
      const second = await open.next((m) => m.server === server && m.conn.id !== firstId);
      assert.ok(second.waitMs > 0, 'the second connection waited');
      const opened = open.messages.filter((m) => m.server === server);
      assert.equal(opened[0]?.waitMs, 0, 'admitted at once');
      for (const c of clients) c.end();
      await close.next((m) => m.server === server && m.conn === second.conn);
    } finally {
      open.stop();
      close.stop();
      reject.stop();
      for (const c of clients) c.destroy();
      await stop(server);
    }
  });
});
