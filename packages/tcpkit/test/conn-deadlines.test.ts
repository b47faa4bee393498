// The deadline policy of one connection (src/conn-deadlines.ts): first as tables on virtual time (no socket,
// no wheel, the clock is a number), then the same rules over real sockets, each timeout by its option.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ConnTimers,
  expiredTimeout,
  type HandlerState,
  nextDeadline,
  recheckAt,
  WAIT_CALLBACK,
  WAIT_ITERATE,
  WAIT_NONE,
  WAIT_READ,
} from '../src/conn-deadlines.js';
import { deadlines } from '../src/deadlines.js';
import { lines } from '../src/framing/index.js';
import { type Conn, type ServeOptions, type ServerStats, serve, TimeoutError } from '../src/index.js';
import { ChannelProbe, codeOf, connect, deferred, LOOPBACK, portOf, stop, within, withServer } from './helpers.js';

const TEST = { timeout: 20_000 };

const NONE = { firstByteTimeout: 0, idleTimeout: 0, frameTimeout: 0, writeTimeout: 0, maxLifetime: 0 };
/** Admitted at t = 1000 on the virtual clock. */
const START = 1000;

type Clocks = Partial<Pick<ConnTimers, 'lastReadAt' | 'frameStartAt' | 'writeBlockedSince'>>;

function timers(timeouts: Partial<typeof NONE>, clocks: Clocks = {}): ConnTimers {
  const t = new ConnTimers({ ...NONE, ...timeouts }, START);
  Object.assign(t, clocks);
  return t;
}

/** A handler parked in read() with nothing unread: every excuse off. */
const WAITING: HandlerState = { waitMode: WAIT_READ, buffered: 0, writePending: false, eof: false, draining: false };

function code(t: ConnTimers, now: number, h: Partial<HandlerState> = {}): string | null {
  return expiredTimeout(t, now, { ...WAITING, ...h })?.code ?? null;
}

describe('nextDeadline', () => {
  const cases: [string, ConnTimers, number][] = [
    ['nothing in force', timers({}), Number.POSITIVE_INFINITY],
    ['firstByteTimeout runs from admission', timers({ firstByteTimeout: 500 }), 1500],
    [
      'the first byte swaps it for idleTimeout',
      timers({ firstByteTimeout: 500, idleTimeout: 900 }, { lastReadAt: 1200 }),
      2100,
    ],
    ['idleTimeout alone before the first byte: none', timers({ idleTimeout: 900 }), Number.POSITIVE_INFINITY],
    ['maxLifetime', timers({ maxLifetime: 300, firstByteTimeout: 500 }), 1300],
    ['writeTimeout only while output is blocked', timers({ writeTimeout: 100 }), Number.POSITIVE_INFINITY],
    [
      'writeTimeout from the block',
      timers({ writeTimeout: 100, idleTimeout: 900 }, { lastReadAt: 1000, writeBlockedSince: 1700 }),
      1800,
    ],
    [
      'frameTimeout from the frame’s first byte',
      timers({ frameTimeout: 50, idleTimeout: 900 }, { lastReadAt: 1100, frameStartAt: 1100 }),
      1150,
    ],
  ];
  for (const [name, t, at] of cases) it(name, () => assert.equal(nextDeadline(t), at));

  it('skips deadlines at or before `after`', () => {
    const t = timers({ maxLifetime: 300, firstByteTimeout: 500 });
    assert.equal(nextDeadline(t, 1300), 1500);
    assert.equal(nextDeadline(t, 1500), Number.POSITIVE_INFINITY);
  });
});

