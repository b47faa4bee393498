/**
 * Allocations per message on the read path: what the server allocates (bytes and objects) for each
 * 64 B message of a ping-pong, and where, plus its CPU time per message.
 *
 *   node --import tsx --conditions=tcpkit-source bench/alloc.ts [--scenarios echo,lines-d16] [--rounds N]
 *
 * The server runs in a child process (pinned to CPU 0 when taskset is there; the client in this
 * process on CPU 1). Each scenario: warm up, then one window under V8's sampling heap profiler at a
 * 1-byte interval with objects collected by minor and major GC kept (every allocation is sampled,
 * so the counts are exact up to the profiler's own bookkeeping, amortised over the window), then one
 * window without the profiler for server CPU per message. Objects that the optimiser removes (escape
 * analysis) are not allocated and so not counted: this measures what really reaches the heap.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { Session } from 'node:inspector/promises';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { machine, pinSelf, type SamplingProfile, type Site, sitesOf } from './common.js';

interface Scenario {
  /** Name on the command line and in the table. */
  name: string;
  /** The server's handler (see `handlerFor`). */
  app: 'echo' | 'lines' | 'lines-batches' | 'kv';
  /** One request as the client sends it, repeated `depth` times per write. */
  request: Buffer;
  /** Bytes of reply per request. */
  replyLength: number;
  depth: number;
}

const PING = Buffer.from('*1\r\n$4\r\nPING\r\n');
const line64 = Buffer.from(`${'x'.repeat(63)}\n`);
const raw64 = Buffer.alloc(64, 'x');

const SCENARIOS: Scenario[] = [
  { name: 'echo', app: 'echo', request: raw64, replyLength: 64, depth: 1 },
  { name: 'lines', app: 'lines', request: line64, replyLength: 64, depth: 1 },
  { name: 'lines-d16', app: 'lines', request: line64, replyLength: 64, depth: 16 },
  { name: 'lines-batches-d16', app: 'lines-batches', request: line64, replyLength: 64, depth: 16 },
  { name: 'kv-ping', app: 'kv', request: PING, replyLength: 7, depth: 1 },
  { name: 'kv-ping-d16', app: 'kv', request: PING, replyLength: 7, depth: 16 },
];

const CONNECTIONS = 50;

// ---- the server (child) ------------------------------------------------------------------------

async function runServer(app: Scenario['app']): Promise<void> {
  pinSelf(0);
  const { serve, lines } = await import('tcpkit');
  const codec = lines({ maxLength: 1024 });
  let handler: (conn: import('tcpkit').Conn) => Promise<void>;
  if (app === 'echo') {
    handler = async (conn) => {
      for await (const chunk of conn) await conn.write(chunk);
    };
  } else if (app === 'lines') {
    handler = async (conn) => {
      for await (const line of conn.frames(codec)) await conn.writeFrame(codec, line);
    };
  } else if (app === 'lines-batches') {
    handler = async (conn) => {
      for await (const batch of conn.frameBatches(codec)) {
        await conn.write(`${batch.join('\n')}\n`);
      }
    };
  } else {
    const { createApp } = await import('../packages/cli/src/apps/kv/index.js');
    handler = createApp({ sweepInterval: 0 }).handler;
  }
  const server = await serve({ host: '127.0.0.1', port: 0, idleTimeout: 0, firstByteTimeout: 0 }, handler);
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  let cpuAt = process.cpuUsage();
  process.on('message', async (m: { cmd: string; messages?: number }) => {
    if (m.cmd === 'sample') {
      await session.post('HeapProfiler.startSampling', {
        samplingInterval: 1,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      process.send!({ ok: true });
    } else if (m.cmd === 'sampled') {
      const { profile } = await session.post('HeapProfiler.stopSampling');
      process.send!({ sites: sitesOf(profile as unknown as SamplingProfile) });
    } else if (m.cmd === 'cpu') {
      cpuAt = process.cpuUsage();
      process.send!({ ok: true });
    } else if (m.cmd === 'cpu-end') {
      const d = process.cpuUsage(cpuAt);
      process.send!({ cpuUs: d.user + d.system });
    } else if (m.cmd === 'exit') {
      await server.shutdown({ timeout: 1000 });
      process.exit(0);
    }
  });
  process.send!({ port: (server.address as net.AddressInfo).port });
}

// ---- the client (parent) -----------------------------------------------------------------------

/** `rounds` round trips on each connection, all connections at once. */
async function drive(sockets: net.Socket[], s: Scenario, rounds: number): Promise<void> {
  const payload = Buffer.concat(Array.from({ length: s.depth }, () => s.request));
  const expect = s.replyLength * s.depth;
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve, reject) => {
          let got = 0;
          let left = rounds;
          const onData = (d: Buffer): void => {
            got += d.length;
            if (got < expect) return;
            if (got > expect) {
              reject(new Error(`${s.name}: ${got} bytes of reply, expected ${expect}`));
              return;
            }
            got = 0;
            if (--left === 0) {
              socket.off('data', onData);
              resolve();
            } else socket.write(payload);
          };
          socket.on('data', onData);
          socket.write(payload);
        }),
    ),
  );
}

