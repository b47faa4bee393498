/**
 * The drain at the heart of `server.shutdown()`, once the listener is closed: turn waiting connections
 * away, abort the server's signal, end reads at the input already received, wait for handlers until
 * `deadline`, destroy the rest, then wait for every socket to close. The delay before it, the signals
 * and the log lines are the server's (server.ts).
 */
import { ServerClosingError, TlsHandshakeError } from './errors.js';
import type { Connections } from './server-connections.js';

/** How a drain ended: handlers that finished by themselves and handlers destroyed at the deadline. */
export interface DrainResult {
  graceful: number;
  forced: number;
}

/**
 * Drains `conns`: `abort` aborts the server's signal with `reason`; `deadline` resolves when the drain
 * timeout ends or a forcing signal arrives (it may never resolve: no limit).
 */
export async function drainConnections(
  conns: Connections,
  reason: ServerClosingError,
  abort: (reason: Error) => void,
  deadline: Promise<void>,
): Promise<DrainResult> {
  conns.gate.close();
  abort(reason);
  // Connections still before their handler (reading a PROXY header, in a TLS handshake) have sent no request.
  for (const socket of conns.inProxyStage) socket.destroy();
  conns.tls?.abortAll(new TlsHandshakeError('server shut down during the TLS handshake'));
  const draining = [...conns.running];
  for (const c of draining) c.drain(reason);
  const handlersDone = Promise.all(draining.map((c) => c.handlerSettled));
  await Promise.race([handlersDone, deadline]);
  let forced = 0;
  for (const c of draining) {
    if (conns.running.has(c)) {
      forced++;
      c.destroy(new ServerClosingError('server shut down: drain timeout reached'));
    }
  }
  // Lingering closes of finished handlers get what is left of the timeout: one whose output
  // still waits for a peer that does not read would otherwise linger up to writeTimeout.
  const open = [...conns.unclosed()];
  const socketsClosed = Promise.all(open.map((c) => c.closed()));
  await Promise.race([socketsClosed, deadline]);
  for (const c of open) c.destroy();
  await socketsClosed;
  return { graceful: draining.length - forced, forced };
}
