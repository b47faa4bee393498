// Conn's read path (src/conn-reader.ts): read, readExactly, for await, frames.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixed, lines } from '../src/framing/index.js';
import { ConnectionClosedError } from '../src/index.js';
import { codeOf, connect, deferred, exchange, pseudoRandom, withConn, within } from './helpers.js';

const TEST = { timeout: 20_000 };

describe('Conn#read', () => {
  it(
    'keeps every chunk it returned intact while later reads arrive (reads of 4 KiB and more share a slab)',
    TEST,
    async () => {
      // Sizes around the slab's bounds (4 KiB to 16 KiB carved out of one 64 KiB slab, larger ones on
      // their own), each message answered before the next is sent so that each is a read of its own.
      const sizes = [4096, 4097, 5000, 16_384, 16_385, 4096, 30_000, 8191, 4096, 12_288, 4096, 4096, 4096];
      const messages = sizes.map((size, i) => pseudoRandom(size, i + 1));
      await withConn(
        {},
        async (conn) => {
          const kept: Buffer[] = [];
          for (const message of messages) {
            let got = 0;
            while (got < message.length) {
              const chunk = (await conn.read())!;
              kept.push(chunk);
              got += chunk.length;
            }
            await conn.write('.');
          }
          return Buffer.concat(kept);
        },
        async (port, outcome) => {
          const client = await connect(port);
          for (let i = 0; i < messages.length; i++) {
            client.write(messages[i]!);
            await client.receive(i + 1);
          }
          client.end();
          const { value } = await outcome;
          assert.ok(value!.equals(Buffer.concat(messages)), 'the kept chunks hold the bytes sent');
        },
      );
    },
  );

  it('returns the chunks sent, then null at the peer FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const chunks: Buffer[] = [];
        for (let c = await conn.read(); c !== null; c = await conn.read()) chunks.push(c);
        await conn.write(`${Buffer.concat(chunks).toString()}|${String(await conn.read())}`);
        return chunks.length;
      },
      async (port) => {
        const reply = await exchange(port, 'hello world');
        assert.equal(reply.toString(), 'hello world|null');
      },
    );
  });

  it('rejects with ERR_CONNECTION_CLOSED, the socket error as cause, when the peer resets', TEST, async () => {
    const first = deferred();
    await withConn(
      {},
      async (conn) => {
        await conn.read();
        first.resolve();
        return conn.read();
      },
      async (port, outcome) => {
        const client = await connect(port);
        client.write('a');
        await within(first.promise, 5000, 'the first read');
        client.socket.resetAndDestroy();
        const { error, conn } = await outcome;
        assert.ok(error instanceof ConnectionClosedError);
        assert.equal(codeOf(error), 'ERR_CONNECTION_CLOSED');
        assert.equal(codeOf((error as Error).cause), 'ECONNRESET');
        assert.equal(conn.signal.aborted, true);
        assert.equal(codeOf(conn.signal.reason), 'ERR_CONNECTION_CLOSED');
      },
    );
  });

  it('pauses the socket when the handler does not read: input buffered stays bounded', TEST, async () => {
    const go = deferred();
    const maxReadBuffer = 64 * 1024;
    const total = 8 * 1024 * 1024;
    let bytesBeforeReading = -1;
    await withConn(
      { maxReadBuffer, idleTimeout: 0 },
      async (conn) => {
        await go.promise;
        bytesBeforeReading = conn.bytesRead;
        let n = 0;
        for await (const chunk of conn) n += chunk.length;
        await conn.write(String(n));
        return n;
      },
      async (port) => {
        const client = await connect(port);
        client.end(pseudoRandom(total, 1));
        // Give the server time to buffer as much as it would: there is no event for "did not read".
        await new Promise((r) => setTimeout(r, 300));
        go.resolve();
        await client.waitClosed(10_000);
        assert.equal(client.received().toString(), String(total), 'every byte is delivered once reading starts');
        assert.ok(bytesBeforeReading >= 0);
        assert.ok(
          bytesBeforeReading <= maxReadBuffer + 256 * 1024,
          `read ${bytesBeforeReading} bytes from the kernel while the handler was not reading`,
        );
      },
    );
  });
});

