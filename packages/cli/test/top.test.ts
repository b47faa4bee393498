// `tcpkit top` under a real terminal (tmux, on a socket of its own): against a loaded server its
// screen shows the live connection count, follows it as it changes, and q quits.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Conn, serve, type WorkerStats } from 'tcpkit';
import { type Client, connect, LOOPBACK, portOf, stop } from '../../tcpkit/test/helpers.js';
import { History, type Sample, sparkline } from '../src/top/sample.js';
import { screen } from '../src/top/screen.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SOCKET = `tcpkit-top-test-${process.pid}`;

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
}

/** Polls the pane until `match` holds; fails after `ms` with the last screen. */
async function screenUntil(match: (text: string) => boolean, what: string, ms = 60_000): Promise<string> {
  const deadline = performance.now() + ms;
  let text = '';
  for (;;) {
    text = tmux('capture-pane', '-p', '-t', 'top');
    if (match(text)) return text;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}; screen:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('tcpkit top', () => {
  it('shows the live connection count of a loaded server in 80 columns; q quits', { timeout: 120_000 }, async (t) => {
    if (spawnSync('tmux', ['-V']).error !== undefined) {
      if (process.env.CI) assert.fail('tmux is missing under CI');
      t.skip('tmux missing: apt-get install tmux');
      return;
    }
    const server = await serve({ ...LOOPBACK, admin: { port: 0 } }, async (conn: Conn) => {
      for await (const chunk of conn) await conn.write(chunk);
    });
    const held: Client[] = [];
    try {
      const port = portOf(server);
      const hold = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i++) {
          const c = await connect(port);
          c.write('load');
          await c.receive(4);
          held.push(c);
        }
      };
      await hold(7);
      const command = `env NODE_OPTIONS=--conditions=tcpkit-source ${process.execPath} --import tsx ${MAIN} top --admin-port ${server.adminAddress!.port}`;
      tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '30', command);
      const first = await screenUntil((s) => /^active\s+7 \/ 10,000/m.test(s), 'active 7');
      assert.match(first, new RegExp(`127\\.0\\.0\\.1:${port}`));
      for (const line of first.split('\n')) assert.ok(line.length <= 80, `80 columns: ${JSON.stringify(line)}`);
      await hold(5);
      await screenUntil((s) => /^active\s+12 \/ 10,000/m.test(s), 'active 12');
      tmux('send-keys', '-t', 'top', 'q');
      const deadline = performance.now() + 30_000;
      while (spawnSync('tmux', ['-L', SOCKET, 'has-session', '-t', 'top']).status === 0) {
        assert.ok(performance.now() < deadline, 'q ends tcpkit top');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
      for (const c of held) c.destroy();
      await stop(server);
    }
  });
});

describe('tcpkit top screen', () => {
  const stats = (over: Partial<Sample['stats']>): Sample['stats'] => ({
    active: 0,
    waiting: 0,
    accepted: 0,
    served: 0,
    rejected: { full: 0, perPeer: 0, blocked: 0, waitTimeout: 0, shutdown: 0, abandoned: 0 },
    timeouts: { firstByte: 0, idle: 0, frame: 0, write: 0, lifetime: 0, handshake: 0 },
    tlsErrors: 0,
    proxyErrors: 0,
    slowConsumers: 0,
    errors: 0,
    acceptErrors: 0,
    lingering: 0,
    queuedBytes: 0,
    descriptors: { open: 0, budget: 0 },
    limits: { maxConnections: 100, maxWaiting: 100 },
    bytesRead: 0,
    bytesWritten: 0,
    ...over,
  });
  const sample = (at: number, over: Partial<Sample['stats']>): Sample => ({
    at,
    stats: stats(over),
    address: '127.0.0.1:7000',
    startedAt: Date.now() / 1000 - 3725,
    rssBytes: 50 * 1024 * 1024,
    loopMaxMs: 3,
    loopP99Ms: 2,
    ready: true,
  });

  const row = (over: Partial<WorkerStats>): WorkerStats => ({
    pid: 0,
    slot: 0,
    state: 'serving',
    active: 0,
    waiting: 0,
    accepted: 0,
    served: 0,
    errors: 0,
    rssBytes: 0,
    cpuUs: 0,
    ...over,
  });

  it('computes per-second rates and lists workers, in 80 columns', () => {
    const history = new History();
    history.push(sample(0, { accepted: 10, served: 10, active: 10, bytesRead: 0 }));
    history.push(
      sample(2000, {
        accepted: 30,
        served: 30,
        active: 20,
        bytesRead: 4096,
        workers: [
          row({ slot: 0, pid: 101, active: 12, accepted: 18 }),
          row({ slot: 1, pid: 102, active: 8, accepted: 12 }),
        ],
      } as Partial<Sample['stats']>),
    );
    const lines = screen(history, 'http://127.0.0.1:9090', undefined);
    const text = (label: string): string => lines.find((l) => l.label === label)?.text ?? '';
    assert.match(text('tcpkit top'), /127\.0\.0\.1:7000 {2}up 1h 2m {2}ready/);
    assert.match(text('accepts/s'), /^\s+10 .*closes\/s 5$/);
    assert.match(text('bytes in/s'), /2\.0 KiB/);
    assert.match(text('worker 1'), /pid 101 {2}serving {2}active 12/);
    assert.match(text('worker 2'), /accepted 12/);
    for (const l of lines) assert.ok(12 + l.text.length <= 80, `${l.label}: ${l.text}`);
  });

  it('draws sparklines scaled to their maximum', () => {
    assert.equal(sparkline([0, 1, 2, 4], 4), '▁▂▄█');
    assert.equal(sparkline([0, 0], 4), '▁▁  ');
  });
});
