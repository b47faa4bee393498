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
 * The exact-size chunks of reads of 4 KiB and more are carved out of a 64 KiB slab (see `copyOut`):
 * Node's own `Buffer.allocUnsafe` pools only sizes under 4 KiB, so a 4 KiB echo paid a fresh
 * ArrayBuffer per read, and with it V8's backing-store bookkeeping: a mark-compact after nearly every
 * scavenge, spent sweeping dead ArrayBuffers.
 *
 * Feature detection runs once, on the first socket. If any piece is missing (another Node version,
 * or `TCPKIT_READ_PATH=stream` in the environment), `useSharedReadBuffer` returns false and the caller
 * keeps the ordinary 'data' path: the fallback is the stream, never an error.
 */
// Imported rather than the global: the global `Buffer` is a getter, which optimized code calls on
// every use (a runtime call per read on the hot path).
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';

/** Receives every chunk read from a socket, as the 'data' listener would. */
export type ChunkSink = (socket: Socket, chunk: Buffer) => void;

/**
 * Receives every read of an admitted connection as the shared buffer's first `n` bytes, valid only
 * during the call: the reader copies them out (copyOut), or into a lent buffer (lent-buffers.ts).
 */
export type ReadSink = (socket: Socket, source: Buffer, n: number) => void;

const SHARED_READ_BUFFER_SIZE = 64 * 1024;
/** Reads of connections waiting at the cap: small, so a waiter holds at most this much unread input. */
export const WAITER_READ_SIZE = 4 * 1024;
let sharedBuffer: Buffer | null = null;
let waiterBuffer: Buffer | null = null;
/** Plain Uint8Array views of the two (see copyOut). */
let sharedView: Uint8Array | null = null;
let waiterView: Uint8Array | null = null;

/**
 * The one 64 KiB buffer every read of an admitted connection lands in, on both read paths (this file's
 * sockets and bare-socket.ts's handles): each read's bytes are copied out (`copyOut`) before its
 * callback returns, so one buffer serves them all.
 */
export function sharedReadBuffer(): Buffer {
  if (sharedBuffer === null) {
    sharedBuffer = Buffer.allocUnsafeSlow(SHARED_READ_BUFFER_SIZE);
    sharedView = new Uint8Array(sharedBuffer.buffer, sharedBuffer.byteOffset, SHARED_READ_BUFFER_SIZE);
  }
  return sharedBuffer;
}

/** As {@link sharedReadBuffer}, WAITER_READ_SIZE bytes: the reads of connections waiting at the cap. */
export function waiterReadBuffer(): Buffer {
  if (waiterBuffer === null) {
    waiterBuffer = Buffer.allocUnsafeSlow(WAITER_READ_SIZE);
    waiterView = new Uint8Array(waiterBuffer.buffer, waiterBuffer.byteOffset, WAITER_READ_SIZE);
  }
  return waiterBuffer;
}
/** undefined: not probed yet; null: not available on this Node. */
let kBuffer: symbol | null | undefined;
let kBufferCb: symbol | null = null;
let sink: ReadSink | null = null;
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
}

/**
 * Switches `socket` (accepted, not yet reading) to the shared read buffer, handing each read to
 * `onRead` (one sink for the whole process: every caller passes the same function). Returns false,
 * leaving the socket untouched, where the hook is unavailable: then listen to 'data' as usual.
 */
export function useSharedReadBuffer(socket: Socket, onRead: ReadSink): boolean {
  // A socket that waited at the cap reads into the waiters' buffer: switch it over.
  if (!install(socket, sharedReadBuffer, onSharedRead, waiterBuffer)) return false;
  sink = onRead;
  return true;
}

/**
 * As {@link useSharedReadBuffer}, for a connection waiting at the cap: reads of at most
 * WAITER_READ_SIZE bytes, so pausing the socket once it holds that much bounds its unread input
 * exactly (a stream read would take up to 64 KiB at once). Admission switches it to the shared
 * buffer with useSharedReadBuffer.
 */
