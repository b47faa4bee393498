// Workers whose primary dies under load (kill -9 while connections churn through it and busy clients
// wait for answers): the IPC channel breaks while the workers send on it (node:cluster's hand-over
// acknowledgements, tcpkit's reports), and each worker must neither crash on that nor exit at once as
// node:cluster would: it drains its connections, as at shutdown, and exits 0.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { reusePortSupported } from '../src/workers/balance.js';
import type { Child } from './helpers.js';
import { Load, startFixture, statsUntil } from './workers-helpers.js';

const children: Child[] = [];
const orphans: number[] = [];
after(() => {
  for (const c of children) c.kill();
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Exited already, as it should have.
    }
  }
});

/**
 * The fixture's stdout lines that parse as JSON and have `key`, once there are `count` of them. The
 * primary is dead by then: its workers still write to the pipe it shared with them, so this polls the
 * lines (bounded) rather than waiting on the primary.
 */
async function jsonLines<T>(child: Child, key: string, count: number, ms: number): Promise<T[]> {
  const deadline = performance.now() + ms;
  for (;;) {
    const found = child.lines.filter((l) => l.startsWith('{') && key in JSON.parse(l)).map((l) => JSON.parse(l) as T);
    if (found.length >= count) return found;
    if (performance.now() > deadline) {
      throw new Error(
        `timed out waiting for ${count} "${key}" lines; stdout: ${child.lines.join('\n')}; stderr: ${child.stderr}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const modes: ('primary' | 'kernel')[] = reusePortSupported() ? ['primary', 'kernel'] : ['primary'];

describe('workers whose primary is killed', () => {
  for (const balance of modes) {
    it(`balance '${balance}': under churn and busy clients, each worker drains and exits 0 without an uncaught error`, async (t) => {
      const { child, port } = await startFixture({ balance, drainTimeout: 30_000 }, 'busy');
      children.push(child);
      // Busy clients hold requests in flight (100 ms of work each) when the primary goes; churn keeps
      // connections (and with round-robin, their hand-over and its acknowledgement) crossing the channel.
      const busy = new Load(port, 40, 0, { answerBound: 60_000, reconnect: false });
      const churn = new Load(port, 0, 16, { answerBound: 30_000 });
      const before = await statsUntil(child, (s) => s.active >= 40 && s.served >= 400, 'busy and churning', 60_000);
      const pids = before.workers.map((w) => w.pid);
      orphans.push(...pids);
      assert.equal(pids.length, 2);
      // Each worker kills the primary and sends into the channel before it has read its end (EPIPE),
      // as node:cluster acknowledges a connection handed over just before the primary died.
      child.process.stdin!.write('die\n');
      assert.deepEqual(await child.exited, { code: null, signal: 'SIGKILL' });
      // New connections find nobody (round-robin) or a closing listener: the churn has done its part.
      const churnCounts = await churn.stop();
      const exits = await jsonLines<{ workerExit: number; code: number }>(child, 'workerExit', 2, 60_000);
      const busyCounts = await busy.stop();
      t.diagnostic(
        `busy answered ${busyCounts.answered}, churn answered ${churnCounts.answered}, churn refused/reset ${churnCounts.refused}/${churnCounts.reset} (the primary's own queue and listener went with it)`,
      );
      assert.deepEqual(
        exits.map((e) => [e.workerExit, e.code]).sort(),
        pids.map((pid) => [pid, 0]).sort(),
        `both workers exited 0; stderr: ${child.stderr}`,
      );
      assert.doesNotMatch(child.stderr, /EPIPE|ERR_IPC|Unhandled|Error/, 'no uncaught error in a worker');
      const workers = await jsonLines<{ worker: number; received: number; answered: number }>(child, 'worker', 2, 1);
      for (const w of workers) assert.equal(w.answered, w.received, `worker ${w.worker} answered all it received`);
      assert.equal(
        workers.reduce((n, w) => n + w.answered, 0),
        busyCounts.answered + churnCounts.answered,
        'the clients got every answer the workers sent',
      );
      assert.equal(busyCounts.reset + busyCounts.unanswered, 0, `busy clients: ${busy.errors.slice(0, 5).join(', ')}`);
    });
  }
});
