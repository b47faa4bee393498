/**
 * A Redis-protocol key-value server on tcpkit: the RESP codec, pipelining and backpressure
 * under clients nobody on the team wrote (redis-cli, redis-benchmark, ioredis).
 *
 * Run it with `tcpkit serve kv --port 6380`, or pass `createApp().handler` to `serve()`.
 */

import { type Conn, FrameError, protocolErrorReply, resp, type Server, TcpkitError } from 'tcpkit';
import type { ClientState, ServerContext } from './commands.js';
import { DATABASES } from './databases.js';
import { InfoState, SAMPLE_INTERVAL } from './info.js';
import { ReplyBuffer } from './replies.js';
import { Store } from './store.js';
import { execute } from './table.js';

/** Options of {@link createApp}. */
export interface KvOptions {
  /**
   * How often the active expiry sweep runs, in milliseconds (Redis runs it 10 times a second).
   * 0 disables it: expired keys are then removed only when touched. Default 100.
   */
  sweepInterval?: number;
  /** Longest value or argument accepted, in bytes (Redis's `proto-max-bulk-len`). Default 512 MiB. */
  maxBulkLength?: number;
  /** Version reported by INFO and HELLO; clients read it to pick features. Default '7.0.0'. */
  version?: string;
  /**
   * Reported as INFO's `maxclients` and CONFIG GET maxclients: pass the `maxConnections` the app is
   * served with. Default 10000, tcpkit's default (and Redis's).
   */
  maxClients?: number;
}

/**
 * The kv app: `handler` for `serve()`; `attach(server)` so INFO reports that server's counters;
 * `close()` to stop the app's timers; `databases` (16 stores, SELECT's indexes) for tests.
 */
export interface KvApp {
  handler: (conn: Conn) => Promise<void>;
  /**
   * INFO reads the server's counters from now on: `rejected_connections`, `total_net_input_bytes`,
   * `total_net_output_bytes`, the kbps meters and `tcp_port`. Without it those fields are left out.
   */
  attach(server: Server): void;
  close(): void;
  readonly databases: readonly Store[];
}

/** Keys looked at per sweep step, and the share of expired keys above which another step runs (Redis: 20, 25%). */
const SWEEP_SAMPLE = 20;
const SWEEP_AGAIN = SWEEP_SAMPLE / 4;
/** A sweep yields the event loop after this long, so expiry never stalls the connections it serves. */
const SWEEP_BUDGET_MS = 2;

/** Encoded replies held before they are written (and awaited) within one batch of requests, in bytes. */
const REPLY_FLUSH = 64 * 1024;

/** `IP:port` as Redis prints addresses, an IPv6 one bracketed (`[::1]:6379`, Redis's anetFormatAddr). */
function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export function createApp(options: KvOptions = {}): KvApp {
  const { sweepInterval = 100, maxBulkLength, version = '7.0.0', maxClients = 10_000 } = options;
  const databases = Array.from({ length: DATABASES }, () => new Store());
  const codec = resp({ maxBulkLength });
  // One for every connection: each handler writes it out before it awaits (see ReplyBuffer).
  const replies = new ReplyBuffer(codec);
  const info = new InfoState(maxClients);
  const clients = new Set<ClientState>();
  const ctx: ServerContext = { databases, version, info, clients: () => clients };

  // Neither timer may keep a process alive whose server has closed.
  const meters = setInterval(() => info.sample(Date.now()), SAMPLE_INTERVAL);
  meters.unref();
  let sweeper: NodeJS.Timeout | undefined;
  if (sweepInterval > 0) {
    sweeper = setInterval(() => {
      const start = Date.now();
      for (const store of databases) {
        while (store.sweep(Date.now(), SWEEP_SAMPLE) > SWEEP_AGAIN && Date.now() - start < SWEEP_BUDGET_MS);
      }
    }, sweepInterval);
    sweeper.unref();
  }

  async function handler(conn: Conn): Promise<void> {
    info.connectedClients++;
    info.connectionsReceived++;
    const now = Date.now();
    const client: ClientState = {
      id: conn.id,
      db: databases[0]!,
      name: null,
      quit: false,
      addr: hostPort(conn.remoteAddress, conn.remotePort),
      laddr: hostPort(conn.localAddress, conn.localPort),
      // Asked of libuv only by CLIENT INFO/LIST, not once per connection.
      fd: () => conn.fd,
      createdAt: now,
      lastInteraction: now,
      lastCommand: 'NULL',
      queuedBytes: () => conn.queuedBytes,
    };
    clients.add(client);
    try {
      // A pipelined burst of requests is one batch: every command in it runs and its replies go out
      // as one write, awaited once (that await is the backpressure: it resolves at once while the
      // write buffer has room). Replies past REPLY_FLUSH bytes are written and awaited on the way, so
      // a batch of large GETs waits for the peer instead of queueing without bound. The clock is read
      // once a batch, as Redis caches it per event.
      for await (const batch of conn.frameBatches(codec)) {
        const now = Date.now();
        for (const args of batch) {
          if (args.length === 0) continue; // Redis ignores empty requests
          replies.add(execute(ctx, client, args, now));
          if (client.quit) break;
          if (replies.bytes >= REPLY_FLUSH) await replies.writeTo(conn);
        }
        const written = replies.writeTo(conn);
        if (written !== undefined) await written;
        if (client.quit) {
          await conn.end();
          return;
        }
      }
    } catch (error) {
      // A malformed request: answer as Redis does, then close.
      if (error instanceof FrameError) return conn.end(protocolErrorReply(error)).catch(() => {});
      // The client went away mid-reply: nothing to answer, and not a server error.
      if (error instanceof TcpkitError && error.code === 'ERR_CONNECTION_CLOSED') return;
      throw error;
    } finally {
      // Replies of a batch that failed part way are this connection's: not for the next one.
      replies.discard();
      info.connectedClients--;
      clients.delete(client);
    }
  }

  return {
    handler,
    attach(server) {
      info.server = server;
    },
    close() {
      clearInterval(meters);
      clearInterval(sweeper);
    },
    databases,
  };
}
