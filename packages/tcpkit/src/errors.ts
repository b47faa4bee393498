/**
 * Every failure tcpkit reports is a `TcpkitError` with a stable `code`.
 * Match on `code` (or `instanceof` a subclass), never on the message.
 */

/** Stable error codes. */
export type ErrorCode =
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_FRAME_INVALID'
  | 'ERR_FIRST_BYTE_TIMEOUT'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_FRAME_TIMEOUT'
  | 'ERR_WRITE_TIMEOUT'
  | 'ERR_LIFETIME_EXCEEDED'
  | 'ERR_SLOW_CONSUMER'
  | 'ERR_SERVER_CLOSING'
  | 'ERR_CONNECTION_CLOSED'
  | 'ERR_INVALID_OPTION'
  | 'ERR_READ_PENDING'
  | 'ERR_HANDSHAKE_TIMEOUT'
  | 'ERR_TLS_HANDSHAKE'
  | 'ERR_PROXY_PROTOCOL'
  | 'ERR_LISTEN'
  | 'ERR_WORKER_START'
  | 'ERR_WORKER_CRASH_LOOP';

/** Base class of every error tcpkit throws or rejects with. */
export class TcpkitError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The byte stream cannot be decoded: the connection is corrupt and ends. */
export class FrameError extends TcpkitError {}

/** A frame is longer than the codec's `maxLength`; detected as early as the codec can tell. */
export class FrameTooLargeError extends FrameError {
  constructor(message: string) {
    super('ERR_FRAME_TOO_LARGE', message);
  }
}

/** The bytes do not form a valid frame (bad length, bad syntax, truncated at end of stream, ...). */
export class FrameInvalidError extends FrameError {
  constructor(message: string) {
    super('ERR_FRAME_INVALID', message);
  }
}

/** A deadline fired. The subclass and `code` say which. */
export class TimeoutError extends TcpkitError {
  /** The limit that fired, in milliseconds. */
  readonly timeout: number;
  constructor(code: ErrorCode, message: string, timeout: number) {
    super(code, message);
    this.timeout = timeout;
  }
}

/** No byte arrived within `firstByteTimeout` of the accept. */
export class FirstByteTimeoutError extends TimeoutError {
  constructor(timeout: number) {
    super('ERR_FIRST_BYTE_TIMEOUT', `no data within firstByteTimeout (${timeout} ms) of connecting`, timeout);
  }
}

/** The peer sent nothing for `idleTimeout` while the connection waited for input. */
export class IdleTimeoutError extends TimeoutError {
  constructor(timeout: number) {
    super('ERR_IDLE_TIMEOUT', `connection idle for idleTimeout (${timeout} ms)`, timeout);
  }
}

/** A frame's bytes did not all arrive within `frameTimeout` of its first byte. */
export class FrameTimeoutError extends TimeoutError {
  constructor(timeout: number) {
    super('ERR_FRAME_TIMEOUT', `frame not complete within frameTimeout (${timeout} ms) of its first byte`, timeout);
  }
}

/** Data written was not flushed to the kernel within `writeTimeout`: the peer is not reading. */
export class WriteTimeoutError extends TimeoutError {
  constructor(timeout: number) {
    super('ERR_WRITE_TIMEOUT', `write not flushed within writeTimeout (${timeout} ms)`, timeout);
  }
}

/** The connection lived longer than `maxLifetime`. */
export class LifetimeExceededError extends TimeoutError {
  constructor(timeout: number) {
    super('ERR_LIFETIME_EXCEEDED', `connection exceeded maxLifetime (${timeout} ms)`, timeout);
  }
}

/** More than `maxQueuedBytes` were queued for a peer that does not read fast enough. */
export class SlowConsumerError extends TcpkitError {
  readonly queuedBytes: number;
  constructor(queuedBytes: number, maxQueuedBytes: number) {
    super(
      'ERR_SLOW_CONSUMER',
      `slow consumer: ${queuedBytes} bytes queued exceeds maxQueuedBytes (${maxQueuedBytes}); await conn.write() to respect backpressure`,
    );
    this.queuedBytes = queuedBytes;
  }
}

