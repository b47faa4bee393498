/**
 * TLS termination: the stage between admission and the handler. An admitted socket is handed to a
 * `tls.Server` that never listens (Node's documented way to serve a socket it did not accept), so every
 * `tls.Server` option and behaviour applies as is: SNI, ALPN, client certificates and their verification,
 * session tickets and resumption, `setSecureContext`. tcpkit adds an absolute handshake deadline
 * (Node's own `handshakeTimeout` is an inactivity timer, which a client trickling bytes never trips),
 * and turns every failed handshake into one callback, so a failure never reaches the handler.
 */

import { constants as cryptoConstants } from 'node:crypto';
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { type DeadlineEntry, deadlines } from './deadlines.js';
import { HandshakeTimeoutError, InvalidOptionError, TlsHandshakeError } from './errors.js';
import type { Lease } from './gate.js';
import { systemError, UV_ENOTCONN } from './system-error.js';

/**
 * The `tls` option of `serve()`: Node's `tls.createServer()` options (`key`, `cert`, `ca`, `pfx`,
 * `requestCert`, `rejectUnauthorized`, `ALPNProtocols`, `SNICallback`, `minVersion`, `ciphers`,
 * `sessionTimeout`, `ticketKeys`, ...). The handshake deadline is tcpkit's own `handshakeTimeout`.
 */
export type TlsOptions = Omit<tls.TlsOptions, 'handshakeTimeout'>;

/** What `conn.tls` holds for a connection served over TLS. */
export interface ConnTlsInfo {
  /** Negotiated protocol version, e.g. `'TLSv1.3'`. */
  protocol: string;
  /** Negotiated cipher: OpenSSL and IETF names and the version that introduced it. */
  cipher: tls.CipherNameAndProtocol;
  /** Application protocol chosen by ALPN, or null when none was negotiated. */
  alpnProtocol: string | null;
  /** Host name the client asked for with SNI, or null when it sent none. */
  servername: string | null;
  /** The client's certificate was verified against `ca` (only meaningful with `requestCert`). */
  authorized: boolean;
  /** Why the client's certificate did not verify (an OpenSSL code such as `'UNABLE_TO_VERIFY_LEAF_SIGNATURE'`), or null. */
  authorizationError: string | null;
  /** The client's certificate, or null when it sent none. */
  peerCertificate: PeerCertificate | null;
  /** The session was resumed (a session ticket or ID), without a full handshake. */
  resumed: boolean;
}

/**
 * How a handshake that never began ended (not exported by the package; the PROXY stage shares it): the peer closed or reset its connection before
 * sending a single TLS byte (a load balancer's health check, a TCP probe, a port scan). Not a failed
 * handshake (nothing was tried): the server counts it as a connection turned away, `rejected.abandoned`.
 */
export const PEER_LEFT = 'peer left';

/**
 * @internal Called once per handshake with what `handshake()` was given: the secure socket, or why the
 * handshake failed. One function for the server's every handshake, not a closure per connection.
 */
export type HandshakeDone = (
  error: HandshakeTimeoutError | TlsHandshakeError | typeof PEER_LEFT | null,
  secure: TLSSocket | null,
  raw: Socket,
  lease: Lease,
  waitMs: number,
) => void;

const kHandshake = Symbol('tcpkit.handshake');
type RawSocket = Socket & { [kHandshake]?: Handshake };

/** Validates `tls` by building a secure context from it; throws `InvalidOptionError` with Node's reason. */
export function resolveTlsOptions(value: unknown): TlsOptions | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') {
    throw new InvalidOptionError('tls', 'must be an object of tls.createServer() options, such as { key, cert }');
  }
  if ('handshakeTimeout' in value) {
    throw new InvalidOptionError(
      'tls.handshakeTimeout',
      'set handshakeTimeout at the top level of the options (tcpkit enforces it as a deadline from the start of the handshake)',
    );
  }
  const o = value as TlsOptions;
  if (o.key === undefined && o.pfx === undefined && o.SNICallback === undefined && o.secureContext === undefined) {
    throw new InvalidOptionError('tls', 'needs a certificate: key and cert, pfx, secureContext or SNICallback');
  }
  try {
    tls.createSecureContext(o);
  } catch (error) {
    throw new InvalidOptionError('tls', `Node could not build a secure context from it: ${(error as Error).message}`);
  }
  return o;
}

