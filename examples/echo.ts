// The echo server: every byte a client sends comes back. The idiomatic tcpkit handler; copy it to start.
// Run it from a checkout: `npm run build && node --import tsx examples/echo.ts` (listens on 127.0.0.1:7000).
import { type Conn, serve } from 'tcpkit';

/** Echoes input until the peer ends; `await write` keeps memory bounded when the peer reads slowly. */
export async function echo(conn: Conn): Promise<void> {
  for await (const chunk of conn) await conn.write(chunk);
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const server = await serve({ host: '127.0.0.1', port: 7000, shutdownOn: ['SIGINT', 'SIGTERM'] }, echo);
  console.log('echo listening on 127.0.0.1:7000');
  await server.closed;
}
