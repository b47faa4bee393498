import type { ByteQueue } from '../byte-queue.js';

/**
 * Turns bytes into frames.
 *
 * `decode(queue)`: return a frame and consume its bytes; return `undefined` when more bytes are
 * needed (consume nothing then); throw a `FrameError` when the stream is corrupt.
 * `decodeEnd(queue)` (optional): called at end of stream while bytes remain; a partial frame
 * there is `ERR_FRAME_INVALID` ("truncated"). A decoder holds configuration only: any parse
 * state lives in the queue, so one decoder object may serve every connection at once.
 */
export interface Decoder<T> {
  decode(queue: ByteQueue): T | undefined;
  decodeEnd?(queue: ByteQueue): T | undefined;
}

/** Where an encoder puts the chunks of one frame. A plain array is one; so is a connection's write queue. */
export interface FrameSink {
  push(...chunks: Array<Uint8Array | string>): number;
}

/** Turns a frame into bytes: push the header and payload chunks to `out` without concatenating. */
export interface Encoder<T> {
  encode(item: T, out: FrameSink): void;
}

/** A codec factory returns one object that is both. */
export interface Codec<In, Out = In> extends Decoder<In>, Encoder<Out> {}