/**
 * The user's TLS options with tcpkit's defaults under them: client-initiated renegotiation refused
 * (`SSL_OP_NO_RENEGOTIATION`). A TLS 1.2 client may otherwise ask for one renegotiation after another,
 * each making the server redo a full handshake's private-key work (Node lets three through per
 * connection, then cuts it); nginx and HAProxy refuse them, and TLS 1.3 has none. `secureOptions` set
 * by the user replaces this default whole (set it to 0 to allow renegotiation again).
 */
function withDefaults(options: TlsOptions): TlsOptions {
  return options.secureOptions === undefined
    ? { ...options, secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION }
    : options;
}

/**
 * @internal What turns `tls.Server`'s own handshake timer off: ours is absolute (see the file comment).
 * Not 0: Node reads `handshakeTimeout || 120000`, so 0 is its default of 120 s, and every TLS socket
 * got an inactivity timer (a `Timeout` filed in Node's 120 s list at the handshake's start, refreshed by
 * each read, unfiled at its end) that duplicated our deadline and, with `handshakeTimeout: 0` (no
 * limit) or above 120 s, cut a slow handshake at 120 s of silence. Node arms its timer only for a value
 * above 0 (Node 20 to 24: `if (options.handshakeTimeout > 0) this.setTimeout(...)`), and checks no range.
 */
export const NODE_HANDSHAKE_TIMER_OFF = -1;

/** @internal one server's TLS: the unlistened `tls.Server`, and the handshakes in progress. */
export class TlsTerminator {
  readonly #server: tls.Server;
  readonly #timeout: number;
  readonly #done: HandshakeDone;
  /**
   * The handshakes in progress, for a shutdown to end: a list threaded through them (first filed
   * first), which a handshake leaves without an allocation, as a Set's table is remade when it shrinks.
   */
  #first: Handshake | null = null;
  #last: Handshake | null = null;

