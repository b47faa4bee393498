// Conn#frameBatches and the fast paths of frame decoding (src/conn-reader.ts): frames already
// received are delivered without waiting, in order, whatever the chunking; errors and the end of
// stream arrive after the frames before them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { lines } from '../src/framing/index.js';
import type { Conn } from '../src/index.js';
import { codeOf, connect, deferred, exchange, until, withConn, withServer } from './helpers.js';

const TEST = { timeout: 30_000 };

/** Waits until the server has read `n` bytes of this connection from the kernel (they are buffered, unread). */
function received(conn: Conn, n: number): Promise<void> {
  return until(() => conn.bytesRead >= n, `${n} bytes read by the server`, 10_000);
}

describe('Conn#frameBatches', () => {
  it('yields every frame already received as one batch, in order', TEST, async () => {
    const input = 'a\nb\nc\nd\n';
    await withConn(
      {},
      async (conn) => {
        await received(conn, input.length);
        const batches: string[][] = [];
        for await (const batch of conn.frameBatches(lines())) batches.push(batch);
        return batches;
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.end(input);
        await client.waitClosed();
        assert.deepEqual((await outcome).value, [['a', 'b', 'c', 'd']]);
      },
    );
  });

  it('delivers all frames received before the FIN in the first batch, then ends', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const batches: string[][] = [];
        for await (const batch of conn.frameBatches(lines())) batches.push(batch);
        return batches;
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.end('one\ntwo\nthree\nfour');
        await client.waitClosed();
        const { value, error } = await outcome;
        assert.equal(error, undefined);
        assert.deepEqual(value!.flat(), ['one', 'two', 'three', 'four']);
        for (const batch of value!) assert.ok(batch.length > 0, 'no batch is empty');
      },
    );
  });

  it(
    'delivers the frames before a decoder error, then rejects with the typed error; other connections go on',
    TEST,
    async () => {
      const input = `ok1\nok2\nok3\n${'x'.repeat(40)}\nnever\n`;
      let connections = 0;
      const failed = deferred<{ error: unknown; seen: string[][] }>();
      await withServer(
        {},
        async (conn) => {
          const first = ++connections === 1;
          if (first) await received(conn, input.length);
          const seen: string[][] = [];
          try {
            for await (const batch of conn.frameBatches(lines({ maxLength: 16 }))) {
              seen.push(batch);
              await conn.write(`${batch.join(',')}\n`);
            }
          } catch (error) {
            if (first) failed.resolve({ error, seen });
            throw error;
          }
        },
        async (port) => {
          const client = await connect(port);
          client.write(input);
          const { error, seen } = await failed.promise;
          assert.equal(codeOf(error), 'ERR_FRAME_TOO_LARGE');
          assert.deepEqual(seen, [['ok1', 'ok2', 'ok3']], 'the good frames first, as one batch');
          await client.waitClosed(10_000);
          assert.equal(client.received().toString(), 'ok1,ok2,ok3\n', 'their reply was sent before the close');
          const other = await exchange(port, 'x\ny\n');
          assert.equal(other.toString().replace(',', '\n'), 'x\ny\n', 'another connection is served');
        },
      );
    },
  );

  it('keeps a batch bounded by maxReadBuffer while the peer sends far more (backpressure)', TEST, async () => {
    const maxReadBuffer = 16 * 1024;
    const line = `${'y'.repeat(99)}\n`;
    const count = 20_000; // 2 MB
    await withConn(
      { maxReadBuffer, idleTimeout: 0 },
      async (conn) => {
        let frames = 0;
        let largest = 0;
        let delivered = 0;
        let mostAhead = 0;
        for await (const batch of conn.frameBatches(lines({ encoding: 'latin1' }))) {
          frames += batch.length;
          largest = Math.max(largest, batch.length * line.length);
          delivered += batch.length * line.length;
          mostAhead = Math.max(mostAhead, conn.bytesRead - delivered);
          // A slow handler: the peer keeps sending meanwhile.
          await new Promise((r) => setImmediate(r));
        }
        await conn.write(String(frames));
        return { largest, mostAhead };
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.end(line.repeat(count));
        await client.waitClosed(20_000);
        assert.equal(client.received().toString(), String(count), 'every frame delivered');
        const { value } = await outcome;
        // Socket reads (up to 64 KiB each) may land on top of a full buffer before reading pauses.
        const bound = maxReadBuffer + 256 * 1024;
        assert.ok(value!.largest <= bound, `a batch of ${value!.largest} bytes`);
        assert.ok(value!.mostAhead <= bound, `${value!.mostAhead} bytes read ahead of the handler`);
      },
    );
  });

  it('delivers any chunking of the input as the same frames, in order (property)', TEST, async () => {
    let expected: string[] = [];
    let got: Promise<string[]> = Promise.resolve([]);
    let handlerDone: (v: string[]) => void = () => {};
    await withServer(
      {},
      async (conn) => {
        const frames: string[] = [];
        for await (const batch of conn.frameBatches(lines())) frames.push(...batch);
        handlerDone(frames);
      },
      async (port) => {
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.string({ unit: fc.constantFrom('a', 'b', 'é', ' '), maxLength: 20 }), {
              minLength: 1,
              maxLength: 40,
            }),
            fc.array(fc.nat({ max: 400 }), { maxLength: 10 }),
            async (frames, cuts) => {
              expected = frames;
              got = new Promise((resolve) => {
                handlerDone = resolve;
              });
              const bytes = Buffer.from(frames.map((f) => `${f}\n`).join(''));
              const points = [...new Set(cuts.map((c) => c % bytes.length))].sort((a, b) => a - b);
              const client = await connect(port);
              let at = 0;
              for (const p of [...points, bytes.length]) {
                if (p <= at) continue;
                client.write(bytes.subarray(at, p));
                at = p;
                await new Promise((r) => setImmediate(r));
              }
              client.end();
              assert.deepEqual(await got, expected);
              await client.waitClosed();
            },
          ),
          { numRuns: 40 },
        );
      },
    );
  });
});

describe('Conn#frames (frames already received)', () => {
  it('answers many frames of one read in order while awaiting writes that wait for the kernel', TEST, async () => {
    const count = 50;
    const input = Array.from({ length: count }, (_, i) => `${i}\n`).join('');
    await withConn(
      { idleTimeout: 0 },
      async (conn) => {
        await received(conn, input.length);
        for await (const line of conn.frames(lines())) {
          // A reply above the copy limit resolves only once the kernel took it: a real wait between frames.
          await conn.write(`${line}:${'z'.repeat(8 * 1024)}\n`);
        }
      },
      async (port) => {
        const client = await connect(port);
        client.write(input);
        await until(() => client.receivedLength > 0, 'the first reply');
        client.end();
        await client.waitClosed(20_000);
        const replies = client
          .received()
          .toString()
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => l.split(':')[0]);
        assert.deepEqual(
          replies,
          Array.from({ length: count }, (_, i) => String(i)),
        );
      },
    );
  });

  it('delivers the good frames before a decoder error, then rejects with it', TEST, async () => {
    const got: string[] = [];
    await withConn(
      {},
      async (conn) => {
        for await (const line of conn.frames(lines({ maxLength: 8 }))) got.push(line);
      },
      async (port, outcome) => {
        await exchange(port, `a\nb\nc\n${'w'.repeat(20)}\nnever\n`);
        assert.equal(codeOf((await outcome).error), 'ERR_FRAME_TOO_LARGE');
        assert.deepEqual(got, ['a', 'b', 'c']);
      },
    );
  });
});
