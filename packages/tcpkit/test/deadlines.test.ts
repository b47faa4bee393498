import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DeadlineEntry, Deadlines } from '../src/deadlines.js';
import { lines } from '../src/framing/index.js';
import { type Conn, type ServeOptions, type ServerStats, serve, TimeoutError } from '../src/index.js';
import { ChannelProbe, connect, deferred, LOOPBACK, portOf, stop, VirtualClock, within } from './helpers.js';

const TEST = { timeout: 20_000 };

/** An entry that records when it fired. */
class Probe implements DeadlineEntry {
  tick = -1;
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

describe('Deadlines (timer wheel)', () => {
  it('fires an entry once, no earlier than its deadline', () => {
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
    const p = new Probe('past');
    wheel.schedule(p, wheel.now() - 1000);
    clock.advance(10);
    assert.equal(p.fired.length, 1);
  });

  it('lets an entry re-arm itself from onDeadline', () => {
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(2, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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
    const clock = new VirtualClock();
    const wheel = new Deadlines(10, clock);
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

  it('reads an exact clock when idle', () => {
    const wheel = new Deadlines(100);
    const before = performance.now();
    const t = wheel.now();
    assert.ok(t >= before && t <= performance.now());
  });
});

/** Runs `handler` under `options` and resolves with what it returned or threw, the conn and the stats. */
async function runDeadline(
  options: ServeOptions,
  handler: (conn: Conn) => Promise<unknown>,
  client: (port: number) => Promise<{ done: Promise<unknown>; cleanup(): void }>,
): Promise<{ error: unknown; value: unknown; conn: Conn; stats: ServerStats; published: TimeoutError[] }> {
  const outcome = deferred<{ error: unknown; value: unknown; conn: Conn }>();
  const timeoutProbe = new ChannelProbe<{ conn: Conn; error: TimeoutError }>('tcpkit:connection:timeout');
  const server = await serve({ ...LOOPBACK, firstByteTimeout: 0, idleTimeout: 0, ...options }, async (conn) => {
    try {
      outcome.resolve({ value: await handler(conn), error: undefined, conn });
    } catch (error) {
      outcome.resolve({ value: undefined, error, conn });
      throw error;
    }
  });
  try {
    const c = await client(portOf(server));
    const result = await within(outcome.promise, 10_000, 'the handler to settle');
    await within(c.done, 10_000, 'the client to finish');
    c.cleanup();
    const published = timeoutProbe.messages.filter((m) => m.conn === result.conn).map((m) => m.error);
    return { ...result, stats: server.stats(), published };
  } finally {
    timeoutProbe.stop();
    await stop(server);
  }
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

/** Reads until end of stream and returns the text. */
async function readAll(conn: Conn): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of conn) parts.push(chunk);
  return Buffer.concat(parts).toString();
}

/** Sends `count` bytes `gap` ms apart, then half-closes. */
function trickle(socket: import('node:net').Socket, count: number, gap: number, byte = 'x'): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || sent === count) {
        clearInterval(timer);
        if (!socket.destroyed) socket.end();
        resolve();
        return;
      }
      socket.write(byte);
      sent++;
    }, gap);
  });
}

/** Asserts a deadline fired: the handler saw the typed error, the signal carries it, it is counted and published. */
function assertFired(
  r: Awaited<ReturnType<typeof runDeadline>>,
  code: string,
  key: keyof ServerStats['timeouts'],
): void {
  assert.ok(r.error instanceof TimeoutError, `the handler saw a TimeoutError, got ${String(r.error)}`);
  assert.equal(codeOf(r.error), code);
  assert.equal(r.conn.signal.reason, r.error, 'conn.signal.reason is the same error');
  assert.equal(r.stats.timeouts[key], 1);
  const others = Object.entries(r.stats.timeouts).filter(([k, n]) => k !== key && n !== 0);
  assert.deepEqual(others, [], 'no other deadline counted');
  assert.equal(r.stats.errors, 1, 'the handler ended by throwing');
  assert.deepEqual(
    r.published.map((e) => e.code),
    [code],
    'published on tcpkit:connection:timeout',
  );
}

