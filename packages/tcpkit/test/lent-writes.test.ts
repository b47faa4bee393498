// A lent chunk (conn.chunks({ reuse: true })) under COPY_LIMIT that the handler writes back is queued by
// reference, not copied (src/write-queue.ts addLent, src/lent-buffers.ts holdLent): the step flushes it
// when it parks, and the writer copies it out if it is still queued (ConnWriter#holdsCallerBuffers). These
// tests, over real loopback sockets, are what that could break: a buffer reused while its bytes are still
// queued or in flight shows as a message overwritten by a later read. Every message is distinct, and the
// sizes of a test share a size class of the free list, so any early reuse is seen. The file runs again on
// the stream write path (TCPKIT_WRITE_PATH=stream) at its end.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { type Conn, type ServeOptions, serve } from '../src/index.js';
import { lentBuffersMade } from '../src/lent-buffers.js';
import { certs } from './fixtures/certs.js';
import {
  codeOf,
  connect,
  deferred,
  LOOPBACK,
  portOf,
  pseudoRandom,
  stop,
  withConn,
  within,
  withServer,
} from './helpers.js';
import { runOnFallback } from './integration/fallback-paths.js';
import { readAll, tlsConnect } from './tls-client.js';
import { STREAM_PATH } from './write-helpers.js';

const TEST = { timeout: 60_000 };
/** On the stream read path (TCPKIT_READ_PATH=stream) reads arrive as the stream's own chunks: none is lent. */
const LENDS = process.env.TCPKIT_READ_PATH !== 'stream';
/** Room for everything a test queues: the writes are not awaited, and the peer reads late. */
const SLOW_PEER: ServeOptions = { maxWriteBuffer: 64 * 1024 * 1024, maxQueuedBytes: 256 * 1024 * 1024 };

/** Bytes the server's handler has read, with waits for a total (each message is sent once the previous one is read). */
class ReadProgress {
  bytes = 0;
  #waiters: { n: number; resolve: () => void }[] = [];

  add(n: number): void {
    this.bytes += n;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.bytes < w.n) return true;
      w.resolve();
      return false;
    });
  }

  reached(n: number, what: string): Promise<void> {
    if (this.bytes >= n) return Promise.resolve();
    return within(new Promise<void>((resolve) => this.#waiters.push({ n, resolve })), 20_000, what);
  }
}

/** Sends `messages` one at a time, each once the server has read the ones before it: each its own read (or reads). */
async function sendOneByOne(socket: net.Socket, messages: Buffer[], progress: ReadProgress): Promise<void> {
  let sent = 0;
  for (const m of messages) {
    if (!socket.write(m)) await once(socket, 'drain');
    sent += m.length;
    await progress.reached(sent, `the server to read ${sent} bytes`);
  }
}

/** Distinct messages of sizes in [min, max] (all under COPY_LIMIT). */
function messagesOf(count: number, min: number, max: number, seed: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => pseudoRandom(min + ((i * 7919) % (max - min + 1)), seed + i));
}

/** Asserts that `got` is `messages` concatenated, naming the first message that differs. */
function assertMessages(got: Buffer, messages: Buffer[], offset = 0): void {
  const total = messages.reduce((a, m) => a + m.length, 0);
  assert.equal(got.length - offset, total, 'every byte arrived');
  let at = offset;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    assert.ok(got.subarray(at, at + m.length).equals(m), `message ${i} (${m.length} B at ${at}) intact`);
    at += m.length;
  }
}

/** Sends each message and waits for its echo before the next (ping-pong), then checks every byte came back in order. */
async function pingPong(port: number, messages: Buffer[]): Promise<void> {
  const client = await connect(port);
  let expected = 0;
  for (const m of messages) {
    client.write(m);
    expected += m.length;
    await client.receive(expected, 10_000);
  }
  client.end();
  await client.waitClosed(10_000);
  assertMessages(client.received(), messages);
}

/**
 * Records the objects the server's sockets hand to the layer plain TCP output reaches first (the handle's
 * writeBuffer, or on the stream path the socket's write), for sockets with local port `port()`.
 */
