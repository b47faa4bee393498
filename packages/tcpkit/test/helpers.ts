// Shared helpers of the core's tests: loopback clients, waits on events with a bound, and
// diagnostics channel probes. Every wait is bounded so a regression fails instead of hanging.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import type { Clock } from '../src/deadlines.js';
import { type Conn, type ServeOptions, type Server, serve } from '../src/index.js';

/** The TCP port a server listens on. */
export function portOf(server: Server): number {
  const address = server.address;
  assert.ok(typeof address !== 'string', 'a TCP server');
  return address.port;
}

/** Rejects with a message naming `what` if `promise` has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `condition` until it holds (for state that publishes no event, such as a server's
 * counters); fails after `ms`.
 */
export async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** How a client socket ended. */
export interface Closed {
  /** The peer's FIN arrived ('end'). */
  ended: boolean;
  /** The socket error, if any (ECONNRESET, ...). */
  error: NodeJS.ErrnoException | undefined;
}

export interface ClientOptions {
  /** Source address, e.g. 127.0.0.2 to appear as a second peer. */
  localAddress?: string;
  /** false: never read (the socket stays paused), a peer that does not consume. */
  read?: boolean;
  /** Keep the write side open after the server's FIN (default false, Node's default). */
  allowHalfOpen?: boolean;
}

/** A loopback client that records everything the server sends and how the connection ended. */
export class Client {
  readonly socket: Socket;
  /** Resolves once connected; rejects on a connect error. */
  readonly connected: Promise<void>;
  /** Resolves on 'close'. */
  readonly closed: Promise<Closed>;
  #chunks: Buffer[] = [];
  #length = 0;
  #ended = false;
  #error: NodeJS.ErrnoException | undefined;
  #waiters: { n: number; resolve: () => void }[] = [];

  constructor(port: number, options: ClientOptions = {}) {
    this.socket = net.connect({
      host: '127.0.0.1',
      port,
      localAddress: options.localAddress,
      allowHalfOpen: options.allowHalfOpen ?? false,
    });
    const socket = this.socket;
    this.connected = new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    this.connected.catch(() => {});
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        for (const w of this.#waiters) w.resolve();
        this.#waiters = [];
        resolve({ ended: this.#ended, error: this.#error });
      });
    });
    socket.on('error', (err) => {
      this.#error = err;
    });
    socket.on('end', () => {
      this.#ended = true;
    });
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#waiters = this.#waiters.filter((w) => {
        if (this.#length < w.n) return true;
        w.resolve();
        return false;
      });
    });
    if (options.read === false) socket.pause();
  }

  /** Everything received so far. */
  received(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  get receivedLength(): number {
    return this.#length;
  }

  /** Resolves with everything received once at least `n` bytes have arrived (or the socket closed). */
  async receive(n: number, ms = 5000): Promise<Buffer> {
    if (this.#length < n && !this.socket.destroyed) {
      await within(
        new Promise<void>((resolve) => this.#waiters.push({ n, resolve })),
        ms,
        `${n} bytes (got ${this.#length})`,
      );
    }
    return this.received();
  }

  /** Resolves with the whole text received once it contains `text`. */
  async receiveText(text: string, ms = 5000): Promise<string> {
    const deadline = performance.now() + ms;
    for (;;) {
      const s = this.received().toString();
      if (s.includes(text)) return s;
      if (this.socket.destroyed) return s;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out waiting for ${JSON.stringify(text)}, got ${JSON.stringify(s)}`);
      await within(
        new Promise<void>((resolve) => this.#waiters.push({ n: this.#length + 1, resolve })),
        left,
        JSON.stringify(text),
      ).catch(() => {});
    }
  }

  /** Waits for 'close', bounded. */
  waitClosed(ms = 5000): Promise<Closed> {
    return within(this.closed, ms, 'the client socket to close');
  }

  write(data: string | Uint8Array): void {
    this.socket.write(data);
  }

  end(data?: string | Uint8Array): void {
    if (data === undefined) this.socket.end();
    else this.socket.end(data);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Connects a client and waits for the connection. */
export async function connect(port: number, options: ClientOptions = {}): Promise<Client> {
  const client = new Client(port, options);
  await within(client.connected, 5000, 'connect');
  return client;
}

/** Sends `data`, half-closes, and resolves with every byte received until the server closes. */
export async function exchange(port: number, data: Uint8Array | string, ms = 10_000): Promise<Buffer> {
  const client = await connect(port);
  client.end(data);
  const closed = await client.waitClosed(ms);
  assert.equal(closed.error, undefined, 'no socket error');
  return client.received();
}

/** Records every message published on a diagnostics channel until `stop()`. */
export class ChannelProbe<T = Record<string, unknown>> {
  readonly messages: T[] = [];
  #name: string;
  #waiters: { match: (m: T) => boolean; resolve: (m: T) => void }[] = [];
  #listener = (message: unknown): void => {
    const m = message as T;
    this.messages.push(m);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.match(m)) return true;
      w.resolve(m);
      return false;
    });
  };

  constructor(name: string) {
    this.#name = name;
    diagnostics_channel.subscribe(name, this.#listener);
  }

  /** Resolves with the first message (already seen or to come) that `match` accepts. */
  next(match: (m: T) => boolean = () => true, ms = 5000): Promise<T> {
    const seen = this.messages.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return within(
      new Promise<T>((resolve) => this.#waiters.push({ match, resolve })),
      ms,
      `a matching ${this.#name} message (${this.messages.length} seen, hasSubscribers ${diagnostics_channel.hasSubscribers(this.#name)})`,
    );
  }

  stop(): void {
    diagnostics_channel.unsubscribe(this.#name, this.#listener);
  }
}

/** Resolves with the connect error of a client (ECONNREFUSED once the listener is closed), undefined if it connects. */
export function connectError(port: number): Promise<string | undefined> {
  return within(
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    }),
    5000,
    'the connection attempt',
  );
}

/** A promise with its resolve function, for handlers that wait on the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Asserts that `promise` is still pending after `ms` (the only way to observe an absence). */
export async function assertPending(promise: Promise<unknown>, ms: number, what: string): Promise<void> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await new Promise((r) => setTimeout(r, ms));
  assert.equal(settled, false, `${what} is still pending after ${ms} ms`);
}

