/**
 * Child-process entry of `--processes`: runs one `LoadEngine` (configured by the environment) and
 * answers the parent's requests over IPC (see remote.ts). It leaves once the parent disconnects.
 */
import { type EngineConfig, LoadEngine } from './engine.js';
import { answer, type EngineRequest, READY_ID } from './remote.js';

const text = process.env.TCPKIT_LOADGEN_ENGINE;
if (text !== undefined && process.send !== undefined) {
  const engine = new LoadEngine(JSON.parse(text) as EngineConfig);
  process.on('message', (request: EngineRequest) =>
    answer(
      engine,
      request,
      // The connect phase may end before every connection opened: a late answer meets a parent gone.
      (response) => {
        if (process.connected) process.send?.(response);
      },
      () => {},
    ),
  );
  process.send({ id: READY_ID });
  // Closed sockets may linger a moment; the run is over once the parent lets go.
  process.on('disconnect', () => process.exit(0));
}