function captureWrites(port: () => number): { data: unknown[]; restore(): void } {
  const data: unknown[] = [];
  if (STREAM_PATH) {
    const original = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof original>) {
      if (this.localPort === port()) data.push(args[0]);
      return original.apply(this, args);
    } as typeof original;
    return {
      data,
      restore: () => {
        net.Socket.prototype.write = original;
      },
    };
  }
  type Handle = { getsockname?: (out: { port?: number }) => number };
  type Write = (this: Handle, req: unknown, chunk: unknown) => number;
  const { TCP } = (process as unknown as { binding(name: string): { TCP: { prototype: object } } }).binding('tcp_wrap');
  let proto: object | null = TCP.prototype;
  while (proto !== null && !Object.hasOwn(proto, 'writeBuffer')) proto = Object.getPrototypeOf(proto);
  assert.ok(proto !== null, 'writeBuffer on the TCP handle');
  const methods = proto as Record<string, Write>;
  const original = methods.writeBuffer!;
  methods.writeBuffer = function (this: Handle, req: unknown, chunk: unknown) {
    const out: { port?: number } = {};
    if (this.getsockname?.(out) === 0 && out.port === port()) data.push(chunk);
    return original.call(this, req, chunk);
  };
  return {
    data,
    restore: () => {
      methods.writeBuffer = original;
    },
  };
}

