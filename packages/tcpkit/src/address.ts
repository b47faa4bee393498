import type { ServerAddress } from './server.js';

/** `host:port` (`[v6]:port` for IPv6), or the unix socket path: how logs and metrics name an address. */
export function formatAddress(a: ServerAddress | string): string {
  if (typeof a === 'string') return a;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
