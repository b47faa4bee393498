import type { ByteQueue } from '../byte-queue.js';

/**
 * Turns bytes into frames.
 *
 * `decode(queue)`: return a frame and consume its bytes; return `undefined` when more bytes are
 * needed (consume nothing then, except that a decoder may record its progress in
 * `queue.decoderState`); throw a `FrameError` when the stream is corrupt.
 * `decodeEnd(queue)` (optional): called at end of stream, after `decode` returned `undefined`,
 * while bytes remain. It returns a last frame, `undefined` when it has none to give, or throws;
 * a partial frame there is `ERR_FRAME_INVALID` ("truncated") unless the codec documents
 * otherwise. Without `decodeEnd`, leftover bytes at end of stream are a truncated frame.
 * A decoder holds configuration only: any parse state lives in the queue, so one decoder
 * object may serve every connection at once.
 */
export interface Decoder<T> {
  decode(queue: ByteQueue): T | undefined;
  decodeEnd?(queue: ByteQueue): T | undefined;
}

/** Where an encoder puts the chunks of one frame. A plain array is one; so is a connection's write queue. */
export interface FrameSink {
  push(...chunks: Array<Uint8Array | string>): number;
}

/**
 * Turns a frame into bytes: push the header and payload chunks to `out` without concatenating
 * (strings are written as UTF-8). Throws a `FrameError` for an item that cannot be framed
 * (too long, or containing the delimiter), before pushing anything.
 */
export interface Encoder<T> {
  encode(item: T, out: FrameSink): void;
}

/**
 * A codec factory returns one object that is both.
 * @typeParam In the frame `decode` returns.
 * @typeParam Out what `encode` accepts.
 */
export interface Codec<In, Out = In> extends Decoder<In>, Encoder<Out> {}
