// The CLI's answers to a user's mistakes that the other CLI tests do not cover.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { certs } from '../../tcpkit/test/fixtures/certs.js';
import { Child, within } from '../../tcpkit/test/helpers.js';
import { renegotiate } from '../../tcpkit/test/tls-client.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SLOW = { timeout: 40_000 };

function tcpkit(...args: string[]): Child {
  return new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
}

type LogLine = { msg: string; peer?: string; code?: string; err?: { message: string; cause?: { message: string } } };

async function listening(proc: Child): Promise<number> {
  const line = await proc.line((l) => l.includes('"msg":"listening"'), 'the listening line', 30_000);
  return Number(/:(\d+)$/.exec(String((JSON.parse(line) as { address: unknown }).address))?.[1]);
}

/** Sends `bytes` and waits for the server to close the connection; resolves with the client's port. */
async function refusedAfter(port: number, bytes: string): Promise<number> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  s.resume();
  await within(once(s, 'connect'), 20_000, 'the connection');
  const localPort = s.localPort!;
  s.end(bytes);
  await within(once(s, 'close'), 20_000, 'the server to close');
  return localPort;
}

describe('tcpkit serve: an admin port in use', () => {
  it('exit 1 and one line naming --admin-port, as for --port', SLOW, async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    const proc = tcpkit('serve', 'echo', '--port', '0', '--admin-port', String(port));
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 1, proc.stderr);
      assert.equal(
        proc.stderr,
        `tcpkit: admin port ${port} is in use on 127.0.0.1; choose another with --admin-port\n`,
      );
    } finally {
      proc.kill();
      taken.close();
    }
  });
});

/**
 * Runs `tcpkit serve echo` at debug level with `flags`, sends `bytes` on one connection, and returns the
 * JSON log line whose message is `msg`; then checks the server drains and exits 0 at SIGTERM.
 */
async function refusalLogged(flags: string[], bytes: string, msg: string): Promise<LogLine & { clientPort: number }> {
  const proc = tcpkit('serve', 'echo', '--port', '0', '--log-level', 'debug', '--log-format', 'json', ...flags);
  try {
    const port = await listening(proc);
    const clientPort = await refusedAfter(port, bytes);
    const line = JSON.parse(await proc.line((l) => l.includes(`"msg":"${msg}"`), msg, 20_000)) as LogLine;
    proc.signal('SIGTERM');
    assert.equal((await within(proc.exited, 30_000, 'exit')).code, 0);
    return { ...line, clientPort };
  } finally {
    proc.kill();
  }
}

describe('tcpkit serve --log-level debug: connections refused before any handler say why', () => {
  it(
    'a failed TLS handshake is logged with ERR_TLS_HANDSHAKE, the peer as ip:port, its message once, the cause nested',
    SLOW,
    async () => {
      const c = certs();
      const tlsFlags = ['--tls-cert', c.files.serverCert, '--tls-key', c.files.serverKey];
      const line = await refusalLogged(tlsFlags, 'GET / HTTP/1.0\r\n\r\n', 'TLS handshake failed');
      assert.equal(line.code, 'ERR_TLS_HANDSHAKE');
      assert.equal(line.peer, `127.0.0.1:${line.clientPort}`, "the client's address and port");
      const cause = line.err?.cause?.message ?? '';
      assert.ok(cause.length > 0, JSON.stringify(line.err));
      // pino's default serializer appended the cause's message to one that already ends with it.
      assert.equal(line.err?.message, `TLS handshake failed: ${cause}`);
    },
  );

  it(
    'a refused PROXY header is logged with ERR_PROXY_PROTOCOL, the peer as ip:port, and what was wrong',
    SLOW,
    async () => {
      const proxyFlags = ['--proxy-protocol', '--trusted-proxy', '127.0.0.1'];
      const line = await refusalLogged(
        proxyFlags,
        'PROXY TCP4 10.0.0.1 127.0.0.1 99999 80\r\n',
        'PROXY header refused',
      );
      assert.equal(line.code, 'ERR_PROXY_PROTOCOL');
      assert.equal(line.peer, `127.0.0.1:${line.clientPort}`, "the sending socket's address and port");
      assert.match(line.err?.message ?? '', /source port must be a decimal from 0 to 65535, got "99999"/);
    },
  );
});

describe('tcpkit serve --tls-cert: client-initiated renegotiation', () => {
  it(
    'is refused (ERR_SSL_NO_RENEGOTIATION at the client), after a SIGHUP reload too; others are served',
    SLOW,
    async () => {
      const c = certs();
      const proc = tcpkit(
        'serve',
        'echo',
        '--port',
        '0',
        '--tls-cert',
        c.files.serverCert,
        '--tls-key',
        c.files.serverKey,
      );
      try {
        const port = await listening(proc);
        const honest = tls.connect({ host: '127.0.0.1', port, ca: c.ca, servername: 'localhost' });
        await within(once(honest, 'secureConnect'), 20_000, 'the honest handshake');
        assert.equal(await renegotiate(port), 'ERR_SSL_NO_RENEGOTIATION');
        proc.signal('SIGHUP');
        await proc.line((l) => l.includes('reloaded TLS certificate'), 'the reload', 20_000);
        assert.equal(await renegotiate(port), 'ERR_SSL_NO_RENEGOTIATION');
        honest.write('still here');
        const [echo] = (await within(once(honest, 'data'), 20_000, 'the honest echo')) as [Buffer];
        assert.equal(echo.toString(), 'still here');
        honest.destroy();
        proc.signal('SIGTERM');
        assert.equal((await within(proc.exited, 30_000, 'exit')).code, 0);
      } finally {
        proc.kill();
      }
    },
  );
});
