/**
 * The connections of one server process, from the listener's 'connection' event to the socket's close:
 * the stages before the handler (PROXY header, the gate, the TLS handshake), the handler's run, the
 * release of its slot, and the events counted and published on the way (server-events.ts). The server
 * (server.ts) owns the listener and the shutdown; it hands every accepted socket to `onConnection`.
 */
import type { Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { acceptBareHandles } from './bare-socket.js';
import { normalizeAddress } from './conn.js';
import { ConnCore, type ConnHost } from './conn-core.js';
import { CLOSED } from './conn-state.js';
import {
  HandshakeTimeoutError,
  type ProxyProtocolError,
  SlowConsumerError,
  type TimeoutError,
  type TlsHandshakeError,
} from './errors.js';
import { DESCRIPTOR, Gate, type Lease, SLOT_SHARES, UNIX_PEER, type WaitedInput } from './gate.js';
import { keepAliveOf, type ResolvedOptions } from './options.js';
import { type ConnOrigin, directOrigin, originOf, type ResolvedProxyProtocol, readProxyHeader } from './proxy-stage.js';
import type { Handler, RejectReason, Server } from './server.js';
import { type Counters, channels, countTimeout, newCounters } from './server-events.js';
import { PEER_LEFT, TlsTerminator } from './tls.js';

function ignore(): void {}

function handlerReturned(this: ConnCore): void {
  this.host.onHandlerEnded(this, false, undefined);
}
function handlerThrew(this: ConnCore, error: unknown): void {
  this.host.onHandlerEnded(this, true, error);
}

/** Every connection of one server, and the stages it passes through. */
export class Connections {
  readonly counters: Counters = newCounters();
  readonly gate: Gate;
  /** The TLS stage, with `tls`. */
  readonly tls: TlsTerminator | null;
  /**
   * Connections whose handler is running (their sockets may have closed), then, once it has ended,
   * those whose socket is still open (lingering): each connection is in one set at a time, so an idle
   * one costs one set entry, not two. Waiting ones are the gate's.
   */
  readonly running = new Set<ConnCore>();
  readonly lingering = new Set<ConnCore>();
  /** Sockets reading their PROXY header (before the gate). */
  readonly inProxyStage = new Set<Socket>();
  /** What the PROXY stage learnt of a socket, from its header until its Conn is made. */
  #origins = new WeakMap<Socket, ConnOrigin>();
  #options: ResolvedOptions;
  #handler: Handler;
  /** The public server, as named in what the channels publish. */
  #server: Server;
  /** Aborted when shutdown begins. */
  #signal: AbortSignal;
  /** What its connections call back into (kept off the public type). */
  #connHost: ConnHost;

  constructor(server: Server, options: ResolvedOptions, handler: Handler, signal: AbortSignal) {
    this.#server = server;
    this.#options = options;
    this.#handler = handler;
    this.#signal = signal;
    this.gate = new Gate(options, {
      admit: (socket, lease, waitMs, waited) => this.#admit(socket, lease, waitMs, waited),
      reject: (socket, peer, reason) => this.#reject(socket, peer, reason),
      shed: (socket) => this.#shed(socket),
    });
    this.tls =
      options.tls === undefined
        ? null
        : new TlsTerminator(options.tls, options.handshakeTimeout, (error, secure, raw, lease, waitMs) =>
            this.#handshakeDone(error, secure, raw, lease, waitMs),
          );
    this.#connHost = {
      options,
      local: this.#local,
      onTimeout: (core, error) => this.#onTimeout(core, error),
      onSlowConsumer: (core, error) => this.#onSlowConsumer(core, error),
      onOutputFlushed: (core) => this.#releaseSlot(core),
      onSocketClosed: (core) => this.#onSocketClosed(core),
      onHandlerEnded: (core, threw, error) => this.#handlerEnded(core, threw, error),
    };
  }

  /** What every accepted socket's local end is (see ConnHost.local); set once listening. */
  #local: { address: string | null; port: number } = { address: null, port: 0 };

  /** The listener listens at `address` (as `server.address` gives it). */
  listening(address: { address: string; port: number } | string): void {
    if (typeof address === 'string') {
      this.#local.address = '';
      this.#local.port = 0;
      return;
    }
    const wildcard = address.address === '0.0.0.0' || address.address === '::';
    this.#local.address = wildcard ? null : normalizeAddress(address.address);
    this.#local.port = address.port;
  }

  /**
   * Takes the listener's plain TCP connections as bare handles (bare-socket.ts) where that path is
   * available: with or without the PROXY stage (it reads the header through the 'data' events a bare
   * handle has too), not with TLS (a TLSSocket needs a net.Socket under it) nor on a unix socket.
   * Called once listening; returns whether it did (else 'connection' brings net.Sockets as before).
   */
  acceptBare(listener: NetServer): boolean {
    const o = this.#options;
    if (o.tls !== undefined || o.path !== undefined) return false;
    return acceptBareHandles(
      listener,
      { noDelay: o.noDelay, ...keepAliveOf(o) },
      (socket) => this.onConnection(socket),
      (error) => this.onAcceptError(error),
    );
  }

  /** The listener accepted `socket`. */
  onConnection(socket: Socket): void {
    this.counters.accepted++;
    // A unix-socket peer has no address (''); a TCP socket without one was reset before we looked.
    if (this.#options.path !== undefined) {
      this.#offer(socket, UNIX_PEER);
      return;
    }
    const address = socket.remoteAddress;
    const peer = address === undefined ? undefined : normalizeAddress(address);
    const pp = this.#options.proxyProtocol;
    if (pp === undefined || peer === undefined) this.#offer(socket, peer);
    else this.#proxyStage(socket, peer, pp);
  }

  /**
   * Offers `socket` to the gate. A socket that waits or is turned away keeps a listener that ignores its
   * errors until its connection takes it over (an unhandled 'error' would crash the process); one whose
   * handler or TLS handshake starts now needs none: errors come from I/O, never during this call, and
   * its connection (or the TLS socket wrapping it, which forwards the errors of the socket under it to
   * its own) listens from the start. `reserved`: the lease the PROXY stage took for it at accept.
   */
  #offer(socket: Socket, peer: string | undefined, reserved?: Lease): void {
    if (this.gate.offer(socket, peer, reserved) !== 'run') socket.on('error', ignore);
  }

  /** The listener reported an accept error (EMFILE, ENFILE, ...): libuv backs off and goes on. */
  onAcceptError(error: Error): void {
    this.counters.acceptErrors++;
    if (channels.acceptError.hasSubscribers) channels.acceptError.publish({ server: this.#server, error });
  }

  /**
   * The PROXY stage: the socket's descriptor counted in the gate's budget (a flood that never sends a
   * header is shed), the gate by the socket's own address (a blocked balancer or peer is never read),
   * the header, then the gate's admission under the client's real address.
   */
  #proxyStage(socket: Socket, balancer: string, pp: ResolvedProxyProtocol): void {
    const lease = this.gate.reserve(socket);
    if (lease === null) return;
    if (this.#options.blockList?.check(balancer, balancer.includes(':') ? 'ipv6' : 'ipv4')) {
      lease.release();
      this.#reject(socket, balancer, 'blocked');
      return;
    }
    this.inProxyStage.add(socket);
    socket.on('error', ignore);
    readProxyHeader(socket, pp, balancer, (error, header, rest) => {
      this.inProxyStage.delete(socket);
      if (this.#signal.aborted) {
        lease.release();
        this.#reject(socket, balancer, 'shutdown');
      } else if (error === PEER_LEFT) {
        // Gone before its first byte (a health check, a probe): turned away, not a refused header.
        lease.release();
        this.#reject(socket, balancer, 'abandoned');
      } else if (error !== null) {
        lease.release();
        this.#proxyFailed(socket, balancer, error);
      } else if (header === null) {
        // No header and none required: the bytes read to tell are the stream's first.
        if (rest !== null) this.#origins.set(socket, directOrigin(socket, balancer, rest));
        socket.off('error', ignore);
        this.#offer(socket, balancer, lease);
      } else {
        const origin = originOf(socket, balancer, header, rest);
        this.#origins.set(socket, origin);
        socket.off('error', ignore);
        this.#offer(socket, origin.remoteAddress, lease);
      }
    });
  }

  #proxyFailed(socket: Socket, balancer: string, error: ProxyProtocolError): void {
    this.counters.proxyErrors++;
    if (channels.proxyError.hasSubscribers)
      channels.proxyError.publish({
        server: this.#server,
        remoteAddress: balancer,
        remotePort: socket.remotePort,
        error,
      });
    socket.destroy();
  }

  /** The gate shed a socket at accept: the process is out of descriptors. */
  #shed(socket: Socket): void {
    this.counters.acceptErrors++;
    if (channels.acceptError.hasSubscribers) {
      const error = Object.assign(new Error('out of file descriptors: connection closed at accept'), {
        code: 'EMFILE',
      });
      channels.acceptError.publish({ server: this.#server, error });
    }
    socket.destroy();
  }

  /** The gate admitted a socket: start its handler (after the TLS handshake, with `tls`). */
  #admit(socket: Socket, lease: Lease, waitMs: number, waited?: WaitedInput): void {
    if (this.tls === null) this.#start(socket, lease, socket, waitMs, waited);
    else this.#handshake(this.tls, socket, lease, waitMs, waited);
  }

  #handshake(tls: TlsTerminator, socket: Socket, lease: Lease, waitMs: number, waited?: WaitedInput): void {
    const origin = this.#originOf(socket);
    // Bytes already read (with the PROXY header, then while waiting in the gate) are the ClientHello's
    // first, in that order: TLS takes them from the socket's buffer, so they go back into it.
    if (waited !== undefined) for (let i = waited.chunks.length - 1; i >= 0; i--) socket.unshift(waited.chunks[i]!);
    if (origin?.initial) {
      socket.unshift(origin.initial);
      origin.initial = null;
    }
    tls.handshake(socket, lease, waitMs);
  }

  /** A TLS handshake ended (see #handshake): the handler starts on the secure socket, or the failure is counted. */
  #handshakeDone(
    error: HandshakeTimeoutError | TlsHandshakeError | typeof PEER_LEFT | null,
    secure: TLSSocket | null,
    socket: Socket,
    lease: Lease,
    waitMs: number,
  ): void {
    if (secure !== null) {
      this.#start(secure, lease, socket, waitMs);
      return;
    }
    if (this.#signal.aborted) {
      this.counters.rejected.shutdown++;
    } else if (error === PEER_LEFT) {
      // Gone before its first TLS byte (a health check, a probe): turned away, not a failed handshake.
      this.counters.rejected.abandoned++;
      if (channels.reject.hasSubscribers)
        channels.reject.publish({ server: this.#server, remoteAddress: lease.peer, reason: 'abandoned' });
    } else {
      this.counters.tlsErrors++;
      if (error instanceof HandshakeTimeoutError) this.counters.timeouts.handshake++;
      if (channels.tlsError.hasSubscribers) {
        // The client's port as its connection would give it: the PROXY header's, else the socket's.
        const remotePort = this.#originOf(socket)?.remotePort ?? socket.remotePort;
        channels.tlsError.publish({ server: this.#server, remoteAddress: lease.peer, remotePort, error });
      }
    }
    socket.destroy();
    lease.release();
  }

  /** What the PROXY stage learnt of `socket`, if anything (nothing to look up without it). */
  #originOf(socket: Socket): ConnOrigin | undefined {
    return this.#options.proxyProtocol === undefined ? undefined : this.#origins.get(socket);
  }

  /** Starts the handler on `socket`: the accepted one, or the TLS socket over `accepted`. */
  #start(socket: Socket, lease: Lease, accepted: Socket, waitMs: number, waited?: WaitedInput): void {
    // A socket that waited at the cap carries the ignoring listener (see #offer): its connection takes over.
    if (waited !== undefined && socket === accepted) socket.off('error', ignore);
    const core = new ConnCore(socket, this.#connHost, lease, this.#originOf(accepted));
    if (waited !== undefined) {
      // What it sent while it waited comes first, as if it had just arrived.
      for (const chunk of waited.chunks) core.reader.onData(chunk);
      if (waited.ended) core.reader.onEnd();
    }
    const conn = core.conn;
    this.counters.served++;
    this.running.add(core);
    if (this.#signal.aborted) core.drain(this.#signal.reason as Error);
    if (channels.open.hasSubscribers) channels.open.publish({ server: this.#server, conn, waitMs });
    // Plain promise reactions rather than an async wrapper: a suspended async function keeps a
    // generator and its registers alive per connection (about 300 bytes of an idle connection). And
    // functions bound to the core rather than two closures: no context object held while it runs.
    let settled: Promise<void> | void;
    try {
      settled = this.#handler(conn);
    } catch (error) {
      settled = Promise.reject(error);
    }
    core.handlerSettled = Promise.resolve(settled).then(handlerReturned.bind(core), handlerThrew.bind(core));
  }

  #handlerEnded(core: ConnCore, threw: boolean, error: unknown): void {
    if (!threw) {
      core.handlerEnded();
    } else {
      this.counters.errors++;
      // Published as thrown (even a non-Error), so a subscriber sees exactly what the handler threw;
      // a slow-consumer error rethrown by the handler was published when it happened.
      const seen = error instanceof SlowConsumerError && core.signal.reason === error;
      if (channels.error.hasSubscribers && !seen)
        channels.error.publish({ server: this.#server, conn: core.conn, error });
      core.handlerEnded(error instanceof Error ? error : new Error(String(error)));
    }
    this.running.delete(core);
    if (core.phase !== CLOSED) this.lingering.add(core);
    this.#releaseSlot(core);
  }

  /** Every connection whose socket is not yet closed: running or lingering. */
  *unclosed(): IterableIterator<ConnCore> {
    for (const c of this.running) if (c.phase !== CLOSED) yield c;
    yield* this.lingering;
  }

  /**
   * A connection's slot (and per-peer count) is freed when its handler ends, as Go's semaphore is
   * released after Close; but a finished handler whose output is still queued for a peer that does not
   * read keeps its slot until the socket closes, so such sockets (memory and a descriptor each) stay
   * bounded by maxConnections and maxConnectionsPerPeer. Called at handler end and at socket close.
   */
  #releaseSlot(core: ConnCore): void {
    if (this.running.has(core)) return;
    if (core.phase !== CLOSED && core.queuedBytes > 0) return;
    core.shares = this.gate.give(core.conn.remoteAddress, core.shares, SLOT_SHARES);
  }

  /** The gate (or the PROXY stage) turned a socket away. */
  #reject(socket: Socket, peer: string, reason: RejectReason): void {
    this.counters.rejected[reason]++;
    if (channels.reject.hasSubscribers) channels.reject.publish({ server: this.#server, remoteAddress: peer, reason });
    socket.destroy();
  }

  #onTimeout(core: ConnCore, error: TimeoutError): void {
    countTimeout(this.counters, error);
    if (channels.timeout.hasSubscribers) channels.timeout.publish({ server: this.#server, conn: core.conn, error });
  }

  #onSlowConsumer(core: ConnCore, error: SlowConsumerError): void {
    this.counters.slowConsumers++;
    if (channels.error.hasSubscribers) channels.error.publish({ server: this.#server, conn: core.conn, error });
  }

  #onSocketClosed(core: ConnCore): void {
    this.lingering.delete(core);
    core.shares = this.gate.give(core.conn.remoteAddress, core.shares, DESCRIPTOR);
    this.#releaseSlot(core);
    this.counters.bytesRead += core.socket.bytesRead;
    this.counters.bytesWritten += core.socket.bytesWritten;
    if (channels.close.hasSubscribers) channels.close.publish({ server: this.#server, conn: core.conn });
  }
}
