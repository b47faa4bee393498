// tcpkit accepts plain TCP connections into bare libuv handles, without a net.Socket (src/bare-socket.ts).
// If a Node version lacks the pieces, the listener makes net.Sockets as before. This file runs the
// connection, gate, server, stats, echo and PROXY-stage suites again with that path forced (TCPKIT_ACCEPT_PATH=socket),
// so both accept paths are tested on every Node version CI runs (reliability/accept-path.test.ts does the
// same for the reliability suites).
import { describe, it } from 'node:test';
import { runOnFallback } from './fallback-paths.js';

describe('accept path', () => {
  it('passes the Conn, gate, server, stats, echo and PROXY-stage suites on the socket path (TCPKIT_ACCEPT_PATH=socket)', {
    timeout: 300_000,
  }, async () => {
    await runOnFallback({ TCPKIT_ACCEPT_PATH: 'socket' }, [
      'test/conn.test.ts',
      'test/conn-reader.test.ts',
      'test/conn-chunks.test.ts',
      'test/conn-writer.test.ts',
      'test/gate.test.ts',
      'test/gate-waiters.test.ts',
      'test/server.test.ts',
      'test/stats.test.ts',
      'test/integration/echo.test.ts',
      // A PROXY header is read from a bare handle by default: here through a net.Socket.
      'test/proxy-stage.test.ts',
    ]);
  });
});
