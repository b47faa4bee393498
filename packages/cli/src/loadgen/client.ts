/**
 * One connection of a load engine (engine.ts): connects (over TLS, after a PROXY header, from a source address),
 * sends, reads into the engine's shared buffer, verifies, times each message and reconnects after a failure.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { encodeProxyHeader } from 'tcpkit';
import type { LoadEngine } from './engine.js';

/** Delay before a dropped connection is reopened, so a dead server is not hammered. */
const RECONNECT_DELAY_MS = 100;

/** One connection slot. In `churn` it reconnects after every message; elsewhere only after a failure. */
export class Client {
  readonly #engine: LoadEngine;
  readonly #index: number;
  readonly #payload: Buffer;
  /** batches[k] is k payloads back to back, so k messages leave in one write without copying. */
  readonly #batches: Buffer[] = [];
  readonly #sendTimes: Float64Array;
  readonly #size: number;
  readonly #depth: number;
  #socket: net.Socket | null = null;
  #connected = false;
  #firstAttempt = true;
  #errored = false;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #inflight = 0;
  #ringHead = 0;
  #ringTail = 0;
  /** Bytes of the current (partial) message received so far. */
  #received = 0;
  #connectStartedAt = 0;
  /** The previous connection's TLS session, offered to the next one (tlsResume). */
  #session: Buffer | null = null;
  /** Idle mode: connected, its first echo not back yet (the attempt settles with it). */
  #awaitingFirstEcho = false;
  /** Idle mode: the farewell message is out; called with its echo or the close. */
  #farewellDone: (() => void) | null = null;
  // open-loop state
  #owed = 0;
  #sentIndex = 0;
  #receivedIndex = 0;

