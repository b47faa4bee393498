// `tcpkit serve ... --top` under a real terminal (tmux, on a socket of its own): the live view of the
// serving process shows its connection count, no log line reaches the screen, and q or Ctrl-C ends
// the view and drains the server as SIGINT does (held connections get their FIN, exit 0).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Client, connect, freePort } from '../../tcpkit/test/helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SOCKET = `tcpkit-serve-top-test-${process.pid}`;

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
}

/** Polls `read` until `match` holds; fails after `ms` with the last value. */
async function until(read: () => string, match: (text: string) => boolean, what: string, ms = 60_000): Promise<string> {
  const deadline = performance.now() + ms;
  let text = '';
  for (;;) {
    text = read();
    if (match(text)) return text;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}; last:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const pane = (): string => tmux('capture-pane', '-p', '-t', 'serve');
const fileText = (path: string) => (): string => (existsSync(path) ? readFileSync(path, 'utf8') : '');

/**
 * Runs `tcpkit serve echo --top` in tmux (stderr to `stderr` if given, else the terminal), holds 3
 * connections, waits for the view to show them, presses `key`, and checks the drain and the exit.
 */
async function run(key: string, stderr: string | undefined, dir: string): Promise<{ screen: string; log: string }> {
  const port = await freePort();
  const status = join(dir, `status-${key}`);
  const redirect = stderr === undefined ? '' : `2>${stderr}`;
  const command = `env NODE_OPTIONS=--conditions=tcpkit-source ${process.execPath} --import tsx ${MAIN} serve echo --port ${port} --top ${redirect}; echo $? >${status}`;
  tmux('new-session', '-d', '-s', 'serve', '-x', '80', '-y', '30', command);
  const held: Client[] = [];
  try {
    const screen = await until(pane, (s) => /^active\s+0 \//m.test(s), 'the view');
    for (let i = 0; i < 3; i++) {
      const c = await connect(port);
      c.write('x');
      await c.receive(1, 30_000);
      held.push(c);
    }
    const live = await until(pane, (s) => /^active\s+3 \/ 10,000/m.test(s), 'active 3');
    assert.match(live, new RegExp(`127\\.0\\.0\\.1:${port}`));
    for (const text of [screen, live]) assert.doesNotMatch(text, /"msg"|listening|INFO/, 'no log line on the view');
    tmux('send-keys', '-t', 'serve', key);
    for (const c of held) {
      const closed = await c.waitClosed(30_000);
      assert.equal(closed.ended, true, 'FIN from the drain');
    }
    assert.equal((await until(fileText(status), (s) => s.trim() !== '', 'the exit status')).trim(), '0');
    return { screen: live, log: stderr === undefined ? '' : readFileSync(stderr, 'utf8') };
  } finally {
    for (const c of held) c.destroy();
    spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
  }
}

describe('tcpkit serve --top', () => {
  it('shows the live view of the serving process; q drains it; the log goes to stderr', {
    timeout: 180_000,
  }, async (t) => {
    if (spawnSync('tmux', ['-V']).error !== undefined) {
      if (process.env.CI) assert.fail('tmux is missing under CI');
      t.skip('tmux missing: apt-get install tmux');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'tcpkit-serve-top-'));
    try {
      const { log } = await run('q', join(dir, 'stderr.log'), dir);
      // ink's cursor restore (ESC [?25h) also goes to stderr, at exit.
      const messages = log
        .replaceAll(`${String.fromCharCode(27)}[?25h`, '')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
      assert.deepEqual(messages, ['listening', 'draining', 'shut down'], 'JSON lines on stderr');
      // stderr on the terminal too: silent while the view runs; Ctrl-C drains as q does.
      await run('C-c', undefined, dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('needs a terminal', { timeout: 60_000 }, () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'serve', 'echo', '--port', '0', '--top'], {
      encoding: 'utf8',
      timeout: 50_000,
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--top needs a terminal on stdout/);
  });
});
