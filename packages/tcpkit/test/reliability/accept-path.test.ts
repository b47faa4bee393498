// The reliability scenarios most bound to the accepted socket (resets mid-request and at the cap,
// waiters that die in the queue, peers that never read) again on the net.Socket accept path
// (TCPKIT_ACCEPT_PATH=socket), so both accept paths (src/bare-socket.ts) keep their defences.
import { test } from 'node:test';
import { runOnFallback } from '../integration/fallback-paths.js';

test('resets, dead waiters and never-reading peers on the socket accept path (TCPKIT_ACCEPT_PATH=socket)', {
  timeout: 400_000,
}, async () => {
  await runOnFallback({ TCPKIT_ACCEPT_PATH: 'socket' }, [
    'test/reliability/resets.test.ts',
    'test/reliability/dead-waiters.test.ts',
    'test/reliability/never-reading.test.ts',
  ]);
});