  constructor(engine: LoadEngine, index: number) {
    this.#engine = engine;
    this.#index = index;
    this.#payload = engine.payloadFor(index);
    this.#size = engine.config.size;
    this.#depth = engine.config.mode === 'echo' || engine.config.mode === 'open-loop' ? engine.config.depth : 1;
    this.#sendTimes = new Float64Array(this.#depth);
    this.#batches.push(this.#payload.subarray(0, 0), this.#payload);
    if (this.#depth > 1) {
      const all = Buffer.allocUnsafe(this.#size * this.#depth);
      for (let k = 0; k < this.#depth; k++) this.#payload.copy(all, k * this.#size);
      for (let k = 2; k <= this.#depth; k++) this.#batches.push(all.subarray(0, k * this.#size));
    }
  }

  connect(): void {
    const engine = this.#engine;
    const { host, port, connectTimeoutMs } = engine.config;
    this.#connected = false;
    this.#errored = false;
    this.#inflight = 0;
    this.#ringHead = 0;
    this.#ringTail = 0;
    this.#received = 0;
    this.#receivedIndex = this.#sentIndex;
    this.#connectStartedAt = performance.now();
    engine.connectAttemptStarted();
    const { tls: secure, proxyProtocol } = engine.config;
    const localAddress = engine.sourceAddressFor(this.#index);
    let socket: net.Socket;
    if (!secure) {
      // The same socket with or without a header, so a server's cost of the header is all that differs.
      const raw = net.connect({
        host,
        port,
        localAddress,
        noDelay: true,
        onread: { buffer: engine.readBuffer, callback: this.#onRead },
      });
      socket = raw;
      if (proxyProtocol !== null) raw.once('connect', () => raw.write(proxyHeader(proxyProtocol, raw)));
      socket.on('connect', this.#onConnect);
    } else {
      // TLS: the raw socket first (a header must precede the ClientHello), TLS over it.
      const raw = net.connect({ host, port, localAddress, noDelay: true });
      if (proxyProtocol !== null) raw.once('connect', () => raw.write(proxyHeader(proxyProtocol, raw)));
      const t = tls.connect({
        socket: raw,
        rejectUnauthorized: false,
        servername: engine.config.servername ?? undefined,
        session: engine.config.tlsResume ? (this.#session ?? undefined) : undefined,
      });
      if (engine.config.tlsResume) t.once('session', (session: Buffer) => (this.#session = session));
      t.on('secureConnect', this.#onConnect);
      raw.on('error', this.#onError);
      socket = t;
      socket.on('data', (chunk: Buffer) => this.#onRead(chunk.length, chunk));
    }
    this.#socket = socket;
    if (connectTimeoutMs > 0) socket.setTimeout(connectTimeoutMs);
    socket.on('timeout', this.#onTimeout);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
  }

  #settleAttempt(): void {
    this.#engine.connectAttemptDone();
    if (this.#firstAttempt) {
      this.#firstAttempt = false;
      this.#engine.settled();
    }
  }

  #onConnect = (): void => {
    const engine = this.#engine;
    const socket = this.#socket!;
    socket.setTimeout(0);
    this.#connected = true;
    engine.established++;
    // With --tls-resume the server may still refuse the session: count what it accepted.
    if (engine.config.tls && (socket as tls.TLSSocket).isSessionReused()) engine.resumed++;
    engine.open++;
    // An idle connection is open once its first echo is back: that is what the time to open counts.
    if (engine.config.mode === 'idle') this.#awaitingFirstEcho = true;
    else this.#settleAttempt();
    if (!engine.running) return;
    const mode = engine.config.mode;
    if (mode === 'open-loop') this.#pump();
    else if (mode !== 'echo' || engine.loadStarted) this.#send(this.#depth);
  };

  /** The load starts: a connection that is up and silent sends its first messages (open-loop: those due). */
  begin(): void {
    if (!this.#connected) return;
    const mode = this.#engine.config.mode;
    if (mode === 'open-loop') this.#pump();
    else if (mode === 'echo' && this.#inflight === 0) this.#send(this.#depth);
  }

  #onTimeout = (): void => {
    // Only armed while connecting: the attempt took longer than connectTimeoutMs.
    this.#fail('connect ETIMEDOUT');
    this.#socket?.destroy();
  };

  #onError = (error: NodeJS.ErrnoException): void => {
    this.#fail(`${this.#connected ? '' : 'connect '}${error.code ?? error.name}`);
  };

  #fail(kind: string): void {
    if (this.#errored) return;
    this.#errored = true;
    if (this.#engine.running) this.#engine.error(kind);
  }

  #onClose = (): void => {
    const engine = this.#engine;
    const wasConnected = this.#connected;
    this.#connected = false;
    this.#socket = null;
    this.#idleEchoed();
    if (wasConnected) engine.open--;
    else {
      engine.failed++;
      this.#settleAttempt();
    }
    if (!engine.running) return;
    // The server closed a connection we still meant to use.
    if (!this.#errored) engine.error(wasConnected ? 'closed by server' : 'connect closed');
    this.#reconnectTimer = setTimeout(this.#reconnect, RECONNECT_DELAY_MS);
  };

  #reconnect = (): void => {
    this.#reconnectTimer = null;
    if (this.#engine.running) this.connect();
  };

  /** Sends `count` messages in one write, stamping their send times. */
  #send(count: number): void {
    const now = performance.now();
    for (let i = 0; i < count; i++) {
      this.#sendTimes[this.#ringTail] = now;
      this.#ringTail = this.#ringTail + 1 === this.#depth ? 0 : this.#ringTail + 1;
    }
    this.#inflight += count;
    this.#engine.bytesSent += count * this.#size;
    this.#socket!.write(this.#batches[count]!);
  }

  /** Idle mode: one more message on an open connection; resolves with its echo or the close. */
  farewell(): Promise<void> {
    if (!this.#connected) return Promise.resolve();
    return new Promise((resolve) => {
      this.#farewellDone = resolve;
      this.#send(1);
    });
  }

  #idleEchoed(): void {
    if (this.#awaitingFirstEcho) {
      this.#awaitingFirstEcho = false;
      this.#settleAttempt();
    }
    const done = this.#farewellDone;
    this.#farewellDone = null;
    done?.();
  }

  /** Open-loop: one more message is due on this connection. */
  owe(): void {
    this.#owed++;
    if (this.#connected) this.#pump();
  }

  /**
   * Open-loop, at the end of the run: the messages of this connection still in flight and still owed are due
   * already (sequences from the next one expected, in order); each is recorded with its latency so far.
   */
  recordOutstanding(now: number): void {
    const engine = this.#engine;
    const stride = engine.config.connections;
    const outstanding = (this.#connected ? this.#inflight : 0) + this.#owed;
    const first = this.#connected ? this.#receivedIndex : this.#sentIndex;
    for (let i = 0; i < outstanding; i++) {
      engine.recordLatency(now - engine.intendedTime(this.#index + (first + i) * stride));
    }
  }

  #pump(): void {
    const count = Math.min(this.#owed, this.#depth - this.#inflight);
    if (count <= 0) return;
    const engine = this.#engine;
    const now = performance.now();
    const stride = engine.config.connections;
    for (let i = 0; i < count; i++) {
      engine.recordSendLag(now, engine.intendedTime(this.#index + (this.#sentIndex + i) * stride));
    }
    this.#owed -= count;
    this.#sentIndex += count;
    this.#inflight += count;
    engine.bytesSent += count * this.#size;
    this.#socket!.write(this.#batches[count]!);
  }

  #onRead = (nread: number, buf: Uint8Array): boolean => {
    const engine = this.#engine;
    if (!this.#connected) return true;
    const size = this.#size;
    engine.bytesReceived += nread;
    if (engine.config.verify && !this.#verify(nread, buf as Buffer)) {
      this.#fail('verify');
      this.#socket?.destroy();
      return false;
    }
    const total = this.#received + nread;
    const completed = Math.floor(total / size);
    this.#received = total - completed * size;
    if (completed === 0) return true;
    if (completed > this.#inflight) {
      this.#fail('unexpected data');
      this.#socket?.destroy();
      return false;
    }
    this.#inflight -= completed;
    const now = performance.now();
    const mode = engine.config.mode;
    if (mode === 'open-loop') {
      const stride = engine.config.connections;
      for (let i = 0; i < completed; i++) {
        engine.recordLatency(now - engine.intendedTime(this.#index + this.#receivedIndex * stride));
        this.#receivedIndex++;
      }
      engine.messages += completed;
      if (engine.running) this.#pump();
      return true;
    }
    if (mode === 'churn') {
      engine.recordLatency(now - this.#connectStartedAt);
      engine.messages++;
      this.#closeAndCycle();
      return true;
    }
    for (let i = 0; i < completed; i++) {
      engine.recordLatency(now - this.#sendTimes[this.#ringHead]!);
      this.#ringHead = this.#ringHead + 1 === this.#depth ? 0 : this.#ringHead + 1;
    }
    engine.messages += completed;
    // idle mode exchanges one message and then holds the connection (until its farewell).
    if (mode === 'echo' && engine.running) this.#send(completed);
    else if (this.#inflight === 0) this.#idleEchoed();
    return true;
  };

  /** Every connection's stream is its payload repeated; compare the chunk with it piece by piece. */
  #verify(nread: number, buf: Buffer): boolean {
    const size = this.#size;
    let position = this.#received;
    let offset = 0;
    while (offset < nread) {
      const take = Math.min(nread - offset, size - position);
      if (buf.compare(this.#payload, position, position + take, offset, offset + take) !== 0) return false;
      offset += take;
      position = position + take === size ? 0 : position + take;
    }
    return true;
  }

  /** Churn: the echo arrived; close and start the next connection at once. */
  #closeAndCycle(): void {
    const socket = this.#socket!;
    const engine = this.#engine;
    socket.removeListener('close', this.#onClose);
    socket.removeListener('error', this.#onError);
    // A late error on a socket we are discarding is not the server's fault.
    socket.on('error', ignore);
    socket.destroy();
    this.#socket = null;
    this.#connected = false;
    engine.open--;
    if (engine.running) this.connect();
  }

  /** Closes the connection on purpose (end of run). */
  close(): void {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const socket = this.#socket;
    if (!socket) return;
    socket.on('error', ignore);
    socket.destroy();
  }
}

function ignore(): void {}

/** The PROXY header a balancer would send for `socket`'s connection: its own addresses, as seen from both ends. */
function proxyHeader(version: 1 | 2, socket: net.Socket): Buffer {
  return encodeProxyHeader(
    version,
    { address: socket.localAddress ?? '127.0.0.1', port: socket.localPort ?? 0 },
    { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 },
  );
}
