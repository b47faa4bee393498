// tcpkit reads accepted sockets into one shared buffer through Node's user-buffer read path (see
// src/shared-read-buffer.ts). If a Node version lacks that path, sockets fall back to the ordinary
// 'data' stream. This file runs the connection and echo suites again with the fallback forced, so
// both read paths are tested on every Node version CI runs (TLS sockets take the same hook, or the
// same fallback).
import { describe, it } from 'node:test';
import { runOnFallback } from './fallback-paths.js';

describe('read path', () => {
  it('passes the Conn, read-path, echo and TLS flow suites on the stream fallback (TCPKIT_READ_PATH=stream)', {
    timeout: 120_000,
  }, async () => {
    await runOnFallback({ TCPKIT_READ_PATH: 'stream' }, [
      'test/conn.test.ts',
      'test/conn-reader.test.ts',
      'test/conn-chunks.test.ts',
      'test/conn-frame-batches.test.ts',
      'test/integration/echo.test.ts',
      'test/tls-flow.test.ts',
    ]);
  });
});
