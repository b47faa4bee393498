// Rolling restart under load: request/response and churn clients run while SIGHUP is sent three
// times; afterwards every worker is new and no request was refused, reset or left unanswered.
// Balance 'primary' (node:cluster round-robin) runs on every Node; 'kernel' (SO_REUSEPORT, the slot's
// socket kept by the primary across restarts) where this Node supports it (CI runs 22 and 24).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { reusePortSupported } from '../src/workers/balance.js';
import type { Child } from './helpers.js';
import { Load, startFixture, statsOf, statsUntil } from './workers-helpers.js';

const children: Child[] = [];
after(() => {
  for (const c of children) c.kill();
});

const modes: ('primary' | 'kernel')[] = reusePortSupported() ? ['primary', 'kernel'] : ['primary'];

describe('WorkerPool#restart (SIGHUP)', () => {
  for (const balance of modes) {
    it(`balance '${balance}': three SIGHUPs under load lose nothing and replace every worker`, async (t) => {
      const { child, port } = await startFixture({ balance, drainTimeout: 20_000 });
      children.push(child);
      const before = await statsUntil(child, (s) => s.workers.length === 2, 'two workers');
      const load = new Load(port, 8, 4);
      const seen = new Set(before.workers.map((w) => w.pid));
      await statsUntil(child, (s) => s.served > 50, 'load flowing');
      for (let round = 1; round <= 3; round++) {
        const previous = new Set((await statsOf(child)).workers.map((w) => w.pid));
        child.signal('SIGHUP');
        const now = await statsUntil(
          child,
          (s) =>
            s.workers.length === 2 &&
            s.workers.every((w) => w.state === 'serving' && !previous.has(w.pid) && !seen.has(w.pid)),
          `round ${round}: two new serving workers`,
          60_000,
        );
        for (const w of now.workers) seen.add(w.pid);
        // Load keeps flowing through the new workers before the next round.
        const served = now.served;
        await statsUntil(child, (s) => s.served > served + 20, `round ${round}: load on the new workers`);
      }
      const counts = await load.stop();
      t.diagnostic(
        `answered ${counts.answered}, resent after a drain's FIN ${counts.resent}, pids ${counts.pids.size}, errors ${load.errors.slice(0, 5).join(',')}`,
      );
      assert.equal(counts.refused, 0, 'refused');
      assert.equal(counts.reset, 0, 'reset');
      assert.equal(counts.unanswered, 0, 'unanswered');
      assert.ok(counts.answered > 100, 'requests answered throughout');
      assert.ok(counts.pids.size >= 6, `answers came from the old and the new workers (${counts.pids.size} pids)`);
      child.signal('SIGTERM');
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    });
  }
});