describe('expiredTimeout', () => {
  const idle = timers({ idleTimeout: 100 }, { lastReadAt: 2000 });
  const cases: [string, ConnTimers, number, Partial<HandlerState>, string | null][] = [
    ['before any deadline', timers({ firstByteTimeout: 500 }), 1499, {}, null],
    ['first byte late', timers({ firstByteTimeout: 500 }), 1500, {}, 'ERR_FIRST_BYTE_TIMEOUT'],
    ['first byte: a FIN excuses it', timers({ firstByteTimeout: 500 }), 1500, { eof: true }, null],
    [
      'first byte: also while the handler is busy',
      timers({ firstByteTimeout: 500 }),
      1500,
      { waitMode: WAIT_NONE },
      'ERR_FIRST_BYTE_TIMEOUT',
    ],
    ['idle while parked in read()', idle, 2100, {}, 'ERR_IDLE_TIMEOUT'],
    ['idle while parked in for await', idle, 2100, { waitMode: WAIT_ITERATE }, 'ERR_IDLE_TIMEOUT'],
    ['idle: not while the handler is busy', idle, 2100, { waitMode: WAIT_NONE }, null],
    ['idle: unread input is the handler’s delay', idle, 2100, { buffered: 10 }, null],
    [
      'idle: not when waiting for the rest of a frame with input unread',
      idle,
      2100,
      { waitMode: WAIT_CALLBACK, buffered: 10 },
      'ERR_IDLE_TIMEOUT',
    ],
    [
      'idle: not while output is blocked',
      timers({ idleTimeout: 100 }, { lastReadAt: 2000, writeBlockedSince: 2050 }),
      2100,
      {},
      null,
    ],
    ['idle: not after the peer’s FIN', idle, 2100, { eof: true }, null],
    ['idle: not while draining', idle, 2100, { draining: true }, null],
    [
      'lifetime beats everything',
      timers({ maxLifetime: 100, idleTimeout: 100 }, { lastReadAt: 1000 }),
      1100,
      {},
      'ERR_LIFETIME_EXCEEDED',
    ],
    ['lifetime even while busy', timers({ maxLifetime: 100 }), 1100, { waitMode: WAIT_NONE }, 'ERR_LIFETIME_EXCEEDED'],
    [
      'write blocked too long',
      timers({ writeTimeout: 100 }, { writeBlockedSince: 1500 }),
      1600,
      { writePending: true },
      'ERR_WRITE_TIMEOUT',
    ],
    ['write: nothing left in the socket', timers({ writeTimeout: 100 }, { writeBlockedSince: 1500 }), 1600, {}, null],
    [
      'write beats idle',
      timers({ writeTimeout: 100, idleTimeout: 100 }, { lastReadAt: 1500, writeBlockedSince: 1500 }),
      1600,
      { writePending: true },
      'ERR_WRITE_TIMEOUT',
    ],
    [
      'frame late while waiting for its rest',
      timers({ frameTimeout: 50 }, { lastReadAt: 1100, frameStartAt: 1100 }),
      1150,
      { waitMode: WAIT_CALLBACK },
      'ERR_FRAME_TIMEOUT',
    ],
    [
      'frame: complete frames queued behind a busy handler are not late',
      timers({ frameTimeout: 50 }, { lastReadAt: 1100, frameStartAt: 1100 }),
      1150,
      { waitMode: WAIT_NONE, buffered: 10 },
      null,
    ],
    [
      'frame: checked once the idle rule excuses',
      timers({ frameTimeout: 50, idleTimeout: 1000 }, { lastReadAt: 1100, frameStartAt: 1100 }),
      1150,
      { waitMode: WAIT_CALLBACK },
      'ERR_FRAME_TIMEOUT',
    ],
    [
      'idle reported before frame when both passed',
      timers({ frameTimeout: 50, idleTimeout: 50 }, { lastReadAt: 1100, frameStartAt: 1100 }),
      1150,
      { waitMode: WAIT_CALLBACK },
      'ERR_IDLE_TIMEOUT',
    ],
  ];
  for (const [name, t, now, h, expected] of cases) it(name, () => assert.equal(code(t, now, h), expected));

  it('reports the timeout’s value in the error', () => {
    const error = expiredTimeout(timers({ idleTimeout: 100 }, { lastReadAt: 2000 }), 2100, WAITING);
    assert.match(error?.message ?? '', /100 ms/);
  });
});

describe('recheckAt', () => {
  it('is the next deadline while none has passed', () => {
    assert.equal(recheckAt(timers({ firstByteTimeout: 500, maxLifetime: 800 }), 1200, 100), 1500);
  });
  it('looks again one idle period after an excused deadline, never past a later one', () => {
    const t = timers({ idleTimeout: 100, maxLifetime: 5000 }, { lastReadAt: 2000 });
    assert.equal(recheckAt(t, 2100, 100), 2200);
    const soon = timers({ idleTimeout: 100, maxLifetime: 150 }, { lastReadAt: 1000 });
    assert.equal(recheckAt(soon, 1100, 100), 1150);
  });
  it('waits at least one wheel tick', () => {
    const t = timers({ firstByteTimeout: 500 });
    assert.equal(recheckAt(t, 1500, 100), 1600);
  });
  it('is +Infinity with nothing in force', () => {
    assert.equal(recheckAt(timers({}), 5000, 100), Number.POSITIVE_INFINITY);
  });
});

describe('ConnTimers#set', () => {
  it('starts an idle timeout set on a connection that had none from now, not from an old reading', () => {
    // Without an idle timeout the reader keeps only the first byte's time (it reads no clock per message).
    const t = timers({}, { lastReadAt: 1 });
    const before = deadlines.now();
    t.set({ idleTimeout: 5000 });
    assert.ok(t.lastReadAt >= before, `lastReadAt ${t.lastReadAt} restarted at or after ${before}`);
    assert.ok(nextDeadline(t) >= before + 5000);
  });

  it('keeps the reading when an idle timeout was already in force, and before the first byte', () => {
    const running = timers({ idleTimeout: 1000 }, { lastReadAt: 1500 });
    running.set({ idleTimeout: 5000 });
    assert.equal(running.lastReadAt, 1500);
    const silent = timers({});
    silent.set({ idleTimeout: 5000 });
    assert.equal(silent.lastReadAt, 0, 'still no first byte: firstByteTimeout applies');
  });
});

// ---- the same rules over real sockets ----------------------------------------------------------

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
  assert.deepEqual(r.stats.timeouts, { firstByte: 0, idle: 0, frame: 0, write: 0, lifetime: 0, handshake: 0 });
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

describe('Conn deadlines', () => {
  it('fires maxLifetime on time when an earlier deadline was excused (the peer sent a bare FIN)', TEST, async () => {
    const reason = deferred<unknown>();
    await withServer(
      { firstByteTimeout: 100, idleTimeout: 60_000, maxLifetime: 600 },
      async (conn) => {
        conn.signal.addEventListener('abort', () => reason.resolve(conn.signal.reason));
        await within(reason.promise, 5000, 'the lifetime deadline');
      },
      async (port) => {
        const client = await connect(port, { allowHalfOpen: true });
        client.end(); // FIN without a byte: the first-byte deadline is excused
        assert.equal(codeOf(await within(reason.promise, 5000, 'the abort')), 'ERR_LIFETIME_EXCEEDED');
        client.destroy();
      },
    );
  });
});