  constructor(options: TlsOptions, handshakeTimeout: number, done: HandshakeDone) {
    this.#timeout = handshakeTimeout;
    this.#done = done;
    this.#server = new tls.Server({ ...withDefaults(options), handshakeTimeout: NODE_HANDSHAKE_TIMER_OFF });
    this.#server.on('secureConnection', (socket: TLSSocket) => this.#handshakeOf(socket)?.finish(null, socket));
    this.#server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      const h = this.#handshakeOf(socket);
      // Asked before the destroy, while the TCP handle counts what it read.
      const silent = h !== undefined && h.socket.bytesRead === h.consumed;
      socket.destroy();
      if (h === undefined) return;
      if (silent) {
        h.finish(PEER_LEFT, null);
        return;
      }
      // A client certificate that failed verification ends as a plain close in Node: say why.
      const reason = socket.authorizationError
        ? `client certificate rejected: ${String(socket.authorizationError)}`
        : `TLS handshake failed: ${error.message}`;
      h.finish(new TlsHandshakeError(reason, error), null);
    });
  }

  /**
   * Starts the handshake on an admitted socket (paused; bytes already read and unshifted, such as those
   * after a PROXY header, are taken as the first TLS bytes). The terminator's `done` is called once,
   * with `lease` and `waitMs` as given.
   */
  handshake(socket: Socket, lease: Lease, waitMs: number): void {
    // What the socket read that is not for TLS (a PROXY header): all it read, less what waits unread.
    const consumed = socket.bytesRead - socket.readableLength;
    const h = new Handshake(this, socket as RawSocket, lease, waitMs, socket.allowHalfOpen, consumed);
    (socket as RawSocket)[kHandshake] = h;
    // The TLS socket takes allowHalfOpen from this one: not half-open until secure, so a peer's FIN
    // during the handshake ends it at once (tls.Server reports it as 'tlsClientError') instead of
    // holding the connection's slot, per-peer count and descriptor until handshakeTimeout.
    socket.allowHalfOpen = false;
    // Paused, as at accept: a socket handed to tls.Server while flowing never completes its handshake
    // (Node's TLS layer reads what the socket holds on the next tick, and a flowing socket has moved on:
    // the handshake then waits for handshakeTimeout). One that waited at the cap was resumed to be polled.
    socket.pause();
    h.prev = this.#last;
    if (this.#last === null) this.#first = h;
    else this.#last.next = h;
    this.#last = h;
    if (this.#timeout > 0) deadlines.schedule(h, deadlines.now() + this.#timeout);
    this.#server.emit('connection', socket);
  }

  /** Replaces the certificate (and any other secure-context option) for handshakes from now on. */
  setSecureContext(options: TlsOptions): void {
    try {
      this.#server.setSecureContext(withDefaults(options));
    } catch (error) {
      throw new InvalidOptionError('tls', `Node could not build a secure context from it: ${(error as Error).message}`);
    }
  }

  /** Ends every handshake in progress (shutdown): their sockets close, their callbacks see `error`. */
  abortAll(error: TlsHandshakeError): void {
    // Each finish takes its handshake off the list.
    for (let h = this.#first; h !== null; h = this.#first) {
      h.finish(error, null);
      h.socket.destroy();
    }
  }

  /** @internal a handshake ended: off the list, and its result to the server. */
  _settled(
    h: Handshake,
    error: HandshakeTimeoutError | TlsHandshakeError | typeof PEER_LEFT | null,
    secure: TLSSocket | null,
  ): void {
    const { prev, next } = h;
    if (prev === null) this.#first = next;
    else prev.next = next;
    if (next === null) this.#last = prev;
    else next.prev = prev;
    h.prev = null;
    h.next = null;
    this.#done(error, secure, h.socket, h.lease, h.waitMs);
  }

  /** @internal */
  get _timeout(): number {
    return this.#timeout;
  }

  #handshakeOf(socket: TLSSocket): Handshake | undefined {
    // The TLSSocket wraps the raw socket's handle; `_parent` is Node's link back to the raw socket
    // (set for every TLSSocket made over a net.Socket, Node 0.11 to 24).
    return (socket as TLSSocket & { _parent?: RawSocket })._parent?.[kHandshake];
  }
}

class Handshake implements DeadlineEntry {
  tick = -1;
  wheelPrev: DeadlineEntry | null = null;
  wheelNext: DeadlineEntry | null = null;
  /** Its neighbours in the terminator's list of handshakes in progress. */
  prev: Handshake | null = null;
  next: Handshake | null = null;
  #finished = false;

  constructor(
    readonly terminator: TlsTerminator,
    readonly socket: RawSocket,
    readonly lease: Lease,
    readonly waitMs: number,
    readonly halfOpen: boolean,
    /** Bytes the socket had read before the handshake that were not TLS's: more read since are TLS's. */
    readonly consumed: number,
  ) {}

  onDeadline(): void {
    if (this.#finished) return;
    this.finish(new HandshakeTimeoutError(this.terminator._timeout), null);
    this.socket.destroy();
  }

  finish(error: HandshakeTimeoutError | TlsHandshakeError | typeof PEER_LEFT | null, secure: TLSSocket | null): void {
    if (this.#finished) return;
    this.#finished = true;
    deadlines.cancel(this);
    this.socket[kHandshake] = undefined;
    if (secure !== null) {
      // tcpkit's writer relies on a 1-byte writable high-water mark (see server.ts): write() then reports
      // exactly when output waits, and 'drain' when it is all out. tls.Server gives its sockets the
      // default mark; this is the one place Node lets it be changed after construction.
      (secure as unknown as { _writableState: { highWaterMark: number } })._writableState.highWaterMark = 1;
      // Half-open again once secure (see TlsTerminator#handshake).
      secure.allowHalfOpen = this.halfOpen;
    }
    this.terminator._settled(this, error, secure);
  }
}

/** The socket tcpkit accepted: under a TLS socket, the one it wraps (Node's `_parent` link, see #handshakeOf). */
export function acceptedSocket(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket })._parent ?? socket;
}

/**
 * What hiddenReset's getpeername writes the peer's address into (it only reads the status). One object
 * with the three fields already there: Node's C++ then sets existing properties, where a fresh `{}`
 * per call took three property additions from C++ (each a map transition in the runtime).
 */
