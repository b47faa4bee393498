// The apps `tcpkit serve <app>` runs, imported statically so the CLI's build and package hold them.
import type { Conn, Server } from 'tcpkit';
import { createApp as createEcho } from './echo.js';
import { createApp as createKv } from './kv/index.js';

/** An app the CLI can serve: a handler, a cleanup for its own timers, and optionally the server to report on. */
export interface App {
  handler: (conn: Conn) => Promise<void>;
  /** Called once listening, with the server that runs the handler (kv's INFO reads its counters). */
  attach?(server: Server): void;
  close(): void;
}

/** Apps shipped with tcpkit, by name: how to create one (with app-specific flags such as kv's) and its default port. */
export const APPS: Record<string, { createApp(options: Record<string, unknown>): App; port: number }> = {
  echo: { createApp: createEcho, port: 7000 },
  kv: { createApp: createKv, port: 6380 },
};
