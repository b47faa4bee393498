/**
 * The lifecycle of a connection, one phase at a time; each phase implies the ones before it:
 *
 *   OPEN       reading and writing
 *   ENDED      `end()` was called: our output is flushed and FIN follows it; reading may go on (half-close)
 *   LINGERING  the handler settled (or `close()` was called): FIN sent or queued, input read and discarded
 *              until the peer's FIN or `lingerTimeout`, so the peer never sees a reset for data it sent
 *   CLOSED     the socket emitted 'close'
 *
 * Orthogonal to the phase: why the connection failed (`ConnCore.error`, set once: a timeout, a reset, a
 * slow consumer; pending and later operations reject with it), and why input ended (ConnReader: the
 * peer's FIN or the server draining).
 */
export const OPEN = 0;
export const ENDED = 1;
export const LINGERING = 2;
export const CLOSED = 3;

/** One of OPEN, ENDED, LINGERING, CLOSED. */
export type Phase = typeof OPEN | typeof ENDED | typeof LINGERING | typeof CLOSED;
