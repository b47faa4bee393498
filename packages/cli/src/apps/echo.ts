// The echo server: every byte a client sends comes back. The idiomatic tcpkit handler.
import type { Conn } from 'tcpkit';

/**
 * Echoes input until the peer ends; `await write` keeps memory bounded when the peer reads slowly.
 * Each chunk is lent (`reuse: true`): it is written before the next step, so its buffer serves the
 * next read and the echo allocates no buffer per message.
 */
export async function echo(conn: Conn): Promise<void> {
  for await (const chunk of conn.chunks({ reuse: true })) await conn.write(chunk);
}

/** The app the CLI runs as `tcpkit serve echo`. */
export function createApp(): { handler: (conn: Conn) => Promise<void>; close(): void } {
  return { handler: echo, close() {} };
}
