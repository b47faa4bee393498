/**
 * `Conn`: the connection a handler gets, its public API and nothing else. Every method hands over to
 * the connection's internals (ConnCore, conn-core.ts), which the server drives; see
 * docs/architecture.md for the map.
 */
import { TLSSocket } from 'node:tls';
import type { ConnCore } from './conn-core.js';
import { ChunkLender, FrameBatchIterator, FrameIterator } from './conn-iterators.js';
import { CLOSED } from './conn-state.js';
import type { Decoder, Encoder } from './framing/types.js';
import type { ConnTimeouts } from './options.js';
import type { ConnOrigin, ConnProxyInfo } from './proxy-stage.js';
import { acceptedSocket, type ConnTlsInfo, tlsInfo } from './tls.js';
import { boolean, optionsObject } from './validate.js';

/** Data `conn.write()` accepts. Strings are sent as UTF-8. */
export type WriteData = Uint8Array | string;

/** How `conn.chunks()` hands out its chunks. */
export interface ChunkOptions {
  /**
   * `true`: each chunk is lent, valid only until the iterator's next step (the next `next()`,
   * `return()`, or leaving the loop), and its memory then serves a later read, as Go's
   * `bufio.Scanner.Bytes()` or a released Netty `ByteBuf`. Copy what must outlive the step
   * (`Buffer.from(chunk)`); a chunk passed to `write()` may be written as is (a write not awaited
   * keeps the buffer out of reuse until it is sent). Default `false`: chunks are the handler's to keep.
   */
  reuse?: boolean;
}

let nextId = 1;

/**
 * @internal the constructor of Conn, for ConnCore: set in Conn's static block, so that the class
 * itself has no public constructor.
 */
export let newConn: (core: ConnCore, remoteAddress: string, origin: ConnOrigin | undefined) => Conn;

/**
 * What only some connections have of their own: a PROXY header's addresses and TLVs, a TLS session, or
 * the local end of a socket accepted by a wildcard listener. Every other connection reads its local end
 * from the listener (ConnHost.local), so it holds four fields less.
 */
interface ConnExtras {
  readonly localAddress: string;
  readonly localPort: number;
  readonly proxy: ConnProxyInfo | null;
  readonly tls: ConnTlsInfo | null;
}

/**
 * One accepted connection, handed to the handler. Reads are pulled (`read`, `readExactly`,
 * `frames`, `for await`), writes respect backpressure (`await write`), every deadline of the
 * server applies, and `signal` aborts when the connection ends, times out or the server drains.
 */
export class Conn implements AsyncIterable<Buffer> {
  /** Process-unique connection number. */
  readonly id: number;
  /** The peer's IP address (IPv4-mapped IPv6 addresses are given as IPv4). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  #core: ConnCore;
  #extras: ConnExtras | null;

  // Made by ConnCore only (see the static block).
  private constructor(core: ConnCore, remoteAddress: string, origin: ConnOrigin | undefined) {
    const socket = core.socket;
    // A TLS socket asks for its addresses anew on every look: the accepted socket under it has them cached.
    const accepted = acceptedSocket(socket);
    this.id = nextId++;
    this.#core = core;
    this.remoteAddress = remoteAddress;
    this.remotePort = origin?.remotePort ?? accepted.remotePort ?? 0;
    const local = core.host.local;
    const secure = socket instanceof TLSSocket;
    if (origin === undefined && local.address !== null && !secure) {
      this.#extras = null;
      return;
    }
    this.#extras = {
      // Asked of the socket only behind a wildcard listener; at once, as a closed socket no longer answers.
      localAddress: origin?.localAddress ?? local.address ?? normalizeAddress(accepted.localAddress ?? ''),
      localPort: origin?.localPort ?? local.port,
      proxy: origin?.proxy ?? null,
      // Taken at once: a closed TLS socket no longer answers.
      tls: secure ? tlsInfo(socket, core.options.tls?.requestCert === true) : null,
    };
  }

  static {
    newConn = (core, remoteAddress, origin) => new Conn(core, remoteAddress, origin);
  }

  /** The local address the peer connected to (IPv4-mapped IPv6 given as IPv4). */
  get localAddress(): string {
    // Without extras the listener listens on one address (see the constructor).
    return this.#extras === null ? this.#core.host.local.address! : this.#extras.localAddress;
  }

  get localPort(): number {
    return this.#extras === null ? this.#core.host.local.port : this.#extras.localPort;
  }

  /**
   * The load balancer this connection came through, with what its PROXY header said (v2 TLVs), or null
   * without `proxyProtocol`. `remoteAddress` and friends are then the client's, from the header.
   */
  get proxy(): ConnProxyInfo | null {
    return this.#extras === null ? null : this.#extras.proxy;
  }

  /** The TLS session (protocol, cipher, ALPN, SNI name, client certificate), or null without `tls`. */
  get tls(): ConnTlsInfo | null {
    return this.#extras === null ? null : this.#extras.tls;
  }

  /** Aborts when the connection fails, closes, or the server starts draining; `reason` is a TcpkitError. */
  get signal(): AbortSignal {
    return this.#core.signal;
  }

  /** Bytes received from the peer. */
  get bytesRead(): number {
    return this.#core.socket.bytesRead;
  }

  /** Bytes handed to the kernel for the peer. */
  get bytesWritten(): number {
    return this.#core.socket.bytesWritten;
  }

