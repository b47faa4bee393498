// The admin endpoint of a primary covers its workers, with real worker processes: /metrics has the
// sums, a series per worker and the workers' histograms summed; /healthz fails when a worker's event
// loop is blocked; /readyz and /stats answer for all of them.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, type Client, connect, within } from './helpers.js';
import { documentedMetrics, parseMetrics, sampleValue } from './metrics-helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/workers-admin-child.ts', import.meta.url));
const TEST = { timeout: 120_000 };

const children: Child[] = [];
after(() => {
  for (const c of children) c.kill();
});

async function get(admin: number, path: string): Promise<{ status: number; body: string }> {
  const res = await within(fetch(`http://127.0.0.1:${admin}${path}`), 30_000, `GET ${path}`);
  return { status: res.status, body: await res.text() };
}

/** Fetches /metrics until `condition` holds for the parsed families (the workers report every 100 ms). */
/**
 * Polls /healthz until it answers `status` (bounded). A worker's own start (loading and compiling
 * its modules on a busy machine) can stall its loop past the 500 ms limit, which /healthz then
 * reports for its 10 s window: a healthy server is one whose /healthz turns 200, not one that is 200 at once.
 */
async function healthzUntil(admin: number, status: number): Promise<void> {
  const deadline = performance.now() + 30_000;
  let last = { status: 0, body: '' };
  while (performance.now() < deadline) {
    last = await get(admin, '/healthz');
    if (last.status === status) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`/healthz still answers ${last.status} (${last.body.trim()}), not ${status}, after 30 s`);
}

async function metricsUntil(
  admin: number,
  condition: (families: ReturnType<typeof parseMetrics>) => boolean,
  what: string,
): Promise<ReturnType<typeof parseMetrics>> {
  const deadline = performance.now() + 30_000;
  let last = '';
  while (performance.now() < deadline) {
    last = (await get(admin, '/metrics')).body;
    const families = parseMetrics(last);
    try {
      if (condition(families)) return families;
    } catch {
      // A family not there yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}; last /metrics:\n${last}`);
}

/** Connects and resolves with the client and the pid of the worker that admitted it. */
async function held(port: number): Promise<{ client: Client; pid: string }> {
  const client = await connect(port);
  await client.receiveText('\n', 30_000);
  return { client, pid: client.received().toString().trim() };
}

describe('serve({ workers: 2, admin }): the primary serves the metrics of every worker', () => {
  it('sums the counts, has a series per worker and the workers histograms; /readyz, /stats', TEST, async () => {
    // /healthz must say 200 here: a limit no loaded CI machine reaches by scheduling alone.
    const child = new Child(process.execPath, ['--import', 'tsx', FIXTURE], {
      env: { ...process.env, MAX_EVENT_LOOP_DELAY: '20000' },
    });
    children.push(child);
    const { port, admin } = await child.json<{ port: number; admin: number }>('admin', 60_000);
    const conns = await Promise.all(Array.from({ length: 6 }, () => held(port)));
    const byPid = new Map<string, number>();
    for (const { pid } of conns) byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
    assert.equal(byPid.size, 2, 'connections held on both workers');

    const active = (f: ReturnType<typeof parseMetrics>, pid: string): number =>
      sampleValue(f, 'tcpkit_worker_connections_active', { pid });
    let families = await metricsUntil(
      admin,
      (f) => [...byPid].every(([pid, n]) => active(f, pid) === n),
      'each worker to report its connections',
    );
    assert.equal(sampleValue(families, 'tcpkit_connections_active'), 6, 'the sum');
    assert.equal(sampleValue(families, 'tcpkit_connections_accepted_total'), 6);
    assert.equal(sampleValue(families, 'tcpkit_workers', { state: 'serving' }), 2);
    const slots = families
      .get('tcpkit_worker_connections_active')!
      .metrics.map((m) => m.labels?.worker)
      .sort();
    assert.deepEqual(slots, ['0', '1']);
    for (const pid of byPid.keys()) {
      assert.equal(sampleValue(families, 'tcpkit_worker_connections_accepted_total', { pid }), byPid.get(pid));
      assert.ok(sampleValue(families, 'tcpkit_worker_resident_memory_bytes', { pid }) > 0);
      assert.ok(sampleValue(families, 'tcpkit_event_loop_delay_max_seconds', { pid }) >= 0, 'its event loop');
    }
    for (const { name, type } of documentedMetrics('workers')) {
      assert.equal(families.get(name)?.type, type.toUpperCase(), `${name} is a ${type}`);
    }

    // One connection closed on each worker: the workers' histograms, summed.
    const closing = [...byPid.keys()].map((pid) => conns.find((c) => c.pid === pid)!.client);
    for (const c of closing) c.end();
    families = await metricsUntil(
      admin,
      (f) =>
        sampleValue(f, 'tcpkit_connection_duration_seconds') === 2 && sampleValue(f, 'tcpkit_connections_active') === 4,
      'two connection durations observed, one in each worker, and the reports of both closes',
    );
    for (const pid of byPid.keys()) assert.equal(active(families, pid), byPid.get(pid)! - 1);
    assert.equal(families.get('tcpkit_connection_duration_seconds')!.type, 'HISTOGRAM');

    assert.equal((await get(admin, '/readyz')).status, 200);
    await healthzUntil(admin, 200);
    const stats = JSON.parse((await get(admin, '/stats')).body) as { active: number; workers: { pid: number }[] };
    assert.deepEqual(stats.workers.map((w) => String(w.pid)).sort(), [...byPid.keys()].sort());

    for (const { client } of conns) client.destroy();
    child.signal('SIGTERM');
    assert.deepEqual(await within(child.exited, 60_000, 'the primary to exit'), { code: 0, signal: null });
  });

  it('/healthz turns 503 naming the worker whose event loop is blocked', TEST, async () => {
    const child = new Child(process.execPath, ['--import', 'tsx', FIXTURE]);
    children.push(child);
    const { port, admin } = await child.json<{ port: number; admin: number }>('admin', 60_000);
    await healthzUntil(admin, 200);
    const { client, pid } = await held(port);
    client.write('block\n');
    await client.receiveText(`${pid}\nblocking\n`, 30_000);
    // Blocked for 3 s against a limit of 500 ms: it does not answer, or once it does, says it was blocked.
    const health = await get(admin, '/healthz');
    assert.equal(health.status, 503);
    assert.match(health.body, new RegExp(`^worker \\d \\(pid ${pid}\\)`));
    client.destroy();
    child.signal('SIGTERM');
    assert.deepEqual(await within(child.exited, 60_000, 'the primary to exit'), { code: 0, signal: null });
  });
});
