import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { BareSocket } from './bare-socket.js';
import { type DeadlineEntry, deadlines } from './deadlines.js';
import type { ResolvedOptions } from './options.js';
import type { RejectReason } from './server.js';
import { useWaiterReadBuffer, WAITER_READ_SIZE } from './shared-read-buffer.js';

/** The peer of a unix-socket connection: it has no address. */
export const UNIX_PEER = '';

/** What the gate calls back into (the server, through a private object). */
export interface GateHost {
  /**
   * Start the handler of an admitted socket; `lease` is its share of the limits until released,
   * `waitMs` the time it spent in the wait queue (0 when admitted at once), `waited` what it sent while
   * it waited at the cap (hand it to the connection before anything it sends next).
   */
  admit(socket: Socket, lease: Lease, waitMs: number, waited?: WaitedInput): void;
  /** Close a socket turned away (its lease is already released). */
  reject(socket: Socket, peer: string, reason: RejectReason): void;
  /** Close a socket shed at accept for want of file descriptors (its lease is already released). */
  shed(socket: Socket): void;
}

/** The shares of the server's limits a socket may hold, as bits (see Lease). */
export const DESCRIPTOR = 1;
const PEER = 2;
const SLOT = 4;
/** The slot and the per-peer count: given back together, once the handler is done and its output delivered. */
export const SLOT_SHARES = PEER | SLOT;

/**
 * What one accepted socket holds of the server's limits: a descriptor (from accept to close), a
 * per-peer count (while it waits or runs) and a slot of `maxConnections` (while its handler runs, and
 * after, while its output still waits for the peer). Each is given back once, whichever path the
 * socket takes: both release methods may be called any number of times.
 */
export class Lease {
  /** The peer's address; for a lease reserved before a PROXY header, set by the gate at its offer. */
  peer: string;
  #gate: Gate;
  #held = DESCRIPTOR;

  constructor(gate: Gate, peer: string) {
    this.#gate = gate;
    this.peer = peer;
  }

  /** @internal for the gate: counts the per-peer share and, with `slot`, the slot. */
  take(slot: boolean): void {
    this.#held |= slot ? PEER | SLOT : PEER;
  }

  /** Gives back the slot and the per-peer count: the handler is done and its output delivered. */
  releaseSlot(): void {
    this.#give(SLOT_SHARES);
  }

  /** Gives back the descriptor: the socket is closed (a running handler keeps its slot until it ends). */
  releaseDescriptor(): void {
    this.#give(DESCRIPTOR);
  }

  /** Gives back everything still held: the socket was turned away or closed before its handler started. */
  release(): void {
    this.#give(DESCRIPTOR | PEER | SLOT);
  }

  /**
   * Hands what this lease holds to the connection admitted under it, which keeps the bits as a field
   * of its own and gives them back with Gate#give (one object less per running connection). The
   * lease holds nothing after.
   */
  handOver(): number {
    const held = this.#held;
    this.#held = 0;
    return held;
  }

  #give(what: number): void {
    this.#held = this.#gate.give(this.peer, this.#held, what);
  }
}

/** What a connection sent while it waited at the cap. */
export interface WaitedInput {
  /** Input read while waiting, in order (at most about WAITER_READ_SIZE bytes: the waiter is paused then). */
  readonly chunks: Buffer[];
  /** The peer sent FIN after its input (kept only with data and without `abortOnClose`). */
  readonly ended: boolean;
}

const kWaiter = Symbol('tcpkit.waiter');
type WaitingSocket = Socket & { [kWaiter]?: Waiter };

/**
 * A connection queued at the cap. It is kept polled, as HAProxy polls its queued clients: its input is
 * read into a small buffer (then the socket is paused), so a peer that resets or closes is seen and
 * dropped at once instead of holding a place in the queue until its turn or its waitTimeout.
 */
class Waiter implements DeadlineEntry, WaitedInput {
  tick = -1;
  wheelPrev: DeadlineEntry | null = null;
  wheelNext: DeadlineEntry | null = null;
  /** When it joined the queue, for the wait time published at admission. */
  readonly since = performance.now();
  chunks: Buffer[] = [];
  bytes = 0;
  ended = false;
  constructor(
    readonly gate: Gate,
    readonly socket: Socket,
    readonly lease: Lease,
  ) {}
  onDeadline(): void {
    this.gate._expire(this);
  }
}

function waiterChunk(socket: Socket, chunk: Buffer): void {
  const w = (socket as WaitingSocket)[kWaiter];
  if (w === undefined) return;
  w.chunks.push(chunk);
  w.bytes += chunk.length;
  if (w.bytes >= WAITER_READ_SIZE) socket.pause();
}
function onWaiterData(this: Socket, chunk: Buffer): void {
  waiterChunk(this, chunk);
}
function onWaiterEnd(this: Socket): void {
  const w = (this as WaitingSocket)[kWaiter];
  if (w === undefined) return;
  w.ended = true;
  w.gate._waiterEnded(w);
}

