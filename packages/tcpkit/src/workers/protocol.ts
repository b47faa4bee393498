// The primary and its workers talk over node:cluster's IPC channel. Every message carries a
// `tcpkit` tag so a user's own process.send() traffic is left alone. A worker learns its place
// (slot, limits, where to listen) from one environment variable set at fork.
import type { ServerStats, ShutdownResult } from '../server.js';
import type { ProbeAnswer, ProbeRequest } from './metrics.js';

/** Name of the environment variable that marks a tcpkit worker and carries its configuration. */
export const WORKER_ENV = 'TCPKIT_WORKER';

/** How connections reach the workers. */
export type Balance = 'kernel' | 'primary';

/** What a worker is told at fork. */
export interface WorkerConfig {
  /** Position of the worker among the N (0-based); its replacements keep it. */
  slot: number;
  balance: Balance;
  /** The port every worker listens on (the primary resolved port 0 before the first fork). */
  port: number;
  /** This worker's share of `maxConnections` and `maxWaiting` (the shares sum to the totals). */
  maxConnections: number;
  maxWaiting: number;
  /** Kernel balance: the primary holds the slot's listening socket and sends it; listen on that. */
  awaitHandle: boolean;
}

/** Primary -> worker. */
export type ToWorker =
  /** Kernel balance: the slot's listening socket travels as the message's handle. */
  | { tcpkit: 'handle' }
  /** Send a report now (the primary's stats() or its admin endpoint wants fresh counters). */
  | { tcpkit: 'report' }
  /** Stop accepting, drain as `server.shutdown({ timeout })`, report, exit. */
  | { tcpkit: 'drain'; timeout: number }
  /** The admin endpoint asks for the worker's event-loop delay and histograms (workers/metrics.ts). */
  | ProbeRequest;

/** A worker's counters and its process's cost, as it last reported them. */
export interface WorkerReport {
  stats: ServerStats;
  /** Resident set size of the worker process, in bytes. */
  rssBytes: number;
  /** User plus system CPU time of the worker process since it started, in microseconds. */
  cpuUs: number;
}

/** Worker -> primary. */
export type FromWorker =
  /** Ready for the slot's listening socket (messages sent before a listener is installed would be lost). */
  | { tcpkit: 'want-handle' }
  /** Listening; in kernel balance the first worker of a slot sends its listening socket as the handle. */
  | ({ tcpkit: 'listening'; address: string; family: string; port: number; path?: string } & WorkerReport)
  /**
   * serve() failed in the worker, which then exits: with `reason` (the system's code: EADDRINUSE, EACCES,
   * ...) it could not listen, and `message` is the system's; the primary stops starting and reports it.
   */
  | { tcpkit: 'listen-error'; message: string; reason?: string }
  | ({ tcpkit: 'report' } & WorkerReport)
  | ({ tcpkit: 'drained'; result: ShutdownResult } & WorkerReport)
  | ProbeAnswer;

function tagged(message: unknown): boolean {
  return (
    typeof message === 'object' && message !== null && typeof (message as { tcpkit?: unknown }).tcpkit === 'string'
  );
}

export function isFromWorker(message: unknown): message is FromWorker {
  return tagged(message);
}

export function isToWorker(message: unknown): message is ToWorker {
  return tagged(message);
}

/**
 * Codes of the errors Node raises when the IPC channel between a primary and a worker breaks: a send
 * into a channel whose other end is gone (EPIPE, ECONNRESET), a send or a disconnect after it closed.
 * They say the other process is gone or going, which its 'exit' (in the primary) or 'disconnect' (in a
 * worker) deals with.
 */
const CHANNEL_GONE = new Set(['EPIPE', 'ECONNRESET', 'ERR_IPC_CHANNEL_CLOSED', 'ERR_IPC_DISCONNECTED']);

/** Whether `error` is the IPC channel breaking (see CHANNEL_GONE) rather than a fault to surface. */
export function isChannelGone(error: unknown): boolean {
  return CHANNEL_GONE.has((error as NodeJS.ErrnoException | null)?.code ?? '');
}

/** The configuration of this process if it is a tcpkit worker, else undefined. */
export function workerConfig(): WorkerConfig | undefined {
  const text = process.env[WORKER_ENV];
  if (text === undefined || process.send === undefined) return undefined;
  return JSON.parse(text) as WorkerConfig;
}