function ask<T>(child: ChildProcess, cmd: string): Promise<T> {
  child.send({ cmd });
  return once(child, 'message').then(([m]) => m as T);
}

export interface AllocResult {
  scenario: string;
  bytesPerMessage: number;
  objectsPerMessage: number;
  cpuUsPerMessage: number;
  sites: Site[];
}

async function measure(s: Scenario, rounds: number): Promise<AllocResult> {
  const self = fileURLToPath(import.meta.url);
  const child = fork(self, ['--server', s.app], {
    execArgv: ['--import', 'tsx', '--conditions=tcpkit-source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const [{ port }] = (await once(child, 'message')) as [{ port: number }];
    const sockets = await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        const socket = net.connect(port, '127.0.0.1');
        await once(socket, 'connect');
        socket.setNoDelay(true);
        return socket;
      }),
    );
    await drive(sockets, s, Math.max(200, rounds / 4)); // warm-up: the optimiser settles first
    const messages = CONNECTIONS * rounds * s.depth;
    await ask(child, 'sample');
    await drive(sockets, s, rounds);
    const { sites } = await ask<{ sites: Site[] }>(child, 'sampled');
    await ask(child, 'cpu');
    await drive(sockets, s, rounds);
    const { cpuUs } = await ask<{ cpuUs: number }>(child, 'cpu-end');
    for (const socket of sockets) socket.destroy();
    const bytes = sites.reduce((sum, x) => sum + x.bytes, 0);
    const objects = sites.reduce((sum, x) => sum + x.objects, 0);
    return {
      scenario: s.name,
      bytesPerMessage: bytes / messages,
      objectsPerMessage: objects / messages,
      cpuUsPerMessage: cpuUs / messages,
      sites: sites.map((x) => ({ site: x.site, bytes: x.bytes / messages, objects: x.objects / messages })),
    };
  } finally {
    child.send({ cmd: 'exit' });
    if (child.exitCode === null) await once(child, 'exit');
  }
}

async function main(): Promise<void> {
  pinSelf(1);
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i === -1 ? undefined : process.argv[i + 1];
  };
  const only = arg('--scenarios')?.split(',');
  const rounds = Number(arg('--rounds') ?? 1000);
  const top = Number(arg('--top') ?? 6);
  const rows: AllocResult[] = [];
  for (const s of SCENARIOS.filter((x) => only === undefined || only.includes(x.name))) {
    console.error(`${s.name} ...`);
    const r = await measure(s, s.depth > 1 ? Math.ceil(rounds / 4) : rounds);
    rows.push(r);
    console.log(
      `\n${s.name}: ${r.bytesPerMessage.toFixed(0)} B, ${r.objectsPerMessage.toFixed(2)} objects, ${r.cpuUsPerMessage.toFixed(2)} µs CPU per message`,
    );
    for (const x of r.sites.slice(0, top)) {
      console.log(`  ${x.bytes.toFixed(1).padStart(7)} B ${x.objects.toFixed(2).padStart(6)} obj  ${x.site}`);
    }
  }
  console.log(`\n${machine()}`);
  console.log('\n| scenario | bytes/msg | objects/msg | server CPU µs/msg |\n|---|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.scenario} | ${r.bytesPerMessage.toFixed(0)} | ${r.objectsPerMessage.toFixed(2)} | ${r.cpuUsPerMessage.toFixed(2)} |`,
    );
  }
}

if (process.argv[2] === '--server') await runServer(process.argv[3] as Scenario['app']);
else await main();
