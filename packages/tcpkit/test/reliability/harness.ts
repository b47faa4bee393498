// Shared machinery of the reliability scenarios: the server child process, honest clients,
// attacker child processes, polling of the server's counters and the leak check.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { AttackerConfig, AttackerResult } from './attacker.js';
import type { Report, ServerConfig } from './server.js';

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

/** Loopback address of honest clients; attackers use 127.0.0.2 and up. */
export const HONEST = '127.0.0.1';
export const attackerAddress = (i: number): string => `127.0.0.${2 + (i % 250)}`;

/** `['A', 'A', 'B']` -> `A×2 B×1`. */
function tally(names: string[]): string {
  const n = new Map<string, number>();
  for (const x of names) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k}×${v}`).join(' ');
}

/**
 * No more resources of any kind than at the baseline. (Fewer is fine: the baseline, taken as the
 * server starts, may still hold the loader's start-up requests on some Node versions.)
 */
function withinBaseline(now: string[], baseline: string[]): boolean {
  const budget = new Map<string, number>();
  for (const x of baseline) budget.set(x, (budget.get(x) ?? 0) + 1);
  for (const x of now) {
    const left = budget.get(x) ?? 0;
    if (left === 0) return false;
    budget.set(x, left - 1);
  }
  return true;
}

/** A tcpkit server in a child process. */
export class ServerProcess {
  readonly child: ChildProcess;
  ports: number[] = [];
  /** The last report sent as the server closed (after a shutdown), if any. */
  final: Report | undefined;
  #next = 1;
  #pending = new Map<number, (msg: unknown) => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(config: ServerConfig, opts: { ulimit?: number } = {}) {
    const args = ['--import', 'tsx', here('./server.ts'), JSON.stringify(config)];
    const stdio: ('inherit' | 'ipc')[] = ['inherit', 'inherit', 'inherit', 'ipc'];
    this.child =
      opts.ulimit === undefined
        ? spawn(process.execPath, args, { stdio })
        : spawn('bash', ['-c', `ulimit -n ${opts.ulimit} && exec "$0" "$@"`, process.execPath, ...args], { stdio });
    this.exited = once(this.child, 'exit').then(([code, signal]) => ({ code, signal }));
    this.child.on('message', (msg: { id?: number; event?: string; report?: Report }) => {
      if (msg.id !== undefined) {
        this.#pending.get(msg.id)?.(msg);
        this.#pending.delete(msg.id);
      } else if (msg.event === 'closed') this.final = msg.report;
    });
  }

  /** Resolves with the listening ports once the servers are up. */
  async ready(): Promise<number[]> {
    const ready = new Promise<number[]>((resolve) => {
      const onMessage = (msg: { event?: string; ports?: number[] }): void => {
        if (msg.event !== 'ready') return;
        this.child.off('message', onMessage);
        resolve(msg.ports!);
      };
      this.child.on('message', onMessage);
    });
    const failed = this.exited.then(({ code }) => {
      throw new Error(`server exited with ${code} before it was ready`);
    });
    this.ports = await Promise.race([ready, failed]);
    return this.ports;
  }

  get port(): number {
    return this.ports[0]!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  #ask<T>(cmd: 'stats' | 'shutdown'): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, resolve as (msg: unknown) => void);
      this.child.send({ id, cmd }, (err) => err && reject(err));
      this.exited.then((e) => reject(new Error(`server exited (${e.code ?? e.signal}) before answering ${cmd}`)));
    });
  }

  async report(): Promise<Report> {
    return (await this.#ask<{ report: Report }>('stats')).report;
  }

  /** Polls the server's report until `pred` holds; fails with the last report after `timeoutMs`. */
  async until(pred: (r: Report) => boolean, timeoutMs: number, what: string): Promise<Report> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.report();
      if (pred(r)) return r;
      if (Date.now() > end) {
        assert.fail(
          `${what}: not reached within ${timeoutMs} ms; last stats ${JSON.stringify(r.stats)}, ` +
            `resources ${tally(r.resources)} (baseline ${tally(r.baseline)})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * The leak check: no handler running or waiting and the server process's active resources back
   * to their baseline (lingering closes are given time to finish). Returns the final report.
   */
  async assertNoLeaks(timeoutMs = 15_000): Promise<Report> {
    return this.until(
      (r) => r.stats.active === 0 && r.stats.waiting === 0 && withinBaseline(r.resources, r.baseline),
      timeoutMs,
      'leak check (active, waiting and active resources back to baseline)',
    );
  }

  /** Ends the child, by PID, if it is still running. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export async function startServer(config: ServerConfig, opts: { ulimit?: number } = {}): Promise<ServerProcess> {
  const server = new ServerProcess(config, opts);
  await server.ready();
  return server;
}

/** A line-protocol client: request lines out, response lines back in order (pipelining allowed). */
export class LineClient {
  readonly socket: net.Socket;
  #buffer = '';
  #waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  #error: Error | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      for (
        let nl = this.#buffer.indexOf('\n');
        nl !== -1 && this.#waiting.length > 0;
        nl = this.#buffer.indexOf('\n')
      ) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        this.#waiting.shift()!.resolve(line);
      }
    });
    const fail = (e: Error): void => {
      this.#error ??= e;
      for (const w of this.#waiting.splice(0)) w.reject(e);
    };
    socket.on('error', fail);
    socket.on('end', () => fail(new Error('server ended the connection')));
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static async connect(port: number, localAddress = HONEST): Promise<LineClient> {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    await once(socket, 'connect');
    return new LineClient(socket);
  }

  /** Sends `line` and resolves with its response line. Calls without awaiting pipeline. */
  request(line: string): Promise<string> {
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.socket.write(`${line}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * `clients` honest clients (from 127.0.0.1), each doing `requests` ping/pong round trips, or
 * until `stop()` returns true once it has done at least `min`. Resolves with the number of
 * correct answers and failures.
 */
export async function honestLoad(
  port: number,
  clients: number,
  opts: { requests: number; min?: number; stop?: () => boolean },
): Promise<{ ok: number; failed: number; errors: string[] }> {
  let ok = 0;
  let failed = 0;
  const errors: string[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let client: LineClient | undefined;
      try {
        client = await LineClient.connect(port);
        for (let i = 0; i < opts.requests; i++) {
          if (i >= (opts.min ?? opts.requests) && opts.stop?.()) break;
          const answer = await client.request(`ping ${c}.${i}`);
          if (answer === `pong ${c}.${i}`) ok++;
          else {
            failed++;
            errors.push(`wrong answer ${JSON.stringify(answer.slice(0, 40))}`);
          }
        }
      } catch (e) {
        failed++;
        errors.push(String(e));
      } finally {
        client?.close();
      }
    }),
  );
  return { ok, failed, errors: errors.slice(0, 5) };
}

/** An attacker child process (see attacker.ts), so its sockets do not count against our descriptors. */
export class AttackerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<unknown>;
  #result: Promise<AttackerResult>;

  constructor(config: AttackerConfig) {
    this.child = spawn(process.execPath, ['--import', 'tsx', here('./attacker.ts'), JSON.stringify(config)], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    });
    this.exited = once(this.child, 'exit');
    this.#result = new Promise((resolve, reject) => {
      this.child.on('message', (msg: { event: string; result: AttackerResult }) => {
        if (msg.event === 'done') resolve(msg.result);
      });
      this.exited.then(() => reject(new Error('attacker exited before reporting')));
    });
  }

  /** Resolves once every connection attempt has succeeded or failed. */
  done(): Promise<AttackerResult> {
    return this.#result;
  }

  /** Closes every held connection and lets the process end; resolves with the final counts. */
  async release(): Promise<AttackerResult> {
    const final = new Promise<AttackerResult>((resolve) => {
      this.child.on('message', (msg: { event: string; result: AttackerResult }) => {
        if (msg.event === 'released') resolve(msg.result);
      });
    });
    if (this.child.connected) this.child.send({ cmd: 'release' });
    await this.exited;
    return Promise.race([final, this.done()]);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Resolves once `socket` has closed; says whether the peer ended it with FIN or it failed. */
export function closed(socket: net.Socket): Promise<{ fin: boolean; error?: string }> {
  return new Promise((resolve) => {
    let fin = false;
    let error: string | undefined;
    socket.on('end', () => {
      fin = true;
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    if (socket.destroyed) resolve({ fin, error });
    else socket.on('close', () => resolve({ fin, error }));
  });
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}
