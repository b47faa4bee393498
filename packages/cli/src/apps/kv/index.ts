/**
 * A Redis-protocol key-value server on tcpkit: the RESP codec, pipelining and backpressure
 * under clients nobody on the team wrote (redis-cli, redis-benchmark, ioredis).
 *
 * Run it with `tcpkit serve kv --port 6380`, or pass `createApp().handler` to `serve()`.
 */

import { type Conn, FrameError, protocolErrorReply, resp, TcpkitError } from 'tcpkit';
import type { ClientState, ServerContext } from './commands.js';
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
}

/** The kv app: `handler` for `serve()`, `close()` to stop the expiry timer, `store` for tests. */
export interface KvApp {
  handler: (conn: Conn) => Promise<void>;
  close(): void;
  readonly store: Store;
}

/** Keys looked at per sweep step, and the share of expired keys above which another step runs (Redis: 20, 25%). */
const SWEEP_SAMPLE = 20;
const SWEEP_AGAIN = SWEEP_SAMPLE / 4;
/** A sweep yields the event loop after this long, so expiry never stalls the connections it serves. */
const SWEEP_BUDGET_MS = 2;

export function createApp(options: KvOptions = {}): KvApp {
  const { sweepInterval = 100, maxBulkLength, version = '7.0.0' } = options;
  const store = new Store();
  const codec = resp({ maxBulkLength });
  let clients = 0;
  const ctx: ServerContext = { store, startedAt: Date.now(), version, connectedClients: () => clients };

  let timer: NodeJS.Timeout | undefined;
  if (sweepInterval > 0) {
    timer = setInterval(() => {
      const start = Date.now();
      while (store.sweep(Date.now(), SWEEP_SAMPLE) > SWEEP_AGAIN && Date.now() - start < SWEEP_BUDGET_MS);
    }, sweepInterval);
    // The sweep must not keep a process alive whose server has closed.
    timer.unref();
  }

  async function handler(conn: Conn): Promise<void> {
    clients++;
    const client: ClientState = { id: conn.id, name: null, quit: false };
    try {
      for await (const args of conn.frames(codec)) {
        if (args.length === 0) continue; // Redis ignores empty requests
        // Not awaiting would be faster still, but the await is what applies backpressure; it
        // resolves at once while the write buffer has room, and pipelined replies still leave
        // in one syscall because conn coalesces writes made in the same event-loop turn.
        await conn.writeFrame(codec, execute(ctx, client, args, Date.now()));
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
      clients--;
    }
  }

  return {
    handler,
    close: () => clearInterval(timer),
    store,
  };
}
