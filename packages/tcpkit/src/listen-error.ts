// What a failed listen() means to the user: the system's code turned into a ListenError that names the
// address and says what to change, the same whether one process or a worker of the primary failed.
import { hostPort } from './address.js';
import { ListenError } from './errors.js';

/** Where a server was asked to listen. */
export interface ListenPlace {
  host?: string;
  port: number;
  path?: string;
}

/** `host:port` (`[v6]:port`), or the path. */
export function placeName(where: ListenPlace): string {
  if (where.path !== undefined) return where.path;
  const host = where.host ?? '0.0.0.0';
  return hostPort(host, where.port);
}

/** What to change, by the system's code. */
function hintFor(reason: string, where: ListenPlace, detail: string): string {
  const unix = where.path !== undefined;
  switch (reason) {
    case 'EADDRINUSE':
      // A socket file nothing accepts on was replaced before listening (unix-socket.ts): a live one is left.
      if (unix) return 'another process is accepting connections on this socket; stop it or choose another path';
      return 'the port is in use: choose another port, or stop the process that holds it';
    case 'EADDRNOTAVAIL':
      return 'the host is not an address of this machine: choose another host';
    case 'EACCES':
      return unix
        ? 'permission denied: choose a path in a directory this process may write to'
        : 'permission denied: ports below 1024 need privileges (CAP_NET_BIND_SERVICE); choose another port';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host does not resolve: check host';
    default:
      return detail;
  }
}

/**
 * The ListenError for a listen that failed with a system error; any other error is returned as it is.
 * `endpoint`: which listener failed (the server's, or the admin endpoint's).
 */
export function toListenError(error: unknown, where: ListenPlace, endpoint: 'server' | 'admin' = 'server'): unknown {
  const reason = (error as NodeJS.ErrnoException | undefined)?.code;
  // System codes (EADDRINUSE, EAI_AGAIN); Node's and tcpkit's own codes start with ERR_.
  if (typeof reason !== 'string' || !/^E(?!RR_)[A-Z_]+$/.test(reason)) return error;
  return listenErrorOf(reason, where, (error as Error).message, error, endpoint);
}

/** The ListenError for `reason` at `where` (`detail`: the system's message). */
export function listenErrorOf(
  reason: string,
  where: ListenPlace,
  detail: string,
  cause?: unknown,
  endpoint: 'server' | 'admin' = 'server',
): ListenError {
  return new ListenError(placeName(where), reason, hintFor(reason, where, detail), cause, endpoint);
}
