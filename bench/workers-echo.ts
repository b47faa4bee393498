// The echo server of bench/workers.ts: tcpkit with `workers` and `balance` from argv.
// Usage: node --import tsx bench/workers-echo.ts <port> <workers> <balance>
// The primary prints {"port"} once listening and answers `stats` on stdin with {"stats"}.
import cluster from 'node:cluster';
import { createInterface } from 'node:readline';
import { serve } from 'tcpkit';

const [port = '0', workers = '1', balance = 'auto'] = process.argv.slice(2);
const server = await serve(
  {
    host: '127.0.0.1',
    port: Number(port),
    workers: Number(workers),
    balance: balance as 'auto' | 'kernel' | 'primary',
    maxConnections: 200_000,
    shutdownOn: ['SIGTERM'],
    drainTimeout: 5_000,
  },
  async (conn) => {
    for await (const chunk of conn) await conn.write(chunk);
  },
);
if (cluster.isPrimary) {
  const address = server.address;
  console.log(JSON.stringify({ port: typeof address === 'string' ? 0 : address.port }));
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'stats') console.log(JSON.stringify({ stats: server.stats() }));
  });
  await server.closed;
  process.exit(0);
}
