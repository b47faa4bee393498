/**
 * The handler's iterators over decoded frames, `conn.frames(decoder)` and `conn.frameBatches(decoder)`,
 * and over lent chunks, `conn.chunks({ reuse: true })`. Each pulls from the connection's
 * {@link ConnReader}; the frame iterators decode what is buffered without waiting and park on the
 * reader only when it holds no whole frame. (`for await (const chunk of conn)` needs no object of its
 * own: the reader is its iterator, ConnReader#next.)
 */
import { Buffer } from 'node:buffer';
import { type ConnReader, END, NEED_MORE } from './conn-reader.js';
import type { Decoder } from './framing/types.js';
import { giveBack, type LentBuffer, lendCopy } from './lent-buffers.js';

const DONE: IteratorResult<never> = Object.freeze({ value: undefined, done: true }) as IteratorResult<never>;
/** A lender's result between steps: no lent buffer stays reachable from it. */
const EMPTY = Buffer.alloc(0);

/**
 * What the frame iterators share: decode what is buffered, else park on the reader with one wake
 * callback made per iterator (not per frame) and one promise per wait, whose resolving functions
 * the iterator keeps.
 */
abstract class FrameSource<T, R> {
  readonly #reader: ConnReader;
  readonly #decoder: Decoder<T>;
  #done = false;
  #resolve: ((r: IteratorResult<R>) => void) | null = null;
  #reject: ((e: unknown) => void) | null = null;
  #wake: (() => void) | null = null;

  constructor(reader: ConnReader, decoder: Decoder<T>) {
    this.#reader = reader;
    this.#decoder = decoder;
  }

  /** What is buffered, as a result: undefined when the iterator must wait. Throws a decoder's error. */
  protected abstract take(reader: ConnReader, decoder: Decoder<T>): R | typeof END | undefined;

  next(): Promise<IteratorResult<R>> {
    if (this.#done) return Promise.resolve(DONE);
    try {
      const r = this.#result();
      if (r !== undefined) return Promise.resolve(r);
    } catch (err) {
      return Promise.reject(err);
    }
    making = this as FrameSource<unknown, unknown>;
    const promise = new Promise(FrameSource.#executor) as Promise<IteratorResult<R>>;
    this.#wake ??= () => this.#step();
    this.#reader.waitForData(this.#wake);
    return promise;
  }

  return(): Promise<IteratorResult<R>> {
    this.#done = true;
    return Promise.resolve(DONE);
  }

  #result(): IteratorResult<R> | undefined {
    const r = this.take(this.#reader, this.#decoder);
    if (r === undefined) return undefined;
    if (r === END) {
      this.#done = true;
      return DONE;
    }
    return { value: r, done: false };
  }

  /** Input, end of stream or an error arrived while parked. */
  #step(): void {
    let r: IteratorResult<R> | undefined;
    try {
      r = this.#result();
    } catch (err) {
      const reject = this.#reject!;
      this.#resolve = this.#reject = null;
      reject(err);
      return;
    }
    if (r === undefined) {
      this.#reader.waitForData(this.#wake!);
      return;
    }
    const resolve = this.#resolve!;
    this.#resolve = this.#reject = null;
    resolve(r);
  }

  /** One executor for every iterator (it runs synchronously: the iterator waits in a module slot). */
  static #executor = (resolve: (r: IteratorResult<unknown>) => void, reject: (e: unknown) => void): void => {
    const source = making!;
    making = null;
    source.#resolve = resolve;
    source.#reject = reject;
  };
}

/** The iterator whose promise is being made (see FrameSource#next). */
let making: FrameSource<unknown, unknown> | null = null;

/** `conn.frames(decoder)`: one frame a step. */
export class FrameIterator<T> extends FrameSource<T, T> implements AsyncIterableIterator<T> {
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  protected take(reader: ConnReader, decoder: Decoder<T>): T | typeof END | undefined {
    const frame = reader.decodeNext(decoder);
    return frame === NEED_MORE ? undefined : frame;
  }
}

/**
 * `conn.frameBatches(decoder)`: every frame that the buffered input holds, as one array a step. A
 * decoder error after some frames first delivers those frames; the next step rejects with it. End of
 * input after some frames likewise: the next step ends the iteration.
 */
export class FrameBatchIterator<T> extends FrameSource<T, T[]> implements AsyncIterableIterator<T[]> {
  /** A decoder error met after frames already taken into the batch: thrown by the next step. */
  #pendingError: unknown = undefined;
  #pendingEnd = false;

  [Symbol.asyncIterator](): AsyncIterableIterator<T[]> {
    return this;
  }

  protected take(reader: ConnReader, decoder: Decoder<T>): T[] | typeof END | undefined {
    if (this.#pendingError !== undefined) {
      const error = this.#pendingError;
      this.#pendingError = undefined;
      throw error;
    }
    if (this.#pendingEnd) return END;
    const first = reader.decodeNext(decoder);
    if (first === NEED_MORE || first === END) return first === END ? END : undefined;
    const batch = [first];
    for (;;) {
      let frame: T | typeof NEED_MORE | typeof END;
      try {
        frame = reader.decodeNext(decoder);
      } catch (err) {
        this.#pendingError = err;
        return batch;
      }
      if (frame === NEED_MORE) return batch;
      if (frame === END) {
        this.#pendingEnd = true;
        return batch;
      }
      batch.push(frame);
    }
  }
}

/**
 * `conn.chunks({ reuse: true })`: chunks in lent buffers (lent-buffers.ts), each valid until the next
 * step (next(), return(), the loop's end). A read that arrives while the iterator is parked is copied
 * straight into a lent buffer; input that arrived while the handler was busy was queued and is
 * delivered as its own memory. One result object serves every step (the lifetime rule covers it too).
 */
export class ChunkLender implements AsyncIterableIterator<Buffer> {
  readonly #reader: ConnReader;
  /** The buffer of the last step, given back at the next. */
  #lent: LentBuffer | null = null;
  #done = false;
  readonly #result: { value: Buffer; done: false };

  constructor(reader: ConnReader) {
    this.#reader = reader;
    this.#result = { value: EMPTY, done: false };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    return this;
  }

  /**
   * Flush first, then give the buffer back. A lent chunk the handler wrote back is queued by reference
   * (write-queue.ts addLent): a step that parks flushes the connection's writes synchronously
   * (ConnReader#park), so in ping-pong the kernel has taken the chunk before its buffer goes back, and
   * the buffer serves the next read. Whatever is still queued then (the step did not park, or the kernel
   * was busy) is copied out, and a buffer still in flight is not reused (giveBack).
   */
  next(): Promise<IteratorResult<Buffer>> {
    const lent = this.#lent;
    if (lent === null) return this.#done ? Promise.resolve(DONE) : this.#reader.nextLent(this);
    this.#lent = null;
    this.#result.value = EMPTY;
    const step = this.#reader.nextLent(this);
    giveBack(lent);
    return step;
  }

  return(): Promise<IteratorResult<Buffer>> {
    this.#giveBack();
    this.#done = true;
    this.#reader.unpark(this);
    return Promise.resolve(DONE);
  }

  /** ConnReader#onRead, while this iterator is parked: the step's result, the read copied into a lent buffer. */
  lend(source: Buffer, n: number): IteratorResult<Buffer> {
    const lent = lendCopy(source, n);
    this.#lent = lent;
    this.#result.value = lent.view;
    return this.#result;
  }

  #giveBack(): void {
    const lent = this.#lent;
    if (lent === null) return;
    this.#lent = null;
    this.#result.value = EMPTY;
    giveBack(lent);
  }
}
