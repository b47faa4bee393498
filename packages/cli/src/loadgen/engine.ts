/**
 * The load engine: drives one share of the connections in the current thread. The main thread
 * (or a worker wrapper) calls `start()`, then `interval()` once per reporting interval, then `stop()`.
 *
 * The hot path allocates nothing per message: every socket reads into one shared buffer through
 * `onread` (no Buffer per chunk), sends pre-built payload slices, and keeps send times in a
 * preallocated ring. Timestamps are `performance.now()` doubles, not bigints.
 */
import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Client } from './client.js';
import { createLatencyHistogram, encodeHistogram, type Histogram } from './histogram.js';
import type { BenchMode, PayloadKind } from './options.js';

/** The share of a run one engine drives. */
export interface EngineConfig {
  mode: BenchMode;
  host: string;
  port: number;
  size: number;
  depth: number;
  /** Connections this engine drives. */
  connections: number;
  /** Global index of this engine's first connection: spreads source addresses and payload offsets. */
  firstConnection: number;
  /** This engine's share of the open-loop rate, messages/s; null in other modes. */
  rate: number | null;
  payload: PayloadKind;
  verify: boolean;
  sourceAddresses: string[];
  rampUpMs: number;
  connectTimeoutMs: number;
  /** Connect over TLS (certificate not verified), resuming sessions with `tlsResume`, sending `servername` as SNI. */
  tls: boolean;
  tlsResume: boolean;
  servername: string | null;
  /** Send a PROXY header of this version first (client address: the socket's own). */
  proxyProtocol: 1 | 2 | null;
}

/** What happened since the previous report. Connection counts are cumulative. */
export interface IntervalReport {
  messages: number;
  bytesSent: number;
  bytesReceived: number;
  errors: Record<string, number>;
  /** Latencies recorded in the interval, encoded with `encodeHistogram`. */
  histogram: string;
  /** Open-loop: how late each message left after its intended send time, encoded; null in other modes. */
  sendLag: string | null;
  /** Connections open now. */
  open: number;
  /** Connections established since the start. */
  established: number;
  /** Of those, TLS connections whose session was resumed (no full handshake). */
  resumed: number;
  /** Connect attempts that failed since the start. */
  failed: number;
}

const READ_BUFFER_BYTES = 64 * 1024;
/** Connect attempts in flight at once: more would overflow the server's accept backlog into SYN retries. */
const MAX_PENDING_CONNECTS = 256;
/** Distinct payload offsets, so that connections carry different bytes and a crossed stream fails `verify`. */
const PAYLOAD_OFFSETS = 251;

export class LoadEngine {
  readonly config: EngineConfig;
  /** One read buffer for every socket of this thread: `onread` callbacks run synchronously, one at a time. */
  readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  readonly t0 = performance.now();
  running = false;
  /**
   * Echo and open-loop modes hold traffic until every connection is up (`startLoad()`): connects to a server
   * already saturated with echoes overflow its listen queue and get reset, so thousands of connections would
   * never all open. The open-loop schedule starts there too, so the connect phase is not owed as a backlog.
   */
  loadStarted = false;
  /** When the open-loop schedule starts (message 0 is due): `startLoad()`. */
  #scheduleStart = 0;

  messages = 0;
  bytesSent = 0;
  bytesReceived = 0;
  open = 0;
  established = 0;
  resumed = 0;
  failed = 0;
  histogram: Histogram = createLatencyHistogram();
  /**
   * Open-loop: each message's send lag, how long after its intended time it left (µs). A generator that
   * stalls (its own GC, its core taken by another process) sends late, and every late message's latency
   * counts the stall: this is the part of the latency that is the generator's, not the server's.
   */
  sendLag: Histogram | null;
  readonly #errors = new Map<string, number>();

  readonly #clients: Client[] = [];
  readonly #payloadPool: Buffer;
  #nextToLaunch = 0;
  #pendingConnects = 0;
  #settled = 0;
  #launchTimer: NodeJS.Timeout | null = null;
  #tickTimer: NodeJS.Timeout | null = null;
  #nextScheduled = 0;
  #startResolve: (() => void) | null = null;

