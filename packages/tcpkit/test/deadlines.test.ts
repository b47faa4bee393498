import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DeadlineEntry, Deadlines } from '../src/deadlines.js';
import { VirtualClock, within } from './helpers.js';

const TEST = { timeout: 20_000 };

/** An entry that records when it fired. */
class Probe implements DeadlineEntry {
  tick = -1;
  wheelPrev: DeadlineEntry | null = null;
  wheelNext: DeadlineEntry | null = null;
  fired: number[] = [];
  #waiters: (() => void)[] = [];
  constructor(
    readonly name: string,
    readonly log: string[] = [],
    readonly then?: (probe: Probe, now: number) => void,
  ) {}
  onDeadline(now: number): void {
    this.fired.push(now);
    this.log.push(this.name);
    for (const w of this.#waiters.splice(0)) w();
    this.then?.(this, now);
  }
  /** Resolves when the entry has fired `n` times. */
  firedTimes(n = 1, ms = 5000): Promise<void> {
    if (this.fired.length >= n) return Promise.resolve();
    return within(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (this.fired.length >= n) resolve();
          else this.#waiters.push(check);
        };
        this.#waiters.push(check);
      }),
      ms,
      `${this.name} to fire ${n} time(s)`,
    );
  }
}
/** A wheel of `resolution` ms ticks on a virtual clock. */
function virtualWheel(resolution = 10): { clock: VirtualClock; wheel: Deadlines } {
  const clock = new VirtualClock();
  return { clock, wheel: new Deadlines(resolution, clock) };
}

