import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { serve } from 'tcpkit';
import { certs, selfSignedLocalhost } from '../../tcpkit/test/fixtures/certs.js';
import { Child, within } from '../../tcpkit/test/helpers.js';
import { runBench } from '../src/loadgen/runner.js';
import { needs } from './integration/kv-helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SLOW = { timeout: 60_000 };

function tcpkit(...args: string[]): Child {
  return new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
}

async function listening(proc: Child): Promise<number> {
  const line = await proc.line((l) => l.includes('"msg":"listening"'), 'the listening line', 30_000);
  const m = /^127\.0\.0\.1:(\d+)$/.exec(String((JSON.parse(line) as { address: unknown }).address));
  assert.ok(m, `an address in ${JSON.stringify(line)}`);
  return Number(m[1]);
}

/** Connects over TLS trusting the test CA; resolves with the socket once the handshake is done. */
async function handshake(port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  const s = tls.connect({ host: '127.0.0.1', port, ca: certs().ca, servername: 'localhost', ...options });
  await within(once(s, 'secureConnect'), 20_000, 'the TLS handshake');
  return s;
}

describe('tcpkit serve with TLS flags', () => {
  it('--tls-cert/--tls-key serve TLS; SIGHUP re-reads the files', SLOW, async () => {
    const c = certs();
    const dir = mkdtempSync(join(tmpdir(), 'tcpkit-cli-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    copyFileSync(c.files.serverCert, cert);
    copyFileSync(c.files.serverKey, key);
    const proc = tcpkit(
      'serve',
      'echo',
      '--port',
      '0',
      '--tls-cert',
      cert,
      '--tls-key',
      key,
      '--handshake-timeout',
      '5s',
    );
    try {
      const port = await listening(proc);
      const first = await handshake(port);
      first.write('over tls');
      const [echo] = (await within(once(first, 'data'), 20_000, 'the echo')) as [Buffer];
      assert.equal(echo.toString(), 'over tls');
      const before = first.getPeerCertificate().fingerprint256;
      first.destroy();
      // Rotate: a new certificate in the same files, then SIGHUP.
      const fresh = selfSignedLocalhost(dir);
      copyFileSync(fresh.cert, cert);
      copyFileSync(fresh.key, key);
      proc.signal('SIGHUP');
      await proc.line((l) => l.includes('reloaded TLS certificate'), 'the reload line', 20_000);
      const second = await handshake(port, { ca: [c.ca, await readText(cert)] });
      assert.notEqual(second.getPeerCertificate().fingerprint256, before);
      second.destroy();
      // A broken file keeps the old certificate and says so, at error, naming the flag and the file.
      copyFileSync(c.files.ca, key);
      proc.signal('SIGHUP');
      const failed = JSON.parse(
        await proc.line((l) => l.includes('reload failed, keeping the previous one'), 'the failed reload line', 20_000),
      ) as { level: number; flag: string; file: string; err: string };
      assert.equal(failed.level, 50, 'pino level 50: error');
      assert.equal(failed.flag, '--tls-key');
      assert.equal(failed.file, key);
      assert.match(failed.err, /^--tls-key .*key\.pem: not a PEM private key/);
      (await handshake(port, { ca: [c.ca, await readText(cert)] })).destroy();
      proc.signal('SIGTERM');
      assert.equal((await within(proc.exited, 30_000, 'exit')).code, 0);
    } finally {
      proc.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--tls-client-auth with --tls-ca requires a client certificate from that CA', SLOW, async () => {
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
      '--tls-ca',
      c.files.ca,
      '--tls-client-auth',
    );
    try {
      const port = await listening(proc);
      const good = await handshake(port, { key: c.clientKey, cert: c.clientCert });
      good.write('me');
      const [echo] = (await within(once(good, 'data'), 20_000, 'the echo')) as [Buffer];
      assert.equal(echo.toString(), 'me');
      good.destroy();
      const anonymous = tls.connect({ host: '127.0.0.1', port, ca: c.ca, servername: 'localhost' });
      anonymous.on('error', () => {});
      anonymous.write('me?');
      const got: Buffer[] = [];
      anonymous.on('data', (d: Buffer) => got.push(d));
      await within(new Promise((r) => anonymous.once('close', r)), 20_000, 'the refusal');
      assert.equal(Buffer.concat(got).length, 0);
    } finally {
      proc.kill();
    }
  });

  it('redis-cli --tls talks to tcpkit serve kv --tls-cert ...', { ...SLOW, skip: needs('redis-cli') }, async () => {
    const c = certs();
    const proc = tcpkit('serve', 'kv', '--port', '0', '--tls-cert', c.files.serverCert, '--tls-key', c.files.serverKey);
    try {
      const port = await listening(proc);
      const run = (...args: string[]): Promise<string> =>
        new Promise((resolve, reject) =>
          execFile(
            'redis-cli',
            ['--tls', '--cacert', c.files.ca, '--sni', 'localhost', '-h', '127.0.0.1', '-p', String(port), ...args],
            { timeout: 20_000 },
            (error, stdout) => (error ? reject(error) : resolve(stdout.trim())),
          ),
        );
      assert.equal(await run('SET', 'k', 'over tls'), 'OK');
      assert.equal(await run('GET', 'k'), 'over tls');
    } finally {
      proc.kill();
    }
  });

  const refused: [string, string[], RegExp][] = [
    [
      '--proxy-protocol without a trusted proxy',
      ['--proxy-protocol'],
      /--proxy-protocol needs at least one --trusted-proxy/,
    ],
    [
      '--trusted-proxy without --proxy-protocol',
      ['--trusted-proxy', '10.0.0.0/8'],
      /--trusted-proxy applies with --proxy-protocol/,
    ],
    [
      'a bad --trusted-proxy',
      ['--proxy-protocol', '--trusted-proxy', '10.0.0.0/99'],
      /--trusted-proxy: "10.0.0.0\/99"/,
    ],
    ['--tls-cert without --tls-key', ['--tls-cert', 'x.pem'], /--tls-cert and --tls-key go together/],
    [
      '--tls-client-auth without --tls-ca',
      ['--tls-cert', 'a', '--tls-key', 'b', '--tls-client-auth'],
      /needs --tls-ca/,
    ],
    [
      // It looks like mutual TLS and would require nothing: every client, with a certificate or without, served.
      '--tls-ca without --tls-client-auth',
      ['--tls-cert', 'a', '--tls-key', 'b', '--tls-ca', 'c'],
      /--tls-ca applies with --tls-client-auth/,
    ],
    [
      'a missing certificate file',
      ['--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.key'],
      /--tls-cert \/nonexistent.pem/,
    ],
    ['--handshake-timeout without TLS', ['--handshake-timeout', '5s'], /--handshake-timeout needs --tls-cert/],
  ];
  for (const [name, flags, message] of refused) {
    it(`refuses ${name}`, SLOW, async () => {
      const proc = tcpkit('serve', 'echo', '--port', '0', ...flags);
      try {
        const exit = await within(proc.exited, 30_000, 'the CLI to exit');
        assert.notEqual(exit.code, 0);
        assert.match(proc.stderr, message);
      } finally {
        proc.kill();
      }
    });
  }
});

async function readText(path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(path, 'utf8');
}

describe('tcpkit bench --tls and --proxy-protocol', () => {
  for (const [name, options] of [
    ['echo over TLS with a v2 header, verified', { mode: 'echo', tls: true, proxyProtocol: 2, verify: true }],
    [
      'churn over TLS with session resumption and a v1 header',
      { mode: 'churn', tls: true, tlsResume: true, proxyProtocol: 1 },
    ],
    ['echo with a v1 header, no TLS', { mode: 'echo', proxyProtocol: 1, verify: true }],
  ] as const) {
    it(name, SLOW, async () => {
      const c = certs();
      const peers = new Set<string>();
      let resumed = 0;
      const secure = 'tls' in options;
      const server = await serve(
        {
          host: '127.0.0.1',
          port: 0,
          // The generator is the balancer here: it connects from 127.0.0.9 and names itself in the header.
          proxyProtocol: { trusted: ['127.0.0.9'] },
          ...(secure ? { tls: { key: c.serverKey, cert: c.serverCert } } : {}),
        },
        async (conn) => {
          peers.add(`${conn.remoteAddress} v${conn.proxy?.version}`);
          if (conn.tls?.resumed) resumed++;
          for await (const chunk of conn) await conn.write(chunk);
        },
      );
      try {
        const result = await runBench({
          port: (server.address as { port: number }).port,
          connections: 4,
          durationMs: 500,
          warmupMs: 0,
          sourceAddresses: ['127.0.0.9'],
          ...options,
        });
        assert.ok(
          result.messages > 0,
          `messages completed: ${JSON.stringify(result.connections)} ${JSON.stringify(result.errors)}`,
        );
        assert.equal(result.errorsTotal, 0, JSON.stringify(result.errors));
        assert.deepEqual([...peers], [`127.0.0.9 v${options.proxyProtocol}`], 'the header carried the client address');
        assert.equal(server.stats().proxyErrors, 0);
        if ('tlsResume' in options) {
          assert.ok(resumed > 0, 'sessions were resumed');
          // The generator counts what the server resumed, as the server saw it (its handler may still run).
          assert.ok(result.connections.resumed > 0 && result.connections.resumed < result.connections.established);
        } else {
          assert.equal(result.connections.resumed, 0, 'no session offered, none resumed');
        }
      } finally {
        await server.shutdown({ timeout: 2000 });
      }
    });
  }
});

describe('tcpkit bench --proxy-protocol as a process', () => {
  for (const version of ['v1', 'v2'] as const) {
    it(`--proxy-protocol ${version}: the server trusting the generator's address reads its header`, SLOW, async () => {
      const seen = new Set<string>();
      const server = await serve(
        { host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.9'] } },
        async (conn) => {
          // The header names the connection's own addresses: the client is the balancer here.
          seen.add(
            `${conn.remoteAddress} v${conn.proxy?.version} from ${conn.proxy?.address} same port ${conn.remotePort === conn.proxy?.port}`,
          );
          for await (const chunk of conn) await conn.write(chunk);
        },
      );
      try {
        const port = (server.address as { port: number }).port;
        const run = benchProcess(
          ['--port', String(port), '--connections', '2', '--duration', '500ms', '--warmup', '0s'],
          ['--source-addresses', '127.0.0.9', '--proxy-protocol', version, '--verify'],
        );
        const { code, stdout, stderr } = await within(run, 60_000, 'tcpkit bench');
        assert.equal(code, 0, stderr);
        const result = JSON.parse(stdout) as { messages: number; errorsTotal: number };
        assert.ok(result.messages > 0, stdout);
        assert.equal(result.errorsTotal, 0, stdout);
        assert.deepEqual([...seen], [`127.0.0.9 v${version.slice(1)} from 127.0.0.9 same port true`]);
        assert.equal(server.stats().proxyErrors, 0);
      } finally {
        await server.shutdown({ timeout: 2000 });
      }
    });
  }

  it('--proxy-protocol v3 is refused: exit 2, naming the flag and the versions it takes', SLOW, async () => {
    const { code, stdout, stderr } = await within(
      benchProcess(['--port', '1'], ['--proxy-protocol', 'v3']),
      60_000,
      'tcpkit bench',
    );
    assert.equal(code, 2);
    assert.equal(stdout, '');
    assert.match(stderr, /^tcpkit: option '--proxy-protocol <v1\|v2>' argument 'v3' is invalid\. expected v1 or v2\n/);
  });
});

/** Runs `tcpkit bench --json --quiet` as a process; resolves with its exit code and output. */
async function benchProcess(...args: string[][]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = new Child(process.execPath, ['--import', 'tsx', MAIN, 'bench', '--json', '--quiet', ...args.flat()]);
  const { code } = await child.exited;
  return { code, stdout: child.lines.join('\n'), stderr: child.stderr };
}
