// tcpkit writes sockets straight to their handle (src/handle-writer.ts): the libuv TCP handle, or
// over TLS the TLS handle. If a Node version lacks the pieces, writes fall back to the socket's stream.
// This file runs the connection, writer, echo, TLS flow and TLS reset suites again with the fallback forced
// (TCPKIT_WRITE_PATH=stream), so both write paths are tested on every Node version CI runs.
import { describe, it } from 'node:test';
import { runOnFallback } from './fallback-paths.js';

describe('write path', () => {
  it('passes the Conn, writer, write fast path, echo, TLS flow and TLS reset suites on the stream fallback (TCPKIT_WRITE_PATH=stream)', {
    timeout: 300_000,
  }, async () => {
    await runOnFallback({ TCPKIT_WRITE_PATH: 'stream' }, [
      'test/conn.test.ts',
      'test/conn-writer.test.ts',
      'test/conn-chunks.test.ts',
      'test/conn-write-queue.test.ts',
      'test/handle-writer.test.ts',
      'test/write-fast-path.test.ts',
      'test/integration/echo.test.ts',
      'test/tls-flow.test.ts',
      'test/tls-write-reset.test.ts',
    ]);
  });
});