describe('Deadlines (timer wheel)', () => {
  it('fires an entry once, no earlier than its deadline', () => {
    const { clock, wheel } = virtualWheel();
    const p = new Probe('a');
    const at = wheel.now() + 50;
    wheel.schedule(p, at);
    assert.equal(wheel.size, 1);
    clock.advance(49);
    assert.deepEqual(p.fired, [], 'not before its deadline');
    clock.advance(20);
    assert.equal(p.fired.length, 1);
    assert.ok(p.fired[0]! >= at, `fired at ${p.fired[0]}, due at ${at}`);
    assert.equal(p.tick, -1);
    assert.equal(wheel.size, 0);
    const other = new Probe('b');
    wheel.schedule(other, wheel.now() + 60);
    clock.advance(80);
    assert.equal(other.fired.length, 1);
    assert.equal(p.fired.length, 1, 'fired exactly once');
  });

  it('fires on the real clock by default', TEST, async () => {
    const wheel = new Deadlines(10);
    const p = new Probe('real');
    const at = wheel.now() + 30;
    wheel.schedule(p, at);
    await p.firedTimes(1);
    assert.ok(p.fired[0]! >= at, `fired at ${p.fired[0]}, due at ${at}`);
    assert.equal(wheel.size, 0);
  });

  it('does not fire a cancelled entry', () => {
    const { clock, wheel } = virtualWheel();
    const log: string[] = [];
    const a = new Probe('a', log);
    const b = new Probe('b', log);
    const now = wheel.now();
    wheel.schedule(a, now + 30);
    wheel.schedule(b, now + 90);
    wheel.cancel(a);
    wheel.cancel(a); // idempotent
    assert.equal(wheel.size, 1);
    clock.advance(200);
    assert.equal(b.fired.length, 1);
    assert.deepEqual(log, ['b']);
  });

  it('re-files a rescheduled entry at its new deadline', () => {
    const { clock, wheel } = virtualWheel();
    const log: string[] = [];
    const a = new Probe('a', log);
    const b = new Probe('b', log);
    const now = wheel.now();
    wheel.schedule(a, now + 30);
    wheel.schedule(b, now + 70);
    wheel.schedule(a, now + 140);
    assert.equal(wheel.size, 2, 'a rescheduled entry is counted once');
    clock.advance(200);
    assert.equal(a.fired.length, 1);
    assert.deepEqual(log, ['b', 'a']);
    assert.ok(a.fired[0]! >= now + 140);
  });

  it('fires a deadline already past on the next tick', () => {
    const { clock, wheel } = virtualWheel();
    const p = new Probe('past');
    wheel.schedule(p, wheel.now() - 1000);
    clock.advance(10);
    assert.equal(p.fired.length, 1);
  });

  it('lets an entry re-arm itself from onDeadline', () => {
    const { clock, wheel } = virtualWheel();
    const p = new Probe('again', [], (self, now) => {
      if (self.fired.length < 3) wheel.schedule(self, now + 20);
    });
    wheel.schedule(p, wheel.now() + 20);
    clock.advance(200);
    assert.equal(p.fired.length, 3);
    assert.ok(p.fired[1]! >= p.fired[0]! + 20 - 10);
    assert.ok(p.fired[2]! >= p.fired[1]! + 20 - 10);
    assert.equal(wheel.size, 0);
  });

  it('keeps an entry due after more than one round of the wheel for the right round', () => {
    // 512 slots of 2 ms: one round is 1024 ms; the entry's slot comes round ~100 ms in.
    const { clock, wheel } = virtualWheel(2);
    const early = new Probe('early');
    const late = new Probe('late');
    const now = wheel.now();
    wheel.schedule(early, now + 100);
    wheel.schedule(late, now + 1124);
    clock.advance(110);
    assert.equal(early.fired.length, 1);
    assert.deepEqual(late.fired, [], 'not on the first round');
    clock.advance(1100);
    assert.equal(late.fired.length, 1);
    assert.ok(late.fired[0]! >= now + 1124, `fired ${late.fired[0]! - now} ms after scheduling, due at 1124`);
  });

  it('fires thousands of entries each exactly once, in deadline order, none early', () => {
    const { clock, wheel } = virtualWheel();
    const log: string[] = [];
    const now = wheel.now();
    const probes: { probe: Probe; at: number }[] = [];
    for (let i = 0; i < 5000; i++) {
      const at = now + 20 + ((i * 7919) % 300);
      const probe = new Probe(String(at), log);
      probes.push({ probe, at });
      wheel.schedule(probe, at);
    }
    assert.equal(wheel.size, 5000);
    clock.advance(400);
    for (const { probe, at } of probes) {
      assert.equal(probe.fired.length, 1);
      assert.ok(probe.fired[0]! >= at);
    }
    // Entries fire tick by tick: a later tick never fires before an earlier one.
    const ticks = log.map((at) => Math.ceil(Number(at) / 10));
    for (let i = 1; i < ticks.length; i++) assert.ok(ticks[i]! >= ticks[i - 1]!, 'fired in tick order');
    assert.equal(wheel.size, 0);
  });

  it('catches up every tick after the event loop was blocked', () => {
    const { clock, wheel } = virtualWheel();
    const log: string[] = [];
    const now = wheel.now();
    const probes = [40, 120, 200].map((d) => {
      const p = new Probe(String(d), log);
      wheel.schedule(p, now + d);
      return p;
    });
    clock.jump(300); // one late tick, past every deadline
    for (const p of probes) assert.equal(p.fired.length, 1);
    assert.deepEqual(log, ['40', '120', '200']);
  });

  it('stops ticking when empty and restarts from the clock', () => {
    const { clock, wheel } = virtualWheel();
    const p = new Probe('a');
    wheel.schedule(p, wheel.now() + 20);
    clock.advance(30);
    assert.equal(wheel.size, 0);
    clock.advance(10_000); // stopped: now() reads the clock itself
    assert.equal(wheel.now(), clock.now());
    wheel.schedule(p, wheel.now() + 20);
    clock.advance(30);
    assert.equal(p.fired.length, 2);
    assert.ok(p.fired[1]! >= clock.now() - 10);
  });

  it('keeps ticking after a cancel empties it, and stops at its next tick', () => {
    const { clock, wheel } = virtualWheel();
    const p = new Probe('a');
    wheel.schedule(p, wheel.now() + 1000);
    wheel.cancel(p);
    assert.equal(wheel.size, 0);
    assert.equal(wheel.running, true, 'no timer stopped per cancel');
    // Re-filed before the tick: the same timer serves it, and it still fires on time.
    wheel.schedule(p, wheel.now() + 30);
    clock.advance(40);
    assert.equal(p.fired.length, 1);
    assert.equal(wheel.running, false, 'the tick that found it empty stopped it');
    wheel.schedule(p, wheel.now() + 1000);
    wheel.cancel(p);
    clock.advance(10);
    assert.equal(wheel.running, false);
    assert.deepEqual(p.fired.length, 1, 'a cancelled entry never fires');
    assert.equal(wheel.now(), clock.now(), 'stopped: now() reads the clock itself');
  });

  it('reads the clock when idle, in whole milliseconds rounded up', () => {
    const wheel = new Deadlines(100);
    const before = performance.now();
    const t = wheel.now();
    assert.ok(Number.isInteger(t), `whole milliseconds, got ${t}`);
    assert.ok(t >= before && t <= Math.ceil(performance.now()), `${t} read between ${before} and now`);
  });
  describe('entries that share a slot', () => {
    it('fires them in the order they were filed, each once', () => {
      const { clock, wheel } = virtualWheel();
      const log: string[] = [];
      const at = wheel.now() + 50;
      const probes = ['a', 'b', 'c', 'd'].map((n) => new Probe(n, log));
      for (const p of probes) wheel.schedule(p, at);
      // Moving one out and back files it last.
      wheel.schedule(probes[1]!, at + 200);
      wheel.schedule(probes[1]!, at);
      clock.advance(70);
      assert.deepEqual(log, ['a', 'c', 'd', 'b']);
      assert.equal(wheel.size, 0);
      for (const p of probes) assert.equal(p.tick, -1);
    });

    it('skips an entry that a callback cancelled before its turn in the same tick', () => {
      const { clock, wheel } = virtualWheel();
      const log: string[] = [];
      const at = wheel.now() + 50;
      const victim = new Probe('victim', log);
      const killer = new Probe('killer', log, () => wheel.cancel(victim));
      const after = new Probe('after', log);
      wheel.schedule(killer, at);
      wheel.schedule(victim, at);
      wheel.schedule(after, at);
      clock.advance(70);
      assert.deepEqual(log, ['killer', 'after'], 'the next entry was cancelled: the tick goes on past it');
      assert.equal(wheel.size, 0);
    });

    it('fires an entry that a callback moved to a later tick at that tick, and keeps the rest of the slot', () => {
      const { clock, wheel } = virtualWheel();
      const log: string[] = [];
      const at = wheel.now() + 50;
      const moved = new Probe('moved', log);
      const mover = new Probe('mover', log, (_self, now) => wheel.schedule(moved, now + 30));
      const last = new Probe('last', log);
      wheel.schedule(mover, at);
      wheel.schedule(moved, at);
      wheel.schedule(last, at);
      clock.advance(60);
      assert.deepEqual(log, ['mover', 'last']);
      assert.equal(wheel.size, 1);
      clock.advance(40);
      assert.deepEqual(log, ['mover', 'last', 'moved']);
      assert.equal(wheel.size, 0);
    });

    it('keeps a later round filed in the slot that fires, including one a callback files there', () => {
      // 512 slots of 2 ms: one round is 1024 ms.
      const { clock, wheel } = virtualWheel(2);
      const log: string[] = [];
      const now = wheel.now();
      const nextRound = new Probe('nextRound', log);
      const refiled = new Probe('refiled', log);
      const due = new Probe('due', log, () => wheel.schedule(refiled, now + 100 + 1024));
      wheel.schedule(nextRound, now + 100 + 1024);
      wheel.schedule(due, now + 100);
      wheel.schedule(refiled, now + 100);
      clock.advance(110);
      assert.deepEqual(log, ['due'], 'refiled moved a round on before its turn; nextRound is not due');
      assert.equal(wheel.size, 2);
      clock.advance(1030);
      assert.deepEqual(log, ['due', 'nextRound', 'refiled']);
      assert.equal(wheel.size, 0);
    });

    it('cancels the first, a middle and the last entry of a slot, and files new ones after', () => {
      const { clock, wheel } = virtualWheel();
      const log: string[] = [];
      const at = wheel.now() + 50;
      const probes = ['a', 'b', 'c', 'd', 'e'].map((n) => new Probe(n, log));
      for (const p of probes) wheel.schedule(p, at);
      wheel.cancel(probes[0]!);
      wheel.cancel(probes[2]!);
      wheel.cancel(probes[4]!);
      const f = new Probe('f', log);
      wheel.schedule(f, at);
      assert.equal(wheel.size, 3);
      clock.advance(70);
      assert.deepEqual(log, ['b', 'd', 'f']);
      assert.equal(wheel.size, 0);
    });
  });
});
