// `npm start` at the repository root, as the README's quick start runs it, and Ctrl-C: the terminal
// sends SIGINT to the whole foreground process group (npm, the server) and npm forwards it once more.
// The server drains and exits 0, and so does npm. npm's copy may come after the drain is over: the
// server must not die of it then (it did, when its signal listeners were gone before its exit: a flake).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { within } from '../../tcpkit/test/helpers.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

test('npm start, then Ctrl-C: a clean drain and exit 0 for npm too', { timeout: 240_000 }, async () => {
  // Its own process group, as a shell gives a foreground job; `--port 0` overrides the script's 7000.
  // Without the test runner's NODE_OPTIONS (its tcpkit-source condition would load the library's .ts sources).
  const env = { ...process.env, NODE_OPTIONS: '' };
  const npm = spawn('npm', ['start', '--', '--port', '0'], { cwd: root, env, detached: true, stdio: 'pipe' });
  let output = '';
  /** The first pino JSON line that `match` accepts; rejects if npm exits or after `ms` (so `finally` cleans up). */
  const logged = (match: (entry: Record<string, unknown>) => boolean, what: string, ms = 180_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`no ${what} within ${ms} ms: ${output}`)), ms);
      const check = (): void => {
        for (const line of output.split('\n').slice(0, -1)) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (match(entry)) {
            done(undefined, entry);
            return;
          }
        }
      };
      const onExit = (): void => done(new Error(`npm exited before ${what}: ${output}`));
      const done = (error?: Error, entry?: Record<string, unknown>): void => {
        clearTimeout(timer);
        npm.stdout.off('data', check);
        npm.off('exit', onExit);
        if (error) reject(error);
        else resolve(entry!);
      };
      npm.stdout.on('data', check);
      npm.once('exit', onExit);
      check();
    });
  npm.stdout.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  npm.stderr.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  // 'close', not 'exit': npm's stdout is read to its end by then, so the last line is in `output`.
  const exited = once(npm, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    // prestart builds first.
    const listening = await logged((e) => e.msg === 'listening', 'listening line');
    const port = /^127\.0\.0\.1:(\d+)$/.exec(String(listening.address))![1];
    const client = net.connect(Number(port), '127.0.0.1');
    client.setEncoding('utf8');
    await once(client, 'connect');
    client.write('ping');
    const [echoed] = await once(client, 'data');
    assert.equal(echoed, 'ping');
    const clientEnded = once(client, 'end');
    client.resume();
    // Ctrl-C: SIGINT to every process of the group.
    process.kill(-npm.pid!, 'SIGINT');
    await within(clientEnded, 60_000, 'the server to end the connection');
    const [code, signal] = await within(exited, 60_000, 'npm to exit');
    const shutDown = await logged((e) => e.msg === 'shut down', 'shut down line', 0);
    assert.deepEqual([shutDown.graceful, shutDown.forced], [1, 0]);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output);
    client.destroy();
  } finally {
    if (npm.exitCode === null && npm.signalCode === null) process.kill(-npm.pid!, 'SIGKILL');
  }
});