/** Descriptors kept free for everything else the process opens (files, outgoing connections, ...). */
const DESCRIPTOR_RESERVE = 32;
/** Least time between two recounts of the process's descriptors, so a flood does not turn into /proc reads. */
const RECOUNT_INTERVAL = 200;

/**
 * Admission control: the semaphore of the Go pattern. Decides for each accepted socket whether its
 * handler runs now, waits (FIFO, bounded in count and time, polled into a small buffer) or is turned away, and
 * owns every count a socket takes against the limits, through its Lease: the slots, the per-peer
 * counts (waiting connections count: they hold a descriptor) and the descriptor budget.
 */
export class Gate {
  #o: ResolvedOptions;
  #host: GateHost;
  /** Slots taken: handlers running, and finished ones whose output still waits. */
  #active = 0;
  /** FIFO of waiting connections; a Set keeps insertion order and O(1) removal. */
  #waiting = new Set<Waiter>();
  #perPeer = new Map<string, number>();
  /** Sockets accepted and not yet closed: running, waiting, lingering. */
  #descriptors = 0;
  /**
   * Most sockets the server may hold before it sheds new ones: the descriptors it holds plus those the
   * process had free (below the soft limit, less a reserve) when last counted.
   */
  #descriptorBudget = Number.POSITIVE_INFINITY;
  #descriptorsCountedAt = 0;
  #closed = false;

