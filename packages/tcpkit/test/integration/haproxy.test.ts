/**
 * tcpkit behind a real HAProxy in `mode tcp`, sending the PROXY protocol (v2 and v1), with health checks
 * (`check-send-proxy`), per-client caps and TLS passed through. The configs are docs/deploy.md's.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { type Conn, type ServeOptions, type Server, serve } from '../../src/index.js';
import { certs } from '../fixtures/certs.js';
import { portOf, stop, until, within } from '../helpers.js';
import { freePort, Haproxy, needsHaproxy } from './haproxy.js';

const TEST = { timeout: 60_000, skip: needsHaproxy() };

/** A frontend on 127.0.0.1:`front` to one tcpkit server, as in docs/deploy.md. */
function config(front: number, backend: number, proxy: 'send-proxy-v2' | 'send-proxy'): string {
  return `frontend fe
  bind 127.0.0.1:${front}
  default_backend be

backend be
  server tcpkit 127.0.0.1:${backend} ${proxy} check check-send-proxy inter 200ms fall 1 rise 1
`;
}

/** A server that answers each line with the client address it sees, and records its conns. */
async function whoami(options: ServeOptions = {}): Promise<{ server: Server; conns: Conn[] }> {
  const conns: Conn[] = [];
  const server = await serve(
    { host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.1'] }, ...options },
    async (conn) => {
      conns.push(conn);
      for await (const chunk of conn) {
        await conn.write(`${conn.remoteAddress}:${conn.remotePort} ${chunk.toString().trim()}\n`);
      }
    },
  );
  return { server, conns };
}

/** A client bound to `localAddress` that sends `line` through HAProxy and resolves to the first reply. */
async function ask(port: number, localAddress: string, line: string): Promise<{ reply: string; socket: net.Socket }> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  await once(socket, 'connect');
  socket.write(`${line}\n`);
  const [data] = (await within(once(socket, 'data'), 15_000, 'a reply through haproxy')) as [Buffer];
  return { reply: data.toString(), socket };
}

describe('behind HAProxy', () => {
  for (const proxy of ['send-proxy-v2', 'send-proxy'] as const) {
    it(`${proxy}: health checks UP, and the handler sees the client's own address (127.0.0.9)`, TEST, async () => {
      const { server, conns } = await whoami();
      const front = await freePort();
      const haproxy = await Haproxy.start(config(front, portOf(server), proxy));
      try {
        await haproxy.waitStatus('be', 'tcpkit', 'UP');
        const { reply, socket } = await ask(front, '127.0.0.9', 'hello');
        assert.equal(reply, `127.0.0.9:${socket.localPort} hello\n`);
        const c = conns.find((x) => x.remoteAddress === '127.0.0.9')!;
        assert.equal(c.proxy?.address, '127.0.0.1', "the balancer's own address");
        assert.equal(c.proxy?.version, proxy === 'send-proxy' ? 1 : 2);
        assert.equal(c.localPort, front, 'the address the client connected to: the frontend');
        socket.destroy();
        // Health checks (LOCAL headers with v2) never failed the PROXY stage; those that reached a handler kept the socket's address.
        assert.equal(server.stats().proxyErrors, 0);
        for (const x of conns.filter((x) => x.proxy?.command === 'local')) assert.equal(x.remoteAddress, '127.0.0.1');
      } finally {
        await haproxy.stop();
        await stop(server);
      }
    });
  }

  it('maxConnectionsPerPeer: 2 caps each client address, not HAProxy', TEST, async () => {
    const { server } = await whoami({ maxConnectionsPerPeer: 2 });
    const front = await freePort();
    const haproxy = await Haproxy.start(config(front, portOf(server), 'send-proxy-v2'));
    try {
      await haproxy.waitStatus('be', 'tcpkit', 'UP');
      const a = await ask(front, '127.0.0.9', 'a');
      const b = await ask(front, '127.0.0.9', 'b');
      const third = net.connect({ host: '127.0.0.1', port: front, localAddress: '127.0.0.9' });
      third.on('error', () => {});
      third.write('c\n');
      await within(once(third, 'close'), 15_000, 'the third connection from 127.0.0.9 to be closed');
      await until(() => server.stats().rejected.perPeer === 1, 'the per-peer rejection counted');
      const other = await ask(front, '127.0.0.10', 'd');
      assert.match(other.reply, /^127\.0\.0\.10:\d+ d\n$/);
      for (const s of [a.socket, b.socket, other.socket]) s.destroy();
    } finally {
      await haproxy.stop();
      await stop(server);
    }
  });

  it('TLS passed through HAProxy with PROXY v2, terminated by tcpkit', TEST, async () => {
    const c = certs();
    const { server, conns } = await whoami({ tls: { key: c.serverKey, cert: c.serverCert } });
    const front = await freePort();
    const haproxy = await Haproxy.start(config(front, portOf(server), 'send-proxy-v2'));
    try {
      await haproxy.waitStatus('be', 'tcpkit', 'UP');
      const raw = net.connect({ host: '127.0.0.1', port: front, localAddress: '127.0.0.9' });
      const s = tls.connect({ socket: raw, ca: c.ca, servername: 'localhost' });
      await within(once(s, 'secureConnect'), 15_000, 'the handshake through haproxy');
      s.write('secret\n');
      const [data] = (await within(once(s, 'data'), 15_000, 'the reply')) as [Buffer];
      assert.equal(data.toString(), `127.0.0.9:${raw.localPort} secret\n`);
      assert.equal(conns.find((x) => x.remoteAddress === '127.0.0.9')?.tls?.servername, 'localhost');
      s.destroy();
      assert.equal(server.stats().proxyErrors, 0);
    } finally {
      await haproxy.stop();
      await stop(server);
    }
  });
});
