// serve({ admin }): /metrics, /healthz, /readyz, /stats over real HTTP on loopback.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMIN_MAX_CONNECTIONS } from '../src/admin.js';
import { type Conn, type Server, serve } from '../src/index.js';
import { type Client, connect, exchange, LOOPBACK, portOf, stop, within } from './helpers.js';
import { parseMetrics, sampleValue } from './metrics-helpers.js';

const TEST = { timeout: 30_000 };
const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function echo(conn: Conn): Promise<void> {
  for await (const chunk of conn) await conn.write(chunk);
}

function adminUrl(server: Server, path: string): string {
  const a = server.adminAddress;
  assert.ok(a !== undefined, 'an admin endpoint');
  return `http://127.0.0.1:${a.port}${path}`;
}

async function get(
  server: Server,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; body: string; type: string }> {
  const res = await within(fetch(adminUrl(server, path), init), 10_000, `GET ${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

describe('serve({ admin })', () => {
  it('serves /metrics, /healthz, /readyz and /stats on loopback by default', TEST, async () => {
    const server = await serve({ ...LOOPBACK, admin: { port: 0 } }, echo);
    try {
      assert.equal(server.adminAddress?.address, '127.0.0.1');
      assert.equal((await exchange(portOf(server), 'ping')).toString(), 'ping');
      const metrics = await get(server, '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.type, /^text\/plain; version=0\.0\.4/);
      const families = parseMetrics(metrics.body);
      assert.equal(sampleValue(families, 'tcpkit_connections_accepted_total'), 1);
      assert.ok(families.has('process_resident_memory_bytes'), 'default process metrics');
      assert.deepEqual(await get(server, '/healthz'), { status: 200, body: 'ok\n', type: 'text/plain; charset=utf-8' });
      assert.equal((await get(server, '/readyz')).status, 200);
      const stats = await get(server, '/stats');
      assert.equal(stats.type, 'application/json');
      assert.deepEqual(JSON.parse(stats.body), JSON.parse(JSON.stringify(server.stats())));
      assert.equal((await get(server, '/nope')).status, 404);
      assert.equal((await get(server, '/healthz', { method: 'POST' })).status, 405);
      assert.equal((await get(server, '/healthz', { method: 'HEAD' })).status, 200);
    } finally {
      await stop(server);
    }
  });

  it('turns /readyz 503 at the start of shutdown and keeps serving through shutdownDelay', TEST, async () => {
    const options = { ...LOOPBACK, admin: { port: 0 }, shutdownDelay: 15_000 };
    const server = await serve(options, echo);
    const port = portOf(server);
    const done = server.shutdown({ timeout: 1000 });
    assert.equal((await get(server, '/readyz')).status, 503);
    assert.equal((await get(server, '/healthz')).status, 200, 'alive while shutting down');
    assert.equal((await exchange(port, 'during the delay')).toString(), 'during the delay');
    assert.equal(server.signal.aborted, false, 'not draining yet');
    // The delay only bounds how long the checks above may take; then the drain runs as always.
    const result = await within(done, 40_000, 'the shutdown after the delay');
    assert.equal(result.forced, 0);
  });

  it('leaves out the default process metrics with processMetrics: false', TEST, async () => {
    const server = await serve({ ...LOOPBACK, admin: { port: 0, processMetrics: false } }, echo);
    try {
      const families = parseMetrics((await get(server, '/metrics')).body);
      assert.ok(families.has('tcpkit_connections_active'));
      assert.ok(!families.has('process_resident_memory_bytes'));
    } finally {
      await stop(server);
    }
  });

  it('answers /healthz 503 after the event loop was blocked past maxEventLoopDelay', TEST, async () => {
    // A limit a loaded machine's scheduling alone does not reach, and a block well past it.
    const server = await serve({ ...LOOPBACK, admin: { port: 0, maxEventLoopDelay: 1000 } }, echo);
    try {
      assert.equal((await get(server, '/healthz')).status, 200);
      const until = performance.now() + 3000;
      while (performance.now() < until) {
        // a handler hogging the loop
      }
      const health = await get(server, '/healthz');
      assert.equal(health.status, 503);
      assert.match(health.body, /event loop blocked for \d+ ms/);
    } finally {
      await stop(server);
    }
  });

  it('closes the admin endpoint when the server has shut down', TEST, async () => {
    const server = await serve({ ...LOOPBACK, admin: { port: 0 } }, echo);
    const url = adminUrl(server, '/healthz');
    const c = await connect(portOf(server));
    c.destroy();
    await stop(server);
    await assert.rejects(fetch(url), 'connection refused once closed');
  });

  it('fails serve() with ERR_INVALID_OPTION naming prom-client when it is not installed', TEST, () => {
    const script = `
      import { serve } from './src/index.ts';
      try { await serve({ host: '127.0.0.1', port: 0, admin: { port: 0 } }, () => {}); console.log('served'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, option: e.option, message: e.message })); }`;
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--import', './test/fixtures/no-prom-client.mjs', '--input-type=module', '-e', script],
      { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { code: string; option: string; message: string };
    assert.equal(out.code, 'ERR_INVALID_OPTION');
    assert.equal(out.option, 'admin');
    assert.match(out.message, /npm install prom-client/);
  });

  it(
    'holds at most ADMIN_MAX_CONNECTIONS connections: the next is closed unanswered, and a probe gets in once one leaves',
    TEST,
    async () => {
      const server = await serve({ ...LOOPBACK, admin: { port: 0 } }, echo);
      const port = server.adminAddress!.port;
      const held: Client[] = [];
      try {
        // Idle connections that never send a request (abandoned probes, or someone holding descriptors).
        for (let i = 0; i < ADMIN_MAX_CONNECTIONS; i++) held.push(await connect(port));
        // The server counts a connection once it accepted it: a request on the last one answered proves all are in.
        const last = held[held.length - 1]!;
        last.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.match(await last.receiveText('ready\n', 10_000), /^HTTP\/1\.1 200/);
        const extra = await connect(port);
        extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        const closed = await extra.waitClosed(10_000);
        assert.equal(
          extra.receivedLength,
          0,
          `the connection over the cap is closed unanswered (${closed.error ?? 'FIN'})`,
        );
        held.shift()!.destroy();
        // The server learns of that close asynchronously: a bounded number of attempts, each a new connection.
        let status = 0;
        for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
          const probe = await connect(port);
          probe.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
          await probe.waitClosed(10_000);
          const head = /^HTTP\/1\.1 (\d+)/.exec(probe.received().toString());
          status = head === null ? 0 : Number(head[1]);
        }
        assert.equal(status, 200, 'a probe is answered once a held connection left');
      } finally {
        for (const c of held) c.destroy();
        await stop(server);
      }
    },
  );

  it('concurrent scrapes of /metrics (one render shared) are each answered in full', TEST, async () => {
    const server = await serve({ ...LOOPBACK, admin: { port: 0 } }, echo);
    try {
      assert.equal((await exchange(portOf(server), 'ping')).toString(), 'ping');
      const bodies = await Promise.all(Array.from({ length: 8 }, () => get(server, '/metrics')));
      for (const b of bodies) {
        assert.equal(b.status, 200);
        assert.equal(sampleValue(parseMetrics(b.body), 'tcpkit_connections_accepted_total'), 1);
      }
    } finally {
      await stop(server);
    }
  });

  it('validates admin at serve()', async () => {
    await assert.rejects(serve({ ...LOOPBACK, admin: { port: -1 } }, echo), { option: 'admin.port' });
    await assert.rejects(serve({ ...LOOPBACK, admin: 9090 as never }, echo), { option: 'admin' });
    await assert.rejects(serve({ ...LOOPBACK, admin: { port: 0, hots: 'x' } as never }, echo), {
      option: 'admin.hots',
    });
    await assert.rejects(serve({ ...LOOPBACK, admin: { port: 0, processMetrics: 1 as never } }, echo), {
      option: 'admin.processMetrics',
    });
    await assert.rejects(serve({ ...LOOPBACK, shutdownDelay: -5 }, echo), { option: 'shutdownDelay' });
    await assert.rejects(serve({ ...LOOPBACK, logger: { info() {} } as never }, echo), { option: 'logger' });
  });
});
