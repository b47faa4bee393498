// TLS client helpers shared by the TLS test files: a client trusting the test CA, and a reader of everything until close.
import { once } from 'node:events';
import type net from 'node:net';
import tls from 'node:tls';
import { certs } from './fixtures/certs.js';
import { within } from './helpers.js';

/** A TLS client trusting the test CA; resolves once the handshake is done. */
export function tlsConnect(port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: certs().ca, servername: 'localhost', ...options }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
}

/** Everything the peer sends until it closes. */
export async function readAll(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  // 'close', not once(): once() would reject on the 'error' a refused client sees first.
  await new Promise((resolve) => s.once('close', resolve));
  return Buffer.concat(chunks);
}

/**
 * A TLS 1.2 client of an echo server that, once its first echo is back, asks to renegotiate; resolves with
 * how that ended: `'renegotiated'`, or the error code the client saw (`ERR_SSL_NO_RENEGOTIATION` when refused).
 */
export async function renegotiate(port: number): Promise<string> {
  const s = tls.connect({ host: '127.0.0.1', port, ca: certs().ca, servername: 'localhost', maxVersion: 'TLSv1.2' });
  try {
    await within(once(s, 'secureConnect'), 20_000, 'the handshake');
    s.write('before\n');
    await within(once(s, 'data'), 20_000, 'the first echo');
    return await within(
      new Promise<string>((resolve) => {
        s.once('error', (e: NodeJS.ErrnoException) => resolve(String(e.code)));
        s.renegotiate({}, (error) => resolve(error === null ? 'renegotiated' : `callback: ${error.message}`));
      }),
      20_000,
      'the renegotiation to end',
    );
  } finally {
    s.destroy();
  }
}