  constructor(config: EngineConfig) {
    this.config = config;
    this.sendLag = config.mode === 'open-loop' ? createLatencyHistogram() : null;
    this.#payloadPool = Buffer.alloc(config.size + PAYLOAD_OFFSETS);
    if (config.payload === 'random') randomFillSync(this.#payloadPool);
    for (let i = 0; i < config.connections; i++) this.#clients.push(new Client(this, i));
  }

  /** The payload of the connection with this local index. */
  payloadFor(index: number): Buffer {
    const offset = (this.config.firstConnection + index) % PAYLOAD_OFFSETS;
    return this.#payloadPool.subarray(offset, offset + this.config.size);
  }

  /** Local address for the connection with this local index, round-robin over the configured ones. */
  sourceAddressFor(index: number): string | undefined {
    const list = this.config.sourceAddresses;
    return list.length === 0 ? undefined : list[(this.config.firstConnection + index) % list.length];
  }

  /** Opens the connections (spread over `rampUpMs`); resolves once each has connected or failed once. */
  start(): Promise<void> {
    this.running = true;
    const done = new Promise<void>((resolve) => {
      this.#startResolve = resolve;
    });
    this.#launch();
    return done;
  }

  /** Lets held connections start sending (echo and open-loop modes); called when the connect phase ends. */
  startLoad(): void {
    if (this.loadStarted) return;
    this.loadStarted = true;
    if (!this.running) return;
    if (this.config.mode === 'open-loop') {
      this.#scheduleStart = performance.now();
      this.#tick();
    }
    for (const client of this.#clients) client.begin();
  }

  /** Called once per client when its first connect attempt settles. */
  settled(): void {
    this.#settled++;
    if (this.#settled === this.#clients.length) {
      this.#startResolve?.();
      this.#startResolve = null;
    }
  }

  connectAttemptDone(): void {
    this.#pendingConnects--;
    if (this.#nextToLaunch < this.#clients.length && this.#launchTimer === null) this.#launch();
  }

  connectAttemptStarted(): void {
    this.#pendingConnects++;
  }

  #launch = (): void => {
    this.#launchTimer = null;
    if (!this.running) return;
    const { rampUpMs } = this.config;
    const count = this.#clients.length;
    const elapsed = performance.now() - this.t0;
    while (this.#nextToLaunch < count && this.#pendingConnects < MAX_PENDING_CONNECTS) {
      const due = (rampUpMs * this.#nextToLaunch) / count;
      if (due > elapsed) {
        this.#launchTimer = setTimeout(this.#launch, Math.max(1, due - elapsed));
        return;
      }
      this.#clients[this.#nextToLaunch++]!.connect();
    }
  };

  /** Intended send time (ms, performance.now() scale) of the open-loop message with this engine-wide index. */
  intendedTime(sequence: number): number {
    return this.#scheduleStart + (sequence * 1000) / this.config.rate!;
  }

  /**
   * Open-loop pacing: message k of this engine is due at startLoad() + k/rate and belongs to connection
   * k mod n. A connection that is behind owes messages and sends them as soon as it may; their
   * latency still counts from the intended time, which is what corrects coordinated omission.
   */
  #tick = (): void => {
    this.#tickTimer = null;
    if (!this.running) return;
    const count = this.#clients.length;
    const due = Math.floor(((performance.now() - this.#scheduleStart) * this.config.rate!) / 1000);
    for (let k = this.#nextScheduled; k < due; k++) this.#clients[k % count]!.owe();
    this.#nextScheduled = Math.max(this.#nextScheduled, due);
    // 1 ms is the timer resolution; a message is sent at most ~1 ms after its intended time.
    this.#tickTimer = setTimeout(this.#tick, 1);
  };

  /** Open-loop messages scheduled so far (for tests of the pacing). */
  get scheduled(): number {
    return this.#nextScheduled;
  }

  recordLatency(ms: number): void {
    const us = Math.round(ms * 1000);
    this.histogram.recordValue(Math.max(us, 1));
  }

  /** Open-loop: a message intended for `intended` (ms) left at `now`. */
  recordSendLag(now: number, intended: number): void {
    this.sendLag!.recordValue(Math.max(Math.round((now - intended) * 1000), 1));
  }

  error(kind: string): void {
    this.#errors.set(kind, (this.#errors.get(kind) ?? 0) + 1);
  }

  /** Returns and resets the interval's counters. */
  interval(): IntervalReport {
    const report: IntervalReport = {
      messages: this.messages,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      errors: Object.fromEntries(this.#errors),
      histogram: encodeHistogram(this.histogram),
      sendLag: this.sendLag === null ? null : encodeHistogram(this.sendLag),
      open: this.open,
      established: this.established,
      resumed: this.resumed,
      failed: this.failed,
    };
    this.messages = 0;
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.#errors.clear();
    this.histogram.reset();
    this.sendLag?.reset();
    return report;
  }

  /**
   * Idle mode, at the end of the window: every open connection exchanges one more message (counted in
   * `messages`), so a held connection is shown to still work; resolves once each has its echo or closed.
   */
  farewell(): Promise<void> {
    return Promise.all(this.#clients.map((client) => client.farewell())).then(() => {});
  }

  /**
   * Stops sending, closes every connection, and returns the last interval. In open-loop mode every message
   * due but not answered yet is recorded first with its latency so far (a lower bound), so a server that
   * stalls near the end of the run is not hidden by stopping before its backlog drains.
   */
  stop(): IntervalReport {
    const wasRunning = this.running;
    this.running = false;
    if (this.config.mode === 'open-loop' && this.loadStarted && wasRunning) {
      const now = performance.now();
      for (const client of this.#clients) client.recordOutstanding(now);
    }
    if (this.#launchTimer) clearTimeout(this.#launchTimer);
    if (this.#tickTimer) clearTimeout(this.#tickTimer);
    this.#launchTimer = null;
    this.#tickTimer = null;
    const report = this.interval();
    for (const client of this.#clients) client.close();
    this.#startResolve?.();
    this.#startResolve = null;
    return report;
  }
}
