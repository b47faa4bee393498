/** Shared by the kv integration tests: start the kv app and a real redis-server, talk raw RESP. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { after, before } from 'node:test';
import { type Server, serve } from 'tcpkit';
import { freePort } from '../../../tcpkit/test/helpers.js';
import { createApp, type KvApp, type KvOptions } from '../../src/apps/kv/index.js';

export interface Running {
  port: number;
  app: KvApp;
  server: Server;
  close(): Promise<void>;
}

/** The kv app on an ephemeral port of 127.0.0.1. */
export async function startKv(options?: KvOptions): Promise<Running> {
  const app = createApp(options);
  const server = await serve({ host: '127.0.0.1', port: 0 }, app.handler);
  app.attach(server);
  const address = server.address;
  if (typeof address === 'string') throw new Error('expected a TCP address');
  return {
    port: address.port,
    app,
    server,
    async close() {
      await server.shutdown({ timeout: 2000 });
      app.close();
    },
  };
}

/** Path of a binary from redis-tools / redis-server, or undefined when it is not installed. */
export function which(binary: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `skip` option for a test that needs `binary`: a reason to skip locally, while under CI
 * a missing binary is a failure (thrown here), since CI installs redis-tools.
 */
export function needs(binary: string): string | false {
  if (which(binary) !== undefined) return false;
  const message = `${binary} not found: apt-get install redis-tools redis-server`;
  if (process.env.CI) throw new Error(message);
  return message;
}

/** A throwaway redis-server on 127.0.0.1 (no persistence, Redis's default 16 databases), for byte-for-byte comparison. */
export async function startRedis(
  ...extra: string[]
): Promise<{ port: number; process: ChildProcess; close(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extra],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
  });
  child.stdout!.resume();
  return {
    port,
    process: child,
    async close() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** A request as RESP: an array of bulk strings. */
export function encodeCommand(args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Sends `bytes` on a fresh connection and returns everything received until the server closes
 * it. Callers end their script with QUIT (or a malformed request) so the close is the server's
 * own answer, not a timer's guess.
 */
export async function exchange(port: number, bytes: Buffer | string): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await once(socket, 'connect');
  socket.write(bytes);
  await new Promise<void>((resolve, reject) => {
    socket.once('close', () => resolve());
    socket.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve() : reject(err)));
  });
  return Buffer.concat(chunks);
}

/** A script: requests (encoded as RESP arrays) or raw bytes (inline or malformed requests). */
export type Script = Array<Array<string | Buffer> | Buffer>;

/**
 * Runs `script` on a fresh connection after a FLUSHALL and returns every reply byte (as latin1),
 * ending with QUIT so the server's own close ends the exchange.
 */
export async function runScript(port: number, script: Script): Promise<string> {
  const parts = [encodeCommand(['FLUSHALL']), ...script.map((c) => (Buffer.isBuffer(c) ? c : encodeCommand(c)))];
  parts.push(encodeCommand(['QUIT']));
  return (await exchange(port, Buffer.concat(parts))).toString('latin1');
}

/** A kv app and a redis-server, side by side. */
export interface KvAndRedis {
  kv: Running;
  redis: Awaited<ReturnType<typeof startRedis>>;
}

/**
 * Starts a kv app and a redis-server before the enclosing describe's tests and stops both after;
 * the returned object is filled in once they are up.
 */
export function useKvAndRedis(): KvAndRedis {
  const both = {} as KvAndRedis;
  before(async () => {
    [both.kv, both.redis] = await Promise.all([startKv(), startRedis()]);
  });
  after(async () => {
    await Promise.all([both.kv?.close(), both.redis?.close()]);
  });
  return both;
}

/** Runs `script` on both and returns [redis's bytes, kv's bytes]. */
export function runOnBoth(both: KvAndRedis, script: Script): Promise<[expected: string, actual: string]> {
  return Promise.all([runScript(both.redis.port, script), runScript(both.kv.port, script)]);
}
