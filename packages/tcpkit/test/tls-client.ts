// TLS client helpers shared by the TLS test files: a client trusting the test CA, and a reader of everything until close.
import type net from 'node:net';
import tls from 'node:tls';
import { certs } from './fixtures/certs.js';

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
