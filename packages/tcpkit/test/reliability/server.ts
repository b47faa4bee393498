// The server under attack: a child process started by the reliability scenarios. It runs one
// tcpkit server per entry of the JSON config in argv[2], on 127.0.0.1, and answers the test
// process over the IPC channel: stats, error codes seen on the diagnostics channels, peak RSS,
// and the active-resources baseline for the leak check.
import diagnostics_channel from 'node:diagnostics_channel';
import { setImmediate as turn } from 'node:timers/promises';
import { delimited, fixed, lengthPrefixed, lines } from '../../src/framing/index.js';
import { resp, SimpleString } from '../../src/framing/resp.js';
import type { Codec } from '../../src/framing/types.js';
import { type Conn, type Handler, type ServeOptions, type Server, type ServerStats, serve } from '../../src/index.js';

/** The protocols a scenario can ask for. */
export type AppName = CodecApp | 'lines-unawaited';
/** The apps that answer each frame with an awaited write: one per codec configuration. */
export type CodecApp = 'lines' | 'lines-utf8' | 'delimited' | 'lengthPrefixed' | 'fixed' | 'resp';

export interface ServerConfig {
  /** One server per app, each on its own ephemeral port. */
  apps: AppName[];
  options: ServeOptions;
  /** Record the error code of every connection by `address:port` (the garbage scenario). */
  trackPeers?: boolean;
}

export type Request = { id: number; cmd: 'stats' | 'shutdown' };

