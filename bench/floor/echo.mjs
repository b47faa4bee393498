// The floor of a Go-style async echo handler on Node: a bench-only experiment, not product code.
//
// A TCP echo server on libuv TCP handles driven directly (no net.Socket, no streams), as tcpkit's
// packages/tcpkit/src/bare-socket.ts and handle-writer.ts drive them: the listener's `onconnection`
// taken over, `onread` into one shared 64 KiB buffer (`useUserBuffer`), writes with `writeBuffer` and
// one spare `WriteWrap` (a write the kernel takes at once never binds it). On top of that, in
// variants, the thinnest handler each programming model allows, so that what tcpkit costs above it is
// visible (docs/benchmarks.md, "The floor of the async-handler model", has the measurements):
//
//   cb               onread writes the chunk straight back (the 40-line experiment)
//   cb-nocopy        cb, writing a cached view of the shared buffer instead of a fresh copy
//   cb-micro         cb, the write deferred to a queueMicrotask (no promise; but Node's queueMicrotask makes an
//                    AsyncResource and a bound function per call, so this measures that, not a bare microtask)
//   then             a promise per read and a .then callback that writes (a reaction, no async function)
//   forawait         async function: for await (const chunk of source) await sink.write(chunk)  (tcpkit's handler)
//   forawait-nocopy  forawait, the chunk a cached view (no copy)
//   forawait-nowait  forawait, the write not awaited
//   read             async function: while ((chunk = await source.read()) !== null) await sink.write(chunk)
//   read-nowait      read, the write not awaited (one await per message)
//   read-batched     read-nowait, the reads of one event-loop iteration handed to their handlers in one
//                    setImmediate (one microtask checkpoint for them all instead of one per read)
//
// Every variant but the -nocopy ones copies each read into a fresh Buffer (exact size; 4-16 KiB reads
// carved out of a 64 KiB slab, as tcpkit's shared-read-buffer.ts does), because a handler keeps its chunk.
// The sink's write resolves at once (one shared resolved promise) when the kernel took the bytes.
//
// Usage: node bench/floor/echo.mjs VARIANT PORT [HOST]   (HOST default 127.0.0.1; SIGTERM stops it)
// Plain JavaScript, no dependencies: runs as is on Node 20, 22 and 24.
import { Buffer } from 'node:buffer';
import net from 'node:net';

const VARIANTS = [
  'cb',
  'cb-nocopy',
  'cb-micro',
  'then',
  'forawait',
  'forawait-nocopy',
  'forawait-nowait',
  'read',
  'read-nowait',
  'read-batched',
];
const variant = process.argv[2];
const port = Number(process.argv[3]);
const host = process.argv[4] ?? '127.0.0.1';
if (!VARIANTS.includes(variant) || !(port >= 0)) {
  process.stderr.write(`usage: node bench/floor/echo.mjs ${VARIANTS.join('|')} PORT [HOST]\n`);
  process.exit(2);
}
const noCopy = variant.endsWith('-nocopy');

const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = process.binding('stream_wrap');
const UV_EOF = -4095;

// ---- the read side: one shared buffer, each read copied out ----------------------------------------

const SHARED = 64 * 1024;
const shared = Buffer.allocUnsafeSlow(SHARED);
const sharedView = new Uint8Array(shared.buffer, shared.byteOffset, SHARED);
/** -nocopy: one view of the shared buffer per read size, made once (the echo is written before the next read). */
const views = [];
let slab = null;
let slabUsed = 0;

function chunkOf(n) {
  // biome-ignore lint/suspicious/noAssignInExpressions: the cache fill is the point of the line
  if (noCopy) return (views[n] ??= shared.subarray(0, n));
  let chunk;
  if (n < 4096 || n > 16384) {
    chunk = Buffer.allocUnsafe(n);
  } else {
    if (slab === null || slabUsed + n > SHARED) {
      slab = Buffer.allocUnsafeSlow(SHARED);
      slabUsed = 0;
    }
    chunk = slab.subarray(slabUsed, slabUsed + n);
    slabUsed = (slabUsed + n + 7) & ~7;
  }
  chunk.set(n === SHARED ? sharedView : sharedView.subarray(0, n));
  return chunk;
}

// ---- the write side: writeBuffer with a spare WriteWrap ---------------------------------------------

const RESOLVED = Promise.resolve();
let spare = null;

function newReq() {
  const req = new WriteWrap();
  req.oncomplete = onWriteComplete;
  req.conn = null;
  req.chunk = null;
  return req;
}

function onWriteComplete(status) {
  const conn = this.conn;
  this.conn = null;
  this.chunk = null;
  conn.written(status);
}

/** One connection: its handle, the handler's source (reads) and sink (writes). */
class Conn {
  constructor(handle) {
    this.handle = handle;
    this.closed = false;
    this.inFlight = 0;
    /** Chunks read while the handler was not waiting (never, in ping-pong). */
    this.queue = [];
    this.ended = false;
    /** The parked handler's resolve, and the executor that sets it (made once, not per wait). */
    this.resolve = null;
    this.exec = (resolve) => {
      this.resolve = resolve;
    };
    this.drained = null;
    this.drainExec = (resolve) => {
      this.drained = resolve;
    };
  }

