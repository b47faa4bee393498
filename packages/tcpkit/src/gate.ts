import type { Socket } from 'node:net';
import { type DeadlineEntry, deadlines } from './deadlines.js';
import type { ResolvedOptions } from './options.js';
import type { RejectReason } from './server.js';

/** What the gate calls back into (the server, through a private object). */
export interface GateHost {
  admit(socket: Socket, peer: string): void;
  reject(socket: Socket, peer: string, reason: RejectReason): void;
  /** A waiting socket closed by itself (it left the queue without being admitted or rejected). */
  waiterClosed(): void;
}

class Waiter implements DeadlineEntry {
  tick = -1;
  constructor(
    readonly expire: (w: Waiter) => void,
    readonly socket: Socket,
    readonly peer: string,
  ) {}
  onDeadline(): void {
    this.expire(this);
  }
}

/**
 * Admission control: the semaphore of the Go pattern. Decides for each accepted socket whether
 * its handler runs now, waits (paused, unread, FIFO, bounded in count and time) or is rejected,
 * and tracks per-peer counts (waiting connections count: they hold a descriptor).
 */
export class Gate {
  #o: ResolvedOptions;
  #host: GateHost;
  #active = 0;
  /** FIFO of waiting connections; a Set keeps insertion order and O(1) removal. */
  #waiting = new Set<Waiter>();
  #perPeer = new Map<string, number>();
  #closed = false;

  constructor(options: ResolvedOptions, host: GateHost) {
    this.#o = options;
    this.#host = host;
  }

  get active(): number {
    return this.#active;
  }
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Decides the fate of a newly accepted socket: its handler runs now, it waits, or it is rejected. */
  offer(socket: Socket, peer: string): 'run' | 'wait' | 'rejected' {
    const o = this.#o;
    if (this.#closed) return this.#turnAway(socket, peer, 'shutdown');
    if (o.blockList?.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')) {
      return this.#turnAway(socket, peer, 'blocked');
    }
    if (o.maxConnectionsPerPeer > 0 && (this.#perPeer.get(peer) ?? 0) >= o.maxConnectionsPerPeer) {
      return this.#turnAway(socket, peer, 'perPeer');
    }
    if (this.#active < o.maxConnections) {
      this.#take(peer);
      this.#active++;
      this.#host.admit(socket, peer);
      return 'run';
    }
    if (o.whenFull === 'reject' || this.#waiting.size >= o.maxWaiting) {
      return this.#turnAway(socket, peer, 'full');
    }
    this.#take(peer);
    const w = new Waiter(this.#expire, socket, peer);
    this.#waiting.add(w);
    if (o.waitTimeout > 0) deadlines.schedule(w, deadlines.now() + o.waitTimeout);
    socket.once('close', () => {
      if (this.#waiting.delete(w)) {
        deadlines.cancel(w);
        this.#give(peer);
        this.#host.waiterClosed();
      }
    });
    return 'wait';
  }

  /** A handler ended: free its slot and admit the longest-waiting connection. */
  release(peer: string): void {
    this.#active--;
    this.#give(peer);
    while (this.#waiting.size > 0 && this.#active < this.#o.maxConnections) {
      const w = this.#waiting.values().next().value as Waiter;
      this.#waiting.delete(w);
      deadlines.cancel(w);
      if (w.socket.destroyed) {
        this.#give(w.peer);
        this.#host.waiterClosed();
        continue;
      }
      this.#active++;
      this.#host.admit(w.socket, w.peer);
    }
  }

  /** Stops admitting: every waiting connection and every later offer is rejected as `shutdown`. */
  close(): void {
    this.#closed = true;
    for (const w of this.#waiting) {
      this.#waiting.delete(w);
      deadlines.cancel(w);
      this.#give(w.peer);
      this.#host.reject(w.socket, w.peer, 'shutdown');
    }
  }

  /** A waiter's waitTimeout passed. */
  #expire = (w: Waiter): void => {
    if (!this.#waiting.delete(w)) return;
    this.#give(w.peer);
    this.#host.reject(w.socket, w.peer, 'waitTimeout');
  };

  #turnAway(socket: Socket, peer: string, reason: RejectReason): 'rejected' {
    this.#host.reject(socket, peer, reason);
    return 'rejected';
  }

  #take(peer: string): void {
    if (this.#o.maxConnectionsPerPeer > 0) this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + 1);
  }

  #give(peer: string): void {
    if (this.#o.maxConnectionsPerPeer === 0) return;
    const n = (this.#perPeer.get(peer) ?? 1) - 1;
    if (n <= 0) this.#perPeer.delete(peer);
    else this.#perPeer.set(peer, n);
  }
}
