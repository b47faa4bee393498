/**
 * The CLI's certificate files: what `readCertificates` refuses (naming the flag and the file), and a
 * SIGHUP-style reload with a broken CA file keeping the old context, over real TLS connections.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { serve } from 'tcpkit';
import { certs } from '../../tcpkit/test/fixtures/certs.js';
import { Child, within } from '../../tcpkit/test/helpers.js';
import { type CertificateFiles, readCertificates, reloadCertificates } from '../src/tls-flags.js';

const TEST = { timeout: 30_000 };
const dir = mkdtempSync(join(tmpdir(), 'tcpkit-tls-flags-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe('readCertificates: each file is checked for what its flag needs', () => {
  const c = certs();
  const good: CertificateFiles = { cert: c.files.serverCert, key: c.files.serverKey, clientAuth: false };
  const cases: [string, Partial<CertificateFiles>, RegExp][] = [
    [
      'an empty --tls-ca',
      { ca: file('empty-ca.pem', ''), clientAuth: true },
      /--tls-ca .*empty-ca\.pem: no certificate/,
    ],
    ['a --tls-ca of garbage', { ca: file('junk-ca.pem', 'not a pem\n'), clientAuth: true }, /--tls-ca .*junk-ca\.pem/],
    [
      'a private key as --tls-ca',
      { ca: c.files.serverKey, clientAuth: true },
      /--tls-ca .*server\.key: no certificate/,
    ],
    [
      'a --tls-ca whose second certificate is cut short',
      { ca: file('cut-ca.pem', `${c.ca.toString()}-----BEGIN CERTIFICATE-----\nMIIB\n`), clientAuth: true },
      /--tls-ca .*cut-ca\.pem/,
    ],
    ['a --tls-cert of garbage', { cert: file('junk-cert.pem', 'hello\n') }, /--tls-cert .*junk-cert\.pem/],
    ['an empty --tls-cert', { cert: file('empty-cert.pem', '') }, /--tls-cert .*empty-cert\.pem: no certificate/],
    ['a --tls-key of garbage', { key: file('junk-key.pem', 'hello\n') }, /--tls-key .*junk-key\.pem/],
    ['a certificate as --tls-key', { key: c.files.serverCert }, /--tls-key .*server\.pem/],
    [
      'a --tls-key of another certificate',
      { key: c.files.clientKey },
      /--tls-key .*client\.key.* does not match --tls-cert/,
    ],
  ];
  for (const [name, files, message] of cases) {
    it(`refuses ${name}, naming the flag and the file`, TEST, () => {
      assert.throws(() => readCertificates({ ...good, ...files }), message);
    });
  }

  it('refuses an encrypted --tls-key, saying so (there is no passphrase flag)', TEST, () => {
    const encrypted = join(dir, 'encrypted.key');
    execFileSync('openssl', ['pkey', '-in', c.files.serverKey, '-aes256', '-passout', 'pass:x', '-out', encrypted], {
      stdio: 'ignore',
    });
    assert.throws(() => readCertificates({ ...good, key: encrypted }), /--tls-key .*encrypted\.key: .*encrypted/);
  });

  it('takes a certificate chain and a CA bundle of several certificates', TEST, () => {
    const chain = file('chain.pem', Buffer.concat([c.serverCert, c.ca]));
    const bundle = file('bundle.pem', Buffer.concat([c.ca, readFileSync(c.files.clientCert)]));
    const o = readCertificates({ ...good, cert: chain, ca: bundle, clientAuth: true });
    assert.equal(o.requestCert, true);
    tls.createSecureContext(o);
  });
});

/**
 * A CA file in each PEM label OpenSSL reads as a certificate. What Node itself does with each, as `ca` of a
 * server requiring client certificates (a real handshake), and that the CLI's check takes the same.
 */
