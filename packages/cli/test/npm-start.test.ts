// `npm start` at the repository root, as the README's quick start runs it, and Ctrl-C: the terminal
// sends SIGINT to the whole foreground process group (npm, the server) and npm forwards it once more.
// The server drains and exits 0, and so does npm.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));

test('npm start, then Ctrl-C: a clean drain and exit 0 for npm too', { timeout: 240_000 }, async () => {
  // Its own process group, as a shell gives a foreground job; `--port 0` overrides the script's 7000.
  // Without the test runner's NODE_OPTIONS (its tcpkit-source condition would load the library's .ts sources).
  const env = { ...process.env, NODE_OPTIONS: '' };
  const npm = spawn('npm', ['start', '--', '--port', '0'], { cwd: root, env, detached: true, stdio: 'pipe' });
  let output = '';
  const seen = (pattern: RegExp): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = pattern.exec(output);
        if (m !== null) {
          npm.stdout.off('data', check);
          resolve(m);
        }
      };
      npm.stdout.on('data', check);
      npm.once('exit', () => reject(new Error(`npm exited before ${pattern}: ${output}`)));
      check();
    });
  npm.stdout.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  npm.stderr.setEncoding('utf8').on('data', (d: string) => {
    output += d;
  });
  const exited = once(npm, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    // prestart builds first.
    const [, port] = await seen(/tcpkit echo listening on 127\.0\.0\.1:(\d+)/);
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
    await clientEnded;
    const [code, signal] = await exited;
    assert.match(output, /shut down: 1 graceful, 0 forced/);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output);
    client.destroy();
  } finally {
    if (npm.exitCode === null && npm.signalCode === null) process.kill(-npm.pid!, 'SIGKILL');
  }
});