function assertQuiet(r: Awaited<ReturnType<typeof runDeadline>>): void {
  assert.equal(r.error, undefined, `no error, got ${String(r.error)}`);
  assert.deepEqual(r.stats.timeouts, { firstByte: 0, idle: 0, frame: 0, write: 0, lifetime: 0 });
  assert.deepEqual(r.published, []);
}

describe('firstByteTimeout', () => {
  it('fires when the peer sends nothing: read() rejects with ERR_FIRST_BYTE_TIMEOUT', TEST, async () => {
    const started = performance.now();
    const r = await runDeadline(
      { firstByteTimeout: 250 },
      (conn) => conn.read(),
      async (port) => {
        const client = await connect(port);
        return { done: client.waitClosed(), cleanup: () => client.destroy() };
      },
    );
    assertFired(r, 'ERR_FIRST_BYTE_TIMEOUT', 'firstByte');
    assert.ok(performance.now() - started >= 100, 'not at once');
  });

  it('fires even while the handler is not reading (it is the peer that is late)', TEST, async () => {
    const r = await runDeadline(
      { firstByteTimeout: 250 },
      async (conn) => {
        await new Promise((resolve) => conn.signal.addEventListener('abort', resolve, { once: true }));
        throw conn.signal.reason;
      },
      async (port) => {
        const client = await connect(port);
        return { done: client.waitClosed(), cleanup: () => client.destroy() };
      },
    );
    assertFired(r, 'ERR_FIRST_BYTE_TIMEOUT', 'firstByte');
  });

  it('does not fire once the first byte arrived, however long the peer then waits', TEST, async () => {
    const r = await runDeadline({ firstByteTimeout: 250 }, readAll, async (port) => {
      const client = await connect(port);
      client.write('a');
      return { done: trickle(client.socket, 1, 600, 'b'), cleanup: () => client.destroy() };
    });
    assertQuiet(r);
    assert.equal(r.value, 'ab');
  });
});

describe('idleTimeout', () => {
  it('fires after the first byte when the peer goes silent: ERR_IDLE_TIMEOUT', TEST, async () => {
    const r = await runDeadline(
      { idleTimeout: 250 },
      async (conn) => {
        await conn.read();
        return conn.read();
      },
      async (port) => {
        const client = await connect(port);
        client.write('a');
        return { done: client.waitClosed(), cleanup: () => client.destroy() };
      },
    );
    assertFired(r, 'ERR_IDLE_TIMEOUT', 'idle');
  });

  it('fires idleTimeout after the first byte even when firstByteTimeout is far longer', TEST, async () => {
    const started = performance.now();
    const r = await runDeadline(
      { idleTimeout: 250, firstByteTimeout: 20_000 },
      async (conn) => {
        await conn.read();
        return conn.read();
      },
      async (port) => {
        const client = await connect(port);
        client.write('a');
        return { done: client.waitClosed(), cleanup: () => client.destroy() };
      },
    );
    assertFired(r, 'ERR_IDLE_TIMEOUT', 'idle');
    assert.ok(performance.now() - started < 10_000, 'not deferred to the first-byte deadline');
  });

  it('does not fire while traffic flows for several idle periods', TEST, async () => {
    const r = await runDeadline({ idleTimeout: 250, firstByteTimeout: 250 }, readAll, async (port) => {
      const client = await connect(port);
      return { done: trickle(client.socket, 12, 60), cleanup: () => client.destroy() };
    });
    assertQuiet(r);
    assert.equal(r.value, 'x'.repeat(12));
  });

  it('does not fire while the handler, not the peer, holds unread input', TEST, async () => {
    const r = await runDeadline(
      { idleTimeout: 200 },
      async (conn) => {
        await new Promise((resolve) => setTimeout(resolve, 600)); // the handler is busy
        return readAll(conn);
      },
      async (port) => {
        const client = await connect(port);
        client.end('queued');
        return { done: client.waitClosed(), cleanup: () => client.destroy() };
      },
    );
    assertQuiet(r);
    assert.equal(r.value, 'queued');
  });

  it(
    'does not fire while the handler pushes output without reading (it is not waiting on the peer)',
    TEST,
    async () => {
      const r = await runDeadline(
        { idleTimeout: 200 },
        async (conn) => {
          await conn.read(); // the first byte: from here on the idle clock would run for a reader
          for (let i = 0; i < 8; i++) {
            await conn.write(`tick ${i}\n`);
            await new Promise((resolve) => setTimeout(resolve, 100)); // 800 ms of pushing, 4 idle periods
          }
          return 'pushed';
        },
        async (port) => {
          const client = await connect(port);
          client.write('subscribe');
          return { done: client.receive('tick 0\n'.length * 8), cleanup: () => client.destroy() };
        },
      );
      assertQuiet(r);
      assert.equal(r.value, 'pushed');
    },
  );
});

