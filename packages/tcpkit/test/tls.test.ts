import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { type Conn, encodeProxyHeader, lines, type ServeOptions, type Server, serve } from '../src/index.js';
import { certs, selfSignedLocalhost } from './fixtures/certs.js';
import { ChannelProbe, deferred, LOOPBACK, portOf, stop, until, within } from './helpers.js';
import { readAll, renegotiate, tlsConnect } from './tls-client.js';

const TEST = { timeout: 30_000 };

function tlsOptions(extra: ServeOptions['tls'] = {}): ServeOptions['tls'] {
  const c = certs();
  return { key: c.serverKey, cert: c.serverCert, ...extra };
}

async function lineEcho(options: ServeOptions = {}): Promise<{ server: Server; conns: Conn[] }> {
  const conns: Conn[] = [];
  const server = await serve({ ...LOOPBACK, tls: tlsOptions(), ...options }, async (conn) => {
    conns.push(conn);
    for await (const line of conn.frames(lines({ maxLength: 1024 }))) await conn.write(`${line}\n`);
  });
  return { server, conns };
}

/** The first bytes a TLS client sends (its ClientHello), captured from a real tls.connect. */
async function clientHello(): Promise<Buffer> {
  const sink = net.createServer();
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  const got = new Promise<Buffer>((resolve) => sink.once('connection', (s) => s.once('data', resolve)));
  const c = tls.connect({
    host: '127.0.0.1',
    port: (sink.address() as net.AddressInfo).port,
    rejectUnauthorized: false,
  });
  c.on('error', () => {});
  const hello = await within(got, 10_000, 'a ClientHello');
  c.destroy();
  sink.close();
  return hello;
}

