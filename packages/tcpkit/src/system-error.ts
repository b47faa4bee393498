/** How tcpkit reports a failed libuv call: as Node itself would. */
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';

/**
 * libuv's status for ENOTCONN (a negative errno on every Unix): a shutdown with nothing to shut down,
 * or a getpeername on a socket the peer reset.
 */
export const UV_ENOTCONN = -(constants.errno.ENOTCONN ?? 107);

/**
 * A failed libuv call as the error Node's own would raise: message `read ECONNRESET`, `code` the
 * errno's name, `errno` libuv's negative status, `syscall` the call. The bare socket, the handle
 * writer and the TLS reset check each report the kernel's failures this way, so a handler sees the
 * same shape whichever path its connection takes.
 */
export function systemError(status: number, syscall: string): Error {
  const name = status < 0 ? getSystemErrorName(status) : 'UNKNOWN';
  return Object.assign(new Error(`${syscall} ${name}`), { code: name, errno: status, syscall });
}
