// The primary's admin endpoint covers its workers. Counters and gauges come from the workers' reports
// (summed in the primary's stats()), which the endpoint asks for at each scrape; what only a worker can
// see, its event-loop delay and its histograms (fed by its own diagnostics channels), the primary asks
// for over IPC at each scrape or probe too, and between scrapes only a once-a-second report crosses.
import type { Worker } from 'node:cluster';
import { eventLoop } from '../event-loop.js';
import type { Server } from '../server.js';

/**
 * A registry's metrics as prom-client's `getMetricsAsJSON()` gives them (what its aggregation takes),
 * typed here so the library's declarations need no prom-client.
 */
export type MetricsJson = { name: string; type: string; values: { labels: Record<string, string | number> }[] }[];

/** Primary -> worker: how is your event loop, and (`metrics`) what are your histograms? */
export interface ProbeRequest {
  tcpkit: 'probe';
  id: number;
  metrics: boolean;
}

/** Worker -> primary: the answer to the probe `id`. */
export interface ProbeAnswer {
  tcpkit: 'probe';
  id: number;
  /** Longest event-loop delay of the last 10 s, in ms. */
  eventLoopMaxMs: number;
  metrics?: MetricsJson;
}

/** One worker's answer as the primary sees it; `answered` false when it did not answer in time. */
export interface WorkerProbe {
  slot: number;
  pid: number;
  answered: boolean;
  eventLoopMaxMs: number;
  metrics: MetricsJson | undefined;
}

/** The primary's side: sends a probe to each worker and matches the answers by id. */
export class WorkerProbes {
  #next = 0;
  #pending = new Map<number, (answer: ProbeAnswer) => void>();

  /** Probes every worker at once; a worker that has not answered within `timeoutMs` is reported unanswered. */
  ask(workers: { worker: Worker; slot: number }[], metrics: boolean, timeoutMs: number): Promise<WorkerProbe[]> {
    return Promise.all(
      workers.map(
        ({ worker, slot }) =>
          new Promise<WorkerProbe>((resolve) => {
            const id = ++this.#next;
            const pid = worker.process.pid ?? 0;
            const unanswered = (): void => {
              this.#pending.delete(id);
              resolve({ slot, pid, answered: false, eventLoopMaxMs: Number.NaN, metrics: undefined });
            };
            if (!worker.isConnected()) {
              unanswered();
              return;
            }
            const timer = setTimeout(unanswered, timeoutMs);
            this.#pending.set(id, (a) => {
              clearTimeout(timer);
              this.#pending.delete(id);
              resolve({ slot, pid, answered: true, eventLoopMaxMs: a.eventLoopMaxMs, metrics: a.metrics });
            });
            const request: ProbeRequest = { tcpkit: 'probe', id, metrics };
            // A worker that died a moment ago fails the send (EPIPE): unanswered now, not at the timeout.
            worker.send(request, (error: Error | null) => {
              if (error === null) return;
              clearTimeout(timer);
              unanswered();
            });
          }),
      ),
    );
  }

  /** A worker's answer, handed on by the primary's message handler. */
  answer(message: ProbeAnswer): void {
    this.#pending.get(message.id)?.(message);
  }
}

/**
 * The worker's side, set up when the primary serves an admin endpoint: watches the event loop and, if
 * prom-client loads, keeps the histograms in a registry of its own. Resolves to the probe handler.
 */
export async function answerProbes(server: Server): Promise<(request: ProbeRequest) => Promise<ProbeAnswer>> {
  eventLoop.start();
  const histograms = await import('../metrics.js').then(
    async (m) => {
      const { Registry } = await import('prom-client');
      const registry = new Registry();
      m.collectParts(server, { registry }, { stats: false, events: true });
      return registry;
    },
    // Without prom-client the primary's admin fails to start and shuts the workers down.
    () => undefined,
  );
  void server.closed.then(() => eventLoop.stop());
  return async (request) => ({
    tcpkit: 'probe',
    id: request.id,
    eventLoopMaxMs: eventLoop.maxMs(),
    metrics: request.metrics ? ((await histograms?.getMetricsAsJSON()) as MetricsJson | undefined) : undefined,
  });
}

/**
 * The workers' histograms summed (prom-client's cluster aggregation) and their gauges (the event-loop
 * delay) one series per worker, labelled `worker` (its slot) and `pid`, as Prometheus text.
 */
export async function workersMetricsText(probes: WorkerProbe[]): Promise<string> {
  const labelled: MetricsJson[] = [];
  for (const p of probes) {
    if (p.metrics === undefined) continue;
    const labels = { worker: String(p.slot), pid: String(p.pid) };
    labelled.push(
      p.metrics.map((m) =>
        m.type === 'gauge' ? { ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, ...labels } })) } : m,
      ),
    );
  }
  if (labelled.length === 0) return '';
  const { AggregatorRegistry } = await import('prom-client');
  type Aggregated = Parameters<typeof AggregatorRegistry.aggregate>[0];
  return AggregatorRegistry.aggregate(labelled as unknown as Aggregated).metrics();
}