describe('--tls-ca: every PEM label Node takes as a certificate', () => {
  const c = certs();
  const trustout = (name: string, ...extra: string[]): string => {
    const out = join(dir, name);
    execFileSync('openssl', ['x509', '-in', c.files.ca, '-trustout', ...extra, '-out', out], { stdio: 'ignore' });
    return out;
  };
  const relabel = (name: string, label: string): string =>
    file(name, c.ca.toString('latin1').replace(/(BEGIN|END) CERTIFICATE/g, `$1 ${label}`));

  /** Whether a server with `ca` from `path` authorizes the test client's certificate (Node alone, no tcpkit). */
  async function nodeAuthorizes(path: string): Promise<string> {
    const server = tls.createServer(
      { key: c.serverKey, cert: c.serverCert, ca: readFileSync(path), requestCert: true, rejectUnauthorized: false },
      (s) => s.end(s.authorized ? 'authorized' : `refused ${s.authorizationError}`),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const s = tls.connect({
        host: '127.0.0.1',
        port: (server.address() as { port: number }).port,
        ca: c.ca,
        servername: 'localhost',
        key: c.clientKey,
        cert: c.clientCert,
      });
      s.on('error', () => {});
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString();
      });
      await within(once(s, 'end'), 20_000, 'the answer');
      return got;
    } finally {
      server.close();
    }
  }

  const good: CertificateFiles = { cert: c.files.serverCert, key: c.files.serverKey, clientAuth: true };
  for (const [label, make] of [
    ['CERTIFICATE', () => c.files.ca],
    ['TRUSTED CERTIFICATE', () => trustout('trusted-ca.pem')],
    ['TRUSTED CERTIFICATE marked for clientAuth', () => trustout('trusted-client-ca.pem', '-addtrust', 'clientAuth')],
    ['X509 CERTIFICATE', () => relabel('x509-ca.pem', 'X509 CERTIFICATE')],
  ] as const) {
    it(`${label}: Node authorizes a client certificate from it, and the CLI takes it`, TEST, async () => {
      const path = make();
      if (label.startsWith('TRUSTED'))
        assert.match(readFileSync(path, 'latin1'), /^-----BEGIN TRUSTED CERTIFICATE-----/);
      assert.equal(await nodeAuthorizes(path), 'authorized');
      const o = readCertificates({ ...good, ca: path });
      assert.deepEqual(o.ca, readFileSync(path));
      tls.createSecureContext(o);
    });
  }

  it(
    "keeps a TRUSTED CERTIFICATE's trust settings, as OpenSSL does: one rejected for clientAuth refuses",
    TEST,
    async () => {
      const path = trustout('rejecting-ca.pem', '-addreject', 'clientAuth');
      assert.match(await nodeAuthorizes(path), /^refused /);
      // The CLI does not second-guess OpenSSL: the file is a CA file, its trust settings apply.
      readCertificates({ ...good, ca: path });
    },
  );

  it('refuses a block that ends with another label than it begins with, saying so', TEST, () => {
    const mixed = file('mixed-ca.pem', c.ca.toString('latin1').replace('END CERTIFICATE', 'END TRUSTED CERTIFICATE'));
    assert.throws(
      () => readCertificates({ ...good, ca: mixed }),
      /--tls-ca .*mixed-ca\.pem: a certificate block ends with another label than it begins with/,
    );
  });
});

describe('reloadCertificates with a broken CA file', () => {
  it('keeps the old context: a client with a good certificate still gets in', TEST, async () => {
    const c = certs();
    const ca = file('reload-ca.pem', c.ca);
    const files: CertificateFiles = { cert: c.files.serverCert, key: c.files.serverKey, ca, clientAuth: true };
    const server = await serve({ port: 0, host: '127.0.0.1', tls: readCertificates(files) }, async (conn) => {
      for await (const chunk of conn.chunks()) await conn.write(chunk);
    });
    const logged: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const log = {
      info: (fields: object, message: string) => logged.push({ level: 'info', fields: { ...fields }, message }),
      error: (fields: object, message: string) => logged.push({ level: 'error', fields: { ...fields }, message }),
    };
    try {
      // The CA file is being rewritten (empty for a moment) when the SIGHUP comes.
      writeFileSync(ca, '');
      assert.equal(reloadCertificates(server, files, log), false);
      // At error (the server keeps a certificate someone meant to replace), naming the flag and the file.
      assert.deepEqual(logged, [
        {
          level: 'error',
          fields: {
            flag: '--tls-ca',
            file: ca,
            err: `--tls-ca ${ca}: no certificate in it (PEM, -----BEGIN CERTIFICATE-----, or TRUSTED CERTIFICATE, X509 CERTIFICATE)`,
          },
          message: 'TLS certificate reload failed, keeping the previous one',
        },
      ]);
      const s = tls.connect({
        host: '127.0.0.1',
        port: (server.address as { port: number }).port,
        ca: c.ca,
        servername: 'localhost',
        key: c.clientKey,
        cert: c.clientCert,
      });
      s.on('error', () => {});
      s.write('still me');
      const [echo] = (await within(once(s, 'data'), 20_000, 'the echo')) as [Buffer];
      assert.equal(echo.toString(), 'still me');
      s.destroy();
    } finally {
      await server.shutdown();
    }
  });
});

describe('SIGHUP after the drain, before the exit', () => {
  const fixture = fileURLToPath(new URL('./fixtures/sighup-after-close.ts', import.meta.url));
  for (const mode of ['reload', 'warn'] as const) {
    it(`${mode === 'reload' ? 'with TLS (the reload)' : 'without TLS (the warning)'}: ignored, the process exits 0, not by SIGHUP`, {
      timeout: 30_000,
    }, async () => {
      const c = certs();
      const args = mode === 'reload' ? ['reload', c.files.serverCert, c.files.serverKey] : ['warn'];
      const proc = new Child(process.execPath, ['--import', 'tsx', fixture, ...args]);
      try {
        assert.deepEqual(
          await within(proc.exited, 20_000, 'the child to exit'),
          { code: 0, signal: null },
          proc.stderr,
        );
      } finally {
        proc.kill();
      }
    });
  }
});