export function useWaiterReadBuffer(socket: Socket, onChunk: ChunkSink): boolean {
  if (!install(socket, waiterReadBuffer, onWaiterRead, null)) return false;
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

/** Reads from this size up are carved out of the slab; smaller ones out of the small slab. */
const SLAB_MIN = 4 * 1024;
/** Reads up to this size are carved out of the slab; larger ones get a buffer of their own. */
const SLAB_MAX = 16 * 1024;
const SLAB_SIZE = 64 * 1024;
/** The small reads' slab: the size of Node's own pool, which `Buffer.allocUnsafe` serves them from. */
const SMALL_SLAB_SIZE = 8 * 1024;
let slab: Buffer | null = null;
let slabUsed = 0;
let smallSlab: ArrayBuffer | null = null;
let smallSlabUsed = 0;

type BufferClass = new (buffer: ArrayBuffer, byteOffset: number, length: number) => Buffer;

/**
 * The class of Node's Buffers (`FastBuffer`, what `Buffer.allocUnsafe` and `subarray` make), as
 * `Buffer[Symbol.species]` names it: constructing one is a typed array's construction, without
 * `Buffer.allocUnsafe`'s argument check (a `validateNumber` call per read, about 77 instructions
 * on Node 20). `Buffer.from` where a runtime has no such class.
 */
function bufferClass(): BufferClass {
  const species = (Buffer as unknown as Record<symbol, unknown>)[Symbol.species];
  if (typeof species === 'function') {
    try {
      const probe = new (species as BufferClass)(new ArrayBuffer(8), 4, 2);
      if (Buffer.isBuffer(probe) && probe.byteOffset === 4 && probe.length === 2) return species as BufferClass;
    } catch {
      // Not constructible that way: Buffer.from below.
    }
  }
  return function viewOf(buffer: ArrayBuffer, byteOffset: number, length: number): Buffer {
    return Buffer.from(buffer, byteOffset, length);
  } as unknown as BufferClass;
}
const NodeBuffer = bufferClass();

/**
 * The `nread` bytes of `buf` copied into a chunk of their own (for every read into a shared buffer:
 * this file's sockets and bare-socket.ts's handles). A chunk under SLAB_MIN bytes is a view of an
 * 8 KiB small slab, as `Buffer.allocUnsafe` would carve it out of Node's pool (a kept chunk keeps
 * at most 8 KiB alive, as there); a chunk of SLAB_MIN..SLAB_MAX bytes is a view of a shared 64 KiB
 * slab: one ArrayBuffer per 64 KiB read instead of one per read. A chunk the handler keeps keeps its
 * slab alive, as a pooled Buffer keeps its pool: at most 64 KiB for a kept chunk of 4 KiB or more.
 */
export function copyOut(buf: Buffer, nread: number): Buffer {
  let chunk: Buffer;
  if (nread < SLAB_MIN) {
    if (smallSlab === null || smallSlabUsed + nread > SMALL_SLAB_SIZE) {
      // Not zero-filled (as Node's pool): every byte of a chunk is written before it is handed out.
      smallSlab = Buffer.allocUnsafeSlow(SMALL_SLAB_SIZE).buffer as ArrayBuffer;
      smallSlabUsed = 0;
    }
    chunk = new NodeBuffer(smallSlab, smallSlabUsed, nread);
    // Views start 8-byte aligned, as Node's pool aligns its slices.
    smallSlabUsed = (smallSlabUsed + nread + 7) & ~7;
  } else if (nread > SLAB_MAX) {
    chunk = Buffer.allocUnsafe(nread);
  } else {
    if (slab === null || slabUsed + nread > SLAB_SIZE) {
      slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      slabUsed = 0;
    }
    chunk = slab.subarray(slabUsed, slabUsed + nread);
    // Views start 8-byte aligned, as Node's pool aligns its slices.
    slabUsed = (slabUsed + nread + 7) & ~7;
  }
  // TypedArray#set from a plain Uint8Array view rather than Buffer#copy: Buffer#copy is one function
  // for every Buffer in the process, so its property loads are megamorphic (they and the view it makes
  // per call were about a tenth of a 64-byte echo's instructions).
  const view = buf === sharedBuffer ? sharedView! : buf === waiterBuffer ? waiterView! : buf;
  chunk.set(nread === view.length ? view : view.subarray(0, nread));
  return chunk;
}

function onWaiterRead(this: Socket, nread: number, buf: Buffer): void {
  waiterSink!(this, copyOut(buf, nread));
}

function onSharedRead(this: Socket, nread: number, buf: Buffer): void {
  sink!(this, buf, nread);
}