/** Deterministic pseudo-random bytes. */
export function pseudoRandom(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Options every test server shares: loopback only, ephemeral port, a short linger. */
export const LOOPBACK = { host: '127.0.0.1', port: 0, lingerTimeout: 500 } as const;

/** Shuts a test server down, destroying whatever is left after `ms`. */
export async function stop(server: Server, ms = 1000): Promise<void> {
  await within(server.shutdown({ timeout: ms }), ms + 5000, 'shutdown');
}

/** A child process whose stdout is read line by line; killed by PID in `kill()`. */
export class Child {
  readonly process: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  /** Resolves with the exit code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: (() => void)[] = [];

  constructor(command: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
    this.process = spawn(command, args, {
      cwd: options.cwd ?? process.cwd(),
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let partial = '';
    this.process.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const parts = (partial + text).split('\n');
      partial = parts.pop()!;
      this.lines.push(...parts);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.process.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
    });
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        for (const w of this.#waiters.splice(0)) w();
        resolve({ code, signal });
      });
    });
  }

  /** Resolves with the first stdout line from index `from` on that `match` accepts. */
  async line(match: (line: string) => boolean, what: string, ms = 15_000, from = 0): Promise<string> {
    const deadline = performance.now() + ms;
    for (;;) {
      const found = this.lines.slice(from).find(match);
      if (found !== undefined) return found;
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`child exited before ${what}; stderr: ${this.stderr}`);
      }
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${what}; stdout: ${this.lines.join('\n')}; stderr: ${this.stderr}`);
      await within(new Promise<void>((resolve) => this.#waiters.push(resolve)), left, what).catch(() => {});
    }
  }

  /** The first stdout line that parses as JSON and has `key`. */
  async json<T>(key: string, ms = 15_000): Promise<T> {
    const line = await this.line((l) => l.startsWith('{') && key in JSON.parse(l), `a JSON line with "${key}"`, ms);
    return JSON.parse(line) as T;
  }

  /** Writes `command` as a line to the child's stdin and resolves with the next JSON line that has `key`. */
  async request<T>(command: string, key: string, ms = 15_000): Promise<T> {
    const from = this.lines.length;
    this.process.stdin!.write(`${command}\n`);
    const line = await this.line((l) => l.startsWith('{') && key in JSON.parse(l), `a reply to ${command}`, ms, from);
    return JSON.parse(line) as T;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill(sig);
  }

  /** Kills the child (by its PID) if still running. */
  kill(): void {
    this.signal('SIGKILL');
  }
}

/**
 * A Clock (src/deadlines.ts) on virtual time: nothing runs until the test moves time on, so timer
 * wheel tests are exact and immune to a loaded machine.
 */
export class VirtualClock implements Clock {
  #now: number;
  #timers = new Set<{ every: number; next: number; tick: () => void }>();

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  every(ms: number, tick: () => void): () => void {
    const timer = { every: ms, next: this.#now + ms, tick };
    this.#timers.add(timer);
    return () => this.#timers.delete(timer);
  }

  /** Moves time on by `ms`, running every interval at each period it passes, as a free event loop would. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let due: { every: number; next: number; tick: () => void } | undefined;
      for (const t of this.#timers) if (t.next <= end && (due === undefined || t.next < due.next)) due = t;
      if (due === undefined) break;
      this.#now = due.next;
      due.next += due.every;
      due.tick();
    }
    this.#now = end;
  }

  /** Moves time on by `ms` at once, then runs each due interval once, as after a blocked event loop. */
  jump(ms: number): void {
    this.#now += ms;
    for (const t of [...this.#timers]) {
      if (t.next > this.#now) continue;
      t.next = this.#now + t.every;
      t.tick();
    }
  }
}

/**
 * Serves one handler for the body of a test. The handler's outcome (its return value or what it
 * threw) is handed to the test through `outcome`, so assertions run in the test, not the handler.
 */
export async function withConn<T>(
  options: ServeOptions,
  handler: (conn: Conn) => Promise<T>,
  body: (port: number, outcome: Promise<{ value?: T; error?: unknown; conn: Conn }>) => Promise<void>,
  settleMs = 10_000,
): Promise<void> {
  const outcome = deferred<{ value?: T; error?: unknown; conn: Conn }>();
  const server = await serve({ ...LOOPBACK, ...options }, async (conn) => {
    try {
      outcome.resolve({ value: await handler(conn), conn });
    } catch (error) {
      outcome.resolve({ error, conn });
      throw error;
    }
  });
  try {
    await body(portOf(server), within(outcome.promise, settleMs, 'the handler to settle'));
  } finally {
    await stop(server);
  }
}

/** The `code` of an error (a TcpkitError's, a system error's), or undefined. */
export function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

/** Serves `handler` for the body of a test, then stops the server. */
export async function withServer(
  options: ServeOptions,
  handler: (conn: Conn) => Promise<void>,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const server = await serve({ ...LOOPBACK, ...options }, handler);
  try {
    await body(portOf(server));
  } finally {
    await stop(server);
  }
}

/** A free TCP port on 127.0.0.1 (for a program that cannot report an ephemeral port: HAProxy, redis-server). */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}
