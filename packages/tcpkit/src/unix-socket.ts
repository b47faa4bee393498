/**
 * Claiming a unix socket path before listening on it. A process that crashed leaves its socket file
 * behind, and listening on it then fails with a bare EADDRINUSE; a file nothing accepts on is stale
 * and is replaced, one that a live process accepts on is refused with a message that says so.
 * (The file is removed again when the server closes: Node unlinks it.)
 */
import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { InvalidOptionError } from './errors.js';

/** Whether something accepts connections on the socket at `path` (ECONNREFUSED: nothing does). */
function accepting(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') resolve(false);
      else reject(error);
    });
  });
}

/** Makes `path` free to listen on: absent, or a stale socket file (removed); else throws. */
export async function claimSocketPath(path: string): Promise<void> {
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stats.isSocket()) {
    throw new InvalidOptionError('path', `${path} exists and is not a socket: remove it or choose another path`);
  }
  if (await accepting(path)) {
    throw Object.assign(
      new Error(`${path}: another process is accepting connections on this socket; stop it or choose another path`),
      { code: 'EADDRINUSE', path },
    );
  }
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