/** The server is shutting down. */
export class ServerClosingError extends TcpkitError {
  constructor(message = 'server is shutting down') {
    super('ERR_SERVER_CLOSING', message);
  }
}

/** The connection is closed or was reset; the socket error, if any, is the `cause`. */
export class ConnectionClosedError extends TcpkitError {
  constructor(message = 'connection closed', cause?: unknown) {
    super('ERR_CONNECTION_CLOSED', message, cause === undefined ? undefined : { cause });
  }
}

/** An option passed to tcpkit is of the wrong type or out of range; the message names it. */
export class InvalidOptionError extends TcpkitError {
  readonly option: string;
  constructor(option: string, message: string) {
    super('ERR_INVALID_OPTION', `${option}: ${message}`);
    this.option = option;
  }
}

/**
 * A read was started while another read of the same connection is still pending (a step of
 * `conn.chunks({ reuse: true })` not awaited before the next, or beside a `read()` or `frames()`):
 * a connection has one reader at a time.
 */
export class ReadPendingError extends TcpkitError {
  constructor() {
    super(
      'ERR_READ_PENDING',
      'a read of this connection is already pending: await each step before the next (one reader at a time)',
    );
  }
}

/** A TLS client did not complete its handshake within `handshakeTimeout`. */
export class HandshakeTimeoutError extends TimeoutError {
  constructor(timeout: number) {
    super('ERR_HANDSHAKE_TIMEOUT', `TLS handshake not complete within handshakeTimeout (${timeout} ms)`, timeout);
  }
}

/** A TLS handshake failed (bad version, unknown CA, no client certificate, not TLS at all); the TLS error is the `cause`. */
export class TlsHandshakeError extends TcpkitError {
  constructor(message: string, cause?: unknown) {
    super('ERR_TLS_HANDSHAKE', message, cause === undefined ? undefined : { cause });
  }
}

/**
 * A PROXY protocol header was missing, malformed, truncated, late, or sent by a peer not in
 * `proxyProtocol.trusted`; the message says which. The connection is closed before its handler runs.
 */
export class ProxyProtocolError extends TcpkitError {
  constructor(message: string) {
    super('ERR_PROXY_PROTOCOL', message);
  }
}

/**
 * `serve()` could not listen (with `workers`, a worker could not, and the primary stopped the others):
 * the port is in use, the host is not an address of this machine, the port needs privileges, the host
 * does not resolve. `reason` is the system's code, the message says what to change; the system error
 * (one process) is the `cause`. `endpoint` says which listener failed: the server's own, or the
 * admin endpoint's (`admin.port`, `admin.host`).
 */
export class ListenError extends TcpkitError {
  /** Where the server tried to listen: `host:port` (`[v6]:port`), or the unix socket path. */
  readonly address: string;
  /** The system's error code: `EADDRINUSE`, `EADDRNOTAVAIL`, `EACCES`, `ENOTFOUND`, ... */
  readonly reason: string;
  /** `'server'`: the listener of the connections; `'admin'`: the admin HTTP endpoint. */
  readonly endpoint: 'server' | 'admin';
  constructor(address: string, reason: string, hint: string, cause?: unknown, endpoint: 'server' | 'admin' = 'server') {
    super(
      'ERR_LISTEN',
      `cannot listen on ${address}${endpoint === 'admin' ? ' for the admin endpoint' : ''}: ${hint} (${reason})`,
      cause === undefined ? undefined : { cause },
    );
    this.address = address;
    this.reason = reason;
    this.endpoint = endpoint;
  }
}

/**
 * A worker process failed: `ERR_WORKER_START` (it could not listen, or died before listening: `serve()`
 * or `restart()` rejects and the running workers stay) or `ERR_WORKER_CRASH_LOOP` (workers died
 * `crashLoop.deaths` times within `crashLoop.window`: the primary stops replacing them).
 */
export class WorkerError extends TcpkitError {
  constructor(code: 'ERR_WORKER_START' | 'ERR_WORKER_CRASH_LOOP', message: string, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
  }
}
