// A worker process: node:cluster re-ran the user's program, which called serve() again. Here that
// call becomes a one-process server with this worker's share of the limits, listening where the
// primary says, reporting its counters when the primary asks (and, if they changed, once a second),
// and draining when the primary asks, or by itself when the primary is gone.
import cluster from 'node:cluster';
import type net from 'node:net';
import { ListenError } from '../errors.js';
import type { ResolvedOptions } from '../options.js';
import type { Handler, ListenTarget, Server, ShutdownResult } from '../server.js';
import { answerProbes } from './metrics.js';
import { type FromWorker, isChannelGone, isToWorker, type WorkerConfig, type WorkerReport } from './protocol.js';

/**
 * How often a worker sends its counters unasked (only when they changed), in ms. The primary asks
 * when it needs them (stats(), the admin endpoint), so this only bounds how stale the counters of a
 * worker killed without a word (kill -9) are when folded into the totals, and how old stats() can be
 * when nobody asked; rarer reports cost the primary less while the workers serve.
 */
const HEARTBEAT = 1000;

type StartServer = (options: ResolvedOptions, handler: Handler, target: ListenTarget) => Promise<Server>;

/**
 * Sends to the primary; `sent` learns whether it went (an Error if the channel is closed or breaks).
 * Every send has a callback: without one, Node raises a failed send (EPIPE when the primary just died)
 * as an 'error' on process, which would crash the worker and cut its connections.
 */
function send(message: FromWorker, handle?: object, sent?: (error: Error | null) => void): void {
  if (!process.connected) {
    if (sent !== undefined) process.nextTick(sent, new Error('the channel to the primary is closed'));
    return;
  }
  // A handle is a listening socket the primary keeps; node sends it as a raw handle ('net.Native'),
  // which the primary holds without accepting on it.
  process.send?.(message, handle as net.Server | undefined, {}, (error: Error | null) => sent?.(error));
}

/**
 * node:cluster's own sends from a worker (the acknowledgement of each connection round-robin hands
 * over, the close of a listener) take no callback: when the channel breaks under one, Node emits the
 * failure as 'error' on process, which node:cluster re-emits on `cluster.worker`, where nobody listens.
 * That only says the primary is gone, which 'disconnect' deals with; any other error stays as fatal
 * as it was.
 */
function onChannelError(error: Error): void {
  if (!isChannelGone(error)) throw error;
}

function report(server: Server): WorkerReport {
  const cpu = process.cpuUsage();
  return { stats: server.stats(), rssBytes: process.memoryUsage.rss(), cpuUs: cpu.user + cpu.system };
}

/** The next listening socket the primary sends (kernel balance: the slot's socket, kept across restarts). */
function receiveHandle(): Promise<object> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown, handle: unknown): void => {
      if (!isToWorker(message) || message.tcpkit !== 'handle' || handle === undefined) return;
      process.off('message', onMessage);
      resolve(handle as object);
    };
    process.on('message', onMessage);
    send({ tcpkit: 'want-handle' });
  });
}

