// tcpkit accepts plain TCP connections into bare libuv handles, without a net.Socket (src/bare-socket.ts).
// If a Node version lacks the pieces, the listener makes net.Sockets as before. This file runs the
// connection, gate, server, stats and echo suites again with that path forced (TCPKIT_ACCEPT_PATH=socket),
// so both accept paths are tested on every Node version CI runs (reliability/accept-path.test.ts does the
// same for the reliability suites).
import { describe, it } from 'node:test';
import { runOnFallback } from './fallback-paths.js';

describe('accept path', () => {
  it('passes the Conn, gate, server, stats and echo suites on the socket path (TCPKIT_ACCEPT_PATH=socket)', {
    timeout: 300_000,
  }, async () => {
    await runOnFallback({ TCPKIT_ACCEPT_PATH: 'socket' }, [
      'test/conn.test.ts',
      'test/conn-reader.test.ts',
      'test/conn-writer.test.ts',
      'test/gate.test.ts',
      'test/gate-waiters.test.ts',
      'test/server.test.ts',
      'test/stats.test.ts',
      'test/integration/echo.test.ts',
    ]);
  });
});
