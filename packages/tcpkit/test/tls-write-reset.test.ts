// A TLS peer that resets the connection while the server writes to it: only that connection ends, the
// server stays up and serves the next one. Over TLS a write the TCP handle refuses at once (the RST is
// already in) completes inside the write call itself: the TLS handle reports it before the call
// returns, which the handle writer must expect. A write a turn or more after the reset, once the reset
// reached the server only as an end of input (Node's TLS layer hides it), rejects with the reset too.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { type Conn, serve } from '../src/index.js';
import { certs } from './fixtures/certs.js';
import { codeOf, deferred, LOOPBACK, portOf, stop, within } from './helpers.js';
import { readAll, tlsConnect } from './tls-client.js';

const TEST = { timeout: 30_000 };

/** How `p` settled: what it rejected with, or undefined. */
async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * A TLS client sends a request and, once the handler has it (`requested`), resets its TCP connection
 * (RST) in that same turn. `onRaw` sees the TCP socket first.
 */
async function requestThenReset(
  port: number,
  requested: Promise<void>,
  onRaw: (raw: net.Socket) => void = () => {},
): Promise<void> {
  const raw = net.connect({ host: '127.0.0.1', port });
  onRaw(raw);
  const s = tls.connect({ socket: raw, ca: certs().ca, servername: 'localhost' });
  s.on('error', () => {});
  await once(s, 'secureConnect');
  s.write('go');
  await within(requested, 10_000, 'the request');
  raw.resetAndDestroy();
}

/**
 * The writes a handler may be making when the reset comes in. (Each flushes in the handler's own turn,
 * so the write reaches the TCP handle before the server's event loop reads the reset.)
 */
const WRITES: Record<string, (conn: Conn) => Promise<void>> = {
  'a buffer': (conn) => conn.write(Buffer.alloc(64 * 1024, 1)),
  'a buffer, then end': (conn) => {
    void conn.write(Buffer.alloc(64 * 1024, 1)).catch(() => {});
    return conn.end();
  },
};

describe('tls: a peer reset during a write', () => {
  for (const [name, write] of Object.entries(WRITES)) {
    it(`${name}: a write after the peer's RST ends that connection only, the server stays up`, TEST, async () => {
      const c = certs();
      const requested = deferred<void>();
      const reset = deferred<void>();
      const outcome = deferred<{ error: unknown; conn: Conn }>();
      const server = await serve({ ...LOOPBACK, tls: { key: c.serverKey, cert: c.serverCert } }, async (conn) => {
        if ((await conn.read()) === null) return;
        requested.resolve();
        await reset.promise;
        outcome.resolve({ error: await errorOf(write(conn)), conn });
      });
      try {
        // The RST reaches the server's socket within the reset; resolved in the same turn, the
        // handler writes before the server's event loop reads the reset.
        await requestThenReset(portOf(server), requested.promise);
        reset.resolve();
        const { error, conn } = await within(outcome.promise, 10_000, 'the write to settle');
        if (error !== undefined) {
          assert.ok(['EPIPE', 'ECONNRESET', 'ERR_CONNECTION_CLOSED'].includes(String(codeOf(error))), String(error));
        }
        await within(conn.closed, 10_000, 'the connection to close');
        // The server is still up: the next client is served.
        const next = await tlsConnect(portOf(server));
        next.end('again');
        await readAll(next);
        assert.equal(server.stats().active, 0);
      } finally {
        await stop(server);
      }
    });
  }
});

/**
 * When the handler writes, a turn or more after the reset. (The client resets in the turn the handler
 * gets the request: before the server's TLS layer sends its TLS 1.3 session tickets, which the kernel
 * then refuses with the reset. Node drops that refusal, so the reset reaches the server only as a
 * plain end of input, and its TLS handle then holds every later write.)
 */
const LATER: Record<string, (conn: Conn, clientClosed: Promise<unknown>) => Promise<unknown>> = {
  'once its next read has settled': (conn) => conn.read().catch(() => null),
  "once the client's socket has closed": (_conn, clientClosed) => clientClosed,
};

describe('tls: a write a turn or more after the peer reset', () => {
  for (const [name, later] of Object.entries(LATER)) {
    it(`${name}: rejects with the reset and the connection closes (not held until writeTimeout)`, TEST, async () => {
      const c = certs();
      const requested = deferred<void>();
      const clientClosed = deferred<void>();
      const outcome = deferred<{ error: unknown; conn: Conn }>();
      // writeTimeout 0: no deadline ends a write the connection failed to notice was lost.
      const server = await serve(
        { ...LOOPBACK, writeTimeout: 0, tls: { key: c.serverKey, cert: c.serverCert } },
        async (conn) => {
          if ((await conn.read()) === null) return;
          requested.resolve();
          await later(conn, clientClosed.promise);
          outcome.resolve({ error: await errorOf(conn.write(Buffer.alloc(64 * 1024, 1))), conn });
        },
      );
      try {
        await requestThenReset(portOf(server), requested.promise, (raw) =>
          raw.once('close', () => clientClosed.resolve()),
        );
        const { error, conn } = await within(outcome.promise, 20_000, 'the write to settle');
        assert.equal(codeOf(error), 'ERR_CONNECTION_CLOSED', String(error));
        assert.equal(codeOf((error as Error).cause), 'ECONNRESET', String(error));
        await within(conn.closed, 10_000, 'the connection to close');
        assert.equal(conn.isClosed, true);
        assert.deepEqual([server.stats().active, server.stats().queuedBytes], [0, 0]);
        const next = await tlsConnect(portOf(server));
        next.end('again');
        await readAll(next);
      } finally {
        await stop(server);
      }
    });
  }
});
