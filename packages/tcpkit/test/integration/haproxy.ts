/**
 * A real HAProxy (apt package haproxy) for the integration tests: started in the foreground with a
 * generated config on loopback, ready once its stats socket answers, queried through that socket,
 * stopped by PID.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers.js';

export { freePort };

/** The `skip` option for a test that needs haproxy (under CI a missing binary fails instead). */
export function needsHaproxy(): string | false {
  try {
    execFileSync('sh', ['-c', 'command -v haproxy'], { stdio: 'ignore' });
    return false;
  } catch {
    const message = 'haproxy not found: apt-get install haproxy';
    if (process.env.CI) throw new Error(message);
    return message;
  }
}

export class Haproxy {
  readonly dir: string;
  readonly configFile: string;
  #child: ChildProcess;
  #output = '';
  #exited: Promise<unknown>;

  private constructor(sections: string) {
    this.dir = mkdtempSync(join(tmpdir(), 'tcpkit-haproxy-'));
    this.configFile = join(this.dir, 'haproxy.cfg');
    writeFileSync(this.configFile, Haproxy.config(this.dir, sections));
    this.#child = spawn('haproxy', ['-db', '-f', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child.stdout?.on('data', (d: Buffer) => this.#collect(d));
    this.#child.stderr?.on('data', (d: Buffer) => this.#collect(d));
    this.#exited = once(this.#child, 'exit');
  }

  /** The whole config: a stats socket and tcp-mode defaults, then `sections` (frontends and backends). */
  static config(dir: string, sections: string): string {
    return `global
  stats socket ${join(dir, 'stats.sock')} mode 600 level admin
  log stderr format short local0 info

defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 30s
  timeout server 30s

${sections}
`;
  }

  /** Starts HAProxy with `sections` and resolves once its stats socket answers (every listener is bound by then). */
  static async start(sections: string): Promise<Haproxy> {
    const h = new Haproxy(sections);
    const deadline = performance.now() + 15_000;
    for (;;) {
      if (h.#child.exitCode !== null) throw new Error(`haproxy exited at start:\n${h.#output}`);
      try {
        await h.command('show info');
        return h;
      } catch {
        if (performance.now() > deadline) {
          await h.stop();
          throw new Error(`haproxy's stats socket did not answer within 15 s:\n${h.#output}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** HAProxy's log and messages so far. */
  get output(): string {
    return this.#output;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  #collect(d: Buffer): void {
    this.#output += d.toString();
  }

  /** Sends one command to the stats socket and resolves to its answer. */
  command(cmd: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.connect(join(this.dir, 'stats.sock'));
      let out = '';
      s.setEncoding('utf8');
      s.on('connect', () => s.end(`${cmd}\n`));
      s.on('data', (d: string) => {
        out += d;
      });
      s.on('error', reject);
      s.on('close', () => resolve(out));
    });
  }

  /** The status column (`UP`, `DOWN`, `no check`, ...) of `backend`/`server` in `show stat`. */
  async status(backend: string, server: string): Promise<string> {
    const csv = await this.command('show stat');
    const [head, ...rows] = csv.replace(/^# /, '').trim().split('\n');
    const cols = (head ?? '').split(',');
    const at = cols.indexOf('status');
    const row = rows.map((r) => r.split(',')).find((r) => r[0] === backend && r[1] === server);
    return row?.[at] ?? '';
  }

  /** Polls the stats socket until `backend`/`server` has `status` (a bounded poll: HAProxy publishes no event). */
  async waitStatus(backend: string, server: string, status: string, ms = 20_000): Promise<void> {
    const deadline = performance.now() + ms;
    for (;;) {
      const last = await this.status(backend, server);
      if (last === status) return;
      if (performance.now() > deadline) {
        throw new Error(
          `${backend}/${server} still ${last || '(missing)'} after ${ms} ms, not ${status}:\n${this.#output}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops HAProxy (SIGTERM to its PID), waits for it to exit and removes its directory. */
  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGTERM');
    await this.#exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
