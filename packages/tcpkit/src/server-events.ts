/**
 * What happens to a server's connections, counted and published: the counters behind `server.stats()`,
 * the `node:diagnostics_channel` channels (published only when subscribed, so they cost nothing
 * otherwise) and the snapshot that `stats()` returns.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { ConnCore } from './conn-core.js';
import type { TimeoutError } from './errors.js';
import type { Gate } from './gate.js';
import type { ResolvedOptions } from './options.js';
import type { ServerStats } from './server.js';

export const channels = {
  open: diagnostics_channel.channel('tcpkit:connection:open'),
  close: diagnostics_channel.channel('tcpkit:connection:close'),
  reject: diagnostics_channel.channel('tcpkit:connection:reject'),
  timeout: diagnostics_channel.channel('tcpkit:connection:timeout'),
  error: diagnostics_channel.channel('tcpkit:connection:error'),
  acceptError: diagnostics_channel.channel('tcpkit:server:accept-error'),
  tlsError: diagnostics_channel.channel('tcpkit:tls:error'),
  proxyError: diagnostics_channel.channel('tcpkit:proxy:error'),
};

const TIMEOUT_KEYS = {
  ERR_FIRST_BYTE_TIMEOUT: 'firstByte',
  ERR_IDLE_TIMEOUT: 'idle',
  ERR_FRAME_TIMEOUT: 'frame',
  ERR_WRITE_TIMEOUT: 'write',
  ERR_LIFETIME_EXCEEDED: 'lifetime',
} as const;

/** The counters of one server process; bytes of open connections are summed in at each snapshot. */
export function newCounters() {
  return {
    accepted: 0,
    served: 0,
    rejected: { full: 0, perPeer: 0, blocked: 0, waitTimeout: 0, shutdown: 0, abandoned: 0 },
    timeouts: { firstByte: 0, idle: 0, frame: 0, write: 0, lifetime: 0, handshake: 0 },
    tlsErrors: 0,
    proxyErrors: 0,
    slowConsumers: 0,
    errors: 0,
    acceptErrors: 0,
    /** Bytes of the connections already closed. */
    bytesRead: 0,
    bytesWritten: 0,
  };
}

export type Counters = ReturnType<typeof newCounters>;

/** Counts a connection's timeout under its deadline (an unknown code is published, not counted). */
export function countTimeout(counters: Counters, error: TimeoutError): void {
  const key = TIMEOUT_KEYS[error.code as keyof typeof TIMEOUT_KEYS];
  if (key !== undefined) counters.timeouts[key]++;
}

/** What `stats()` reads: the counters, the gate and the connections whose socket is open. */
export interface StatsSources {
  readonly counters: Counters;
  readonly gate: Gate;
  /** Connections whose handler is running. */
  readonly running: ReadonlySet<ConnCore>;
  /** Connections whose handler has ended and whose socket is not closed. */
  readonly lingering: ReadonlySet<ConnCore>;
  /** Every connection whose socket is not closed: running or lingering. */
  unclosed(): Iterable<ConnCore>;
}

/** A snapshot of the counters, with the bytes and queues of open connections summed in. */
export function readStats(from: StatsSources, options: ResolvedOptions): ServerStats {
  const s = from.counters;
  let bytesRead = s.bytesRead;
  let bytesWritten = s.bytesWritten;
  let queuedBytes = 0;
  for (const c of from.unclosed()) {
    bytesRead += c.socket.bytesRead;
    bytesWritten += c.socket.bytesWritten;
    queuedBytes += c.queuedBytes;
  }
  return {
    active: from.running.size,
    waiting: from.gate.waiting,
    accepted: s.accepted,
    served: s.served,
    rejected: { ...s.rejected },
    timeouts: { ...s.timeouts },
    tlsErrors: s.tlsErrors,
    proxyErrors: s.proxyErrors,
    slowConsumers: s.slowConsumers,
    errors: s.errors,
    acceptErrors: s.acceptErrors,
    lingering: from.lingering.size,
    queuedBytes,
    descriptors: from.gate.descriptors,
    limits: { maxConnections: options.maxConnections, maxWaiting: options.maxWaiting },
    bytesRead,
    bytesWritten,
  };
}
