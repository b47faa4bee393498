/**
 * The key space: values are Buffers (binary safe), keys are their bytes read as latin1 so every
 * byte string maps to exactly one JS string. Expiry times live in a second map, as Redis keeps
 * its `expires` dict beside the main one, so a store without TTLs pays nothing for them.
 */
export class Store {
  #values = new Map<string, Buffer>();
  /** Absolute expiry time in Unix milliseconds, for keys that have one. */
  #expires = new Map<string, number>();
  #sweepCursor: Iterator<[string, number]> | null = null;
  #avgTtl = 0;
  #expired = 0;

  /**
   * Estimated mean remaining time to live of the keys with one, in ms (INFO's `avg_ttl`): a moving
   * average over the keys the sweep samples, as Redis estimates it; 0 without expiring keys.
   */
  get avgTtl(): number {
    return this.#avgTtl;
  }

  /** Keys removed because they expired, lazily or by the sweep, since the store was created. */
  get expiredKeys(): number {
    return this.#expired;
  }

  /**
   * Exchanges the contents of two stores (SWAPDB): a client that selected a database keeps its
   * `Store`, and sees the other's keys from its next command, as in Redis.
   */
  swap(other: Store): void {
    [this.#values, other.#values] = [other.#values, this.#values];
    [this.#expires, other.#expires] = [other.#expires, this.#expires];
    [this.#avgTtl, other.#avgTtl] = [other.#avgTtl, this.#avgTtl];
    this.#sweepCursor = null;
    other.#sweepCursor = null;
  }

  /** Keys held, including expired keys not yet removed (Redis's DBSIZE counts those too). */
  get size(): number {
    return this.#values.size;
  }

  /** Keys that have an expiry time. */
  get expiresCount(): number {
    return this.#expires.size;
  }

  /** The value of `key`, or undefined when it is missing or expired (which removes it). */
  get(key: string, now: number): Buffer | undefined {
    const value = this.#values.get(key);
    if (value === undefined || this.#expires.size === 0) return value;
    const at = this.#expires.get(key);
    if (at !== undefined && at <= now) {
      this.delete(key);
      this.#expired++;
      return undefined;
    }
    return value;
  }

  has(key: string, now: number): boolean {
    return this.get(key, now) !== undefined;
  }

  /**
   * Sets `key` to `value` (which the store keeps: pass a copy of request bytes). `expireAt`
   * (Unix ms) sets an expiry; without it the key's expiry is cleared unless `keepTtl`.
   */
  set(key: string, value: Buffer, expireAt?: number, keepTtl = false): void {
    this.#values.set(key, value);
    if (expireAt !== undefined) this.#expires.set(key, expireAt);
    else if (!keepTtl && this.#expires.size > 0) this.#expires.delete(key);
  }

  delete(key: string): boolean {
    if (this.#expires.size > 0) this.#expires.delete(key);
    return this.#values.delete(key);
  }

  /** Expiry time of a live key in Unix ms, or -1 when it has none. Call after `get`/`has`. */
  expireAt(key: string): number {
    return this.#expires.get(key) ?? -1;
  }

  setExpire(key: string, at: number): void {
    this.#expires.set(key, at);
  }

  /** Removes the expiry of `key`; true when it had one. */
  persist(key: string): boolean {
    return this.#expires.delete(key);
  }

  /** Live keys, in insertion order. */
  *keys(now: number): IterableIterator<string> {
    for (const key of this.#values.keys()) {
      if (this.#expires.size === 0) {
        yield key;
        continue;
      }
      const at = this.#expires.get(key);
      if (at === undefined || at > now) yield key;
    }
  }

  clear(): void {
    this.#values.clear();
    this.#expires.clear();
    this.#sweepCursor = null;
    this.#avgTtl = 0;
  }

  /**
   * Active expiry, one step: looks at up to `budget` keys with a TTL, resuming where the last
   * step stopped (a Map iterator survives deletions), and removes those that expired. Lazy
   * expiry alone would keep keys that are never read again forever. The live keys sampled feed
   * `avgTtl` as Redis's activeExpireCycle does. Returns the number removed.
   */
  sweep(now: number, budget: number): number {
    if (this.#expires.size === 0) {
      this.#avgTtl = 0;
      return 0;
    }
    let removed = 0;
    let ttlSum = 0;
    let ttlSamples = 0;
    this.#sweepCursor ??= this.#expires.entries();
    for (let i = 0; i < budget; i++) {
      const next = this.#sweepCursor.next();
      if (next.done) {
        this.#sweepCursor = null;
        break;
      }
      const [key, at] = next.value;
      if (at <= now) {
        this.delete(key);
        removed++;
      } else {
        ttlSum += at - now;
        ttlSamples++;
      }
    }
    this.#expired += removed;
    if (ttlSamples > 0) {
      // Redis's estimate: each sample weighs 2% against the running value (seeded by the first).
      const avg = Math.floor(ttlSum / ttlSamples);
      if (this.#avgTtl === 0) this.#avgTtl = avg;
      this.#avgTtl = Math.floor(this.#avgTtl / 50) * 49 + Math.floor(avg / 50);
    }
    return removed;
  }
}