describe('frameTimeout', () => {
  it('fires when a frame trickles in slower than frameTimeout (slowloris): ERR_FRAME_TIMEOUT', TEST, async () => {
    const r = await runDeadline(
      { frameTimeout: 250, idleTimeout: 1000 },
      async (conn) => {
        const got: string[] = [];
        for await (const line of conn.frames(lines())) got.push(line);
        return got;
      },
      async (port) => {
        const client = await connect(port);
        // Never a newline; a byte every 50 ms keeps idleTimeout from firing first.
        const done = trickle(client.socket, 40, 50);
        return { done, cleanup: () => client.destroy() };
      },
    );
    assertFired(r, 'ERR_FRAME_TIMEOUT', 'frame');
  });

  it('does not fire for whole frames, however long the gaps between them', TEST, async () => {
    const r = await runDeadline(
      { frameTimeout: 200 },
      async (conn) => {
        const got: string[] = [];
        for await (const line of conn.frames(lines())) got.push(line);
        return got.join(',');
      },
      async (port) => {
        const client = await connect(port);
        return { done: trickle(client.socket, 3, 350, 'ok\n'), cleanup: () => client.destroy() };
      },
    );
    assertQuiet(r);
    assert.equal(r.value, 'ok,ok,ok');
  });
});

describe('writeTimeout', () => {
  it('fires when the peer does not read: the pending write rejects with ERR_WRITE_TIMEOUT', TEST, async () => {
    const r = await runDeadline(
      { writeTimeout: 250, maxQueuedBytes: 64 * 1024 * 1024 },
      async (conn) => {
        const chunk = Buffer.alloc(256 * 1024);
        for (let i = 0; i < 256; i++) await conn.write(chunk); // 64 MiB at most: far above the kernel buffers
      },
      async (port) => {
        const client = await connect(port, { read: false });
        return { done: Promise.resolve(), cleanup: () => client.destroy() };
      },
    );
    assertFired(r, 'ERR_WRITE_TIMEOUT', 'write');
  });

  it('does not fire while the peer keeps reading', TEST, async () => {
    const total = 16 * 1024 * 1024;
    const r = await runDeadline(
      { writeTimeout: 250 },
      async (conn) => {
        const chunk = Buffer.alloc(64 * 1024);
        for (let sent = 0; sent < total; sent += chunk.length) await conn.write(chunk);
      },
      async (port) => {
        const client = await connect(port);
        return { done: client.receive(total, 10_000), cleanup: () => client.destroy() };
      },
    );
    assertQuiet(r);
  });
});

describe('maxLifetime', () => {
  it('fires even while traffic flows: ERR_LIFETIME_EXCEEDED', TEST, async () => {
    const r = await runDeadline({ maxLifetime: 300, idleTimeout: 250 }, readAll, async (port) => {
      const client = await connect(port);
      return { done: trickle(client.socket, 40, 50), cleanup: () => client.destroy() };
    });
    assertFired(r, 'ERR_LIFETIME_EXCEEDED', 'lifetime');
  });
});
