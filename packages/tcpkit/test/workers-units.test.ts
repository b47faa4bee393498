// The workers' pure parts: balance choice, limit shares, crash policy, option validation, stats sums.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidOptionError, serve } from '../src/index.js';
import { resolveOptions } from '../src/options.js';
import { chooseBalance, reusePortSupported, shareOf } from '../src/workers/balance.js';
import { CrashPolicy } from '../src/workers/crash-policy.js';
import { StatsTotals } from '../src/workers/stats.js';
import { LOOPBACK, stop } from './helpers.js';

describe('reusePortSupported / chooseBalance', () => {
  it('kernel balance needs Linux and Node 22.12+ or 23.1+', () => {
    for (const [version, platform, expected] of [
      ['20.20.2', 'linux', false],
      ['22.11.0', 'linux', false],
      ['22.12.0', 'linux', true],
      ['23.0.0', 'linux', false],
      ['23.1.0', 'linux', true],
      ['24.0.0', 'linux', true],
      ['24.0.0', 'darwin', false],
    ] as const) {
      assert.equal(reusePortSupported(version, platform), expected, `${version} on ${platform}`);
    }
  });

  it("'auto' picks the kernel where it works and never for a unix socket", () => {
    assert.equal(chooseBalance('auto', false), reusePortSupported() ? 'kernel' : 'primary');
    assert.equal(chooseBalance('auto', true), 'primary');
    assert.equal(chooseBalance('primary', false), 'primary');
  });
});

describe('shareOf', () => {
  it('splits a total into shares that differ by at most one and sum to it', () => {
    for (const [total, workers] of [
      [10_000, 3],
      [4, 2],
      [5, 4],
      [7, 7],
    ]) {
      const shares = Array.from({ length: workers }, (_, slot) => shareOf(total, workers, slot));
      assert.equal(
        shares.reduce((a, b) => a + b, 0),
        total,
      );
      assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${shares}`);
    }
  });
});

describe('CrashPolicy', () => {
  it('backs off exponentially and calls N deaths within the window a crash loop', () => {
    const policy = new CrashPolicy({ deaths: 3, window: 10_000 });
    policy.died(true, 0);
    assert.equal(policy.backoff(), 100);
    policy.died(true, 1000);
    assert.equal(policy.backoff(), 200);
    assert.equal(policy.loop(), undefined);
    policy.died(true, 2000);
    assert.match(policy.loop() ?? '', /3 worker deaths within 10000 ms/);
  });

  it('forgets deaths older than the window', () => {
    const policy = new CrashPolicy({ deaths: 2, window: 1000 });
    policy.died(true, 0);
    policy.died(true, 5000);
    assert.equal(policy.loop(), undefined);
  });

  it('counts workers in a row that die before listening, whatever the window', () => {
    const policy = new CrashPolicy({ deaths: 2, window: 10 });
    policy.died(false, 0);
    policy.died(false, 60_000);
    assert.match(policy.loop() ?? '', /2 workers in a row died before listening/);
    policy.listened();
    assert.equal(policy.loop(), undefined);
  });
});

describe('resolveOptions: workers, balance, crashLoop', () => {
  it('defaults to one process; auto is the number of cores', () => {
    assert.equal(resolveOptions({}).workers, 1);
    assert.ok(resolveOptions({ workers: 'auto' }).workers >= 1);
    assert.deepEqual(resolveOptions({}).crashLoop, { deaths: 5, window: 10_000 });
  });

  it('names the option in every error', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ workers: 0 }, /^workers: must be an integer/],
      [{ workers: 'all' }, /^workers: must be an integer/],
      [{ balance: 'random' }, /^balance: must be 'auto', 'kernel' or 'primary'/],
      [{ workers: 2, balance: 'kernel', path: '/tmp/x.sock' }, /^balance: 'kernel' needs a TCP port/],
      [
        { workers: 4, maxConnections: 3 },
        /^maxConnections: is split over the workers and must be at least workers \(4\)/,
      ],
      [{ crashLoop: { deaths: 0 } }, /^crashLoop.deaths: must be an integer/],
      [{ crashLoop: { tries: 3 } }, /^crashLoop.tries: is not a known option/],
    ];
    if (!reusePortSupported()) bad.push([{ workers: 2, balance: 'kernel' }, /^balance: 'kernel' needs SO_REUSEPORT/]);
    for (const [options, message] of bad) {
      assert.throws(
        () => resolveOptions(options),
        (e: unknown) => e instanceof InvalidOptionError && message.test(e.message),
      );
    }
  });
});

describe('restart() without workers', () => {
  it('rejects with ERR_INVALID_OPTION naming workers', async () => {
    const server = await serve(LOOPBACK, () => {});
    await assert.rejects(server.restart(), { code: 'ERR_INVALID_OPTION', option: 'workers' });
    await stop(server);
  });
});

describe('StatsTotals', () => {
  it('keeps counting what departed workers did, but not their gauges', () => {
    const stats = (n: number) => ({
      active: n,
      waiting: n,
      accepted: n,
      served: n,
      rejected: { full: n, perPeer: 0, blocked: 0, waitTimeout: 0, shutdown: 0, abandoned: 0 },
      timeouts: { firstByte: 0, idle: n, frame: 0, write: 0, lifetime: 0, handshake: 0 },
      tlsErrors: 0,
      proxyErrors: 0,
      slowConsumers: 0,
      errors: 0,
      acceptErrors: 0,
      lingering: n,
      queuedBytes: n,
      descriptors: { open: n, budget: 100 },
      limits: { maxConnections: 2, maxWaiting: 2 },
      bytesRead: 10 * n,
      bytesWritten: 10 * n,
    });
    const totals = new StatsTotals();
    totals.seen({ stats: stats(1), rssBytes: 1, cpuUs: 1 });
    totals.retire({ stats: stats(3), rssBytes: 1, cpuUs: 1 });
    const sum = totals.sum([
      { report: { stats: stats(2), rssBytes: 5, cpuUs: 7 }, row: { pid: 9, slot: 0, state: 'serving' } },
    ]);
    assert.equal(sum.active, 2);
    assert.equal(sum.waiting, 2);
    assert.equal(sum.accepted, 5);
    assert.equal(sum.rejected.full, 5);
    assert.equal(sum.timeouts.idle, 5);
    assert.equal(sum.bytesRead, 50);
    assert.equal(sum.lingering, 2, 'gauges are the live workers only');
    assert.deepEqual(sum.descriptors, { open: 2, budget: 100 });
    assert.deepEqual(sum.limits, { maxConnections: 2, maxWaiting: 2 }, 'the live shares add up to the totals');
    assert.deepEqual(sum.workers, [
      {
        pid: 9,
        slot: 0,
        state: 'serving',
        active: 2,
        waiting: 2,
        accepted: 2,
        served: 2,
        errors: 0,
        rssBytes: 5,
        cpuUs: 7,
      },
    ]);
  });
});
