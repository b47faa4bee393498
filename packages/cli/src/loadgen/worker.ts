/** Worker-thread entry: runs one `LoadEngine` and answers the main thread's requests (see remote.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { type EngineConfig, LoadEngine } from './engine.js';
import { answer, type EngineRequest, READY_ID } from './remote.js';

const port = parentPort;
if (port) {
  const engine = new LoadEngine(workerData as EngineConfig);
  port.on('message', (request: EngineRequest) =>
    // Once stopped nothing is left to do: let the thread end even if a socket is slow to close.
    answer(
      engine,
      request,
      (response) => port.postMessage(response),
      () => port.close(),
    ),
  );
  port.postMessage({ id: READY_ID });
}
