/**
 * Logs of `serve({ logger })`. Per-connection events come from the diagnostics channels, subscribed
 * only when a logger is given (and open/close only at debug level), so a server without a logger runs
 * no logging code at all; lifecycle lines (listening, draining, shut down) are written by the server.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { hostPort } from './address.js';
import type { Conn } from './conn.js';
import { TcpkitError } from './errors.js';
import type { Server } from './server.js';

/** A log method in pino's shape: a merging object first, then the message. */
export type LogFn = (obj: object, msg?: string) => void;

/** A pino-compatible logger (pino itself, or any object with these methods). */
export interface Logger {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  /** pino's level check; when absent, debug lines are produced and the logger filters them. */
  isLevelEnabled?(level: string): boolean;
}

/** Accept-error lines are at most one a second: a descriptor shortage can shed thousands a second. */
const ACCEPT_ERROR_INTERVAL_MS = 1000;

type ConnMessage = { server: Server; conn: Conn; error?: unknown };

/** `ip:port` of a connection's peer. */
function peerOf(conn: Conn): string {
  if (conn.remoteAddress === '') return 'unix socket';
  return hostPort(conn.remoteAddress, conn.remotePort);
}

/** @internal subscribes `logger` to `server`'s events; returns the unsubscribe. */
export function attachLogger(server: Server, logger: Logger): () => void {
  const subscriptions: [diagnostics_channel.Channel, (m: unknown) => void][] = [];
  const on = (name: string, fn: (m: unknown) => void): void => {
    const channel = diagnostics_channel.channel(name);
    channel.subscribe(fn);
    subscriptions.push([channel, fn]);
  };

  on('tcpkit:connection:error', (message) => {
    const m = message as ConnMessage;
    if (m.server !== server) return;
    const fields = { connId: m.conn.id, peer: peerOf(m.conn), err: m.error };
    // A TcpkitError is the peer's doing (a bad frame, a deadline, a slow reader); anything else is the handler's bug.
    if (m.error instanceof TcpkitError) logger.warn(fields, 'connection handler failed');
    else logger.error(fields, 'connection handler threw');
  });

  let lastAcceptLog = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  on('tcpkit:server:accept-error', (message) => {
    const m = message as { server: Server; error: NodeJS.ErrnoException };
    if (m.server !== server) return;
    const now = performance.now();
    if (now - lastAcceptLog < ACCEPT_ERROR_INTERVAL_MS) {
      suppressed++;
      return;
    }
    lastAcceptLog = now;
    const fields = { code: m.error.code, err: m.error, acceptErrors: server.stats().acceptErrors, suppressed };
    suppressed = 0;
    logger.warn(
      fields,
      m.error.code === 'EMFILE' ? 'out of file descriptors: shedding connections at accept' : 'accept error',
    );
  });

  if (logger.isLevelEnabled?.('debug') ?? true) {
    const reasons = new WeakMap<Conn, string>();
    const opened = new WeakMap<Conn, number>();
    on('tcpkit:connection:timeout', (message) => {
      const m = message as ConnMessage;
      if (m.server === server) reasons.set(m.conn, (m.error as TcpkitError).code);
    });
    on('tcpkit:connection:error', (message) => {
      const m = message as ConnMessage;
      if (m.server === server && !reasons.has(m.conn)) {
        reasons.set(m.conn, m.error instanceof TcpkitError ? m.error.code : 'handler error');
      }
    });
    on('tcpkit:connection:open', (message) => {
      const m = message as ConnMessage & { waitMs: number };
      if (m.server !== server) return;
      opened.set(m.conn, performance.now());
      logger.debug({ connId: m.conn.id, peer: peerOf(m.conn), waitMs: Math.round(m.waitMs) }, 'connection open');
    });
    on('tcpkit:connection:close', (message) => {
      const m = message as ConnMessage;
      if (m.server !== server) return;
      const start = opened.get(m.conn);
      logger.debug(
        {
          connId: m.conn.id,
          peer: peerOf(m.conn),
          reason: reasons.get(m.conn) ?? (server.signal.aborted ? 'shutdown' : 'closed'),
          bytesRead: m.conn.bytesRead,
          bytesWritten: m.conn.bytesWritten,
          durationMs: start === undefined ? undefined : Math.round(performance.now() - start),
        },
        'connection closed',
      );
    });
    on('tcpkit:connection:reject', (message) => {
      const m = message as { server: Server; remoteAddress: string; reason: string };
      if (m.server === server) logger.debug({ peer: m.remoteAddress, reason: m.reason }, 'connection rejected');
    });
    // Closed before any handler ran, so no connection line says why: these do (the error names what was wrong).
    for (const [channel, line] of [
      ['tcpkit:tls:error', 'TLS handshake failed'],
      ['tcpkit:proxy:error', 'PROXY header refused'],
    ] as const) {
      on(channel, (message) => {
        const m = message as {
          server: Server;
          remoteAddress: string;
          remotePort?: number;
          error: Error & { code?: string };
        };
        // `peer` as the connection lines give it, `ip:port`: a failed handshake's client (behind a balancer,
        // the PROXY header's address and port); a refused PROXY header's sending socket, which tells one
        // balancer connection from another.
        if (m.server !== server) return;
        logger.debug({ peer: hostPort(m.remoteAddress, m.remotePort), code: m.error.code, err: m.error }, line);
      });
    }
  }

  return () => {
    for (const [channel, fn] of subscriptions) channel.unsubscribe(fn);
  };
}
