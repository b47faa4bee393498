// writeTimeout and the lingering close over TLS run from the kernel's last progress, as over plain TCP:
// the TLS handle's own queue count stays at the whole ciphertext until its write completes, so progress
// is read from the TCP handle below it. A peer that reads a large response slowly but steadily is kept
// and gets every byte (a peer that stops reading is cut: tls-flow.test.ts). And a write resolves, as
// over TCP, only below maxWriteBuffer, so a handler awaiting each large write is not a slow consumer.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { certs } from './fixtures/certs.js';
import { codeOf, withConn } from './helpers.js';

const TEST = { timeout: 60_000 };
/** The handlers here move tens of megabytes on a loaded machine: give them longer to settle. */
const SETTLE = 50_000;
/** Far more than the loopback's buffers hold, so the write is in flight for many writeTimeout periods. */
const RESPONSE = 48 << 20;
const WRITE_TIMEOUT = 2_000;

/** A TLS client that reads `step` bytes, pauses `pauseMs`, and so on until the server closes. */
function steadyTlsReader(port: number, step: number, pauseMs: number): { got: () => Buffer; closed: Promise<void> } {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: certs().ca, servername: 'localhost' });
  const chunks: Buffer[] = [];
  let inStep = 0;
  let timer: NodeJS.Timeout | undefined;
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    inStep += d.length;
    if (inStep >= step) {
      inStep = 0;
      socket.pause();
      timer = setTimeout(() => socket.resume(), pauseMs);
    }
  });
  socket.on('error', () => {});
  const closed = once(socket, 'close').then(() => clearTimeout(timer));
  return { got: () => Buffer.concat(chunks), closed };
}

function tlsOptions(): { key: string | Buffer; cert: string | Buffer } {
  const c = certs();
  return { key: c.serverKey, cert: c.serverCert };
}

describe('tls: writeTimeout runs from the last progress', () => {
  it('awaited writes to a reader that drains slowly but steadily all complete', TEST, async () => {
    const half = RESPONSE / 2;
    await withConn(
      { writeTimeout: WRITE_TIMEOUT, tls: tlsOptions() },
      async (conn) => {
        await conn.write(Buffer.alloc(half, 'z'));
        await conn.write(Buffer.alloc(half, 'y'));
        await conn.end();
      },
      async (port, outcome) => {
        // 1 MiB per 100 ms: the whole response takes several writeTimeout periods.
        const reader = steadyTlsReader(port, 1 << 20, 100);
        const { error } = await outcome;
        assert.equal(error, undefined, `the writes resolved (${codeOf(error)})`);
        await reader.closed;
        const got = reader.got();
        assert.equal(got.length, RESPONSE);
        assert.ok(got.subarray(0, half).every((b) => b === 0x7a) && got.subarray(half).every((b) => b === 0x79));
      },
      SETTLE,
    );
  });

  it('the lingering close flushes a write in flight to a slow steady reader whole', TEST, async () => {
    await withConn(
      { writeTimeout: WRITE_TIMEOUT, tls: tlsOptions() },
      async (conn) => {
        // Resolves once OpenSSL has it: the handler returns with the ciphertext still on its way.
        await conn.write(Buffer.alloc(RESPONSE, 'z'));
      },
      async (port, outcome) => {
        const reader = steadyTlsReader(port, 1 << 20, 100);
        assert.equal((await outcome).error, undefined);
        await reader.closed;
        assert.equal(reader.got().length, RESPONSE, 'every byte before the close');
      },
      SETTLE,
    );
  });
});

describe('tls: awaited writes are backpressure, not a slow consumer', () => {
  it('awaited writes each larger than maxQueuedBytes reach a reading peer whole', TEST, async () => {
    const size = 8 << 20;
    const rounds = 4;
    // On top of a write OpenSSL took but the kernel did not, the next one would pass maxQueuedBytes.
    await withConn(
      { maxQueuedBytes: 4 << 20, tls: tlsOptions() },
      async (conn) => {
        for (let i = 0; i < rounds; i++) await conn.write(Buffer.alloc(size, 0x30 + i));
        await conn.end();
      },
      async (port, outcome) => {
        const reader = steadyTlsReader(port, 1 << 20, 0);
        const { error } = await outcome;
        assert.equal(error, undefined, `every write resolved (${codeOf(error)})`);
        await reader.closed;
        const got = reader.got();
        assert.equal(got.length, size * rounds);
        for (let i = 0; i < rounds; i++) assert.ok(got.subarray(i * size, (i + 1) * size).every((b) => b === 0x30 + i));
      },
      SETTLE,
    );
  });
});
