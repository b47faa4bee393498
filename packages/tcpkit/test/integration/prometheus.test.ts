// A real Prometheus (Debian package prometheus), started on loopback with a generated configuration,
// scrapes a server's admin endpoint; its HTTP API must report what the test holds open.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Conn, serve } from '../../src/index.js';
import { Child, type Client, connect, LOOPBACK, portOf, stop, within } from '../helpers.js';

/** Serves with 2 workers and an admin endpoint; holds each connection after writing the worker's pid. */
const WORKERS_FIXTURE = fileURLToPath(new URL('../fixtures/workers-admin-child.ts', import.meta.url));

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** The value of an instant PromQL query, or undefined while the series has no sample yet. */
async function query(api: string, promql: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
    const sample = body.data?.result?.[0];
    return sample === undefined ? undefined : Number(sample.value[1]);
  } catch {
    return undefined; // not up yet
  }
}

/** Polls a query until `accept` holds (Prometheus scrapes on its own clock); fails after `ms`. */
async function until(api: string, promql: string, accept: (v: number) => boolean, ms = 60_000): Promise<number> {
  const deadline = performance.now() + ms;
  let last: number | undefined;
  for (;;) {
    last = await query(api, promql);
    if (last !== undefined && accept(last)) return last;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${promql} = ${last}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('Prometheus scraping the admin endpoint', () => {
  it('reports the open connections and the accepts as they move, also of a server with workers', {
    timeout: 180_000,
  }, async (t) => {
    if (spawnSync('prometheus', ['--version']).error !== undefined) {
      if (process.env.CI) assert.fail('prometheus (Debian package prometheus) is missing under CI');
      t.skip('prometheus missing: apt-get install prometheus');
      return;
    }
    const server = await serve({ ...LOOPBACK, admin: { port: 0 } }, async (conn: Conn) => {
      for await (const chunk of conn) await conn.write(chunk);
    });
    const workers = new Child(process.execPath, ['--import', 'tsx', WORKERS_FIXTURE]);
    const dir = mkdtempSync(join(tmpdir(), 'tcpkit-prometheus-'));
    const held: Client[] = [];
    const webPort = await freePort();
    const config = join(dir, 'prometheus.yml');
    const workersAt = await workers.json<{ port: number; admin: number }>('admin', 60_000);
    writeFileSync(
      config,
      JSON.stringify({
        global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
        scrape_configs: [
          { job_name: 'tcpkit', static_configs: [{ targets: [`127.0.0.1:${server.adminAddress!.port}`] }] },
          { job_name: 'workers', static_configs: [{ targets: [`127.0.0.1:${workersAt.admin}`] }] },
        ],
      }),
    );
    const prometheus = spawn(
      'prometheus',
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${webPort}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    prometheus.stderr!.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const exited = new Promise<void>((resolve) => prometheus.once('exit', () => resolve()));
    const api = `http://127.0.0.1:${webPort}`;
    try {
      const port = portOf(server);
      for (let i = 0; i < 5; i++) {
        const c = await connect(port);
        c.write('x');
        await c.receive(1);
        held.push(c);
      }
      await until(api, 'tcpkit_connections_active{job="tcpkit"}', (v) => v === 5).catch((e: Error) => {
        throw new Error(`${e.message}; prometheus stderr: ${stderr}`);
      });
      const before = await until(api, 'tcpkit_connections_accepted_total{job="tcpkit"}', (v) => v >= 5);
      assert.equal(before, 5);
      for (let i = 0; i < 3; i++) {
        const c = await connect(port);
        c.write('y');
        await c.receive(1);
        held.push(c);
      }
      const accepted = 'tcpkit_connections_accepted_total{job="tcpkit"}';
      assert.equal(await until(api, accepted, (v) => v === 8), 8, 'the counter moved');
      assert.equal(await until(api, 'tcpkit_connections_active{job="tcpkit"}', (v) => v === 8), 8);
      assert.equal(await query(api, 'up{job="tcpkit"}'), 1);

      // The primary's endpoint: the sum over the workers, and a series for each (round-robin: 2 and 2).
      for (let i = 0; i < 4; i++) {
        const c = await connect(workersAt.port);
        await c.receiveText('\n', 30_000);
        held.push(c);
      }
      assert.equal(await until(api, 'tcpkit_connections_active{job="workers"}', (v) => v === 4), 4);
      const perWorker = 'tcpkit_worker_connections_active{job="workers"}';
      assert.equal(await until(api, `count(${perWorker} == 2)`, (v) => v === 2), 2, 'two workers, two each');
    } finally {
      for (const c of held) c.destroy();
      prometheus.kill('SIGTERM');
      await within(exited, 30_000, 'prometheus to exit').catch(() => prometheus.kill('SIGKILL'));
      rmSync(dir, { recursive: true, force: true });
      workers.signal('SIGTERM');
      await within(workers.exited, 60_000, 'the workers primary to exit').catch(() => workers.kill());
      await stop(server);
    }
  });
});
