// The apps `tcpkit serve <app>` runs, imported statically so the CLI's build and package hold them.
import type { Conn, Server } from 'tcpkit';
import type { Flag } from '../flags.js';
import { size } from '../parse.js';
import { createApp as createEcho } from './echo.js';
import { createApp as createKv } from './kv/index.js';

/** An app the CLI can serve: a handler, a cleanup for its own timers, and optionally the server to report on. */
export interface App {
  handler: (conn: Conn) => Promise<void>;
  /** Called once listening, with the server that runs the handler (kv's INFO reads its counters). */
  attach?(server: Server): void;
  close(): void;
}

/** A shipped app: how to create one, its default port and the flags only it takes (passed to `createApp`). */
export interface AppSpec {
  createApp(options: Record<string, unknown>): App;
  port: number;
  flags: Flag[];
}

/** Apps shipped with tcpkit, by name. */
export const APPS: Record<string, AppSpec> = {
  echo: { createApp: createEcho, port: 7000, flags: [] },
  kv: {
    createApp: createKv,
    port: 6380,
    flags: [
      {
        name: '--max-bulk-length',
        key: 'maxBulkLength',
        type: size,
        help: 'kv only: longest value or argument accepted',
        default: 512 * 1024 * 1024, // resp()'s default, Redis's proto-max-bulk-len
      },
    ],
  },
};
