// Which balance mode this Node can run, and how a server-wide limit is split over the workers.
import type { Balance } from './protocol.js';

/**
 * Whether `listen({ reusePort: true })` works here: Linux (SO_REUSEPORT spreads connections over
 * every socket bound to the port) on Node 22.12+ or 23.1+. Older Nodes ignore the option, so every
 * worker but the first would fail with EADDRINUSE.
 */
export function reusePortSupported(version = process.versions.node, platform = process.platform): boolean {
  if (platform !== 'linux') return false;
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major === 22) return minor >= 12;
  if (major === 23) return minor >= 1;
  return major > 23;
}

/** Resolves `'auto'`: the kernel where it can balance (and the server listens on TCP), else the primary. */
export function chooseBalance(requested: 'auto' | Balance, unixSocket: boolean): Balance {
  if (requested !== 'auto') return requested;
  return !unixSocket && reusePortSupported() ? 'kernel' : 'primary';
}

/**
 * Worker `slot`'s share of a server-wide `total` over `workers`: the shares differ by at most one
 * and sum to `total`, so the machine holds exactly what the operator configured.
 */
export function shareOf(total: number, workers: number, slot: number): number {
  return Math.floor(total / workers) + (slot < total % workers ? 1 : 0);
}
