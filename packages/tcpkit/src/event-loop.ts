import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

/** Windows kept: the figures cover the last WINDOWS seconds, whoever reads them and how often. */
const WINDOWS = 10;
const WINDOW_MS = 1000;
/** The watch's own timer: its lateness tells of a block even before the histogram has sampled it. */
const TICK_MS = 100;

/**
 * Event-loop delay over the last ten seconds, for `/healthz` and the metrics: one
 * `monitorEventLoopDelay` histogram, read and reset once a second into a ring of one-second
 * windows. Readers (a Prometheus scrape every 15 s, `tcpkit top` every second) all see the same
 * recent figures instead of each resetting the histogram for the others.
 */
export class EventLoopWatch {
  #histogram: IntervalHistogram;
  #timer: NodeJS.Timeout | undefined;
  #maxMs: number[] = [];
  #p99Ms: number[] = [];
  #lastTick = 0;
  #windowStart = 0;
  /** Largest lateness of the own timer within the current window, in ms. */
  #windowLateness = 0;
  #users = 0;

  constructor() {
    // 20 ms sampling: blocks that matter to a probe last hundreds of ms; finer costs timer wake-ups.
    this.#histogram = monitorEventLoopDelay({ resolution: 20 });
  }

  /** Starts sampling (counted: each start needs one stop). */
  start(): void {
    if (this.#users++ > 0) return;
    this.#histogram.enable();
    this.#lastTick = performance.now();
    this.#windowStart = this.#lastTick;
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (--this.#users > 0) return;
    clearInterval(this.#timer);
    this.#histogram.disable();
    this.#histogram.reset();
    this.#maxMs = [];
    this.#p99Ms = [];
    this.#windowLateness = 0;
  }

  /** Longest delay seen in the last ten seconds, in ms, including a block still being recovered from. */
  maxMs(): number {
    return Math.max(this.#currentMaxMs(), this.#windowLateness, this.#lateness(), ...this.#maxMs);
  }

  /** Largest per-second 99th percentile of the last ten seconds, in ms. */
  p99Ms(): number {
    const current = this.#histogram.count > 0 ? this.#histogram.percentile(99) / 1e6 : 0;
    return Math.max(current, ...this.#p99Ms);
  }

  #currentMaxMs(): number {
    return this.#histogram.count > 0 ? this.#histogram.max / 1e6 : 0;
  }

  /**
   * How late the own timer is now. A request answered right after a long block runs before either
   * timer has fired (and the histogram skips its first sample after enable); the overdue timer tells
   * of the block all the same.
   */
  #lateness(): number {
    return Math.max(0, performance.now() - this.#lastTick - TICK_MS);
  }

  #tick(): void {
    this.#windowLateness = Math.max(this.#windowLateness, this.#lateness());
    this.#lastTick = performance.now();
    if (this.#lastTick - this.#windowStart >= WINDOW_MS) this.#rotate();
  }

  #rotate(): void {
    this.#windowStart = this.#lastTick;
    this.#maxMs.push(Math.max(this.#currentMaxMs(), this.#windowLateness));
    this.#windowLateness = 0;
    this.#p99Ms.push(this.#histogram.count > 0 ? this.#histogram.percentile(99) / 1e6 : 0);
    if (this.#maxMs.length > WINDOWS) {
      this.#maxMs.shift();
      this.#p99Ms.shift();
    }
    this.#histogram.reset();
  }
}

/** The process's one watch, shared by every admin endpoint and metrics collector. */
export const eventLoop = new EventLoopWatch();
