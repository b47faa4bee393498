// tcpkit/metrics: every documented metric registered, counters equal to stats() after a scripted run.
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { collectMetrics } from 'tcpkit/metrics';
import { type Conn, lines, serve } from '../src/index.js';
import { certs } from './fixtures/certs.js';
import { type Client, connect, LOOPBACK, portOf, stop, until } from './helpers.js';
import { documentedMetrics, parseMetrics, sampleValue } from './metrics-helpers.js';

const TEST = { timeout: 30_000 };

/** Echoes lines; `boom` makes the handler throw. */
async function lineEcho(conn: Conn): Promise<void> {
  for await (const line of conn.frames(lines())) {
    if (line === 'boom') throw new Error('boom');
    await conn.write(`${line}\n`);
  }
}

describe('collectMetrics', () => {
  it('registers every documented metric; counters equal stats() after a scripted run', TEST, async () => {
    const blockList = new BlockList();
    blockList.addAddress('127.0.0.3');
    const server = await serve(
      {
        ...LOOPBACK,
        maxConnections: 3,
        whenFull: 'reject',
        maxConnectionsPerPeer: 2,
        blockList,
        firstByteTimeout: 500,
      },
      lineEcho,
    );
    const registry = new Registry();
    const metrics = collectMetrics(server, { registry });
    const held: Client[] = [];
    try {
      const port = portOf(server);
      const talk = async (localAddress: string, text: string): Promise<Client> => {
        const c = await connect(port, { localAddress });
        c.write(`${text}\n`);
        await c.receiveText(`${text}\n`);
        return c;
      };
      const done = await talk('127.0.0.1', 'hello');
      done.end();
      await done.waitClosed();
      const boom = await connect(port);
      boom.write('boom\n');
      await boom.waitClosed();
      const silent = await connect(port);
      await silent.waitClosed(10_000); // firstByteTimeout
      held.push(await talk('127.0.0.2', 'a'), await talk('127.0.0.2', 'b'));
      const perPeer = await connect(port, { localAddress: '127.0.0.2' });
      await perPeer.waitClosed();
      const blocked = await connect(port, { localAddress: '127.0.0.3' });
      await blocked.waitClosed();
      held.push(await talk('127.0.0.1', 'c'));
      const full = await connect(port, { localAddress: '127.0.0.4' });
      await full.waitClosed();
      await until(() => server.stats().rejected.full === 1 && server.stats().active === 3, 'the run to settle');

      const families = parseMetrics(await registry.metrics());
      for (const { name, type } of documentedMetrics()) {
        assert.equal(families.get(name)?.type, type.toUpperCase(), `${name} is a ${type}`);
      }
      assert.ok(documentedMetrics().length >= 20, 'the table was read');
      const s = server.stats();
      assert.deepEqual(s.rejected, { full: 1, perPeer: 1, blocked: 1, waitTimeout: 0, shutdown: 0, abandoned: 0 });
      assert.equal(s.timeouts.firstByte, 1);
      assert.equal(s.errors, 2, 'the throw and the timeout');
      const v = (name: string, labels?: Record<string, string>): number => sampleValue(families, name, labels);
      assert.equal(v('tcpkit_connections_accepted_total'), s.accepted);
      assert.equal(v('tcpkit_connections_served_total'), s.served);
      for (const [reason, n] of Object.entries(s.rejected)) {
        assert.equal(v('tcpkit_connections_rejected_total', { reason }), n, reason);
      }
      for (const [kind, n] of Object.entries(s.timeouts)) assert.equal(v('tcpkit_timeouts_total', { kind }), n, kind);
      assert.equal(v('tcpkit_handler_errors_total'), s.errors);
      assert.equal(v('tcpkit_slow_consumers_total'), s.slowConsumers);
      assert.equal(v('tcpkit_accept_errors_total'), s.acceptErrors);
      assert.equal(v('tcpkit_read_bytes_total'), s.bytesRead);
      assert.equal(v('tcpkit_written_bytes_total'), s.bytesWritten);
      assert.equal(v('tcpkit_connections_active'), 3);
      assert.equal(v('tcpkit_connections_waiting'), 0);
      assert.equal(v('tcpkit_connections_max'), 3);
      assert.equal(v('tcpkit_descriptors_open'), s.descriptors.open);
      assert.equal(v('tcpkit_connection_duration_seconds'), 3, 'three served connections closed');
      assert.equal(v('tcpkit_wait_duration_seconds'), s.served, 'one wait observation per admission');
      assert.equal(v('tcpkit_server_info', { address: `127.0.0.1:${port}` }), 1);
    } finally {
      for (const c of held) c.destroy();
      metrics.close();
      await stop(server);
    }
  });

  it('counts TLS handshake failures, refused PROXY headers and handshake timeouts as stats() does', TEST, async () => {
    const c = certs();
    const server = await serve(
      {
        ...LOOPBACK,
        tls: { key: c.serverKey, cert: c.serverCert },
        handshakeTimeout: 300,
        proxyProtocol: { trusted: ['127.0.0.1'] },
      },
      lineEcho,
    );
    const registry = new Registry();
    const metrics = collectMetrics(server, { registry });
    try {
      const port = portOf(server);
      const header = 'PROXY TCP4 192.0.2.7 127.0.0.1 4000 7000\r\n';
      // A header from a peer not in `trusted`.
      const spoof = await connect(port, { localAddress: '127.0.0.3' });
      spoof.write(header);
      await spoof.waitClosed();
      // A trusted header, then an HTTP request where the ClientHello should be.
      const garbage = await connect(port);
      garbage.write(`${header}GET / HTTP/1.1\r\nHost: x\r\n\r\n`);
      await garbage.waitClosed();
      // A trusted header, then silence: cut by handshakeTimeout.
      const stalled = await connect(port);
      stalled.write(header);
      await stalled.waitClosed(10_000);
      await until(() => server.stats().tlsErrors === 2, 'both handshake failures counted');

      const s = server.stats();
      assert.equal(s.proxyErrors, 1);
      assert.equal(s.timeouts.handshake, 1);
      const families = parseMetrics(await registry.metrics());
      const v = (name: string, labels?: Record<string, string>): number => sampleValue(families, name, labels);
      assert.equal(v('tcpkit_tls_handshake_failures_total'), s.tlsErrors);
      assert.equal(v('tcpkit_proxy_header_failures_total'), s.proxyErrors);
      assert.equal(v('tcpkit_timeouts_total', { kind: 'handshake' }), s.timeouts.handshake);
      assert.equal(v('tcpkit_connections_served_total'), 0, 'no handler ran');
    } finally {
      metrics.close();
      await stop(server);
    }
  });

  it('observes the drain of each connection open at shutdown', TEST, async () => {
    const server = await serve(LOOPBACK, lineEcho);
    const registry = new Registry();
    const metrics = collectMetrics(server, { registry });
    try {
      const c = await connect(portOf(server));
      c.write('x\n');
      await c.receiveText('x\n');
      await stop(server);
      await c.waitClosed();
      const families = parseMetrics(await registry.metrics());
      assert.equal(sampleValue(families, 'tcpkit_drain_duration_seconds'), 1);
    } finally {
      metrics.close();
    }
  });

  it('refreshes the process metrics that list every descriptor at most every 10 s', TEST, async () => {
    const server = await serve(LOOPBACK, lineEcho);
    const registry = new Registry();
    const metrics = collectMetrics(server, { registry, processMetrics: true });
    const held: Client[] = [];
    try {
      const started = performance.now();
      const first = parseMetrics(await registry.metrics());
      for (let i = 0; i < 20; i++) held.push(await connect(portOf(server)));
      await until(() => server.stats().active === 20, 'the connections admitted');
      const second = parseMetrics(await registry.metrics());
      // Only a stall of 10 s between the two scrapes would make the second one list the descriptors again.
      if (performance.now() - started < 10_000) {
        for (const name of ['process_open_fds', 'nodejs_active_handles_total']) {
          assert.equal(sampleValue(second, name), sampleValue(first, name), `${name} served from the last listing`);
        }
      }
      assert.equal(sampleValue(second, 'tcpkit_connections_active'), 20, "tcpkit's own gauges are fresh");
    } finally {
      for (const c of held) c.destroy();
      metrics.close();
      await stop(server);
    }
  });

  it('takes a prefix, adds process metrics on request, and close() removes what it added', TEST, async () => {
    const server = await serve(LOOPBACK, lineEcho);
    const registry = new Registry();
    try {
      const metrics = collectMetrics(server, { registry, prefix: 'edge_', processMetrics: true });
      const families = parseMetrics(await registry.metrics());
      assert.ok(families.has('edge_connections_active'));
      assert.ok(!families.has('tcpkit_connections_active'));
      assert.ok(families.has('process_resident_memory_bytes'));
      metrics.close();
      assert.equal((await registry.metrics()).trim(), '', 'nothing left');
      collectMetrics(server, { registry, prefix: 'edge_', processMetrics: true }).close();
    } finally {
      await stop(server);
    }
  });
});
