/**
 * Worker-thread entry: runs one `LoadEngine` and answers the main thread's requests
 * (`start`, `interval`, `stop`) with the same reports the in-thread engine returns.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type EngineConfig, LoadEngine } from './engine.js';

/** A request from the main thread. */
export interface WorkerRequest {
  id: number;
  op: 'start' | 'load' | 'interval' | 'stop';
}

/** The answer to a request; `report` is absent for `start`. */
export interface WorkerResponse {
  id: number;
  report?: import('./engine.js').IntervalReport;
}

const port = parentPort;
if (port) {
  const engine = new LoadEngine(workerData as EngineConfig);
  port.on('message', (request: WorkerRequest) => {
    if (request.op === 'start') {
      engine.start().then(() => port.postMessage({ id: request.id } satisfies WorkerResponse));
    } else if (request.op === 'load') {
      engine.startLoad();
      port.postMessage({ id: request.id } satisfies WorkerResponse);
    } else if (request.op === 'interval') {
      port.postMessage({ id: request.id, report: engine.interval() } satisfies WorkerResponse);
    } else {
      port.postMessage({ id: request.id, report: engine.stop() } satisfies WorkerResponse);
      // Nothing is left to do: let the thread end even if a socket is slow to close.
      port.close();
    }
  });
}
