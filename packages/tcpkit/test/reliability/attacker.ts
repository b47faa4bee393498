// An attacker child process: opens `count` connections to 127.0.0.1:`port` from `localAddresses`
// as fast as `inFlight` allows, holds them silent, reports once every attempt has settled, and
// closes them all when told to (or after `holdMs`). Run several to spread the descriptors.
import net from 'node:net';

export interface AttackerConfig {
  port: number;
  count: number;
  localAddresses: string[];
  /** Connection attempts in flight at once. */
  inFlight: number;
  /** Upper bound on how long connections are held if no release comes. */
  holdMs: number;
  /** Instead of holding each connection, close it right after the handshake: FIN or reset. */
  closeAtOnce?: 'fin' | 'rst';
}

export interface AttackerResult {
  attempts: number;
  /** Handshakes completed. */
  connected: number;
  /** Attempts that failed, by error code. */
  failed: Record<string, number>;
  /** Connected sockets already closed by the server when the burst settled. */
  closedByServer: number;
  durationMs: number;
}

const config = JSON.parse(process.argv[2]!) as AttackerConfig;
const sockets = new Set<net.Socket>();
const failed: Record<string, number> = {};
let connected = 0;
let closedByServer = 0;
let released = false;

function attempt(i: number): Promise<void> {
  return new Promise((resolve) => {
    const localAddress = config.localAddresses[i % config.localAddresses.length];
    const socket = net.connect({ host: '127.0.0.1', port: config.port, localAddress });
    let settled = false;
    socket.setTimeout(15_000, () => socket.destroy(Object.assign(new Error('connect timeout'), { code: 'TIMEOUT' })));
    socket.on('connect', () => {
      settled = true;
      connected++;
      socket.setTimeout(0);
      if (config.closeAtOnce === 'fin') socket.end();
      else if (config.closeAtOnce === 'rst') socket.resetAndDestroy();
      else sockets.add(socket);
      resolve();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      failed[e.code ?? 'ERROR'] = (failed[e.code ?? 'ERROR'] ?? 0) + 1;
      resolve();
    });
    socket.on('close', () => {
      if (sockets.delete(socket) && !released) closedByServer++;
      if (!settled) {
        settled = true;
        failed.CLOSED = (failed.CLOSED ?? 0) + 1;
        resolve();
      }
    });
  });
}

const start = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: config.inFlight }, async () => {
    while (next < config.count) await attempt(next++);
  }),
);
const result: AttackerResult = {
  attempts: config.count,
  connected,
  failed,
  closedByServer,
  durationMs: Math.round(performance.now() - start),
};
process.send?.({ event: 'done', result });

function release(): void {
  if (released) return;
  released = true;
  clearTimeout(holdTimer);
  if (process.connected) process.send?.({ event: 'released', result: { ...result, closedByServer } });
  for (const s of sockets) s.destroy();
  sockets.clear();
  if (process.connected) process.disconnect();
}
const holdTimer = setTimeout(release, config.holdMs);
process.on('message', (msg: { cmd: string }) => {
  if (msg.cmd === 'release') release();
});
process.on('disconnect', release);
