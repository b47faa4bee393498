/**
 * The deadline policy of one connection: which of its timeouts is in force, which has really passed,
 * and when to look again. Pure functions of the connection's timers, the clock reading `now` and what
 * the handler is waiting for (no socket, no wheel), so every rule is table-tested on virtual time
 * (test/conn-deadlines.test.ts). The connection files one wheel entry at the earliest deadline
 * ({@link nextDeadline}); when it fires it asks {@link expiredTimeout} and acts on the answer.
 */
import { deadlines } from './deadlines.js';
import {
  FirstByteTimeoutError,
  FrameTimeoutError,
  IdleTimeoutError,
  LifetimeExceededError,
  type TimeoutError,
  WriteTimeoutError,
} from './errors.js';
import type { ConnTimeouts } from './options.js';

/**
 * A connection's timeouts (ms, 0 = no limit) and the clock readings they run from (0 = not started).
 * ConnCore extends it, so a connection's timers are fields of its core, not an object of their own.
 */
export class ConnTimers {
  /**
   * The timeouts in force: the server's options, shared by all its connections, until
   * `conn.setTimeouts()` gives this connection a copy of its own (five fields less per connection).
   */
  #limits: Required<ConnTimeouts>;
  /** Admission: `maxLifetime` and `firstByteTimeout` run from here. */
  readonly startedAt: number;
  /** The last byte read, or the moment the handler last caught up or began to wait; 0 until the first byte. */
  lastReadAt = 0;
  /** When the frame being decoded got its first byte; 0 between frames. */
  frameStartAt = 0;
  /** When output started waiting because the kernel buffer was full; 0 = all flushed. */
  writeBlockedSince = 0;

  constructor(timeouts: Required<ConnTimeouts>, startedAt: number) {
    this.#limits = timeouts;
    this.startedAt = startedAt;
  }

  get firstByteTimeout(): number {
    return this.#limits.firstByteTimeout;
  }
  get idleTimeout(): number {
    return this.#limits.idleTimeout;
  }
  get frameTimeout(): number {
    return this.#limits.frameTimeout;
  }
  get writeTimeout(): number {
    return this.#limits.writeTimeout;
  }
  get maxLifetime(): number {
    return this.#limits.maxLifetime;
  }

  /**
   * Applies `conn.setTimeouts()` (already validated); unspecified ones stay. An idle timeout set on a
   * connection that had none runs from now: without one the reader does not keep `lastReadAt`
   * current (see ConnReader), so the last reading may be old.
   */
  set(t: ConnTimeouts): void {
    const l = this.#limits;
    if (l.idleTimeout === 0 && (t.idleTimeout ?? 0) > 0 && this.lastReadAt !== 0) this.lastReadAt = deadlines.now();
    this.#limits = {
      firstByteTimeout: t.firstByteTimeout ?? l.firstByteTimeout,
      idleTimeout: t.idleTimeout ?? l.idleTimeout,
      frameTimeout: t.frameTimeout ?? l.frameTimeout,
      writeTimeout: t.writeTimeout ?? l.writeTimeout,
      maxLifetime: t.maxLifetime ?? l.maxLifetime,
    };
  }
}

/** What the handler waits for (see ConnReader): nothing, the next chunk, or more bytes for a frame or `readExactly`. */
export const WAIT_NONE = 0;
export const WAIT_READ = 1;
export const WAIT_ITERATE = 2;
export const WAIT_CALLBACK = 3;

/** What the connection is doing when a deadline comes due: what excuses a timeout that has passed. */
export interface HandlerState {
  /** WAIT_NONE, WAIT_READ, WAIT_ITERATE or WAIT_CALLBACK. */
  waitMode: number;
  /** Input received and not yet read by the handler. */
  buffered: number;
  /** Output sits in the socket waiting for the kernel. */
  writePending: boolean;
  /** The peer sent FIN. */
  eof: boolean;
  /** The server drains: reads end at the input already received. */
  draining: boolean;
}

/** The earliest deadline in force that lies after `after` (default: any), or +Infinity. */
export function nextDeadline(t: ConnTimers, after = Number.NEGATIVE_INFINITY): number {
  // No closure to collect the minimum: this runs at every accept and first read, and a closure
  // would be garbage made per connection.
  let at = Number.POSITIVE_INFINITY;
  if (t.maxLifetime > 0) at = earliest(at, t.startedAt + t.maxLifetime, after);
  if (t.writeTimeout > 0 && t.writeBlockedSince > 0) at = earliest(at, t.writeBlockedSince + t.writeTimeout, after);
  if (t.lastReadAt === 0) {
    if (t.firstByteTimeout > 0) at = earliest(at, t.startedAt + t.firstByteTimeout, after);
  } else if (t.idleTimeout > 0) {
    at = earliest(at, t.lastReadAt + t.idleTimeout, after);
  }
  if (t.frameTimeout > 0 && t.frameStartAt > 0) at = earliest(at, t.frameStartAt + t.frameTimeout, after);
  return at;
}

/** `d` if it lies after `after` and before `at`, else `at`. */
function earliest(at: number, d: number, after: number): number {
  return d > after && d < at ? d : at;
}

/**
 * The timeout that has really passed at `now`, or null. A deadline that passed is excused while what
 * it guards is not the peer's doing: the idle clock counts only while the handler waits for input with
 * nothing unread (unread input is the handler's delay, unless it waits for the rest of a frame), no
 * output blocked and the stream not ended; the frame clock only while the handler waits for the
 * frame's missing bytes (complete frames queued behind a busy handler are not late).
 */
export function expiredTimeout(t: ConnTimers, now: number, h: HandlerState): TimeoutError | null {
  if (t.maxLifetime > 0 && now >= t.startedAt + t.maxLifetime) return new LifetimeExceededError(t.maxLifetime);
  if (t.writeTimeout > 0 && t.writeBlockedSince > 0 && now >= t.writeBlockedSince + t.writeTimeout && h.writePending) {
    return new WriteTimeoutError(t.writeTimeout);
  }
  if (t.lastReadAt === 0) {
    if (t.firstByteTimeout > 0 && now >= t.startedAt + t.firstByteTimeout && !h.eof) {
      return new FirstByteTimeoutError(t.firstByteTimeout);
    }
  } else if (
    t.idleTimeout > 0 &&
    now >= t.lastReadAt + t.idleTimeout &&
    h.waitMode !== WAIT_NONE &&
    (h.buffered === 0 || h.waitMode === WAIT_CALLBACK) &&
    t.writeBlockedSince === 0 &&
    !h.eof &&
    !h.draining
  ) {
    return new IdleTimeoutError(t.idleTimeout);
  }
  if (
    t.frameTimeout > 0 &&
    t.frameStartAt > 0 &&
    h.waitMode === WAIT_CALLBACK &&
    now >= t.frameStartAt + t.frameTimeout
  ) {
    return new FrameTimeoutError(t.frameTimeout);
  }
  return null;
}

/**
 * When to look again after a check at `now` found nothing expired: the next deadline still ahead; one
 * that passed but was excused is checked again one idle period later (at least one wheel tick), never
 * past a later deadline. +Infinity: nothing is in force.
 */
export function recheckAt(t: ConnTimers, now: number, resolution: number): number {
  const ahead = nextDeadline(t, now);
  if (nextDeadline(t) > now) return ahead;
  return Math.min(ahead, now + Math.max(t.idleTimeout, resolution));
}