  /**
   * The socket's file descriptor, as the OS numbers it (what `ls -l /proc/<pid>/fd`, `lsof` and `ss -p`
   * show), or -1 where it is not known: on Windows (libuv has no descriptor there) and once the socket is
   * closed. Over TLS it is the TCP socket's. For looking a connection up from outside, as Redis's
   * `CLIENT LIST` prints `fd=`; reading or writing it directly would bypass the connection.
   */
  get fd(): number {
    const handle = (acceptedSocket(this.#core.socket) as { _handle?: { fd?: unknown } | null })._handle;
    const fd = handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : -1;
  }

  /** Bytes accepted by `write()` and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.#core.queuedBytes;
  }

  /** True once the socket is closed. */
  get isClosed(): boolean {
    return this.#core.phase === CLOSED;
  }

  /**
   * Resolves once the socket is closed, whoever closed it; never rejects. Waiting starts no close
   * (as `server.closed` does not start a shutdown): see `close()`, `end()`, `destroy()`.
   */
  get closed(): Promise<void> {
    return this.#core.closed();
  }

  /**
   * The next chunk of input, or `null` at end of stream (the peer's FIN, or the server draining
   * once buffered input is consumed). Rejects with the connection's error after a timeout or reset.
   */
  read(): Promise<Buffer | null> {
    return this.#core.reader.read();
  }

  /**
   * Exactly `n` bytes. Rejects with `ERR_FRAME_INVALID` if the stream ends first, and with the
   * connection's error on timeout or reset. Input is buffered until `n` bytes are there, so
   * bound `n` yourself when it comes from the peer.
   */
  readExactly(n: number): Promise<Buffer> {
    return this.#core.reader.readExactly(n);
  }

  /** Chunks of input until end of stream. */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    // The reader is its own chunk iterator (ConnReader#next): no object made per `for await`.
    return this.#core.reader;
  }

  /**
   * Chunks of input until end of stream, as `for await (const chunk of conn)`; with `{ reuse: true }`
   * each chunk is lent until the next step (see {@link ChunkOptions.reuse}), so a loop that handles each
   * chunk before the next (an echo, a proxy, a parser that copies what it keeps) allocates no buffer
   * per read. Deadlines, errors, end of stream, draining and `maxReadBuffer` apply as to `for await`;
   * one read of a connection may be pending at a time (a second rejects with `ERR_READ_PENDING`).
   */
  chunks(options?: ChunkOptions): AsyncIterableIterator<Buffer> {
    if (options === undefined) return this.#core.reader;
    const o = optionsObject('chunks', options, ['reuse'], '{ reuse: true }');
    const reuse = o.reuse === undefined ? false : boolean('chunks.reuse', o.reuse);
    return reuse ? new ChunkLender(this.#core.reader) : this.#core.reader;
  }

  /**
   * Decoded frames until end of stream. A decoder's `FrameError` rejects the iteration (the
   * connection stays open so the handler may answer, e.g. with a protocol error, before it ends).
   * While the server drains, frames already received are delivered, then the iteration ends.
   * `frameTimeout` bounds the time from a frame's first byte to its last.
   */
  frames<T>(decoder: Decoder<T>): AsyncIterableIterator<T> {
    return new FrameIterator(this.#core.reader, decoder);
  }

  /**
   * As `frames(decoder)`, but each step yields every frame the input received so far holds, as one
   * array in arrival order (never empty): a pipelined burst of requests is one step, so a handler can
   * answer them all and await one write. Frames decoded before a `FrameError` or the end of stream are
   * yielded first; the next step then rejects with the error, or ends. Flow control, `frameTimeout` and
   * draining are those of `frames()`.
   */
  frameBatches<T>(decoder: Decoder<T>): AsyncIterableIterator<T[]> {
    return new FrameBatchIterator(this.#core.reader, decoder);
  }

  /**
   * Queues `data` for the peer. When it resolves the caller may reuse its buffer: a buffer under
   * 4 KiB is copied and the write resolves at once while fewer than `maxWriteBuffer` bytes are
   * queued, else once the queue drains below it; a larger buffer is sent without a copy and its
   * write resolves once the kernel has taken it. Rejects with `ERR_WRITE_TIMEOUT` if the peer
   * does not take the data in time, `ERR_CONNECTION_CLOSED` if the connection closed, and
   * destroys the connection with `ERR_SLOW_CONSUMER` if more than `maxQueuedBytes` pile up.
   * Writes are held until the handler next waits for input or settles (at the latest, to the end of
   * the event-loop iteration), so everything written in answer to one read leaves in one syscall.
   */
  write(data: WriteData): Promise<void> {
    return this.#core.getWriter().write(data);
  }

  /** Encodes `item` with `encoder` and writes its chunks as one write (see `write`). */
  writeFrame<T>(encoder: Encoder<T>, item: T): Promise<void> {
    return this.#core.getWriter().writeFrame(encoder, item);
  }

  /** Flushes queued writes and sends FIN. Reading may go on (half-close). Resolves once flushed. */
  end(data?: WriteData): Promise<void> {
    return this.#core.getWriter().end(data);
  }

  /**
   * Closes gracefully, as when the handler returns: flushes, sends FIN, then reads and discards
   * input until the peer's FIN or `lingerTimeout`, so the peer never sees a reset for data it sent.
   * Resolves when the socket is closed.
   */
  close(): Promise<void> {
    return this.#core.close();
  }

  /** Destroys the socket at once (no flush). With `error`, pending operations reject with it. */
  destroy(error?: Error): void {
    this.#core.destroy(error);
  }

  /** Changes this connection's timeouts (milliseconds, 0 = no limit); unspecified ones stay. */
  setTimeouts(timeouts: ConnTimeouts): void {
    this.#core.setTimeouts(timeouts);
  }
}

/** `::ffff:1.2.3.4` -> `1.2.3.4`, so IPv4 peers look the same on dual-stack listeners. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
