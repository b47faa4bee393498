import { InvalidOptionError } from './errors.js';
import { integer } from './validate.js';

/** Options of a {@link BufferPool}. */
export interface BufferPoolOptions {
  /** Smallest size class in bytes (a power of two). Default 256. */
  minSize?: number;
  /** Largest size class in bytes (a power of two); larger requests are allocated and never pooled. Default 65536. */
  maxSize?: number;
  /** Most bytes the pool keeps across all classes; releases beyond it are dropped for the GC. Default 4 MiB. */
  maxPooledBytes?: number;
}

/**
 * A size-classed, bounded pool of buffers: the `sync.Pool` of tcpkit.
 *
 * `acquire(size)` returns a buffer of at least `size` bytes (its length is the size class);
 * `release(buf)` gives it back. Release a buffer only when nothing else references it: the pool
 * hands it out again. Buffers are not zeroed.
 */
export class BufferPool {
  readonly minSize: number;
  readonly maxSize: number;
  readonly maxPooledBytes: number;
  #classes: Buffer[][];
  #minShift: number;
  #pooledBytes = 0;

  constructor(options: BufferPoolOptions = {}) {
    const { minSize = 256, maxSize = 65536, maxPooledBytes = 4 * 1024 * 1024 } = options;
    for (const [name, v] of [
      ['minSize', minSize],
      ['maxSize', maxSize],
    ] as const) {
      if (integer(name, v, 1, 2 ** 30) & (v - 1)) {
        throw new InvalidOptionError(name, `must be a power of two, got ${String(v)}`);
      }
    }
    if (maxSize < minSize) throw new InvalidOptionError('maxSize', 'must be >= minSize');
    integer('maxPooledBytes', maxPooledBytes, 0);
    this.minSize = minSize;
    this.maxSize = maxSize;
    this.maxPooledBytes = maxPooledBytes;
    this.#minShift = Math.log2(minSize);
    this.#classes = Array.from({ length: Math.log2(maxSize) - this.#minShift + 1 }, () => []);
  }

  /** Bytes currently held by the pool. */
  get pooledBytes(): number {
    return this.#pooledBytes;
  }

  #classOf(size: number): number {
    if (size <= this.minSize) return 0;
    return 32 - Math.clz32(size - 1) - this.#minShift;
  }

  /** A buffer of length >= `size` (exactly `size` when it is above `maxSize`). */
  acquire(size: number): Buffer {
    if (size > this.maxSize) return Buffer.allocUnsafeSlow(size);
    const c = this.#classOf(size);
    const free = this.#classes[c]!;
    const buf = free.pop();
    if (buf !== undefined) {
      this.#pooledBytes -= buf.length;
      return buf;
    }
    return Buffer.allocUnsafeSlow(this.minSize << c);
  }

  /** Returns a buffer obtained from `acquire`. Buffers of other sizes are ignored. */
  release(buf: Buffer): void {
    const size = buf.length;
    if (size < this.minSize || size > this.maxSize || (size & (size - 1)) !== 0) return;
    if (this.#pooledBytes + size > this.maxPooledBytes) return;
    this.#classes[this.#classOf(size)]!.push(buf);
    this.#pooledBytes += size;
  }
}

/** The pool shared by tcpkit's connections (write coalescing) and codecs. */
export const defaultPool = new BufferPool();

/**
 * @internal Gives back to defaultPool every buffer of `pooled` (each acquired from it; null: none): the
 * writers' pooled buffers once the write that carried them is done with them.
 */
export function releaseAll(pooled: readonly Buffer[] | null): void {
  if (pooled !== null) for (let i = 0; i < pooled.length; i++) defaultPool.release(pooled[i]!);
}
