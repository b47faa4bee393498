import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net, { BlockList } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { type Conn, encodeProxyHeader, type ServeOptions, type Server, serve } from '../src/index.js';
import { isTrustedProxy, resolveProxyProtocol } from '../src/proxy-stage.js';
import { certs } from './fixtures/certs.js';
import { ChannelProbe, LOOPBACK, portOf, stop, until, within } from './helpers.js';

const TEST = { timeout: 30_000 };
const CLIENT = { address: '1.2.3.4', port: 5555 };
const DEST = { address: '10.0.0.1', port: 443 };

/** A server whose handler records its conn, sends back what it reads once, and ends. */
async function recording(options: ServeOptions): Promise<{ server: Server; conns: Conn[] }> {
  const conns: Conn[] = [];
  const server = await serve({ ...LOOPBACK, ...options }, async (conn) => {
    conns.push(conn);
    const chunk = await conn.read();
    await conn.end(chunk ?? 'eof');
  });
  return { server, conns };
}

/** Connects from `localAddress`, writes each of `writes` in turn (separate packets), and collects the reply until close. */
async function talk(port: number, writes: (Buffer | string)[], localAddress = '127.0.0.1'): Promise<string> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  s.on('error', () => {});
  await once(s, 'connect');
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  const closed = new Promise((resolve) => s.once('close', resolve));
  for (const w of writes) {
    s.write(w);
    // Let each write leave as its own segment, so the header arrives split.
    await new Promise((r) => setImmediate(r));
  }
  await within(closed, 10_000, 'the server to close');
  return Buffer.concat(chunks).toString();
}

const trusted = { proxyProtocol: { trusted: ['127.0.0.1'] } };