describe('lent chunks written back by reference', () => {
  it('are handed to the socket as they are (no copy), and their buffers still serve the next reads', {
    ...TEST,
    skip: LENDS ? false : 'the stream read path lends nothing',
  }, async () => {
    let port = 0;
    const capture = captureWrites(() => port);
    const lent: Buffer[] = [];
    const made = deferred<number>();
    try {
      await withServer(
        {},
        async (conn) => {
          const before = lentBuffersMade;
          for await (const chunk of conn.chunks({ reuse: true })) {
            lent.push(chunk);
            void conn.write(chunk); // not awaited: the step itself flushes it
          }
          made.resolve(lentBuffersMade - before);
        },
        async (p) => {
          port = p;
          const messages = messagesOf(200, 40, 2000, 10);
          await pingPong(p, messages);
          // One buffer per size class at most, each taken back at every step and reused: none per message.
          const classes = new Set(messages.map((m) => Math.max(64, 2 ** Math.ceil(Math.log2(m.length))))).size;
          const n = await within(made.promise, 5000, 'the handler');
          assert.ok(n <= classes, `${n} lent buffers made for ${messages.length} reads in ${classes} size classes`);
        },
      );
    } finally {
      capture.restore();
    }
    assert.ok(lent.length >= 200, `${lent.length} chunks`);
    // One write a reply, each the lent chunk object itself: written by reference, not copied.
    assert.equal(capture.data.length, lent.length, 'one write per chunk');
    for (let i = 0; i < lent.length; i++) assert.equal(capture.data[i], lent[i], `write ${i} is the lent chunk itself`);
  });

  for (const [name, tls] of [
    ['plain TCP', false],
    ['TLS', true],
  ] as const) {
    it(
      `echo many small chunks intact and in order to a peer that stops reading (${name}: writes go partial, then queue)`,
      TEST,
      async () => {
        // About 6 MB in reads under 4 KiB: more than the kernel buffers of a peer that reads nothing hold, so
        // the server's writes go partial, then queue, while the handler keeps stepping.
        const messages = messagesOf(3000, 1, 4000, 100);
        const progress = new ReadProgress();
        let sawQueued = false;
        const c = certs();
        const server = await serve(
          { ...LOOPBACK, ...SLOW_PEER, ...(tls ? { tls: { key: c.serverKey, cert: c.serverCert } } : {}) },
          async (conn) => {
            for await (const chunk of conn.chunks({ reuse: true })) {
              if (conn.queuedBytes > 0) sawQueued = true;
              void conn.write(chunk);
              progress.add(chunk.length);
            }
            await conn.end();
          },
        );
        try {
          const s = tls ? await tlsConnect(portOf(server)) : (await connect(portOf(server))).socket;
          s.pause();
          s.removeAllListeners('data');
          await sendOneByOne(s, messages, progress);
          assert.ok(sawQueued, 'the kernel refused output while the handler stepped (the case under test)');
          s.end();
          const all = readAll(s);
          s.resume();
          assertMessages(await within(all, 30_000, 'the echo'), messages);
        } finally {
          await stop(server);
        }
      },
    );
  }

  it(
    'a lent chunk queued behind output the kernel has not taken is copied out at the step, not overwritten',
    TEST,
    async () => {
      // 16 MiB not awaited first: the peer reads nothing, so the kernel is busy with it while every chunk
      // after it is written and stepped past. The chunks share the 1 KiB size class: a buffer reused while
      // a reference to it is queued would show the next message in its place.
      const big = pseudoRandom(16 * 1024 * 1024, 9);
      const messages = messagesOf(300, 520, 1000, 2000);
      const progress = new ReadProgress();
      let queuedAtFirstChunk = -1;
      await withServer(
        SLOW_PEER,
        async (conn) => {
          void conn.write(big);
          const it = conn.chunks({ reuse: true });
          for (let r = await it.next(); !r.done; r = await it.next()) {
            if (queuedAtFirstChunk < 0) queuedAtFirstChunk = conn.queuedBytes;
            void conn.write(r.value);
            progress.add(r.value.length);
          }
          await conn.end();
        },
        async (port) => {
          const client = await connect(port, { read: false });
          await sendOneByOne(client.socket, messages, progress);
          assert.ok(queuedAtFirstChunk > 0, 'the big write was still queued when the chunks came');
          client.end();
          client.socket.resume();
          await client.waitClosed(30_000);
          const got = client.received();
          assert.ok(got.subarray(0, big.length).equals(big), 'the big write intact');
          assertMessages(got, messages, big.length);
        },
      );
    },
  );

  it(
    'a small lent chunk relayed to another connection that queues it is copied out when the source steps',
    TEST,
    async () => {
      const messages = messagesOf(2000, 600, 1000, 7000); // about 1.6 MB to a sink that reads late
      const progress = new ReadProgress();
      const sink = deferred<Conn>();
      const server = await serve({ ...LOOPBACK, ...SLOW_PEER }, async (conn) => {
        const first = await conn.read();
        if (first?.toString() === 'sink') {
          sink.resolve(conn);
          await conn.closed;
          return;
        }
        const to = await sink.promise;
        if (first !== null) {
          void to.write(first);
          progress.add(first.length);
        }
        for await (const chunk of conn.chunks({ reuse: true })) {
          void to.write(chunk);
          progress.add(chunk.length);
        }
        await to.end();
      });
      try {
        const reader = await connect(portOf(server), { read: false });
        reader.write('sink');
        await within(sink.promise, 5000, 'the sink connection');
        const source = await connect(portOf(server));
        await sendOneByOne(source.socket, messages, progress);
        source.end();
        reader.socket.resume();
        const total = messages.reduce((a, m) => a + m.length, 0);
        assertMessages(await reader.receive(total, 30_000), messages);
        reader.destroy();
      } finally {
        await stop(server);
      }
    },
  );

  it(
    'small lent chunks of two sources relayed to one reading sink arrive intact (copied out of its queue at each step)',
    TEST,
    async () => {
      // The sink's writer queues each chunk by reference and flushes at the end of the event-loop
      // iteration; the source steps (and its buffer goes back) before that, and the other source's read in
      // the same iteration takes a buffer of the same class. Without the copy at the step the sink would
      // send that read's bytes in place of the chunk. Each message carries its source, number and length.
      const perSource = 1500;
      const message = (src: number, seq: number): Buffer => {
        const len = 520 + ((seq * 7919 + src * 13) % 480);
        const m = pseudoRandom(len, src * 100_000 + seq);
        m.writeUInt16BE(len, 0);
        m.writeUInt8(src, 2);
        m.writeUInt16BE(seq, 3);
        return m;
      };
      const progress = [new ReadProgress(), new ReadProgress()];
      const sink = deferred<Conn>();
      const server = await serve({ ...LOOPBACK, ...SLOW_PEER }, async (conn) => {
        const first = await conn.read();
        if (first === null) return;
        const hello = first.toString();
        if (hello === 'sink') {
          sink.resolve(conn);
          await conn.closed;
          return;
        }
        const src = Number(hello);
        await conn.write('ok');
        const to = await sink.promise;
        for await (const chunk of conn.chunks({ reuse: true })) {
          void to.write(chunk);
          progress[src]!.add(chunk.length);
        }
      });
      try {
        const reader = await connect(portOf(server));
        reader.write('sink');
        await within(sink.promise, 5000, 'the sink connection');
        const sources = await Promise.all([0, 1].map(() => connect(portOf(server))));
        await Promise.all(
          sources.map(async (c, src) => {
            c.write(String(src));
            await c.receive(2);
            await sendOneByOne(
              c.socket,
              Array.from({ length: perSource }, (_, seq) => message(src, seq)),
              progress[src]!,
            );
          }),
        );
        let total = 0;
        for (let src = 0; src < 2; src++) for (let seq = 0; seq < perSource; seq++) total += message(src, seq).length;
        const got = await reader.receive(total, 30_000);
        assert.equal(got.length, total, 'every byte arrived');
        const next = [0, 0];
        for (let at = 0; at < got.length; ) {
          const len = got.readUInt16BE(at);
          const src = got.readUInt8(at + 2);
          assert.ok(src === 0 || src === 1, `a message header at ${at}`);
          const seq = next[src]!++;
          assert.ok(got.subarray(at, at + len).equals(message(src, seq)), `message ${seq} of source ${src} intact`);
          at += len;
        }
        assert.deepEqual(next, [perSource, perSource]);
        for (const c of sources) c.destroy();
        reader.destroy();
      } finally {
        await stop(server);
      }
    },
  );

  for (const peer of ['a reading peer', 'a peer that reads late'] as const) {
    it(`keeps the order of lent chunks, own buffers and strings written together (${peer})`, TEST, async () => {
      const slow = peer === 'a peer that reads late';
      const own = pseudoRandom(5000, 1);
      const large = pseudoRandom(20_000, 2);
      const messages = messagesOf(400, 300, 1000, 300);
      // What each chunk is answered with, by its index: lent first into an empty queue, then an own small
      // buffer (the lent chunk moves into the append buffer); lent then a larger own buffer (it stays the
      // first piece, coalesced); a string, lent, then more than COALESCE_LIMIT (writev); lent then more
      // than COALESCE_LIMIT (writev from the lent buffer itself, in flight when the peer reads late).
      const answer = (chunk: Buffer, i: number): (Buffer | string)[] => {
        switch (i % 4) {
          case 0:
            return [chunk, Buffer.from(`|${i}|`), chunk];
          case 1:
            return [chunk, own, `<${i}>`];
          case 2:
            return [`[${i}]`, chunk, large];
          default:
            return [chunk, large];
        }
      };
      const expected = Buffer.concat(
        messages.flatMap((m, i) => answer(m, i).map((p) => (typeof p === 'string' ? Buffer.from(p) : p))),
      );
      const progress = new ReadProgress();
      await withServer(
        SLOW_PEER,
        async (conn) => {
          let i = 0;
          for await (const chunk of conn.chunks({ reuse: true })) {
            // Each message is one read (sent once the one before it was read), unless the kernel split it.
            assert.ok(chunk.length === messages[i]!.length, `read ${i} is message ${i}`);
            for (const piece of answer(chunk, i)) void conn.write(piece);
            progress.add(chunk.length);
            i++;
          }
          await conn.end();
        },
        async (port) => {
          const client = await connect(port, { read: !slow });
          await sendOneByOne(client.socket, messages, progress);
          client.end();
          if (slow) client.socket.resume();
          await client.waitClosed(30_000);
          const got = client.received();
          assert.equal(got.length, expected.length, 'every byte arrived');
          assert.ok(got.equals(expected), 'in the order written');
        },
      );
    });
  }

  it(
    'refuses writes after destroy, with a lent chunk queued and more output in flight, and the buffers stay sound',
    TEST,
    async () => {
      const progress = new ReadProgress();
      const result = deferred<{ write: unknown; step: unknown }>();
      await withConn(
        SLOW_PEER,
        async (conn) => {
          void conn.write(pseudoRandom(16 * 1024 * 1024, 4)); // in flight: the peer reads nothing
          const it = conn.chunks({ reuse: true });
          const r = await it.next();
          assert.equal(r.done, false);
          const queued = conn.write(r.value); // queued behind the big write, by reference
          progress.add(r.value.length);
          conn.destroy();
          const write = await conn.write(r.value).then(
            () => 'resolved',
            (e: unknown) => codeOf(e),
          );
          const step = await it.next().then(
            (s) => (s.done ? 'done' : 'a chunk'),
            (e: unknown) => codeOf(e),
          );
          // The queued write was accepted (it resolved at once, as a small write); destroy dropped it.
          await queued;
          result.resolve({ write, step });
        },
        async (port, outcome) => {
          const client = await connect(port, { read: false });
          await sendOneByOne(client.socket, [pseudoRandom(700, 5)], progress);
          const { write, step } = await within(result.promise, 10_000, 'the handler');
          assert.equal(write, 'ERR_CONNECTION_CLOSED', 'a write after destroy rejects');
          assert.ok(step === 'ERR_CONNECTION_CLOSED' || step === 'done', `the next step ends (${String(step)})`);
          client.socket.resume();
          await client.waitClosed(10_000);
          assert.equal((await outcome).error, undefined, 'the handler ended without an error of its own');
        },
      );
      // Buffers given back by the destroyed connection serve the next one's reads soundly.
      await withServer(
        {},
        async (conn) => {
          for await (const chunk of conn.chunks({ reuse: true })) void conn.write(chunk);
        },
        async (port) => {
          await pingPong(port, messagesOf(100, 520, 1000, 50));
        },
      );
    },
  );

  if (!STREAM_PATH) {
    it('passes the same tests on the stream write path (TCPKIT_WRITE_PATH=stream)', { timeout: 300_000 }, async () => {
      await runOnFallback({ TCPKIT_WRITE_PATH: 'stream' }, ['test/lent-writes.test.ts']);
    });
  }
});