describe('Conn#readExactly', () => {
  it('assembles exactly n bytes across chunks', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const a = await conn.readExactly(3);
        const b = await conn.readExactly(7);
        const c = await conn.readExactly(0);
        await conn.write(`${a}|${b}|${c.length}`);
      },
      async (port) => {
        const client = await connect(port);
        for (const piece of ['ab', 'cdefg', 'hij']) {
          client.write(piece);
          await new Promise((r) => setImmediate(r));
        }
        client.end();
        await client.waitClosed();
        assert.equal(client.received().toString(), 'abc|defghij|0');
      },
    );
  });

  it('reads far more than maxReadBuffer in one call', TEST, async () => {
    const size = 1024 * 1024 + 3;
    await withConn(
      { maxReadBuffer: 16 * 1024 },
      async (conn) => {
        const head = await conn.readExactly(size);
        const tail = await conn.readExactly(5);
        return Buffer.concat([head, tail]);
      },
      async (port, outcome) => {
        const data = pseudoRandom(size + 5, 11);
        await exchange(port, data);
        assert.ok((await outcome).value?.equals(data));
      },
    );
  });

  it('rejects with ERR_FRAME_INVALID when the stream ends first', TEST, async () => {
    await withConn(
      {},
      (conn) => conn.readExactly(4),
      async (port, outcome) => {
        await exchange(port, 'abc');
        const { error } = await outcome;
        assert.equal(codeOf(error), 'ERR_FRAME_INVALID');
      },
    );
  });

  it('rejects a negative or fractional n with a RangeError', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const errors = await Promise.allSettled([conn.readExactly(-1), conn.readExactly(1.5)]);
        return errors.map((r) => (r.status === 'rejected' ? (r.reason as Error).name : 'fulfilled'));
      },
      async (port, outcome) => {
        await exchange(port, '');
        assert.deepEqual((await outcome).value, ['RangeError', 'RangeError']);
      },
    );
  });
});

describe('Conn[Symbol.asyncIterator]', () => {
  it('iterates the input chunks until the peer FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const parts: Buffer[] = [];
        for await (const chunk of conn) parts.push(chunk);
        return Buffer.concat(parts);
      },
      async (port, outcome) => {
        const data = pseudoRandom(300_000, 7);
        await exchange(port, data);
        assert.ok((await outcome).value?.equals(data));
      },
    );
  });
});

describe('Conn#frames', () => {
  it('decodes frames from any chunking and ends at the FIN', TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const got: string[] = [];
        for await (const line of conn.frames(lines())) got.push(line);
        return got;
      },
      async (port, outcome) => {
        const client = await connect(port);
        for (const piece of ['one\ntw', 'o\n', '\nthr', 'ee\n']) {
          client.write(piece);
          await new Promise((r) => setImmediate(r));
        }
        client.end();
        await client.waitClosed();
        assert.deepEqual((await outcome).value, ['one', 'two', '', 'three']);
      },
    );
  });

  it("delivers the decoder's last frame at end of stream (lines: an unterminated last line)", TEST, async () => {
    await withConn(
      {},
      async (conn) => {
        const got: string[] = [];
        for await (const line of conn.frames(lines())) got.push(line);
        return got;
      },
      async (port, outcome) => {
        await exchange(port, 'whole\npart');
        assert.deepEqual((await outcome).value, ['whole', 'part']);
      },
    );
  });

  it('rejects with ERR_FRAME_INVALID on a partial frame at end of stream', TEST, async () => {
    const got: Buffer[] = [];
    await withConn(
      {},
      async (conn) => {
        for await (const frame of conn.frames(fixed(4))) got.push(frame);
      },
      async (port, outcome) => {
        await exchange(port, 'abcdef');
        assert.equal(codeOf((await outcome).error), 'ERR_FRAME_INVALID');
        assert.deepEqual(
          got.map((b) => b.toString()),
          ['abcd'],
        );
      },
    );
  });
});
