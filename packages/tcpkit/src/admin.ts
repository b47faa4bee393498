/**
 * The admin HTTP endpoint of `serve({ admin })`: `/metrics`, `/healthz`, `/readyz`, `/stats`.
 * Loaded only when `admin` is set, so a server without it pays nothing. `/metrics` needs prom-client
 * (an optional peer dependency), loaded at start so a missing install fails `serve()`, not a scrape.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from './errors.js';
import { eventLoop } from './event-loop.js';
import { toListenError } from './listen-error.js';
import type { MetricsCollector } from './metrics.js';
import type { Server, ServerAddress } from './server.js';
import { type WorkerProbe, workersMetricsText } from './workers/metrics.js';

/** Options of the admin endpoint (`serve({ admin })`). */
export interface AdminOptions {
  /** TCP port of the admin HTTP endpoint; 0 picks an ephemeral port (read it from `server.adminAddress`). */
  port: number;
  /** Address it listens on. Default `'127.0.0.1'`: the endpoint has no authentication, keep it off public interfaces. */
  host?: string;
  /**
   * `/healthz` answers 503 while the event loop has been blocked longer than this (ms) within the last
   * 10 s: a process too busy to serve fails its liveness probe. Default 2000 (2 s); 0 = never.
   */
  maxEventLoopDelay?: number;
  /**
   * Also serve prom-client's default `process_*` and `nodejs_*` metrics on `/metrics`. Those that list
   * every open descriptor and handle are refreshed at most every 10 s: with thousands of connections
   * they cost more than the rest of a scrape. Default true.
   */
  processMetrics?: boolean;
}

/** @internal what the endpoint reads from the server. */
export interface AdminHost {
  server: Server;
  /** True while listening and not shutting down. */
  ready(): boolean;
  /** In a primary: asks the workers for their event-loop delay and (`metrics`) their histograms. */
  workers?: {
    probe(metrics: boolean, timeoutMs: number): Promise<WorkerProbe[]>;
    /** Asks every worker for its counters now; resolves once they answered, or after `timeoutMs`. */
    refresh(timeoutMs: number): Promise<void>;
  };
}

/** How long a scrape waits for a worker's histograms, in ms (a worker that is late is left out of that scrape). */
const SCRAPE_WAIT_MS = 2000;
/**
 * @internal Connections the endpoint holds at once; more are closed as they arrive. Probes and scrapers need a
 * handful, and these descriptors are outside the server's own budget (`maxConnections`), so idle or
 * abandoned HTTP connections must not pile up without bound.
 */
export const ADMIN_MAX_CONNECTIONS = 64;
/** An HTTP request's headers, and the whole request, must arrive within this (ms); Node's defaults are a minute and five. */
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;

/** @internal a running admin endpoint. */
export interface AdminEndpoint {
  readonly address: ServerAddress;
  close(): Promise<void>;
}

/** @internal */
export async function startAdmin(host: AdminHost, options: Required<AdminOptions>): Promise<AdminEndpoint> {
  const metrics = await loadMetrics();
  const { Registry } = await import('prom-client');
  const registry = new Registry();
  // A primary's own event loop and connections say nothing of its workers': those come from the workers.
  const collector: MetricsCollector = metrics.collectParts(
    host.server,
    { registry, processMetrics: options.processMetrics },
    { stats: true, events: host.workers === undefined },
  );
  eventLoop.start();
  // Scrapes that arrive while one is being rendered share its text: rendering is the costly part of /metrics.
  let rendering: Promise<string> | null = null;
  const render = (): Promise<string> => {
    rendering ??= registry.metrics().finally(() => {
      rendering = null;
    });
    return rendering;
  };
  const httpServer = http.createServer(
    { headersTimeout: ADMIN_REQUEST_TIMEOUT_MS, requestTimeout: ADMIN_REQUEST_TIMEOUT_MS },
    (req, res) => {
      respond(host, options, registry, render, req, res).catch((error: unknown) => {
        if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `${String(error)}\n`);
        else res.destroy();
      });
    },
  );
  httpServer.maxConnections = ADMIN_MAX_CONNECTIONS;
  try {
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen({ port: options.port, host: options.host }, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    collector.close();
    eventLoop.stop();
    // The same typed error as the server's own listener (ERR_LISTEN, what to change), saying it is the admin's.
    throw toListenError(error, { host: options.host, port: options.port }, 'admin');
  }
  const a = httpServer.address() as AddressInfo;
  return {
    address: { address: a.address, family: a.family, port: a.port },
    async close() {
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
      collector.close();
      eventLoop.stop();
    },
  };
}

async function respond(
  host: AdminHost,
  options: Required<AdminOptions>,
  registry: MetricsCollector['registry'],
  render: () => Promise<string>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  switch (path) {
    case '/metrics': {
      // With workers, their counters of this moment (they report on demand) and their histograms.
      const probes =
        host.workers === undefined
          ? undefined
          : (await Promise.all([host.workers.probe(true, SCRAPE_WAIT_MS), host.workers.refresh(SCRAPE_WAIT_MS)]))[0];
      let text = await render();
      if (probes !== undefined) text += await workersMetricsText(probes);
      send(res, 200, registry.contentType, text);
      return;
    }
    case '/healthz': {
      const problem = await unhealthy(host, options.maxEventLoopDelay);
      send(res, problem === undefined ? 200 : 503, 'text/plain; charset=utf-8', `${problem ?? 'ok'}\n`);
      return;
    }
    case '/readyz': {
      const ready = host.ready();
      send(res, ready ? 200 : 503, 'text/plain; charset=utf-8', ready ? 'ready\n' : 'shutting down\n');
      return;
    }
    case '/stats':
      await host.workers?.refresh(SCRAPE_WAIT_MS);
      send(res, 200, 'application/json', `${JSON.stringify(host.server.stats())}\n`);
      return;
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz, /readyz or /stats\n');
  }
}

/**
 * Why `/healthz` fails, or undefined: an event loop (this process's, or in a primary any worker's)
 * blocked longer than `limit` ms in the last 10 s, or a worker that does not answer within `limit`.
 */
async function unhealthy(host: AdminHost, limit: number): Promise<string | undefined> {
  if (limit <= 0) return undefined;
  const delay = eventLoop.maxMs();
  if (delay > limit) return `event loop blocked for ${Math.round(delay)} ms`;
  for (const w of host.workers === undefined ? [] : await host.workers.probe(false, limit)) {
    const which = `worker ${w.slot} (pid ${w.pid})`;
    if (!w.answered) return `${which} did not answer within ${limit} ms`;
    if (w.eventLoopMaxMs > limit) return `${which}: event loop blocked for ${Math.round(w.eventLoopMaxMs)} ms`;
  }
  return undefined;
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The metrics module, or a typed error telling the user to install prom-client. */
async function loadMetrics(): Promise<typeof import('./metrics.js')> {
  try {
    return await import('./metrics.js');
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('prom-client')) {
      throw new InvalidOptionError(
        'admin',
        'serves /metrics through prom-client, an optional peer dependency that is not installed: run `npm install prom-client`',
      );
    }
    throw error;
  }
}
