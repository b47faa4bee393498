/**
 * A failed libuv call as the error Node's own would raise: message `read ECONNRESET`, `code` the
 * errno's name, `errno` libuv's negative status, `syscall` the call. The bare socket, the handle
 * writer and the TLS reset check each report the kernel's failures this way, so a handler sees the
 * same shape whichever path its connection takes.
 */
import { getSystemErrorName } from 'node:util';

export function systemError(status: number, syscall: string): Error {
  const name = status < 0 ? getSystemErrorName(status) : 'UNKNOWN';
  return Object.assign(new Error(`${syscall} ${name}`), { code: name, errno: status, syscall });
}