describe('tls', () => {
  it(
    'serves a handler over TLS: frames and writes, with conn.tls telling protocol, cipher, ALPN and SNI',
    TEST,
    async () => {
      const { server, conns } = await lineEcho({ tls: tlsOptions({ ALPNProtocols: ['kv/1', 'h2'] }) });
      try {
        const s = await tlsConnect(portOf(server), { ALPNProtocols: ['kv/1'] });
        s.write('hello\nworld\n');
        s.end();
        assert.equal((await within(readAll(s), 10_000, 'the echo')).toString(), 'hello\nworld\n');
        const info = conns[0]!.tls!;
        assert.equal(info.protocol, 'TLSv1.3');
        assert.equal(info.alpnProtocol, 'kv/1');
        assert.equal(info.servername, 'localhost');
        assert.match(info.cipher.name, /AES|CHACHA/);
        assert.equal(info.peerCertificate, null);
        assert.equal(info.resumed, false);
        assert.equal(conns[0]!.proxy, null);
      } finally {
        await stop(server);
      }
    },
  );

  it('a plain server has conn.tls null', TEST, async () => {
    const got = deferred<Conn>();
    const server = await serve(LOOPBACK, (conn) => got.resolve(conn));
    try {
      const c = net.connect(portOf(server), '127.0.0.1');
      assert.equal((await within(got.promise, 10_000, 'the handler')).tls, null);
      c.destroy();
    } finally {
      await stop(server);
    }
  });

  it('writes larger than every buffer flow with backpressure, then end and a lingering close', TEST, async () => {
    const size = 4 * 1024 * 1024;
    const server = await serve({ ...LOOPBACK, tls: tlsOptions(), maxWriteBuffer: 64 * 1024 }, async (conn) => {
      const chunk = Buffer.alloc(256 * 1024, 7);
      for (let sent = 0; sent < size; sent += chunk.length) await conn.write(chunk);
      await conn.end();
      assert.equal(await conn.read(), null);
    });
    try {
      const s = await tlsConnect(portOf(server));
      // Read slowly at first, so the server's writes wait for the drain.
      s.pause();
      await until(() => s.readableLength > 0, 'the first bytes');
      const all = readAll(s);
      s.resume();
      s.end();
      const data = await within(all, 20_000, 'the whole response');
      assert.equal(data.length, size);
      assert.ok(data.every((b) => b === 7));
      await until(() => server.stats().active === 0, 'the handler to end');
      assert.equal(server.stats().errors, 0);
    } finally {
      await stop(server);
    }
  });

  it(
    'mutual TLS: a client certificate from the CA is accepted and shown; none, or a rogue one, is refused',
    TEST,
    async () => {
      const c = certs();
      const tlsErrors = new ChannelProbe<{ error: Error }>('tcpkit:tls:error');
      const { server, conns } = await lineEcho({
        tls: tlsOptions({ ca: c.ca, requestCert: true, rejectUnauthorized: true }),
      });
      try {
        const good = await tlsConnect(portOf(server), { key: c.clientKey, cert: c.clientCert });
        good.end('ping\n');
        assert.equal((await within(readAll(good), 10_000, 'the echo')).toString(), 'ping\n');
        assert.equal(conns[0]!.tls!.authorized, true);
        assert.equal(conns[0]!.tls!.peerCertificate?.subject.CN, 'tcpkit test client');

        for (const [what, options] of [
          ['no certificate', {}],
          ['a rogue certificate', { key: c.rogueKey, cert: c.rogueCert }],
        ] as const) {
          const before = server.stats().tlsErrors;
          const s = tls.connect({
            host: '127.0.0.1',
            port: portOf(server),
            ca: c.ca,
            servername: 'localhost',
            ...options,
          });
          s.on('error', () => {});
          s.write('ping\n');
          const data = await within(readAll(s), 10_000, `the refusal of ${what}`);
          assert.equal(data.length, 0, `${what}: nothing echoed`);
          await until(() => server.stats().tlsErrors === before + 1, `${what} counted`);
        }
        assert.equal(conns.length, 1, 'the refused clients never reached the handler');
        const rogue = await tlsErrors.next((m) => /client certificate rejected/.test(m.error.message));
        assert.equal((rogue.error as Error & { code: string }).code, 'ERR_TLS_HANDSHAKE');
      } finally {
        tlsErrors.stop();
        await stop(server);
      }
    },
  );

  it(
    'a ClientHello and then silence is cut by handshakeTimeout, counted, and never reaches the handler',
    TEST,
    async () => {
      const hello = await clientHello();
      const probe = new ChannelProbe<{ error: Error & { code: string } }>('tcpkit:tls:error');
      let handlers = 0;
      const server = await serve({ ...LOOPBACK, tls: tlsOptions(), handshakeTimeout: 300 }, () => {
        handlers++;
      });
      try {
        const s = net.connect(portOf(server), '127.0.0.1');
        s.write(hello);
        const closed = readAll(s);
        const m = await probe.next((x) => x.error.code === 'ERR_HANDSHAKE_TIMEOUT', 10_000);
        assert.match(m.error.message, /handshakeTimeout \(300 ms\)/);
        const data = await within(closed, 10_000, 'the close');
        assert.ok(data.length > 0, 'the server answered the ClientHello before it gave up');
        assert.equal(server.stats().timeouts.handshake, 1);
        assert.equal(server.stats().tlsErrors, 1);
        assert.equal(handlers, 0);
        assert.equal(server.stats().active, 0);
      } finally {
        probe.stop();
        await stop(server);
      }
    },
  );

  /**
   * A failed handshake closes only its own connection: `fail` breaks one raw connection's handshake
   * while a TLS connection is established, which still echoes afterwards; the handler ran once.
   */
  async function onlyThatConnection(fail: (raw: net.Socket) => Promise<void>): Promise<void> {
    const { server, conns } = await lineEcho();
    try {
      const live = await tlsConnect(portOf(server));
      live.write('before\n');
      await once(live, 'data');
      const raw = net.connect(portOf(server), '127.0.0.1');
      raw.on('error', () => {});
      await fail(raw);
      await until(() => server.stats().tlsErrors === 1, 'the failure counted');
      live.end('after\n');
      assert.equal((await within(readAll(live), 10_000, 'the live echo')).toString(), 'after\n');
      assert.equal(conns.length, 1);
      await until(() => server.stats().active === 0, 'nothing left open');
    } finally {
      await stop(server);
    }
  }

  it('garbage instead of a ClientHello closes only that connection', TEST, async () => {
    await onlyThatConnection(async (raw) => {
      raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await within(readAll(raw), 10_000, 'the garbage connection to close');
    });
  });

  it('a client reset in the middle of its handshake closes only that connection', TEST, async () => {
    const hello = await clientHello();
    await onlyThatConnection(async (raw) => {
      raw.write(hello);
      // The server answered (ServerHello...) and waits for the client's Finished: reset instead.
      await within(once(raw, 'data'), 10_000, "the server's answer");
      raw.resetAndDestroy();
    });
  });

  it(
    "tcpkit:tls:error carries the client's port: the socket's, or the PROXY header's behind a balancer",
    TEST,
    async () => {
      const probe = new ChannelProbe<{ remoteAddress: string; remotePort?: number; error: Error }>('tcpkit:tls:error');
      const direct = await serve({ ...LOOPBACK, tls: tlsOptions() }, () => {});
      const behind = await serve(
        { ...LOOPBACK, tls: tlsOptions(), proxyProtocol: { trusted: ['127.0.0.1'] } },
        () => {},
      );
      try {
        const raw = net.connect(portOf(direct), '127.0.0.1');
        raw.on('error', () => {});
        await once(raw, 'connect');
        const clientPort = raw.localPort;
        raw.end('GET / HTTP/1.1\r\n\r\n');
        const m = await probe.next(() => true, 10_000);
        assert.deepEqual([m.remoteAddress, m.remotePort], ['127.0.0.1', clientPort]);
        const header = encodeProxyHeader(2, { address: '10.1.2.3', port: 4567 }, { address: '127.0.0.1', port: 443 });
        const viaBalancer = net.connect(portOf(behind), '127.0.0.1');
        viaBalancer.on('error', () => {});
        viaBalancer.end(Buffer.concat([header, Buffer.from('GET / HTTP/1.1\r\n\r\n')]));
        const b = await probe.next((x) => x.remoteAddress === '10.1.2.3', 10_000);
        assert.equal(b.remotePort, 4567, "the header's source port");
      } finally {
        probe.stop();
        await stop(direct);
        await stop(behind);
      }
    },
  );

  it('setSecureContext: new handshakes get the new certificate, established connections go on', TEST, async () => {
    const c = certs();
    const { server } = await lineEcho();
    try {
      const old = await tlsConnect(portOf(server));
      const first = old.getPeerCertificate().fingerprint256;
      // A fresh self-signed certificate for localhost: different from the CA-signed one.
      const dir = mkdtempSync(join(tmpdir(), 'tcpkit-rotate-'));
      const files = selfSignedLocalhost(dir);
      const cert = readFileSync(files.cert, 'utf8');
      server.setSecureContext({ key: readFileSync(files.key), cert });
      rmSync(dir, { recursive: true, force: true });
      const fresh = await tlsConnect(portOf(server), { ca: [c.ca, cert] });
      assert.notEqual(fresh.getPeerCertificate().fingerprint256, first);
      old.end('still here\n');
      assert.equal((await within(readAll(old), 10_000, 'the old echo')).toString(), 'still here\n');
      fresh.destroy();
      assert.throws(() => server.setSecureContext({ key: 'nope', cert: 'nope' }), { code: 'ERR_INVALID_OPTION' });
    } finally {
      await stop(server);
    }
  });

  it(
    'session resumption: a second connection with the first one’s session skips the full handshake',
    TEST,
    async () => {
      const { server, conns } = await lineEcho();
      try {
        const first = await tlsConnect(portOf(server));
        const session = deferred<Buffer>();
        first.once('session', (s: Buffer) => session.resolve(s));
        first.write('a\n');
        await once(first, 'data');
        const ticket = await within(session.promise, 10_000, 'a session ticket');
        first.end();
        const second = await tlsConnect(portOf(server), { session: ticket });
        second.write('b\n');
        await once(second, 'data');
        assert.equal(second.isSessionReused(), true);
        assert.equal(conns[1]!.tls!.resumed, true);
        second.end();
      } finally {
        await stop(server);
      }
    },
  );

  it('openssl s_client talks to it', TEST, async () => {
    const { server } = await lineEcho();
    try {
      const child = spawn('openssl', [
        's_client',
        '-connect',
        `127.0.0.1:${portOf(server)}`,
        '-servername',
        'localhost',
        '-CAfile',
        certs().files.ca,
        '-verify_return_error',
        '-quiet',
      ]);
      let out = '';
      const echoed = new Promise<void>((resolve) =>
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('from openssl')) resolve();
        }),
      );
      child.stdin.write('from openssl\n');
      await within(echoed, 20_000, 'the echo through openssl s_client');
      child.kill();
      await once(child, 'exit');
      assert.match(out, /from openssl/);
    } finally {
      await stop(server);
    }
  });

  it("arms no socket timer of Node's own during a handshake: handshakeTimeout is the only limit", TEST, async () => {
    // tls.Server reads handshakeTimeout 0 as its default (120 s) and gives each TLS socket an inactivity
    // timer (socket.setTimeout) for the handshake: a second, relative limit under tcpkit's absolute one,
    // which would cut a handshake at 120 s of silence even with handshakeTimeout 0 (no limit).
    const armed: number[] = [];
    const setTimeout = net.Socket.prototype.setTimeout;
    net.Socket.prototype.setTimeout = function (this: net.Socket, ms: number, cb?: () => void) {
      if ((this as net.Socket & { _tlsOptions?: { isServer?: boolean } })._tlsOptions?.isServer) armed.push(ms);
      return setTimeout.call(this, ms, cb);
    } as typeof setTimeout;
    try {
      for (const handshakeTimeout of [0, 10_000]) {
        const { server } = await lineEcho({ handshakeTimeout });
        try {
          const s = await tlsConnect(portOf(server));
          s.end('hi\n');
          assert.equal((await within(readAll(s), 10_000, 'the echo')).toString(), 'hi\n');
        } finally {
          await stop(server);
        }
      }
    } finally {
      net.Socket.prototype.setTimeout = setTimeout;
    }
    assert.deepEqual(armed, []);
  });

  it('shutdown ends handshakes in progress', TEST, async () => {
    const hello = await clientHello();
    const server = await serve({ ...LOOPBACK, tls: tlsOptions(), handshakeTimeout: 0 }, () => {});
    const s = net.connect(portOf(server), '127.0.0.1');
    s.write(hello);
    await once(s, 'data');
    const closed = once(s, 'close');
    await stop(server);
    await within(closed, 10_000, 'the close');
    assert.equal(server.stats().tlsErrors, 0, 'not a TLS failure');
  });

  it(
    'shutdown ends every handshake in progress, after others finished before, between and after them',
    TEST,
    async () => {
      const hello = await clientHello();
      let handlers = 0;
      const server = await serve({ ...LOOPBACK, tls: tlsOptions(), handshakeTimeout: 0 }, async (conn) => {
        handlers++;
        await conn.end('hi');
      });
      try {
        // Handshakes in progress, in the order they start: done (finishes), stalled, done, stalled, stalled, done.
        const stalled: Promise<unknown>[] = [];
        const served: Promise<Buffer>[] = [];
        for (const finishes of [true, false, true, false, false, true]) {
          if (finishes) {
            served.push(tlsConnect(portOf(server)).then(readAll));
            continue;
          }
          const s = net.connect(portOf(server), '127.0.0.1');
          s.on('error', () => {});
          s.write(hello);
          await within(once(s, 'data'), 10_000, "the server's answer to a ClientHello");
          stalled.push(once(s, 'close'));
        }
        for (const got of await within(Promise.all(served), 10_000, 'the finished handshakes served')) {
          assert.equal(got.toString(), 'hi');
        }
        assert.equal(handlers, 3);
        await stop(server);
        await within(Promise.all(stalled), 10_000, 'every stalled handshake closed');
        assert.equal(server.stats().rejected.shutdown, 3, 'each stalled handshake ended by the shutdown, once');
        assert.equal(server.stats().tlsErrors, 0);
        assert.equal(server.stats().descriptors.open, 0);
      } finally {
        await stop(server);
      }
    },
  );

  it('handshakes that time out one by one leave the others to finish', TEST, async () => {
    const hello = await clientHello();
    const server = await serve({ ...LOOPBACK, tls: tlsOptions(), handshakeTimeout: 500 }, async (conn) => {
      await conn.end('hi');
    });
    try {
      const stalled: Promise<unknown>[] = [];
      for (let i = 0; i < 3; i++) {
        const s = net.connect(portOf(server), '127.0.0.1');
        s.on('error', () => {});
        s.write(hello);
        stalled.push(readAll(s));
        // One that finishes between each pair of stalled ones.
        assert.equal((await readAll(await tlsConnect(portOf(server)))).toString(), 'hi');
      }
      await within(Promise.all(stalled), 10_000, 'every stalled handshake cut');
      assert.equal(server.stats().timeouts.handshake, 3);
      assert.equal(server.stats().tlsErrors, 3);
      assert.equal(server.stats().served, 3);
      await until(() => server.stats().descriptors.open === 0, 'every descriptor given back');
    } finally {
      await stop(server);
    }
  });

  it(
    'a peer that sends FIN during the handshake frees its slot, per-peer count and descriptor at once',
    TEST,
    async () => {
      // No handshake deadline: before the fix the half-open TLS socket waited for it forever.
      const server = await serve(
        { ...LOOPBACK, tls: tlsOptions(), handshakeTimeout: 0, maxConnections: 1, maxConnectionsPerPeer: 1 },
        async (conn) => {
          await conn.end('hi');
        },
      );
      try {
        for (const sent of [Buffer.alloc(0), (await clientHello()).subarray(0, 3), await clientHello()]) {
          const s = net.connect(portOf(server), '127.0.0.1');
          s.on('error', () => {});
          await once(s, 'connect');
          s.end(sent);
          await until(() => server.stats().descriptors.open === 0, 'the descriptor given back', 10_000);
          s.destroy();
        }
        // A FIN before any byte is a peer that left (rejected.abandoned, below); the two with bytes failed.
        assert.equal(server.stats().tlsErrors, 2);
        assert.equal(server.stats().rejected.abandoned, 1);
        assert.equal(server.stats().timeouts.handshake, 0);
        // The slot and the per-peer count are free: a full handshake is served.
        const s = await tlsConnect(portOf(server));
        assert.equal((await readAll(s)).toString(), 'hi');
      } finally {
        await stop(server);
      }
    },
  );

  it(
    'a peer that leaves before its first TLS byte (a health check: connect, or a PROXY LOCAL header, then FIN or RST) is rejected.abandoned, not a failed handshake',
    TEST,
    async () => {
      const rejected = new ChannelProbe<{ server: Server; reason: string }>('tcpkit:connection:reject');
      const failed = new ChannelProbe<{ server: Server }>('tcpkit:tls:error');
      const direct = await serve({ ...LOOPBACK, tls: tlsOptions() }, () => {});
      const behind = await serve(
        { ...LOOPBACK, tls: tlsOptions(), proxyProtocol: { trusted: ['127.0.0.1'] } },
        () => {},
      );
      // What HAProxy's check-send-proxy sends before it closes: a v2 LOCAL header, no addresses.
      const local = Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex');
      try {
        for (const [server, first] of [
          [direct, Buffer.alloc(0)],
          [behind, local],
        ] as const) {
          for (const how of ['fin', 'rst'] as const) {
            const s = net.connect(portOf(server), '127.0.0.1');
            s.on('error', () => {});
            await once(s, 'connect');
            if (first.length > 0) await new Promise((resolve) => s.write(first, resolve));
            if (how === 'fin') s.end();
            else s.resetAndDestroy();
          }
          await rejected.next(
            () => rejected.messages.filter((m) => m.server === server && m.reason === 'abandoned').length === 2,
            10_000,
          );
          assert.equal(server.stats().rejected.abandoned, 2);
          assert.equal(server.stats().tlsErrors, 0, 'not counted as failed handshakes');
          assert.equal(
            failed.messages.filter((m) => m.server === server).length,
            0,
            'nothing published on tcpkit:tls:error',
          );
          await until(() => server.stats().descriptors.open === 0, 'the descriptors given back', 10_000);
        }
      } finally {
        rejected.stop();
        failed.stop();
        await stop(direct);
        await stop(behind);
      }
    },
  );

  it(
    'behind a balancer, at the cap: a connection whose ClientHello came while it waited completes its handshake once admitted',
    TEST,
    async () => {
      const server = await serve(
        { ...LOOPBACK, tls: tlsOptions(), proxyProtocol: { trusted: ['127.0.0.1'] }, maxConnections: 1 },
        async (conn) => {
          for await (const chunk of conn) await conn.write(chunk);
        },
      );
      const clients: net.Socket[] = [];
      /** A TLS client behind a PROXY v2 header from `port`: the header first, then the handshake. */
      const behind = (port: number): tls.TLSSocket => {
        const raw = net.connect(portOf(server), '127.0.0.1');
        raw.write(encodeProxyHeader(2, { address: '10.0.0.1', port }, { address: '127.0.0.1', port: 443 }));
        const s = tls.connect({ socket: raw, ca: certs().ca, servername: 'localhost' });
        clients.push(raw, s);
        return s;
      };
      try {
        const first = behind(1111);
        await within(once(first, 'secureConnect'), 10_000, 'the first handshake');
        const second = behind(2222);
        const secured = once(second, 'secureConnect');
        await until(() => server.stats().waiting === 1, 'the second connection waiting at the cap');
        first.end();
        await within(secured, 10_000, "the waiting connection's handshake, once admitted");
        second.end('after the wait');
        assert.equal((await within(readAll(second), 10_000, 'its echo')).toString(), 'after the wait');
        assert.equal(server.stats().tlsErrors, 0);
      } finally {
        for (const c of clients) c.destroy();
        await stop(server);
      }
    },
  );

  it(
    'refuses client-initiated renegotiation by default, after setSecureContext too; secureOptions: 0 allows it',
    TEST,
    async () => {
      const { server } = await lineEcho();
      try {
        assert.equal(await renegotiate(portOf(server)), 'ERR_SSL_NO_RENEGOTIATION');
        server.setSecureContext(tlsOptions()!);
        assert.equal(await renegotiate(portOf(server)), 'ERR_SSL_NO_RENEGOTIATION');
      } finally {
        await stop(server);
      }
      const allowing = await lineEcho({ tls: tlsOptions({ secureOptions: 0 }) });
      try {
        assert.equal(await renegotiate(portOf(allowing.server)), 'renegotiated');
      } finally {
        await stop(allowing.server);
      }
    },
  );

  it('options: tls is validated at serve()', TEST, async () => {
    await assert.rejects(
      serve({ tls: {} }, () => {}),
      { code: 'ERR_INVALID_OPTION', message: /tls: needs a certificate/ },
    );
    await assert.rejects(
      serve({ tls: { key: 'x', cert: 'y' } }, () => {}),
      { message: /tls: Node could not build/ },
    );
    await assert.rejects(
      serve({ tls: { ...tlsOptions(), handshakeTimeout: 5 } as ServeOptions['tls'] }, () => {}),
      {
        message: /tls.handshakeTimeout: set handshakeTimeout at the top level/,
      },
    );
    await assert.rejects(
      serve({ tls: tlsOptions(), handshakeTimeout: -1 }, () => {}),
      { message: /handshakeTimeout/ },
    );
    const plain = await serve(LOOPBACK, () => {});
    assert.throws(() => plain.setSecureContext(tlsOptions()!), { message: /needs a server started with tls/ });
    await stop(plain);
  });
});
