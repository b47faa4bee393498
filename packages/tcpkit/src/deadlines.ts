/**
 * One coarse timer for every connection's deadlines: a hashed timing wheel.
 *
 * Thousands of connections each with a per-socket `setTimeout` mean thousands of live timer
 * objects, re-armed on every read. Here a connection owns one `DeadlineEntry`; refreshing an
 * idle deadline is a plain field write by the owner (no timer call), and the entry fires at its
 * scheduled tick, where the owner checks its real deadlines and re-arms if none has passed
 * (the lazy re-check of Netty's IdleStateHandler). One `setInterval` drives all of it and runs
 * only while entries exist: it stops at the first tick that finds the wheel empty, not at the cancel
 * that empties it, so connections that come and go (churn) do not start and stop a timer each.
 * Each slot is a doubly linked list threaded through the entries themselves (as Netty's
 * HashedWheelTimer and the Linux kernel's timer wheel link their timers): filing, moving and
 * cancelling an entry allocate nothing. A `Set` per slot did: V8 reallocates a Set's table as it grows
 * and shrinks, and a slot's Set mostly holds zero to two entries, so nearly every cancel that emptied
 * one and every first add made a new table (about 100 bytes, a few per connection in churn).
 */

/** A scheduled callback; owned by one connection and re-armed with `Deadlines#schedule`. */
export interface DeadlineEntry {
  /** Called once the tick at or after `at` is reached. */
  onDeadline(now: number): void;
  /** @internal absolute tick the entry is filed under, or -1 when not scheduled. */
  tick: number;
  /** @internal the entries before and after it in its slot's list; null at the ends and when not scheduled. */
  wheelPrev: DeadlineEntry | null;
  /** @internal see wheelPrev. */
  wheelNext: DeadlineEntry | null;
}

/** What the wheel reads the time from and ticks by; injectable, so tests run the wheel on virtual time. */
export interface Clock {
  /** A monotonic reading in milliseconds. */
  now(): number;
  /** Calls `tick` every `ms` milliseconds until the returned function is called; must not keep the process alive. */
  every(ms: number, tick: () => void): () => void;
}

/**
 * `performance.now()` in whole milliseconds (rounded up, so never 0, which the timers read as "not
 * started") and an unref'd `setInterval`. Whole milliseconds are small integers, which V8 stores in a
 * field as is: a fraction would box each reading kept per connection (16 bytes each, several a
 * connection); the wheel's resolution is far coarser than a millisecond anyway.
 */
export const realClock: Clock = {
  now: () => Math.ceil(performance.now()),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
};

const SLOTS = 512; // power of two; one round = SLOTS * resolution (51.2 s at 100 ms)
const SLOT_MASK = SLOTS - 1;

export class Deadlines {
  readonly resolution: number;
  /** First and last entry of each slot's list (filed in order, so a slot fires first-filed first). */
  #heads: (DeadlineEntry | null)[] = Array.from({ length: SLOTS }, () => null);
  #tails: (DeadlineEntry | null)[] = Array.from({ length: SLOTS }, () => null);
  /** While a tick runs its slot: the entry it visits next (moved on when a callback unfiles that one). */
  #cursor: DeadlineEntry | null = null;
  #size = 0;
  #tick = 0;
  #clock: Clock;
  /** Stops the ticking; null while the wheel is stopped (no entries). */
  #stopTicking: (() => void) | null = null;
  #now = 0;

  /**
   * @param resolution milliseconds per tick (deadlines fire up to this late).
   * @param clock where time comes from (default: the real clock).
   */
  constructor(resolution = 100, clock: Clock = realClock) {
    this.resolution = resolution;
    this.#clock = clock;
  }

  /** A coarse monotonic clock (ms, the clock's): exact when stopped, updated every tick while running. */
  now(): number {
    return this.#stopTicking === null ? this.#clock.now() : this.#now;
  }

  /** Number of scheduled entries. */
  get size(): number {
    return this.#size;
  }

  /** Files `entry` to fire at time `at` (ms, on the `now()` clock); re-files it if already scheduled. */
  schedule(entry: DeadlineEntry, at: number): void {
    if (this.#stopTicking === null) this.#start();
    let tick = Math.ceil(at / this.resolution);
    if (tick <= this.#tick) tick = this.#tick + 1;
    if (entry.tick === tick) return;
    if (entry.tick !== -1) this.#unlink(entry);
    else this.#size++;
    entry.tick = tick;
    const slot = tick & SLOT_MASK;
    const tail = this.#tails[slot] ?? null;
    entry.wheelPrev = tail;
    entry.wheelNext = null;
    if (tail === null) this.#heads[slot] = entry;
    else tail.wheelNext = entry;
    this.#tails[slot] = entry;
  }

  /** Removes `entry` if scheduled (an emptied wheel stops at its next tick). */
  cancel(entry: DeadlineEntry): void {
    if (entry.tick === -1) return;
    this.#unlink(entry);
    entry.tick = -1;
    this.#size--;
  }

  /** Takes a filed entry out of its slot's list (its tick still names the slot). */
  #unlink(entry: DeadlineEntry): void {
    const slot = entry.tick & SLOT_MASK;
    const prev = entry.wheelPrev;
    const next = entry.wheelNext;
    if (entry === this.#cursor) this.#cursor = next;
    if (prev === null) this.#heads[slot] = next;
    else prev.wheelNext = next;
    if (next === null) this.#tails[slot] = prev;
    else next.wheelPrev = prev;
    entry.wheelPrev = null;
    entry.wheelNext = null;
  }

  /** The wheel is ticking (it has entries, or had some until its last tick). */
  get running(): boolean {
    return this.#stopTicking !== null;
  }

  #start(): void {
    this.#now = this.#clock.now();
    this.#tick = Math.floor(this.#now / this.resolution);
    this.#stopTicking = this.#clock.every(this.resolution, this.#onTick);
  }

  #stop(): void {
    this.#stopTicking?.();
    this.#stopTicking = null;
  }

  #onTick = (): void => {
    this.#now = this.#clock.now();
    const target = Math.floor(this.#now / this.resolution);
    // After a very long block, one full round visits every slot: no need to replay the rest.
    if (target - this.#tick > SLOTS) this.#tick = target - SLOTS;
    // Catch up tick by tick if the loop was blocked, so no slot is skipped.
    while (this.#tick < target && this.#stopTicking !== null) {
      const tick = ++this.#tick;
      let entry: DeadlineEntry | null = this.#heads[tick & SLOT_MASK] ?? null;
      while (entry !== null) {
        if (entry.tick > tick) {
          entry = entry.wheelNext; // a later round
          continue;
        }
        // A callback may unfile or refile any entry, the next one included: the cursor follows.
        this.#cursor = entry.wheelNext;
        this.#unlink(entry);
        entry.tick = -1;
        this.#size--;
        entry.onDeadline(this.#now);
        entry = this.#cursor;
      }
      this.#cursor = null;
    }
    if (this.#size === 0) this.#stop();
  };
}

/** The wheel shared by every server in the process. */
export const deadlines = new Deadlines();