const peerScratch = { address: '', family: '', port: 0 };

/**
 * At the peer's end of input on a TLS socket: the error the peer's reset would have been, if the TCP
 * connection is in fact gone (reset), else null. Node's TLS layer can hide a reset: a write of its own
 * (a TLS 1.3 session ticket, sent after the handshake's last read) that the kernel refuses with
 * ECONNRESET is dropped, as no JS write waits for it; the kernel reports a reset only once, so the next
 * read sees a plain end of input; and the TLS handle counts that write as still in flight, so it never
 * writes again: every later write would wait, unsettled, for the writeTimeout (forever with 0). A TCP
 * socket that saw the peer's FIN is in CLOSE_WAIT and still has a peer; a reset one is closed and has
 * none (getpeername: ENOTCONN). Asked only while tcpkit has not begun its own shutdown: after its FIN
 * a clean close also leaves the socket without a peer.
 */
export function hiddenReset(socket: TLSSocket): Error | null {
  if (socket.writableEnded) return null;
  // The TLS handle passes getpeername on to the TCP handle below it (_tls_wrap.js proxies it; Node 20 to 24).
  const handle = (socket as TLSSocket & { _handle: { getpeername?(out: object): number } | null })._handle;
  if (typeof handle?.getpeername !== 'function' || handle.getpeername(peerScratch) !== UV_ENOTCONN) return null;
  // As Node reports a reset seen by a read (its errnoException), so it ends the connection as on plain TCP.
  return systemError(-constants.errno.ECONNRESET, 'read');
}

/** `conn.tls` of a secure socket. */
export function tlsInfo(socket: TLSSocket, requestCert: boolean): ConnTlsInfo {
  // A server that asks for no certificate gets none: skip the look (one call into OpenSSL per handshake).
  const cert = requestCert ? socket.getPeerCertificate() : null;
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  return {
    protocol: socket.getProtocol() ?? '',
    cipher: socket.getCipher(),
    alpnProtocol: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null,
    servername: typeof servername === 'string' ? servername : null,
    authorized: socket.authorized,
    authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
    peerCertificate: cert !== null && Object.keys(cert).length > 0 ? cert : null,
    resumed: socket.isSessionReused(),
  };
}

/** What holds a TLS socket's shutdown back: its writer, while its writes to the TLS handle are in flight. */
export interface ShutdownGate {
  /** Runs `shutdown` once no write to the handle is in flight (at once if none is). */
  whenWritten(shutdown: () => void): void;
}

type FinalSocket = TLSSocket & { _final(cb: (err?: Error | null) => void): void; [kShutdownGate]?: ShutdownGate };
const kShutdownGate = Symbol('tcpkit.shutdownGate');
/** The socket's own `_final` (net.Socket's: the handle's shutdown), taken from the first socket gated. */
let streamFinal: FinalSocket['_final'] | null = null;

function gatedFinal(this: FinalSocket, cb: (err?: Error | null) => void): void {
  this[kShutdownGate]!.whenWritten(() => streamFinal!.call(this, cb));
}

/**
 * Makes `socket`'s shutdown wait for `gate`. tcpkit writes a TLS connection's output straight to its
 * TLS handle (conn-writer.ts, as it writes plain TCP to the TCP handle), so the socket's Writable does
 * not know of those writes: its `end()` would shut TLS down at once (close_notify, then the TCP
 * shutdown), while the ciphertext of a write in flight may still wait inside the TLS layer, and it
 * would then be lost behind the FIN. (libuv orders a TCP shutdown behind the writes it holds, but the
 * TLS layer hands its ciphertext to libuv only as each earlier write completes.) Every path to the
 * shutdown goes through the Writable's `_final`, tcpkit's `end()`, `destroySoon()` and Node's own end
 * after the peer's FIN alike: that is the one place held back.
 */
export function gateShutdown(socket: TLSSocket, gate: ShutdownGate): void {
  const s = socket as FinalSocket;
  streamFinal ??= s._final;
  s[kShutdownGate] = gate;
  s._final = gatedFinal;
}