describe('proxyProtocol', () => {
  for (const version of [1, 2] as const) {
    it(
      `v${version}: conn addresses are the header's; bytes after it in the same packet are the stream's`,
      TEST,
      async () => {
        const { server, conns } = await recording(trusted);
        try {
          const header = encodeProxyHeader(version, CLIENT, DEST);
          assert.equal(await talk(portOf(server), [Buffer.concat([header, Buffer.from('hello')])]), 'hello');
          const c = conns[0]!;
          assert.deepEqual(
            [c.remoteAddress, c.remotePort, c.localAddress, c.localPort],
            ['1.2.3.4', 5555, '10.0.0.1', 443],
          );
          assert.equal(c.proxy?.address, '127.0.0.1');
          assert.equal(c.proxy?.version, version);
          assert.equal(c.proxy?.command, 'proxy');
        } finally {
          await stop(server);
        }
      },
    );
  }

  it('a header split across packets, byte by byte', TEST, async () => {
    const { server, conns } = await recording(trusted);
    try {
      const header = encodeProxyHeader(2, CLIENT, DEST);
      const pieces = [...header].map((b) => Buffer.from([b]));
      assert.equal(await talk(portOf(server), [...pieces, 'after']), 'after');
      assert.equal(conns[0]!.remoteAddress, '1.2.3.4');
    } finally {
      await stop(server);
    }
  });

  it('v2 LOCAL (a health check) keeps the socket addresses', TEST, async () => {
    const { server, conns } = await recording(trusted);
    try {
      const local = Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex');
      assert.equal(await talk(portOf(server), [local, 'ping']), 'ping');
      assert.equal(conns[0]!.remoteAddress, '127.0.0.1');
      assert.equal(conns[0]!.proxy?.command, 'local');
    } finally {
      await stop(server);
    }
  });

  it(
    'spoofing: an untrusted peer (127.0.0.3) sending a well-formed header is closed, its handler never runs',
    TEST,
    async () => {
      const probe = new ChannelProbe<{ remoteAddress: string; remotePort: number; error: Error & { code: string } }>(
        'tcpkit:proxy:error',
      );
      for (const required of [true, false]) {
        const { server, conns } = await recording({ proxyProtocol: { trusted: ['127.0.0.1'], required } });
        try {
          const spoof = encodeProxyHeader(1, { address: '1.2.3.4', port: 1 }, DEST);
          assert.equal(await talk(portOf(server), [spoof, 'x'], '127.0.0.3'), '');
          assert.equal(conns.length, 0, `required ${required}: no handler`);
          assert.equal(server.stats().proxyErrors, 1);
          const m = await probe.next((x) => x.remoteAddress === '127.0.0.3' && x.error.code === 'ERR_PROXY_PROTOCOL');
          assert.match(m.error.message, /127\.0\.0\.3, which is not in proxyProtocol\.trusted/);
          assert.ok(Number.isInteger(m.remotePort) && m.remotePort > 0, `the sender's port: ${m.remotePort}`);
          probe.messages.length = 0;
        } finally {
          await stop(server);
        }
      }
      probe.stop();
    },
  );

  it('required: false serves direct clients without a header, with their socket addresses', TEST, async () => {
    const { server, conns } = await recording({ proxyProtocol: { trusted: ['127.0.0.1'], required: false } });
    try {
      assert.equal(await talk(portOf(server), ['plain'], '127.0.0.5'), 'plain');
      assert.equal(conns[0]!.remoteAddress, '127.0.0.5');
      assert.equal(conns[0]!.proxy, null);
      assert.equal(await talk(portOf(server), ['also plain']), 'also plain', 'a trusted peer may omit it too');
    } finally {
      await stop(server);
    }
  });

  const failures: [string, (Buffer | string)[], RegExp, ServeOptions['proxyProtocol']?][] = [
    ['a trusted peer without a header', ['GET /\r\n'], /sent no PROXY header/],
    ['a malformed header', ['PROXY TCP4 1.2.3.4 nope 1 2\r\n'], /destination address is not an ipv4/],
    ['a truncated header then FIN', ['PROXY TCP4 1.2.3.4'], /ended before the PROXY header was complete/],
    [
      'a header not complete within the timeout',
      [encodeProxyHeader(2, CLIENT, DEST).subarray(0, 20)],
      /within proxyProtocol.timeout \(200 ms\)/,
      { trusted: ['127.0.0.1'], timeout: 200 },
    ],
  ];
  for (const [name, writes, message, pp] of failures) {
    it(`${name} is closed with ERR_PROXY_PROTOCOL`, TEST, async () => {
      const probe = new ChannelProbe<{ remoteAddress: string; remotePort: number; error: Error }>('tcpkit:proxy:error');
      const { server, conns } = await recording({ proxyProtocol: pp ?? trusted.proxyProtocol });
      try {
        const s = net.connect(portOf(server), '127.0.0.1');
        s.on('error', () => {});
        let localPort = 0;
        s.once('connect', () => {
          localPort = s.localPort!;
        });
        const closed = new Promise((resolve) => s.once('close', resolve));
        for (const w of writes) s.write(w);
        if (/FIN/.test(name)) s.end();
        const m = await probe.next(() => true, 10_000);
        assert.match(m.error.message, message);
        // The socket that sent it (the balancer's own), as the log's `peer` gives it.
        assert.deepEqual([m.remoteAddress, m.remotePort], ['127.0.0.1', localPort]);
        await within(closed, 10_000, 'the close');
        assert.equal(conns.length, 0);
        assert.equal(server.stats().proxyErrors, 1);
      } finally {
        probe.stop();
        await stop(server);
      }
    });
  }

  it('blockList and maxConnectionsPerPeer apply to the real client address', TEST, async () => {
    const blockList = new BlockList();
    blockList.addAddress('6.6.6.6');
    const held: (() => void)[] = [];
    const server = await serve(
      { ...LOOPBACK, ...trusted, blockList, maxConnectionsPerPeer: 2 },
      (conn) => new Promise<void>((resolve) => held.push(() => conn.end('bye').then(resolve, resolve))),
    );
    try {
      const from = (address: string, port: number): net.Socket => {
        const s = net.connect(portOf(server), '127.0.0.1');
        s.on('error', () => {});
        s.write(encodeProxyHeader(2, { address, port }, DEST));
        return s;
      };
      const a1 = from('1.1.1.1', 1);
      const a2 = from('1.1.1.1', 2);
      await until(() => server.stats().active === 2, 'two handlers from 1.1.1.1');
      const a3 = from('1.1.1.1', 3);
      await within(once(a3, 'close'), 10_000, 'the third from 1.1.1.1 closed');
      assert.equal(server.stats().rejected.perPeer, 1);
      const b1 = from('2.2.2.2', 1);
      await until(() => server.stats().active === 3, 'another client address admitted, all through one balancer');
      const blocked = from('6.6.6.6', 1);
      await within(once(blocked, 'close'), 10_000, 'the blocked client closed');
      assert.equal(server.stats().rejected.blocked, 1);
      for (const release of held) release();
      for (const s of [a1, a2, b1]) s.destroy();
    } finally {
      await stop(server);
    }
  });

  it('a blocked balancer is not read at all', TEST, async () => {
    const blockList = new BlockList();
    blockList.addAddress('127.0.0.1');
    const { server } = await recording({ ...trusted, blockList });
    try {
      assert.equal(await talk(portOf(server), [encodeProxyHeader(1, CLIENT, DEST)]), '');
      assert.equal(server.stats().rejected.blocked, 1);
      assert.equal(server.stats().proxyErrors, 0);
    } finally {
      await stop(server);
    }
  });

  it('the header first and TLS after it, in one packet with the ClientHello', TEST, async () => {
    const c = certs();
    const { server, conns } = await recording({ ...trusted, tls: { key: c.serverKey, cert: c.serverCert } });
    try {
      const raw = net.connect(portOf(server), '127.0.0.1');
      await once(raw, 'connect');
      // Corked: the header and the ClientHello leave together, so the PROXY stage reads TLS bytes too.
      raw.cork();
      raw.write(encodeProxyHeader(2, CLIENT, DEST));
      const s = tls.connect({ socket: raw, ca: c.ca, servername: 'localhost' });
      process.nextTick(() => raw.uncork());
      await once(s, 'secureConnect');
      s.write('secret');
      const [reply] = (await once(s, 'data')) as [Buffer];
      assert.equal(reply.toString(), 'secret');
      assert.equal(conns[0]!.remoteAddress, '1.2.3.4');
      assert.equal(conns[0]!.tls?.protocol, 'TLSv1.3');
      s.destroy();
    } finally {
      await stop(server);
    }
  });

  // Before its handler a socket has no connection listening to it: a reset then must be ignored, not crash.
  for (const stage of ['PROXY header', 'TLS handshake'] as const) {
    it(`a peer that resets during the ${stage} is dropped; the next one is served`, TEST, async () => {
      const c = certs();
      const withTls = stage === 'TLS handshake';
      const { server } = await recording({
        ...trusted,
        ...(withTls ? { tls: { key: c.serverKey, cert: c.serverCert } } : {}),
      });
      try {
        const port = portOf(server);
        const header = encodeProxyHeader(2, CLIENT, DEST);
        const raw = net.connect(port, '127.0.0.1');
        await once(raw, 'connect');
        // A whole header puts the socket past the gate into the handshake; half of one keeps it in the PROXY stage.
        raw.write(withTls ? header : header.subarray(0, 8));
        await until(() => server.stats().accepted === 1, 'the server to accept it');
        if (withTls) await until(() => server.stats().descriptors.open === 1, 'the socket to reach the handshake');
        raw.resetAndDestroy();
        const next = net.connect(port, '127.0.0.1');
        await once(next, 'connect');
        next.write(header);
        const s = withTls ? tls.connect({ socket: next, ca: c.ca, servername: 'localhost' }) : next;
        if (withTls) await once(s, 'secureConnect');
        s.write('next');
        const [reply] = (await within(once(s, 'data'), 10_000, 'the echo')) as [Buffer];
        assert.equal(reply.toString(), 'next');
        assert.equal(server.stats().served, 1, 'only the second one reached its handler');
        s.destroy();
      } finally {
        await stop(server);
      }
    });
  }

  it(
    'a socket reading its header holds a descriptor in the budget: until the header, its failure or the peer leaving',
    TEST,
    async () => {
      const { server } = await recording({ proxyProtocol: { trusted: ['127.0.0.1'], timeout: 0 } });
      const clients: net.Socket[] = [];
      try {
        const port = portOf(server);
        const open = async (): Promise<net.Socket> => {
          const s = net.connect({ host: '127.0.0.1', port });
          s.on('error', () => {});
          clients.push(s);
          await once(s, 'connect');
          return s;
        };
        const [a, b] = [await open(), await open()];
        await until(() => server.stats().accepted === 2, 'both accepted');
        assert.equal(server.stats().descriptors.open, 2, 'two sockets wait for their header, each holds a descriptor');
        // The header comes: the same descriptor is the served connection's, counted once.
        const replied = once(a, 'data');
        a.write(Buffer.concat([encodeProxyHeader(2, CLIENT, DEST), Buffer.from('x')]));
        assert.equal(String((await within(replied, 10_000, 'the reply'))[0]), 'x');
        assert.ok(server.stats().descriptors.open <= 2);
        // A peer that leaves before its header gives its descriptor back; gone before its first byte, it
        // refused no header: turned away as abandoned (a health check's connect and close), not a proxy error.
        b.destroy();
        await until(() => server.stats().rejected.abandoned === 1, 'the header-less peer counted');
        assert.equal(server.stats().proxyErrors, 0);
        a.destroy();
        await until(() => server.stats().descriptors.open === 0, 'every descriptor given back');
      } finally {
        for (const c of clients) c.destroy();
        await stop(server);
      }
    },
  );

  it('a header not complete within proxyProtocol.timeout gives its descriptor back', TEST, async () => {
    const { server } = await recording({ proxyProtocol: { trusted: ['127.0.0.1'], timeout: 200 } });
    const s = net.connect({ host: '127.0.0.1', port: portOf(server) });
    s.on('error', () => {});
    try {
      await once(s, 'connect');
      await within(once(s, 'close'), 10_000, 'the server to close the header-less connection');
      await until(() => server.stats().proxyErrors === 1, 'the timeout counted');
      assert.equal(server.stats().descriptors.open, 0);
    } finally {
      s.destroy();
      await stop(server);
    }
  });

  it('trusted as a list: each peer is looked up once and answered the same after', () => {
    const o = resolveProxyProtocol({ trusted: ['10.0.0.0/8', '::1'] })!;
    for (let round = 0; round < 2; round++) {
      assert.equal(isTrustedProxy(o, '10.1.2.3'), true);
      assert.equal(isTrustedProxy(o, '::1'), true);
      assert.equal(isTrustedProxy(o, '11.1.2.3'), false);
      assert.equal(isTrustedProxy(o, '::2'), false);
    }
    // More peers than it remembers: it starts over and still answers from the list.
    for (let i = 0; i < 3000; i++) assert.equal(isTrustedProxy(o, `10.0.${i >> 8}.${i & 255}`), true);
    assert.equal(isTrustedProxy(o, '11.1.2.3'), false);
  });

  it(
    "trusted as the caller's BlockList: asked at every connection, so an address added later is trusted",
    TEST,
    async () => {
      const list = new BlockList();
      list.addAddress('127.0.0.2');
      const { server, conns } = await recording({ proxyProtocol: { trusted: list } });
      const header = encodeProxyHeader(2, CLIENT, DEST);
      try {
        assert.equal(await talk(portOf(server), [header, 'hi']), '');
        assert.equal(conns.length, 0, 'not trusted yet: the handler never ran');
        list.addAddress('127.0.0.1');
        assert.equal(await talk(portOf(server), [header, 'hi']), 'hi');
        assert.equal(conns[0]?.remoteAddress, CLIENT.address);
      } finally {
        await stop(server);
      }
    },
  );

  it('options: proxyProtocol is validated at serve()', TEST, async () => {
    const bad: [unknown, RegExp][] = [
      [{}, /proxyProtocol.trusted: must name the load balancers/],
      [{ trusted: [] }, /proxyProtocol.trusted: must name/],
      [{ trusted: ['10.0.0.0/33'] }, /"10.0.0.0\/33" is not an IP address or CIDR/],
      [{ trusted: ['example.com'] }, /is not an IP address/],
      [{ trusted: ['::1'], timeout: -1 }, /proxyProtocol.timeout/],
      [{ trusted: ['::1'], required: 'yes' }, /proxyProtocol.required: must be a boolean/],
      [{ trusted: ['::1'], trust: 1 }, /proxyProtocol.trust: is not a known option/],
      ['yes', /proxyProtocol: must be an object/],
    ];
    for (const [pp, message] of bad) {
      await assert.rejects(
        serve({ proxyProtocol: pp as ServeOptions['proxyProtocol'] }, () => {}),
        {
          code: 'ERR_INVALID_OPTION',
          message,
        },
      );
    }
    const list = new BlockList();
    list.addSubnet('10.0.0.0', 8);
    const ok = await serve({ ...LOOPBACK, proxyProtocol: { trusted: list } }, () => {});
    await stop(ok);
  });

  it(
    'options: proxyProtocol on a unix socket is refused, not ignored (the header reached the handler as data)',
    TEST,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tcpkit-pp-'));
      let handlers = 0;
      try {
        const served = serve({ path: join(dir, 's.sock'), proxyProtocol: { trusted: ['127.0.0.1'] } }, () => {
          handlers++;
        });
        await assert.rejects(
          // Served anyway (the bug): stopped, so the assertion fails instead of the server holding the test.
          served.then(async (server) => {
            await stop(server);
            return server;
          }),
          { code: 'ERR_INVALID_OPTION', message: /proxyProtocol: .*unix socket/ },
        );
        assert.equal(handlers, 0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