  /** Writes `chunk`: true if the kernel took it at once. */
  send(chunk) {
    if (this.closed) return true;
    const req = spare ?? newReq();
    const err = this.handle.writeBuffer(req, chunk);
    if (err !== 0) {
      spare = req;
      this.close();
      return true;
    }
    if (streamBaseState[kLastWriteWasAsync] === 0) {
      spare = req;
      return true;
    }
    if (noCopy) throw new Error('a -nocopy write went asynchronous: the shared buffer would be overwritten');
    spare = null;
    req.conn = this;
    req.chunk = chunk;
    this.inFlight++;
    return false;
  }

  /** The handler's write: resolved at once when the kernel took the bytes, else when they reached it. */
  write(chunk) {
    if (this.send(chunk) || this.inFlight === 0) return RESOLVED;
    return new Promise(this.drainExec);
  }

  written(status) {
    this.inFlight--;
    if (status < 0) this.close();
    if (this.inFlight === 0 && this.drained !== null) {
      const r = this.drained;
      this.drained = null;
      r();
    }
  }

  /** for-await's step: the thinnest async iterator (a resolved promise when a chunk waits, else park). */
  next() {
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift(), done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise(this.exec);
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** The plain read: the chunk, or null at the end of input. */
  read() {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.ended) return Promise.resolve(null);
    return new Promise(this.exec);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.end();
    this.handle.close();
  }

  /** End of input: the parked handler gets the end, as its iterator or read() reports it. */
  end() {
    this.ended = true;
    if (this.resolve !== null) {
      const r = this.resolve;
      this.resolve = null;
      r(iterating ? { value: undefined, done: true } : null);
    }
  }
}

const iterating = variant.startsWith('forawait');

// ---- the handlers -----------------------------------------------------------------------------------

async function forAwaitHandler(source, sink) {
  for await (const chunk of source) await sink.write(chunk);
}

async function forAwaitNoWait(source, sink) {
  for await (const chunk of source) sink.write(chunk);
}

async function readHandler(source, sink) {
  let chunk;
  // biome-ignore lint/suspicious/noAssignInExpressions: the loop the variant measures, as a user writes it
  while ((chunk = await source.read()) !== null) await sink.write(chunk);
}

async function readNoWait(source, sink) {
  let chunk;
  // biome-ignore lint/suspicious/noAssignInExpressions: the loop the variant measures, as a user writes it
  while ((chunk = await source.read()) !== null) sink.write(chunk);
}

function thenHandler(conn) {
  const onChunk = (chunk) => {
    if (chunk === null) return;
    conn.write(chunk);
    conn.read().then(onChunk);
  };
  conn.read().then(onChunk);
}

const HANDLERS = {
  forawait: forAwaitHandler,
  'forawait-nocopy': forAwaitHandler,
  'forawait-nowait': forAwaitNoWait,
  read: readHandler,
  'read-nowait': readNoWait,
  'read-batched': readNoWait,
};
const handler = HANDLERS[variant];

function done(conn) {
  return () => conn.close();
}

// ---- delivery: what a read does with its chunk ------------------------------------------------------

function deliver(conn, chunk) {
  if (conn.resolve !== null) {
    const r = conn.resolve;
    conn.resolve = null;
    r(iterating ? { value: chunk, done: false } : chunk);
  } else {
    conn.queue.push(chunk);
  }
}

/** read-batched: the reads of this iteration, handed over in one setImmediate. */
let batch = [];
function flushBatch() {
  const b = batch;
  batch = [];
  for (let i = 0; i < b.length; i += 2) deliver(b[i], b[i + 1]);
}

const ONREAD = {
  cb(conn, n) {
    conn.send(chunkOf(n));
  },
  'cb-micro'(conn, n) {
    const chunk = chunkOf(n);
    queueMicrotask(() => conn.send(chunk));
  },
  'read-batched'(conn, n) {
    if (batch.length === 0) setImmediate(flushBatch);
    batch.push(conn, chunkOf(n));
  },
};
const onChunk = ONREAD[variant] ?? ONREAD[variant.replace('-nocopy', '')] ?? ((conn, n) => deliver(conn, chunkOf(n)));

function onread() {
  const conn = this.conn;
  const n = streamBaseState[kReadBytesOrError];
  if (n > 0) onChunk(conn, n);
  else if (n === UV_EOF) handler === undefined ? conn.close() : conn.end();
  else if (n < 0) conn.close();
}

// ---- accept: the listener's onconnection taken over ---------------------------------------------------

function onconnection(status, handle) {
  if (status !== 0 || handle === undefined) return;
  handle.setNoDelay(true);
  const conn = new Conn(handle);
  handle.conn = conn;
  handle.onread = onread;
  handle.useUserBuffer(shared);
  if (handler !== undefined) handler(conn, conn).then(done(conn), done(conn));
  else if (variant === 'then') thenHandler(conn);
  if (handle.readStart() !== 0) conn.close();
}

const server = net.createServer();
server.listen({ port, host, backlog: 4096 }, () => {
  server._handle.onconnection = onconnection;
  process.stderr.write(`floor ${variant} listening on ${host}:${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
