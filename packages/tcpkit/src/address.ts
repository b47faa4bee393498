import type { ServerAddress } from './server.js';

/** `host:port` (`[v6]:port` for IPv6), or the unix socket path: how logs and metrics name an address. */
export function formatAddress(a: ServerAddress | string): string {
  if (typeof a === 'string') return a;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** `ip:port` (`[ip]:port` for an IPv6 literal), or the address alone when the port is not known. */
export function hostPort(address: string, port?: number): string {
  if (port === undefined) return address;
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
