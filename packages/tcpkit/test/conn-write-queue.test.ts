// The write queue's bounds: one frame is one write for the slow-consumer check, maxQueuedBytes
// bounds memory (tiny writes are charged their overhead and share one promise), and writeTimeout
// runs from the kernel's last progress, so a slow steady reader is kept and a stalled one is cut.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { lines } from '../src/framing/index.js';
import { resp } from '../src/framing/resp.js';
import type { Conn } from '../src/index.js';
import { ChannelProbe, codeOf, connect, withConn } from './helpers.js';

const TEST = { timeout: 60_000 };

/** The handlers here move megabytes on a loaded machine: give them longer to settle. */
const SETTLE = 50_000;

describe('Conn#writeFrame: one frame is one write', () => {
  it('delivers a 5 MiB RESP bulk (over maxQueuedBytes) whole to a reading client', TEST, async () => {
    const body = Buffer.alloc(5 << 20, 'v');
    await withConn(
      {},
      async (conn) => {
        await conn.writeFrame(resp(), body);
      },
      async (port, outcome) => {
        const client = await connect(port);
        const expected = `$${body.length}\r\n`.length + body.length + 2;
        const got = await client.receive(expected, 30_000);
        assert.equal(got.length, expected);
        assert.equal(got.subarray(-2).toString(), '\r\n');
        assert.equal((await outcome).error, undefined, 'the write resolved');
      },
      SETTLE,
    );
  });

  it('delivers a line longer than maxQueuedBytes, with its newline', TEST, async () => {
    const line = 'x'.repeat(5 << 20);
    await withConn(
      { maxQueuedBytes: 1 << 20 },
      async (conn) => {
        await conn.writeFrame(lines({ maxLength: 8 << 20 }), line);
      },
      async (port, outcome) => {
        const client = await connect(port);
        const got = await client.receive(line.length + 1, 30_000);
        assert.equal(got.length, line.length + 1);
        assert.equal(got.at(-1), 0x0a);
        assert.equal((await outcome).error, undefined);
      },
      SETTLE,
    );
  });
});

describe('Conn#write: maxQueuedBytes bounds memory', () => {
  it('writes waiting for the same drain share one promise', TEST, async () => {
    await withConn(
      { maxWriteBuffer: 1024, maxQueuedBytes: 1 << 20 },
      async (conn) => {
        // Queued past maxWriteBuffer in one turn (nothing flushed yet): both writes wait for the drain.
        const first = conn.write(Buffer.alloc(2048));
        const a = conn.write('a');
        const b = conn.write('b');
        const same = a === b;
        await Promise.all([first, a, b]);
        return same;
      },
      async (port, outcome) => {
        const client = await connect(port);
        await client.receive(2050);
        assert.equal((await outcome).value, true);
      },
      SETTLE,
    );
  });

  it('charges each waiting tiny write its overhead: a flood of 1-byte writes is a slow consumer', TEST, async () => {
    const errorProbe = new ChannelProbe<{ conn: Conn; error: Error }>('tcpkit:connection:error');
    try {
      await withConn(
        { maxWriteBuffer: 4096, maxQueuedBytes: 64 * 1024 },
        async (conn) => {
          let last: Promise<void> = Promise.resolve();
          // 64 KiB of payload would pass the cap only at 65,536 writes; the overhead makes it far fewer.
          let n = 0;
          for (; n < 60_000 && !conn.isClosed && conn.signal.reason === undefined; n++) last = conn.write('x');
          await last.catch(() => {});
          return n;
        },
        async (port, outcome) => {
          const client = await connect(port, { read: false });
          const { value: written, conn } = await outcome;
          assert.equal(codeOf(conn.signal.reason), 'ERR_SLOW_CONSUMER');
          assert.ok(written! < 60_000, `cut after ${written} writes`);
          assert.equal(codeOf((await errorProbe.next((m) => m.conn === conn)).error), 'ERR_SLOW_CONSUMER');
          client.destroy();
        },
        SETTLE,
      );
    } finally {
      errorProbe.stop();
    }
  });

  it('a write issued below maxWriteBuffer is accepted whatever its size', TEST, async () => {
    await withConn(
      { maxWriteBuffer: 4096, maxQueuedBytes: 8192 },
      async (conn) => {
        await conn.write(Buffer.alloc(1 << 20, 'y'));
      },
      async (port, outcome) => {
        const client = await connect(port);
        await client.receive(1 << 20, 30_000);
        assert.equal((await outcome).error, undefined);
      },
      SETTLE,
    );
  });
});

/**
 * A client that reads `step` bytes, pauses `pauseMs`, and so on; with `stallAfter`, it stops reading
 * for good once it has read that much.
 */
function steadyReader(
  port: number,
  opts: { step: number; pauseMs: number; stallAfter?: number },
): { socket: net.Socket; got: () => number; closed: Promise<void> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  let got = 0;
  let inStep = 0;
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  socket.on('data', (d: Buffer) => {
    got += d.length;
    inStep += d.length;
    if (opts.stallAfter !== undefined && got >= opts.stallAfter) {
      if (!stalled) socket.pause();
      stalled = true;
      return;
    }
    if (inStep >= opts.step) {
      inStep = 0;
      socket.pause();
      timer = setTimeout(() => socket.resume(), opts.pauseMs);
    }
  });
  socket.on('error', () => {});
  const closed = once(socket, 'close').then(() => clearTimeout(timer));
  return { socket, got: () => got, closed };
}

describe('writeTimeout: runs from the last progress', () => {
  // One write far larger than the kernel buffers, so it is in flight for many writeTimeout periods.
  const RESPONSE = 48 << 20;
  const WRITE_TIMEOUT = 2_000;

  it('keeps a reader that drains slowly but steadily', TEST, async () => {
    await withConn(
      { writeTimeout: WRITE_TIMEOUT },
      async (conn) => {
        await conn.write(Buffer.alloc(RESPONSE, 'z'));
      },
      async (port, outcome) => {
        // 1 MiB per 100 ms: the whole response takes several writeTimeout periods; each period sees
        // far more than the kernel's wake-up step (a third of its send buffer) taken.
        const reader = steadyReader(port, { step: 1 << 20, pauseMs: 100 });
        const { error } = await outcome;
        assert.equal(error, undefined, `the write resolved (${codeOf(error)})`);
        await reader.closed;
        assert.equal(reader.got(), RESPONSE);
      },
      SETTLE,
    );
  });

  it('cuts a reader that stops reading', TEST, async () => {
    await withConn(
      { writeTimeout: WRITE_TIMEOUT },
      async (conn) => {
        await conn.write(Buffer.alloc(RESPONSE, 'z'));
      },
      async (port, outcome) => {
        const reader = steadyReader(port, { step: 1 << 20, pauseMs: 100, stallAfter: 4 << 20 });
        const { error } = await outcome;
        assert.equal(codeOf(error), 'ERR_WRITE_TIMEOUT');
        reader.socket.resume(); // a paused socket would not notice the close
        await reader.closed;
        assert.ok(reader.got() < RESPONSE);
      },
      SETTLE,
    );
  });
});
