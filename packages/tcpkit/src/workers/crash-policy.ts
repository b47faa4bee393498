// When to replace a dead worker, and when to stop: exponential backoff over recent deaths, and a
// crash loop either as many deaths in a window or as many replacements in a row that never listened
// (a worker that dies at load takes longer than the window to start on a busy machine, so a window
// alone would let a broken build respawn forever).

/** First replacement delay, in ms; doubles with each recent death. */
const BASE_BACKOFF = 100;
/** Longest replacement delay, in ms. */
const MAX_BACKOFF = 5_000;

export class CrashPolicy {
  #deaths: number;
  #window: number;
  #recent: number[] = [];
  #failedStarts = 0;

  constructor(limits: { deaths: number; window: number }) {
    this.#deaths = limits.deaths;
    this.#window = limits.window;
  }

  /** Records a death; `listened` says whether that worker had started listening. */
  died(listened: boolean, now = performance.now()): void {
    this.#recent.push(now);
    this.#recent = this.#recent.filter((t) => now - t < this.#window);
    this.#failedStarts = listened ? 0 : this.#failedStarts + 1;
  }

  /** A worker listened: the build starts, so earlier failed starts no longer count. */
  listened(): void {
    this.#failedStarts = 0;
  }

  /** Why respawning should stop, or undefined to go on. */
  loop(): string | undefined {
    if (this.#recent.length >= this.#deaths) {
      return `${this.#recent.length} worker deaths within ${this.#window} ms (crashLoop.deaths ${this.#deaths})`;
    }
    if (this.#failedStarts >= this.#deaths) {
      return `${this.#failedStarts} workers in a row died before listening (crashLoop.deaths ${this.#deaths})`;
    }
    return undefined;
  }

  /** Delay before the next replacement, in ms. */
  backoff(): number {
    const n = Math.max(this.#recent.length, this.#failedStarts, 1);
    return Math.min(BASE_BACKOFF * 2 ** (n - 1), MAX_BACKOFF);
  }
}
