// Helpers of the workers tests: the fixture program as a child process, and clients that keep
// load on a server and count every way a request can be lost.
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ServerStats, WorkerStats } from '../src/index.js';
import { Child } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/workers-child.ts', import.meta.url));

/** Runs test/fixtures/workers-child.ts with serve() options and a handler mode. */
export function spawnFixture(options: Record<string, unknown>, mode = 'lines'): Child {
  return new Child(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { WORKERS_OPTIONS: JSON.stringify(options), WORKERS_MODE: mode },
  });
}

/** Runs the fixture and resolves once it listens. */
export async function startFixture(
  options: Record<string, unknown>,
  mode = 'lines',
): Promise<{ child: Child; port: number }> {
  const child = spawnFixture(options, mode);
  const { port } = await child.json<{ port: number }>('port', 60_000);
  return { child, port };
}

export async function statsOf(child: Child): Promise<ServerStats & { workers: WorkerStats[] }> {
  const { stats } = await child.request<{ stats: ServerStats & { workers: WorkerStats[] } }>('stats', 'stats');
  return stats;
}

/** Polls the fixture's stats until `condition` holds; resolves with them. */
export async function statsUntil(
  child: Child,
  condition: (s: ServerStats & { workers: WorkerStats[] }) => boolean,
  what: string,
  ms = 30_000,
): Promise<ServerStats & { workers: WorkerStats[] }> {
  let last: (ServerStats & { workers: WorkerStats[] }) | undefined;
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    last = await statsOf(child);
    if (condition(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last stats: ${JSON.stringify(last)}`);
}

/** Everything the load clients saw. */
export interface LoadCounts {
  /** Requests answered with their own echo. */
  answered: number;
  /** Connections refused (ECONNREFUSED). */
  refused: number;
  /** Connections reset or broken (ECONNRESET, EPIPE, ...). */
  reset: number;
  /** Requests with no answer within the bound, or a wrong answer. */
  unanswered: number;
  /**
   * Requests resent on a new connection because the server closed the old one (a clean FIN) before
   * answering: a draining worker ends a connection after answering what it had received, so the request
   * was not processed, as with an HTTP keep-alive connection closed by the server.
   */
  resent: number;
  /** Process ids that answered. */
  pids: Set<string>;
}

type Outcome = { kind: 'answer'; pid: string } | { kind: 'closed' } | { kind: 'error'; code: string };

/** Sends one request line on `socket` and waits for its answer `<pid> <line>`, the close, or an error. */
function ask(socket: net.Socket, line: string, ms: number): Promise<Outcome | { kind: 'timeout' }> {
  return new Promise((resolve) => {
    let got = '';
    const done = (o: Outcome | { kind: 'timeout' }): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      resolve(o);
    };
    const onData = (chunk: Buffer): void => {
      got += chunk.toString();
      const nl = got.indexOf('\n');
      if (nl < 0) return;
      const answer = got.slice(0, nl);
      const space = answer.indexOf(' ');
      if (answer.slice(space + 1) !== line) done({ kind: 'error', code: `wrong answer ${JSON.stringify(answer)}` });
      else done({ kind: 'answer', pid: answer.slice(0, space) });
    };
    const onEnd = (): void => done({ kind: 'closed' });
    const onError = (e: NodeJS.ErrnoException): void => done({ kind: 'error', code: e.code ?? e.message });
    const timer = setTimeout(() => done({ kind: 'timeout' }), ms);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.write(`${line}\n`);
  });
}

function open(port: number): Promise<net.Socket | { code: string }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve({ code: e.code ?? e.message }));
  });
}

/**
 * Clients that load a server until stopped: `persistent` request/response connections (one request at
 * a time, a new connection when the server closes one) and `churn` loops (connect, one request, close).
 */
export class Load {
  readonly counts: LoadCounts = { answered: 0, refused: 0, reset: 0, unanswered: 0, resent: 0, pids: new Set() };
  readonly errors: string[] = [];
  #running = true;
  #loops: Promise<void>[] = [];

  #reconnect: boolean;

  /**
   * `reconnect: false`: a persistent client stops once the server closes its connection (at shutdown,
   * where connecting again would only be refused). `answerBound`: ms a request may wait for its answer.
   */
  constructor(
    port: number,
    persistent: number,
    churn: number,
    options: { answerBound?: number; reconnect?: boolean } = {},
  ) {
    const answerBound = options.answerBound ?? 20_000;
    this.#reconnect = options.reconnect ?? true;
    for (let i = 0; i < persistent; i++) this.#loops.push(this.#persistent(port, i, answerBound));
    for (let i = 0; i < churn; i++) this.#loops.push(this.#churn(port, i, answerBound));
  }

  #count(outcome: { kind: 'timeout' } | { code: string }): void {
    if (!('code' in outcome)) {
      this.counts.unanswered++;
      return;
    }
    this.errors.push(outcome.code);
    if (outcome.code.startsWith('wrong')) this.counts.unanswered++;
    else if (outcome.code === 'ECONNREFUSED') this.counts.refused++;
    else this.counts.reset++;
  }

  async #persistent(port: number, id: number, bound: number): Promise<void> {
    let socket: net.Socket | undefined;
    for (let n = 0; this.#running; ) {
      if (socket === undefined) {
        const s = await open(port);
        if (!(s instanceof net.Socket)) {
          this.#count(s);
          continue;
        }
        socket = s;
      }
      const outcome = await ask(socket, `p${id}-${n}`, bound);
      if (outcome.kind === 'answer') {
        this.counts.answered++;
        this.counts.pids.add(outcome.pid);
        n++;
        continue;
      }
      socket.destroy();
      socket = undefined;
      if (outcome.kind === 'closed' && !this.#reconnect) return;
      if (outcome.kind === 'closed') this.counts.resent++;
      else {
        this.#count(outcome);
        n++;
      }
    }
    socket?.end();
  }

  async #churn(port: number, id: number, bound: number): Promise<void> {
    for (let n = 0; this.#running; ) {
      const s = await open(port);
      if (!(s instanceof net.Socket)) {
        this.#count(s);
        continue;
      }
      const outcome = await ask(s, `c${id}-${n}`, bound);
      if (outcome.kind === 'answer') {
        this.counts.answered++;
        this.counts.pids.add(outcome.pid);
        n++;
        s.end();
        await new Promise((resolve) => s.once('close', resolve));
        continue;
      }
      s.destroy();
      if (outcome.kind === 'closed') this.counts.resent++;
      else {
        this.#count(outcome);
        n++;
      }
    }
  }

  /** Stops every loop after its current request; resolves with the counts. */
  async stop(): Promise<LoadCounts> {
    this.#running = false;
    await Promise.all(this.#loops);
    return this.counts;
  }
}