/** serve() in a worker process. */
export async function serveInWorker(
  config: WorkerConfig,
  options: ResolvedOptions,
  handler: Handler,
  start: StartServer,
): Promise<Server> {
  const local: ResolvedOptions = {
    ...options,
    port: config.port,
    maxConnections: config.maxConnections,
    maxWaiting: config.maxWaiting,
    workers: 1,
    // The primary decides when a worker drains; the user's signal lives in the primary, and so does
    // the admin endpoint (one port, the summed stats).
    signal: undefined,
    admin: undefined,
    // A worker leaves by disconnecting once it has reported its drain; exiting first would lose the report.
    exitOnShutdown: false,
  };
  // shutdownOn stays: a signal sent to the whole process group (Ctrl-C, systemd's stop) drains each
  // worker as it drains one process, and the primary's own drain request then joins that shutdown.
  // SIGHUP means "restart" to the primary; its default action would kill a worker that receives it too.
  if (options.shutdownOn.length > 0) process.on('SIGHUP', () => {});
  const worker = cluster.worker;
  if (worker !== undefined && !worker.listeners('error').includes(onChannelError)) worker.on('error', onChannelError);
  const handle = config.awaitHandle ? await receiveHandle() : undefined;
  let listener: net.Server | undefined;
  let server: Server;
  try {
    server = await start(local, handler, {
      handle,
      reusePort: config.balance === 'kernel',
      onListening: (l) => {
        listener = l;
      },
    });
  } catch (error) {
    // The primary reports it, once, for every worker (serve() rejects there): this worker only tells it
    // why and leaves, instead of rejecting into the user's program (which would die of it, or print it
    // once per worker, and be replaced in a loop).
    const message = error instanceof ListenError ? (error.cause as Error | undefined)?.message : undefined;
    send(
      error instanceof ListenError
        ? { tcpkit: 'listen-error', message: message ?? error.message, reason: error.reason }
        : { tcpkit: 'listen-error', message: (error as Error).message },
      undefined,
      () => process.exit(1),
    );
    return new Promise<never>(() => {});
  }
  leaveWithPrimary(server, options.drainTimeout);
  // The primary's admin endpoint asks each worker for what only the worker sees.
  const answer = options.admin === undefined ? undefined : await answerProbes(server);
  const address = server.address;
  const where = typeof address === 'string' ? { address: '', family: '', port: 0, path: address } : address;
  const listening: FromWorker = { tcpkit: 'listening', ...where, ...report(server) };
  // The first worker of a slot gives the primary its listening socket, so the socket (and its accept
  // queue) outlives this process: a replacement listens on the very same socket.
  const ownSocket = config.balance === 'kernel' && handle === undefined;
  send(listening, ownSocket ? (listener as unknown as { _handle?: object })?._handle : undefined);
  let last = '';
  const sendReport = (r = report(server), text = JSON.stringify(r.stats)): void => {
    last = text;
    send({ tcpkit: 'report', ...r });
  };
  // One snapshot a beat, sent as is if it changed (it used to take a second one to send): a snapshot
  // walks every open connection for its bytes, which this worker's event loop pays while it serves.
  const timer = setInterval(() => {
    const r = report(server);
    const text = JSON.stringify(r.stats);
    if (text !== last) sendReport(r, text);
  }, HEARTBEAT);
  timer.unref();
  const onMessage = (message: unknown): void => {
    if (isToWorker(message) && message.tcpkit === 'report') sendReport();
    else if (isToWorker(message) && message.tcpkit === 'drain') {
      // The primary already waited out shutdownDelay (or it is a restart, where no balancer needs one).
      server.shutdown({ timeout: message.timeout, delay: 0 }).catch(() => {});
    } else if (isToWorker(message) && message.tcpkit === 'probe' && answer !== undefined) {
      answer(message).then(send, () => {});
    }
  };
  process.on('message', onMessage);
  server.closed.then(async () => {
    clearInterval(timer);
    process.off('message', onMessage);
    const result: ShutdownResult = await server.shutdown();
    send({ tcpkit: 'drained', result, ...report(server) }, undefined, (error) => {
      // Then leave the cluster: the IPC channel closes and the process ends once the user's code lets it.
      if (error === null) cluster.worker?.disconnect();
      // No primary to report to (it died): nobody will stop this process, so it exits, once the code
      // awaiting `closed` has run.
      else setImmediate(() => process.exit());
    });
  });
  return server;
}

/**
 * A primary that dies (kill -9, a crash) closes its workers' channel unasked, and node:cluster then ends
 * each worker at once with process.exit(0), cutting every connection it serves. A serving worker drains
 * instead, as at shutdown (its drain report then fails, and it exits): marking the disconnect as
 * expected (what `worker.disconnect()` does) is what stops node:cluster's exit. A worker that has not
 * listened yet has nothing to drain and is left to node:cluster.
 */
function leaveWithPrimary(server: Server, drainTimeout: number): void {
  process.prependOnceListener('disconnect', () => {
    const worker = cluster.worker;
    // Marked already: this worker disconnected itself after its drain report, or the primary asked.
    if (worker === undefined || worker.exitedAfterDisconnect) return;
    worker.exitedAfterDisconnect = true;
    server.shutdown({ timeout: drainTimeout, delay: 0 }).catch(() => {});
  });
}
