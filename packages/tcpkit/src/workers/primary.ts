// The primary of a server with workers: forks them (node:cluster re-runs the user's program), hands
// each its share of the limits and, in kernel balance, its slot's listening socket; sums their stats,
// replaces the dead ones, restarts them one at a time, and drains them all at shutdown.
// Over the ~400-line guide on purpose: one state machine (start, crash recovery, rolling restart, shutdown)
// over one table of members, whose transitions interlock (a restart waits on a slot being refilled, a
// shutdown on both); split, each part would need the table and the others' promises.
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { formatAddress } from '../address.js';
import type { AdminEndpoint } from '../admin.js';
import { InvalidOptionError, ServerClosingError, WorkerError } from '../errors.js';
import { listenErrorOf } from '../listen-error.js';
import type { ResolvedOptions } from '../options.js';
import {
  REPEATED_SIGNAL_MS,
  type RestartResult,
  releaseSignals,
  type Server,
  type ServerAddress,
  type ServerStats,
  type ShutdownResult,
} from '../server.js';
import { shareOf } from './balance.js';
import { CrashPolicy } from './crash-policy.js';
import { WorkerProbes } from './metrics.js';
import { isChannelGone, isFromWorker, WORKER_ENV, type WorkerConfig, type WorkerReport } from './protocol.js';
import { StatsTotals } from './stats.js';

/** How long a worker may take to exit once drained (or to listen once shutdown began) before it is killed, in ms. */
const EXIT_GRACE = 5_000;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** One worker process and what the primary knows of it. */
interface Member {
  worker: Worker;
  slot: number;
  state: 'starting' | 'serving' | 'draining';
  report: WorkerReport | undefined;
  /** A report was asked for and has not come yet (so stats() does not ask again). */
  asked: boolean;
  /** Called with the next report. */
  onReport: (() => void)[];
  /** Resolves when it listens; rejects if it cannot listen or exits first. */
  listened: Deferred<void>;
  /** Resolves with its drain result (undefined if it exited without one). */
  drained: Deferred<ShutdownResult | undefined>;
  exited: Deferred<void>;
  /** The worker could not listen: starting again will not help. */
  listenError: boolean;
}

/**
 * Supervision events go to the `logger` option if there is one, else to stderr. No `pid` field of our own:
 * pino puts the process's in every line already, and a second would be a duplicate key in the JSON line.
 */
function log(options: ResolvedOptions, level: 'warn' | 'error', message: string): void {
  if (options.logger !== undefined) options.logger[level]({}, message);
  else process.stderr.write(`tcpkit: ${message}\n`);
}

function describeExit(code: number | null, signal: string | null): string {
  return signal !== null ? `killed by ${signal}` : `exit code ${code}`;
}

/** A free TCP port on `host`, so that every worker (and every replacement) listens on the same one. */
async function freePort(host: string | undefined): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ port: 0, host }, resolve);
  });
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const ZERO: ShutdownResult = { graceful: 0, forced: 0, durationMs: 0 };

/** The `Server` that `serve({ workers: N })` resolves to in the primary. */
export class WorkerPool implements Server {
  #options: ResolvedOptions;
  #members = new Set<Member>();
  /** The serving member of each slot (undefined while it is being replaced). */
  #serving: (Member | undefined)[];
  /** Kernel balance: each slot's listening socket, held here so it outlives the slot's workers. */
  #handles: ({ close(): void } | undefined)[];
  #totals = new StatsTotals();
  #crash: CrashPolicy;
  #abort = new AbortController();
  #address: ServerAddress | string = '';
  #port = 0;
  #shutdown: Promise<ShutdownResult> | null = null;
  #restartTail: Promise<unknown> = Promise.resolve();
  #restartQueued: Promise<RestartResult> | null = null;
  #respawns = new Set<NodeJS.Timeout>();
  #signalHandlers: [NodeJS.Signals, () => void][] = [];
  #removeAbortListener: () => void = () => {};
  #closedResolve!: () => void;
  #admin: AdminEndpoint | null = null;
  #probes = new WorkerProbes();
  /** start() succeeded (and logged 'listening'). */
  #listening = false;
  /** When the first shutdown signal arrived: a repeat within REPEATED_SIGNAL_MS is the same one (npm start). */
  #firstSignalAt = 0;
  /** A shutdownOn signal started the shutdown and the process exits once it is done (`exitOnShutdown`). */
  #exiting = false;
  /** Ends what is left of shutdownDelay (a second shutdown signal). */
  #skipDelay: () => void = () => {};

