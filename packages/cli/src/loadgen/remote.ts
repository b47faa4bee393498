/**
 * Engines outside the calling thread: a worker thread (`--workers`) or a child process (`--processes`,
 * each with its own open-file limit). Both answer the same requests (`start`, `load`, `interval`,
 * `farewell`, `stop`) over a message channel with the reports an in-thread engine returns.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import type { EngineConfig, IntervalReport, LoadEngine } from './engine.js';

/** A request to a remote engine. */
export interface EngineRequest {
  id: number;
  op: 'start' | 'load' | 'interval' | 'farewell' | 'stop';
}

/** The id of the message an engine sends once loaded, before any request. */
export const READY_ID = -1;

/** The answer to a request (or, with `READY_ID`, the engine saying it is loaded); `report` is present for `interval` and `stop`. */
export interface EngineResponse {
  id: number;
  report?: IntervalReport;
}

/** Runs `request` on `engine` and replies; `stopped` runs once the engine has stopped. */
export function answer(
  engine: LoadEngine,
  request: EngineRequest,
  reply: (response: EngineResponse) => void,
  stopped: () => void,
): void {
  const { id, op } = request;
  if (op === 'start') engine.start().then(() => reply({ id }));
  else if (op === 'load') {
    engine.startLoad();
    reply({ id });
  } else if (op === 'interval') reply({ id, report: engine.interval() });
  else if (op === 'farewell') engine.farewell().then(() => reply({ id }));
  else {
    reply({ id, report: engine.stop() });
    stopped();
  }
}

/** What a remote engine runs in: a thread or a process. */
interface Channel {
  post(request: EngineRequest): void;
  /** Ends the thread or process once it has answered `stop`. */
  end(): Promise<void>;
}

/** An engine in another thread or process, driven by requests; every pending request fails if it dies. */
export class RemoteEngine {
  readonly #pending = new Map<number, { resolve: (r: EngineResponse) => void; reject: (e: Error) => void }>();
  readonly #channel: Channel;
  /** The process id the engine runs in (the parent's for a thread). */
  readonly pid: number;
  #nextId = 0;
  #loaded!: { resolve: () => void; reject: (e: Error) => void };
  readonly #ready = new Promise<void>((resolve, reject) => {
    this.#loaded = { resolve, reject };
  });

  private constructor(channel: (self: RemoteEngine) => Channel, pid: number) {
    this.#channel = channel(this);
    this.pid = pid;
  }

  /** A worker thread running `config`. */
  static thread(config: EngineConfig): RemoteEngine {
    const url = entry('./worker');
    let worker: Worker;
    if (url.pathname.endsWith('.ts')) {
      // Running from source under tsx: Node 20 workers do not inherit tsx's loader hooks, so the
      // worker registers them itself before importing the TypeScript entry.
      const tsxApi = import.meta.resolve('tsx/esm/api');
      const code = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`;
      worker = new Worker(code, { eval: true, workerData: config });
    } else {
      worker = new Worker(url, { workerData: config });
    }
    return new RemoteEngine((self) => {
      worker.on('message', (response: EngineResponse) => self.#settle(response));
      worker.on('error', (error) => self.#failAll(error));
      worker.on('exit', () => self.#failAll(new Error('load worker thread exited')));
      return {
        post: (request) => worker.postMessage(request),
        end: async () => {
          await worker.terminate();
        },
      };
    }, process.pid);
  }

  /** A child process running `config` (its own descriptors: 20,000 per process here). */
  static process(config: EngineConfig): RemoteEngine {
    const url = entry('./process-entry');
    // From source, the child loads TypeScript through tsx as this process does.
    const execArgv = url.pathname.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
    const child: ChildProcess = fork(url.pathname, [], {
      execArgv,
      env: { ...process.env, TCPKIT_LOADGEN_ENGINE: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new RemoteEngine((self) => {
      child.on('message', (response: EngineResponse) => self.#settle(response));
      child.on('error', (error) => self.#failAll(error));
      const exited = new Promise<void>((resolve) =>
        child.once('exit', (code, signal) => {
          self.#failAll(new Error(`load process ${child.pid} exited (${signal ?? `code ${code}`})`));
          resolve();
        }),
      );
      return {
        post: (request) => child.send(request),
        end: () => {
          child.disconnect();
          return exited;
        },
      };
    }, child.pid ?? 0);
  }

  #settle(response: EngineResponse): void {
    if (response.id === READY_ID) this.#loaded.resolve();
    const pending = this.#pending.get(response.id);
    this.#pending.delete(response.id);
    pending?.resolve(response);
  }

  #failAll(error: Error): void {
    this.#loaded.reject(error);
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  #request(op: EngineRequest['op']): Promise<EngineResponse> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#channel.post({ id, op });
    });
  }

  ready(): Promise<void> {
    return this.#ready;
  }
  async start(): Promise<void> {
    await this.#request('start');
  }
  async startLoad(): Promise<void> {
    await this.#request('load');
  }
  async interval(): Promise<IntervalReport> {
    return (await this.#request('interval')).report!;
  }
  async farewell(): Promise<void> {
    await this.#request('farewell');
  }
  async stop(): Promise<IntervalReport> {
    const response = await this.#request('stop');
    await this.#channel.end();
    return response.report!;
  }
}

/** The entry module beside this one, `.ts` when running from source. */
function entry(name: string): URL {
  return new URL(`${name}${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
}
