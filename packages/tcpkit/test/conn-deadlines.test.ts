// The deadline policy of one connection (src/conn-deadlines.ts) as tables on virtual time: no socket,
// no wheel, the clock is a number. The same rules over real sockets are in deadlines.test.ts.
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