  constructor(options: ResolvedOptions, host: GateHost) {
    this.#o = options;
    this.#host = host;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /** Sockets held (running, waiting, lingering) and the budget before shedding (0 = none known). */
  get descriptors(): { open: number; budget: number } {
    const budget = this.#descriptorBudget;
    return { open: this.#descriptors, budget: Number.isFinite(budget) ? budget : 0 };
  }

  /** Sets the descriptor budget from what the process has free now (call once listening). */
  countDescriptors(): void {
    this.#descriptorBudget = freeDescriptors();
  }

  /**
   * Counts a newly accepted socket's descriptor against the budget before its peer is known: a socket
   * reading its PROXY header holds a descriptor as an admitted one does, so a flood of connections that
   * never send one is shed like any other. Returns its lease (hand it to `offer`), or null: shed.
   */
  reserve(socket: Socket): Lease | null {
    this.#descriptors++;
    const lease = new Lease(this, '');
    if (this.#descriptors > this.#descriptorBudget && !this.#recounted()) {
      // Out of descriptors: shed this connection ourselves, counted, before the process hits EMFILE
      // (libuv's own EMFILE handling sheds connections too, but silently).
      lease.release();
      this.#host.shed(socket);
      return null;
    }
    return lease;
  }

  /**
   * Decides the fate of a newly accepted socket: its handler runs now, it waits, or it is turned away.
   * `reserved`: the lease `reserve` gave it, when its descriptor was counted already.
   */
  offer(socket: Socket, peer: string | undefined, reserved?: Lease): 'run' | 'wait' | 'rejected' | 'shed' {
    const lease = reserved ?? this.reserve(socket);
    if (lease === null) return 'shed';
    lease.peer = peer ?? '';
    // Reset before we looked: nothing to admit, and counted as a waiter that went away would be.
    if (peer === undefined) return this.#turnAway(socket, lease, 'abandoned');
    const o = this.#o;
    if (this.#closed) return this.#turnAway(socket, lease, 'shutdown');
    // A unix-socket peer has no address: the blocklist and the per-peer cap do not apply to it.
    if (peer !== UNIX_PEER) {
      if (o.blockList?.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')) {
        return this.#turnAway(socket, lease, 'blocked');
      }
      if (o.maxConnectionsPerPeer > 0 && (this.#perPeer.get(peer) ?? 0) >= o.maxConnectionsPerPeer) {
        return this.#turnAway(socket, lease, 'perPeer');
      }
    }
    if (this.#active < o.maxConnections) {
      this.#take(lease, true);
      this.#host.admit(socket, lease, 0);
      return 'run';
    }
    if (o.whenFull === 'reject' || this.#waiting.size >= o.maxWaiting) return this.#turnAway(socket, lease, 'full');
    this.#take(lease, false);
    const w = new Waiter(this, socket, lease);
    this.#waiting.add(w);
    if (o.waitTimeout > 0) deadlines.schedule(w, deadlines.now() + o.waitTimeout);
    // A reset, or a close by us (turned away, destroyed): a waiter that leaves the queue so is abandoned.
    socket.once('close', () => this.#abandon(w));
    (socket as WaitingSocket)[kWaiter] = w;
    if (socket instanceof BareSocket) {
      socket.smallReads(true);
      socket.on('data', onWaiterData);
    } else if (!useWaiterReadBuffer(socket, waiterChunk)) socket.on('data', onWaiterData);
    socket.on('end', onWaiterEnd);
    socket.resume();
    return 'wait';
  }

  /** @internal a waiter's peer sent FIN: with nothing sent before it (or with abortOnClose) it is gone. */
  _waiterEnded(w: Waiter): void {
    if (w.bytes === 0 || this.#o.abortOnClose) this.#abandon(w);
  }

  /** A waiter went away before its turn: turned away as `abandoned`, never admitted. */
  #abandon(w: Waiter): void {
    if (!this.#waiting.delete(w)) return;
    deadlines.cancel(w);
    this.#unpoll(w);
    this.#turnAway(w.socket, w.lease, 'abandoned');
  }

  /** Stops polling a waiter: it is admitted (its connection reads from now on) or turned away. */
  #unpoll(w: Waiter): void {
    const socket = w.socket as WaitingSocket;
    socket[kWaiter] = undefined;
    socket.off('data', onWaiterData);
    socket.off('end', onWaiterEnd);
  }

  /** Stops admitting: every waiting connection and every later offer is turned away as `shutdown`. */
  close(): void {
    this.#closed = true;
    for (const w of this.#waiting) {
      this.#waiting.delete(w);
      deadlines.cancel(w);
      this.#unpoll(w);
      this.#turnAway(w.socket, w.lease, 'shutdown');
    }
  }

  /**
   * @internal gives back the shares `what` of `held` (a lease's, or those of the connection it was
   * handed over to) taken for `peer`; returns the shares still held. Giving back twice gives nothing.
   */
  give(peer: string, held: number, what: number): number {
    const given = held & what;
    if (given !== 0) this.returned(peer, (given & PEER) !== 0, (given & SLOT) !== 0, (given & DESCRIPTOR) !== 0);
    return held & ~what;
  }

  /** @internal what a lease gave back. A freed slot admits the longest-waiting connections. */
  returned(peer: string, perPeer: boolean, slot: boolean, descriptor: boolean): void {
    if (descriptor) this.#descriptors--;
    if (perPeer && this.#o.maxConnectionsPerPeer > 0) {
      const n = (this.#perPeer.get(peer) ?? 1) - 1;
      if (n <= 0) this.#perPeer.delete(peer);
      else this.#perPeer.set(peer, n);
    }
    if (!slot) return;
    this.#active--;
    while (this.#waiting.size > 0 && this.#active < this.#o.maxConnections) {
      const w = this.#waiting.values().next().value as Waiter;
      this.#waiting.delete(w);
      deadlines.cancel(w);
      this.#unpoll(w);
      if (w.socket.destroyed) {
        w.lease.release();
        continue;
      }
      this.#active++;
      w.lease.take(true);
      this.#host.admit(w.socket, w.lease, performance.now() - w.since, w);
    }
  }

  /** @internal a waiter's waitTimeout passed. */
  _expire(w: Waiter): void {
    if (!this.#waiting.delete(w)) return;
    this.#unpoll(w);
    this.#turnAway(w.socket, w.lease, 'waitTimeout');
  }

  #turnAway(socket: Socket, lease: Lease, reason: RejectReason): 'rejected' {
    lease.release();
    this.#host.reject(socket, lease.peer, reason);
    return 'rejected';
  }

  #take(lease: Lease, slot: boolean): void {
    lease.take(slot);
    if (slot) this.#active++;
    const peer = lease.peer;
    if (this.#o.maxConnectionsPerPeer > 0) this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + 1);
  }

  /**
   * The budget was passed: count the process's descriptors again (at most every RECOUNT_INTERVAL) and
   * say whether the budget, refreshed, now admits the socket. Descriptors freed by others (a previous
   * server, closed files) raise it; others' use lowers it.
   */
  #recounted(): boolean {
    const now = performance.now();
    if (now - this.#descriptorsCountedAt < RECOUNT_INTERVAL) return false;
    this.#descriptorsCountedAt = now;
    this.#descriptorBudget = this.#descriptors + freeDescriptors() - 1;
    return this.#descriptors <= this.#descriptorBudget;
  }
}

/**
 * Descriptors the process may still open before it is within DESCRIPTOR_RESERVE of its open-file
 * soft limit. Linux only (/proc); elsewhere unlimited, and libuv's own EMFILE handling (which sheds
 * connections silently) remains the backstop.
 */
function freeDescriptors(): number {
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (soft === undefined) return Number.POSITIVE_INFINITY;
    return Math.max(0, Number(soft) - readdirSync('/proc/self/fd').length - DESCRIPTOR_RESERVE);
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