export interface Report {
  stats: ServerStats;
  /** Requests decoded and responses written by the `lines` app. */
  received: number;
  answered: number;
  /** Error codes published on `tcpkit:connection:error` and `:timeout`, counted once per connection and code. */
  codes: Record<string, number>;
  /** `address:port` -> error code, when `trackPeers`. */
  peers: Record<string, string>;
  resources: string[];
  baseline: string[];
  rssMiB: number;
  maxRssMiB: number;
  /** CPU time used so far, user + system, in milliseconds. */
  cpuMs: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ServerConfig;
const send = (msg: unknown): void => {
  process.send?.(msg);
};

let received = 0;
let answered = 0;
const codes: Record<string, number> = {};
const peers: Record<string, string> = {};

/** `conn.id:code` pairs already counted: a timeout is published on `:timeout` and again on `:error` when the handler throws it. */
const seen = new Set<string>();

function onFailure(message: unknown): void {
  const { conn, error } = message as { conn: Conn; error: { code?: string } };
  const code = error?.code ?? 'UNCODED';
  if (seen.has(`${conn.id}:${code}`)) return;
  seen.add(`${conn.id}:${code}`);
  codes[code] = (codes[code] ?? 0) + 1;
  if (config.trackPeers) peers[`${conn.remoteAddress}:${conn.remotePort}`] = code;
}
diagnostics_channel.subscribe('tcpkit:connection:error', onFailure);
diagnostics_channel.subscribe('tcpkit:connection:timeout', onFailure);

const BLOCK_SIZE = 64 * 1024;

/**
 * A line protocol. `ping <x>` -> `pong <x>`; `big <n>` -> n bytes then a newline, each write
 * awaited (the idiomatic handler: the write deadline guards it); `push <n>` -> n bytes written
 * one block per event-loop turn without awaiting (a broadcaster: maxQueuedBytes guards it);
 * `spray <n>` writes n bytes without awaiting and ends the connection; `sleep <ms>` answers after ms
 * (a slow backend); anything else is echoed.
 */
const linesApp =
  (codec: Codec<string, string>): Handler =>
  async (conn) => {
    for await (const line of conn.frames(codec)) {
      received++;
      const [cmd, arg] = line.split(' ', 2);
      if (cmd === 'big' || cmd === 'push') {
        let left = Number(arg);
        while (left > 0 && !conn.isClosed) {
          // A fresh buffer each time, as a real response or broadcast would be: queued bytes cost memory.
          const block = Buffer.alloc(Math.min(left, BLOCK_SIZE), 'x');
          left -= block.length;
          if (cmd === 'big') await conn.write(block);
          else {
            conn.write(block).catch(() => {});
            await turn();
          }
        }
        await conn.write('\n');
      } else if (cmd === 'spray') {
        // A last reply written without awaiting, then the handler returns: the close must flush it.
        for (let left = Number(arg); left > 0; left -= BLOCK_SIZE)
          conn.write(Buffer.alloc(BLOCK_SIZE, 'x')).catch(() => {});
        answered++;
        return;
      } else if (cmd === 'hold') {
        // A handler awaiting a long timer, ref'd: it would keep the process alive past its drain.
        await new Promise((resolve) => setTimeout(resolve, Number(arg)));
        await conn.write('held\n');
      } else if (cmd === 'tiny') {
        // n one-byte writes in one turn, none awaited: each one a promise and a queue entry, if nothing bounds them.
        for (let i = Number(arg); i > 0 && !conn.signal.aborted; i--) conn.write('x').catch(() => {});
        await conn.write('\n');
      } else if (cmd === 'sleep') {
        // A slow backend: the handler is busy while the peer waits, through no fault of the peer.
        // (Unref'd: a handler that outlives the drain must not be what keeps the process up.)
        await new Promise((resolve) => setTimeout(resolve, Number(arg)).unref());
        await conn.write(`slept ${arg}\n`);
      } else {
        await conn.write(cmd === 'ping' ? `pong ${arg}\n` : `${line}\n`);
      }
      answered++;
    }
  };

/** Answers every line with `ok`, without awaiting the write: a handler that trusts maxQueuedBytes to bound it. */
const unawaitedApp =
  (codec: Codec<string, string>): Handler =>
  async (conn) => {
    for await (const _ of conn.frames(codec)) {
      received++;
      conn.writeFrame(codec, 'ok').catch(() => {});
      answered++;
    }
  };

/** Echoes every frame back with the same codec. */
const echoApp =
  <T>(codec: Codec<T, T>): Handler =>
  async (conn) => {
    for await (const frame of conn.frames(codec)) {
      received++;
      await conn.writeFrame(codec, frame);
      answered++;
    }
  };

const respApp: Handler = async (conn) => {
  const codec = resp({ maxBulkLength: 64 * 1024, maxInlineLength: 1024 });
  for await (const args of conn.frames(codec)) {
    received++;
    await conn.writeFrame(codec, args.length === 0 ? new SimpleString('OK') : args);
    answered++;
  }
};

function handlerFor(app: AppName): Handler {
  switch (app) {
    case 'lines':
      return linesApp(lines({ maxLength: 1024 }) as Codec<string, string>);
    case 'lines-unawaited':
      return unawaitedApp(lines({ maxLength: 1024 }) as Codec<string, string>);
    case 'lines-utf8':
      return linesApp(lines({ maxLength: 1024, validateUtf8: true }) as Codec<string, string>);
    case 'delimited':
      return echoApp(delimited({ delimiter: '\0', maxLength: 1024 }) as Codec<Buffer, Buffer>);
    case 'lengthPrefixed':
      return echoApp(lengthPrefixed({ width: 4, maxLength: 1024 }) as Codec<Buffer, Buffer>);
    case 'fixed':
      return echoApp(fixed(16) as Codec<Buffer, Buffer>);
    case 'resp':
      return respApp;
  }
}

function sumStats(all: ServerStats[]): ServerStats {
  const [first, ...rest] = all.map((s) => structuredClone(s));
  const total = first!;
  for (const s of rest) {
    for (const key of Object.keys(s) as (keyof ServerStats)[]) {
      const v = s[key];
      if (typeof v === 'number') (total[key] as number) += v;
      else if (v !== undefined && !Array.isArray(v)) {
        for (const [k, n] of Object.entries(v)) (total[key] as Record<string, number>)[k]! += n;
      }
    }
  }
  return total;
}

const servers: Server[] = [];
for (const app of config.apps) servers.push(await serve({ ...config.options, host: '127.0.0.1' }, handlerFor(app)));
let baseline: string[] = [];

function report(): Report {
  let rss = -1;
  try {
    rss = process.memoryUsage.rss(); // reads /proc: fails while descriptors run out (EMFILE)
  } catch {}
  return {
    stats: sumStats(servers.map((s) => s.stats())),
    received,
    answered,
    codes,
    peers,
    resources: process.getActiveResourcesInfo(),
    baseline,
    rssMiB: Math.round(rss / 2 ** 20),
    maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    cpuMs: (() => {
      const cpu = process.cpuUsage();
      return Math.round((cpu.user + cpu.system) / 1000);
    })(),
  };
}

process.on('message', (msg: Request) => {
  if (msg.cmd === 'stats') send({ id: msg.id, report: report() });
  else if (msg.cmd === 'shutdown') {
    Promise.all(servers.map((s) => s.shutdown())).then((results) => send({ id: msg.id, results, report: report() }));
  }
});

// With `shutdownOn`, a signal drains the servers: report the final counts, then let the process
// end by itself, which it does only if nothing was left open.
Promise.all(servers.map((s) => s.closed)).then(() => {
  send({ event: 'closed', report: report() });
  process.disconnect?.();
});

// Taken last: a 'message' listener refs the IPC channel.
baseline = process.getActiveResourcesInfo();
send({
  event: 'ready',
  ports: servers.map((s) => (s.address as { port: number }).port),
});