  /** Resolves once every worker has drained and exited. */
  readonly closed: Promise<void>;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.#serving = new Array(options.workers).fill(undefined);
    this.#handles = new Array(options.workers).fill(undefined);
    this.#crash = new CrashPolicy(options.crashLoop);
    this.closed = new Promise((resolve) => {
      this.#closedResolve = resolve;
    });
  }

  /** Forks every worker; resolves once all listen. */
  async start(): Promise<void> {
    const o = this.#options;
    this.#port = o.path === undefined && o.port === 0 ? await freePort(o.host) : o.port;
    const slots = this.#serving.map((_, slot) => this.#fillSlot(slot));
    try {
      await Promise.all(slots);
    } catch (error) {
      await this.shutdown({ timeout: 1 });
      throw error;
    }
    if (o.admin !== undefined) {
      const { startAdmin } = await import('../admin.js');
      this.#admin = await startAdmin(
        {
          server: this,
          // Ready while not shutting down and some worker accepts (a replacement may be on its way).
          ready: () => this.#shutdown === null && this.#serving.some((m) => m !== undefined),
          workers: {
            refresh: (timeout) => this.#refresh(timeout),
            probe: (metrics, timeout) =>
              this.#probes.ask(
                [...this.#members].filter((m) => m.state !== 'starting'),
                metrics,
                timeout,
              ),
          },
        },
        o.admin,
      );
    }
    for (const sig of o.shutdownOn) {
      const onSignal = (): void => {
        if (this.#shutdown === null) {
          this.#firstSignalAt = performance.now();
          this.shutdown().catch(() => {});
        } else if (performance.now() - this.#firstSignalAt >= REPEATED_SIGNAL_MS) this.#force(sig);
        // As one process does: exit once drained, after code awaiting `closed` has run.
        if (o.exitOnShutdown && !this.#exiting) {
          this.#exiting = true;
          this.closed.then(() => setImmediate(() => process.exit()));
        }
      };
      process.on(sig, onSignal);
      this.#signalHandlers.push([sig, onSignal]);
    }
    if (o.shutdownOn.length > 0) {
      const onHangup = (): void => {
        this.restart().catch((error: Error) =>
          log(this.#options, 'error', `restart on SIGHUP failed: ${error.message}`),
        );
      };
      process.on('SIGHUP', onHangup);
      this.#signalHandlers.push(['SIGHUP', onHangup]);
    }
    const admin = this.#admin === null ? {} : { admin: formatAddress(this.#admin.address) };
    this.#listening = true;
    o.logger?.info(
      { address: formatAddress(this.#address), workers: o.workers, balance: o.balance, ...admin },
      'listening',
    );
    if (o.signal !== undefined) {
      const onAbort = (): void => {
        this.shutdown().catch(() => {});
      };
      o.signal.addEventListener('abort', onAbort, { once: true });
      this.#removeAbortListener = () => o.signal?.removeEventListener('abort', onAbort);
    }
  }

  get address(): ServerAddress | string {
    return this.#address;
  }

  get adminAddress(): ServerAddress | undefined {
    return this.#admin?.address;
  }

  /** Throws: the workers hold the TLS contexts; `restart()` starts workers that read the certificate files again. */
  setSecureContext(): void {
    throw new InvalidOptionError(
      'workers',
      'setSecureContext() reaches one process; with workers, restart() (SIGHUP) makes new workers load the certificates',
    );
  }

  /** Aborts (with `ERR_SERVER_CLOSING`) when shutdown begins. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * The workers' counters summed (those of exited workers included), with one row per live worker, as
   * of each worker's last report. A worker reports when asked and, if its counters changed, once a
   * second: each call asks every worker for a fresh report, so the next call has figures of that
   * moment (the admin endpoint's /stats and /metrics wait for them).
   */
  stats(): ServerStats {
    for (const m of this.#members) this.#ask(m);
    const live = [...this.#members]
      .sort((a, b) => a.slot - b.slot)
      .map((m) => ({ report: m.report, row: { pid: m.worker.process.pid ?? 0, slot: m.slot, state: m.state } }));
    return this.#totals.sum(live);
  }

  /** Asks a worker for a report, unless one is on its way. */
  #ask(m: Member): void {
    if (m.asked || m.state === 'starting' || !m.worker.isConnected()) return;
    m.asked = true;
    // A worker that died a moment ago may still look connected: the send then fails (EPIPE). With a
    // callback the failure comes here instead of as an unhandled 'error' on the Worker, which would
    // crash the primary; its 'exit' handler deals with the worker.
    m.worker.send({ tcpkit: 'report' }, (error: Error | null) => {
      if (error !== null) m.asked = false;
    });
  }

  /** Asks every worker for a report; resolves once each answered (or exited), or after `timeoutMs`. */
  #refresh(timeoutMs: number): Promise<void> {
    const answers = [...this.#members]
      .filter((m) => m.state !== 'starting' && m.worker.isConnected())
      .map((m) => {
        const answered = new Promise<void>((resolve) => m.onReport.push(resolve));
        this.#ask(m);
        return answered;
      });
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    return Promise.race([Promise.all(answers), bound]).then(() => clearTimeout(timer));
  }

  /** A worker's counters arrived. */
  #reported(m: Member, report: WorkerReport): void {
    m.report = report;
    m.asked = false;
    for (const resolve of m.onReport.splice(0)) resolve();
  }

  /**
   * Replaces the workers one at a time: a new worker (freshly loaded code) starts and listens, then the
   * old one drains. A restart asked for while one runs follows it (requests in between are merged).
   * Rejects with `ERR_WORKER_START` if a new worker cannot start; the old workers then keep serving.
   */
  restart(): Promise<RestartResult> {
    if (this.#shutdown !== null) return Promise.reject(new ServerClosingError('restart: the server is shutting down'));
    if (this.#restartQueued !== null) return this.#restartQueued;
    const run = (): Promise<RestartResult> => {
      this.#restartQueued = null;
      return this.#doRestart();
    };
    const queued = this.#restartTail.then(run, run);
    this.#restartQueued = queued;
    this.#restartTail = queued.catch(() => {});
    return queued;
  }

  async #doRestart(): Promise<RestartResult> {
    const start = performance.now();
    const total = { restarted: 0, graceful: 0, forced: 0 };
    for (let slot = 0; slot < this.#serving.length; slot++) {
      if (this.#shutdown !== null) throw new ServerClosingError('restart: the server is shutting down');
      const old = this.#serving[slot];
      const fresh = this.#fork(slot);
      try {
        await fresh.listened.promise;
      } catch (error) {
        throw new WorkerError(
          'ERR_WORKER_START',
          `restart stopped at worker ${slot + 1} of ${this.#serving.length}: ${(error as Error).message}; the running workers keep serving`,
          error,
        );
      }
      this.#serve(fresh);
      if (old !== undefined && this.#members.has(old)) {
        const result = await this.#drain(old, this.#options.drainTimeout);
        total.graceful += result.graceful;
        total.forced += result.forced;
      }
      total.restarted++;
    }
    const result = { ...total, durationMs: Math.round(performance.now() - start) };
    this.#options.logger?.info(result, 'restarted workers');
    return result;
  }

  /**
   * Turns `/readyz` 503 and keeps the workers serving for `delay` ms (default `shutdownDelay`), then drains
   * every worker (as `server.shutdown()` drains one process) and resolves with the sums.
   */
  shutdown(options: { timeout?: number; delay?: number } = {}): Promise<ShutdownResult> {
    if (this.#shutdown === null) {
      this.#shutdown = this.#doShutdown(
        options.timeout ?? this.#options.drainTimeout,
        options.delay ?? this.#options.shutdownDelay,
      );
    }
    return this.#shutdown;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #doShutdown(timeout: number, delay: number): Promise<ShutdownResult> {
    const start = performance.now();
    if (delay > 0 && this.#members.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#skipDelay = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#abort.abort(new ServerClosingError());
    for (const timer of this.#respawns) clearTimeout(timer);
    // Kernel balance: let go of the slots' sockets first, so each closes with its last worker's listener
    // (connections are then refused, as by one process that shuts down) instead of queueing for nobody.
    for (const handle of this.#handles) handle?.close();
    this.#handles.fill(undefined);
    const results = await Promise.all(
      [...this.#members].map((m) => {
        if (m.state !== 'starting') return this.#drain(m, timeout);
        // A worker still starting has no connection yet: drain it once it listens, or kill it.
        const killer = setTimeout(() => m.worker.process.kill('SIGKILL'), EXIT_GRACE);
        return m.listened.promise.then(
          () => {
            clearTimeout(killer);
            return this.#drain(m, timeout);
          },
          () => {
            clearTimeout(killer);
            return ZERO;
          },
        );
      }),
    );
    await Promise.all([...this.#members].map((m) => m.exited.promise));
    await this.#admin?.close();
    this.#signalHandlers = releaseSignals(this.#signalHandlers, this.#exiting);
    this.#removeAbortListener();
    this.#closedResolve();
    const result = {
      graceful: results.reduce((n, r) => n + r.graceful, 0),
      forced: results.reduce((n, r) => n + r.forced, 0),
      durationMs: Math.round(performance.now() - start),
    };
    // A start that failed logged no 'listening' either: the error serve() rejects with is the report.
    if (this.#listening) this.#options.logger?.info({ ...result, workers: this.#options.workers }, 'shut down');
    return result;
  }

  /** A second shutdown signal: forward it, so each worker (already draining) destroys what is left. */
  #force(sig: NodeJS.Signals): void {
    this.#skipDelay();
    for (const m of this.#members) m.worker.process.kill(sig);
  }

  /** Asks a worker to drain and waits for its result; kills it if it outstays the timeout. */
  async #drain(m: Member, timeout: number): Promise<ShutdownResult> {
    m.state = 'draining';
    if (this.#serving[m.slot] === m) this.#serving[m.slot] = undefined;
    // A failed send (the worker just died) is its 'exit' to come, which resolves `drained`.
    if (m.worker.isConnected()) m.worker.send({ tcpkit: 'drain', timeout }, () => {});
    const bound = timeout > 0 ? setTimeout(() => m.worker.process.kill('SIGKILL'), timeout + EXIT_GRACE) : undefined;
    const result = await m.drained.promise;
    clearTimeout(bound);
    const exitBound = setTimeout(() => m.worker.process.kill('SIGKILL'), EXIT_GRACE);
    await m.exited.promise;
    clearTimeout(exitBound);
    // Killed before it could report: whatever it was running was lost.
    return result ?? { graceful: 0, forced: m.report?.stats.active ?? 0, durationMs: 0 };
  }

  #serve(m: Member): void {
    m.state = 'serving';
    this.#serving[m.slot] = m;
    this.#crash.listened();
  }

  /** Starts a worker for `slot` until one listens, backing off between deaths; rejects on a crash loop. */
  async #fillSlot(slot: number): Promise<void> {
    for (;;) {
      if (this.#shutdown !== null) return;
      if (this.#serving[slot] !== undefined) return;
      const m = this.#fork(slot);
      try {
        await m.listened.promise;
        this.#serve(m);
        return;
      } catch (error) {
        if (m.listenError || this.#shutdown !== null) throw error;
        this.#crash.died(false);
        const why = this.#crash.loop();
        if (why !== undefined)
          throw new WorkerError('ERR_WORKER_CRASH_LOOP', `${why}; last: ${(error as Error).message}`);
        const delay = this.#crash.backoff();
        log(this.#options, 'warn', `${(error as Error).message}; starting another in ${delay} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.#respawns.delete(timer);
            resolve();
          }, delay);
          this.#respawns.add(timer);
        });
      }
    }
  }

  #fork(slot: number): Member {
    const o = this.#options;
    const config: WorkerConfig = {
      slot,
      balance: o.balance,
      port: this.#port,
      maxConnections: shareOf(o.maxConnections, o.workers, slot),
      maxWaiting: shareOf(o.maxWaiting, o.workers, slot),
      awaitHandle: this.#handles[slot] !== undefined,
    };
    const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify(config) });
    const m: Member = {
      worker,
      slot,
      state: 'starting',
      report: undefined,
      asked: false,
      onReport: [],
      listened: deferred(),
      drained: deferred(),
      exited: deferred(),
      listenError: false,
    };
    this.#members.add(m);
    worker.on('message', (message: unknown, handle: unknown) => this.#onMessage(m, message, handle));
    worker.on('exit', (code: number | null, signal: string | null) => this.#onExit(m, code, signal));
    // node:cluster's own sends to a worker (round-robin's hand-over of each connection) take no callback:
    // to a worker that died a moment ago they fail as an 'error' on its Worker, which unheard would
    // crash the primary; the worker's 'exit' deals with it. Other errors (it could not be spawned) stay fatal.
    worker.on('error', (error: Error) => {
      if (!isChannelGone(error)) throw error;
    });
    return m;
  }

  #onMessage(m: Member, message: unknown, handle: unknown): void {
    if (!isFromWorker(message)) return;
    switch (message.tcpkit) {
      case 'want-handle': {
        const slotSocket = this.#handles[m.slot];
        // Failing, the new worker died: its 'exit' deals with it.
        if (slotSocket !== undefined) m.worker.send({ tcpkit: 'handle' }, slotSocket as net.Server, () => {});
        break;
      }
      case 'listening': {
        const { tcpkit: _, address, family, port, path, stats, rssBytes, cpuUs } = message;
        if (handle !== undefined && this.#handles[m.slot] === undefined && this.#shutdown === null) {
          this.#handles[m.slot] = handle as { close(): void };
        }
        if (this.#address === '') this.#address = path ?? { address, family, port };
        m.report = { stats, rssBytes, cpuUs };
        this.#totals.seen(m.report);
        m.listened.resolve();
        break;
      }
      case 'listen-error': {
        m.listenError = true;
        const o = this.#options;
        m.listened.reject(
          message.reason === undefined
            ? new WorkerError('ERR_WORKER_START', `a worker could not start: ${message.message}`)
            : listenErrorOf(message.reason, { host: o.host, port: this.#port, path: o.path }, message.message),
        );
        break;
      }
      case 'report':
        this.#reported(m, { stats: message.stats, rssBytes: message.rssBytes, cpuUs: message.cpuUs });
        break;
      case 'drained':
        this.#reported(m, { stats: message.stats, rssBytes: message.rssBytes, cpuUs: message.cpuUs });
        m.drained.resolve(message.result);
        break;
      case 'probe':
        this.#probes.answer(message);
        break;
    }
  }

  #onExit(m: Member, code: number | null, signal: string | null): void {
    this.#members.delete(m);
    this.#totals.retire(m.report);
    const how = describeExit(code, signal);
    m.listened.reject(new WorkerError('ERR_WORKER_START', `worker ${m.worker.process.pid} ${how} before listening`));
    m.drained.resolve(undefined);
    m.exited.resolve();
    for (const resolve of m.onReport.splice(0)) resolve();
    if (m.state !== 'serving') return;
    this.#serving[m.slot] = undefined;
    if (this.#shutdown !== null) return;
    this.#crash.died(true);
    const why = this.#crash.loop();
    if (why !== undefined) {
      this.#crashLoop(why);
      return;
    }
    const delay = this.#crash.backoff();
    log(this.#options, 'warn', `worker ${m.worker.process.pid} (slot ${m.slot}) ${how}; replacing it in ${delay} ms`);
    const timer = setTimeout(() => {
      this.#respawns.delete(timer);
      this.#fillSlot(m.slot).catch((error: Error) => {
        if (error instanceof WorkerError && error.code === 'ERR_WORKER_CRASH_LOOP') this.#crashLoop(error.message);
        else if (this.#shutdown === null)
          log(this.#options, 'error', `could not replace worker ${m.slot}: ${error.message}`);
      });
    }, delay);
    this.#respawns.add(timer);
  }

  /** Workers keep dying: stop replacing them, drain the rest and end the process with code 1. */
  #crashLoop(why: string): void {
    if (this.#shutdown !== null) return;
    log(
      this.#options,
      'error',
      `crash loop: ${why}; not replacing workers any more; draining the others and exiting with code 1`,
    );
    this.shutdown().finally(() => process.exit(1));
  }
}
