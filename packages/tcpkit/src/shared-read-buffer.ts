/**
 * Reads of accepted sockets into one shared buffer: tcpkit's one hook into Node internals.
 *
 * Node reuses a caller's read buffer (`onread`) only for sockets it connects, not for accepted ones;
 * the same mechanism can be switched on for an accepted socket through the handle's `useUserBuffer`
 * and the socket's `kBuffer`/`kBufferCb` slots (present on Node 20, 22 and 24). Reads then skip the
 * Readable stream (no push, no 'data' event), no 64 KiB buffer is allocated and shrunk per read, and
 * pause/resume become readStop/readStart. One buffer serves every socket because a read callback runs
 * to completion before the next read: the bytes are copied out into an exact-size chunk before it
 * returns.
 *
 * Feature detection runs once, on the first socket. If any piece is missing (another Node version,
 * or `TCPKIT_READ_PATH=stream` in the environment), `useSharedReadBuffer` returns false and the caller
 * keeps the ordinary 'data' path: the fallback is the stream, never an error.
 */
import type { Socket } from 'node:net';

/** Receives every chunk read from a socket, as the 'data' listener would. */
export type ChunkSink = (socket: Socket, chunk: Buffer) => void;

const SHARED_READ_BUFFER_SIZE = 64 * 1024;
/** Reads of connections waiting at the cap: small, so a waiter holds at most this much unread input. */
export const WAITER_READ_SIZE = 4 * 1024;
let sharedReadBuffer: Buffer | null = null;
let waiterReadBuffer: Buffer | null = null;
/** undefined: not probed yet; null: not available on this Node. */
let kBuffer: symbol | null | undefined;
let kBufferCb: symbol | null = null;
let sink: ChunkSink | null = null;
let waiterSink: ChunkSink | null = null;

type HandleWithUserBuffer = { useUserBuffer?: (buf: Uint8Array) => void };

function probe(socket: Socket): void {
  kBuffer = null;
  if (process.env.TCPKIT_READ_PATH === 'stream') return;
  const symbols = Object.getOwnPropertySymbols(socket);
  const b = symbols.find((sym) => sym.description === 'kBuffer');
  const cb = symbols.find((sym) => sym.description === 'kBufferCb');
  if (b === undefined || cb === undefined) return;
  kBuffer = b;
  kBufferCb = cb;
  sharedReadBuffer = Buffer.allocUnsafeSlow(SHARED_READ_BUFFER_SIZE);
  waiterReadBuffer = Buffer.allocUnsafeSlow(WAITER_READ_SIZE);
}

/**
 * Switches `socket` (accepted, not yet reading) to the shared read buffer, delivering each chunk to
 * `onChunk` (one sink for the whole process: every caller passes the same function). Returns false,
 * leaving the socket untouched, where the hook is unavailable: then listen to 'data' as usual.
 */
export function useSharedReadBuffer(socket: Socket, onChunk: ChunkSink): boolean {
  // A socket that waited at the cap reads into the waiters' buffer: switch it over.
  if (!install(socket, () => sharedReadBuffer!, onSharedRead, waiterReadBuffer)) return false;
  sink = onChunk;
  return true;
}

/**
 * As {@link useSharedReadBuffer}, for a connection waiting at the cap: reads of at most
 * WAITER_READ_SIZE bytes, so pausing the socket once it holds that much bounds its unread input
 * exactly (a stream read would take up to 64 KiB at once). Admission switches it to the shared
 * buffer with useSharedReadBuffer.
 */
export function useWaiterReadBuffer(socket: Socket, onChunk: ChunkSink): boolean {
  if (!install(socket, () => waiterReadBuffer!, onWaiterRead, null)) return false;
  waiterSink = onChunk;
  return true;
}

/** Points the socket's reads at `buffer()` with `callback`, if the hook exists and its slots are free (or hold `replaces`). */
function install(
  socket: Socket,
  buffer: () => Buffer,
  callback: (this: Socket, nread: number, buf: Buffer) => void,
  replaces: Buffer | null,
): boolean {
  if (kBuffer === undefined) probe(socket);
  const b = kBuffer as symbol | null;
  const handle = (socket as unknown as { _handle: HandleWithUserBuffer | null })._handle;
  if (b === null || typeof handle?.useUserBuffer !== 'function') return false;
  const slots = socket as unknown as Record<symbol, unknown>;
  const current = slots[b];
  if (!(current === null && slots[kBufferCb!] === null) && !(replaces !== null && current === replaces)) return false;
  const buf = buffer();
  handle.useUserBuffer(buf);
  slots[b] = buf;
  slots[kBufferCb!] = callback;
  return true;
}

function onWaiterRead(this: Socket, nread: number, buf: Buffer): void {
  const chunk = Buffer.allocUnsafe(nread);
  buf.copy(chunk, 0, 0, nread);
  waiterSink!(this, chunk);
}

function onSharedRead(this: Socket, nread: number, buf: Buffer): void {
  const chunk = Buffer.allocUnsafe(nread);
  buf.copy(chunk, 0, 0, nread);
  sink!(this, chunk);
}
