// What accepting into bare libuv handles could break (src/bare-socket.ts): the part of net.Socket it
// stands in for, driven over real loopback sockets: reads, pause and resume, small reads while waiting,
// the peer's FIN, our FIN and the close once both ended, destroy, a reset, addresses and byte counts.
// The Conn, gate, echo and reliability suites run on it by default; integration/accept-path.test.ts
// runs them again on the net.Socket path (TCPKIT_ACCEPT_PATH=socket).
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { acceptBareHandles, type BareSocket } from '../src/bare-socket.js';
import { serve } from '../src/index.js';
import { deferred, LOOPBACK, stop, within } from './helpers.js';

const TEST = { timeout: 60_000 };
const ON = process.env.TCPKIT_ACCEPT_PATH !== 'socket' && process.env.TCPKIT_READ_PATH !== 'stream';
const OPTIONS = { noDelay: true, keepAlive: false, keepAliveDelay: 0 };

/** A listener whose accepted connections come as BareSockets; each is handed to `accepted`. */
async function withBare(accepted: (socket: BareSocket) => void, body: (port: number) => Promise<void>): Promise<void> {
  const listener = net.createServer();
  listener.on('connection', () => assert.fail('a net.Socket was made on the bare path'));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const errors: Error[] = [];
  try {
    const used = acceptBareHandles(
      listener,
      OPTIONS,
      (s) => accepted(s as unknown as BareSocket),
      (e) => errors.push(e),
    );
    assert.equal(used, true, 'the bare path is available on this Node');
    await body((listener.address() as net.AddressInfo).port);
    assert.deepEqual(errors, []);
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
}

function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(c));
    c.once('error', reject);
  });
}

function collect(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => socket.on('end', () => resolve(Buffer.concat(chunks))));
}

describe('bare sockets', { skip: !ON && 'the socket accept path is forced' }, () => {
  it(
    'reads once resumed, knows its peer and counts bytes; end() sends FIN and the peer FIN then closes it',
    TEST,
    async () => {
      const got = deferred<BareSocket>();
      await withBare(got.resolve, async (port) => {
        const client = await dial(port);
        const socket = await within(got.promise, 10_000, 'the accept');
        assert.equal(socket.remoteAddress, '127.0.0.1');
        assert.equal(socket.remotePort, client.localPort);
        assert.equal(socket.localAddress, '127.0.0.1');
        const chunks: Buffer[] = [];
        const ended = deferred();
        const closed = deferred();
        socket.on('data', (c) => chunks.push(c as Buffer));
        socket.on('end', () => ended.resolve());
        socket.on('close', () => closed.resolve());
        const received = collect(client);
        client.write('hello');
        socket.resume();
        const fin = deferred<Error | null | undefined>();
        socket.end((err) => fin.resolve(err));
        assert.equal(await within(fin.promise, 10_000, "our FIN's callback"), null);
        assert.equal((await within(received, 10_000, 'the FIN at the peer')).length, 0);
        assert.equal(socket.destroyed, false, 'half-open: the peer may still send');
        client.end('world');
        await within(ended.promise, 10_000, "the peer's FIN");
        await within(closed.promise, 10_000, 'the close once both directions ended');
        assert.equal(Buffer.concat(chunks).toString(), 'helloworld');
        assert.equal(socket.bytesRead, 10);
        assert.equal(socket.bytesWritten, 0);
      });
    },
  );

  it('reads nothing while paused, and at most 4 KiB a read with small reads on', TEST, async () => {
    const got = deferred<BareSocket>();
    await withBare(got.resolve, async (port) => {
      const client = await dial(port);
      const socket = await within(got.promise, 10_000, 'the accept');
      const sizes: number[] = [];
      let total = 0;
      const all = deferred();
      socket.on('data', (c) => {
        sizes.push((c as Buffer).length);
        total += (c as Buffer).length;
        if (total === 256 * 1024) all.resolve();
      });
      client.write(Buffer.alloc(256 * 1024, 7));
      // Paused from accept: nothing is read until resume.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(sizes, []);
      socket.smallReads(true);
      socket.resume();
      await within(all.promise, 20_000, 'every byte');
      assert.ok(Math.max(...sizes) <= 4096, `reads of at most 4 KiB, got ${Math.max(...sizes)}`);
      socket.destroy();
      client.destroy();
    });
  });

  it(
    'destroy() closes at once (the peer sees the close) and emits close; a peer reset is an error, then close',
    TEST,
    async () => {
      const sockets: BareSocket[] = [];
      const two = deferred();
      await withBare(
        (s) => {
          sockets.push(s);
          if (sockets.length === 2) two.resolve();
        },
        async (port) => {
          const a = await dial(port);
          const b = await dial(port);
          await within(two.promise, 10_000, 'both accepts');
          const [first, second] = sockets as [BareSocket, BareSocket];
          const aClosed = new Promise((resolve) => {
            a.on('end', resolve);
            a.on('error', resolve);
          });
          const firstClosed = deferred();
          first.on('close', () => firstClosed.resolve());
          first.destroy();
          assert.equal(first.destroyed, true);
          await within(firstClosed.promise, 10_000, "the destroyed socket's close");
          await within(aClosed, 10_000, 'the close at the peer');

          const error = deferred<Error>();
          const secondClosed = deferred();
          second.on('error', (e) => error.resolve(e as Error));
          second.on('close', () => secondClosed.resolve());
          second.resume();
          b.resetAndDestroy();
          const reset = (await within(error.promise, 10_000, 'the reset')) as Error & { code?: string };
          assert.equal(reset.code, 'ECONNRESET');
          await within(secondClosed.promise, 10_000, 'the close after the reset');
        },
      );
    },
  );

  it(
    'serve() takes its plain TCP connections as bare handles: its listener emits no connection event',
    TEST,
    async () => {
      let sockets = 0;
      const proto = net.Server.prototype as unknown as { emit(event: string | symbol, ...args: unknown[]): boolean };
      const emit = proto.emit;
      proto.emit = function (this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
        if (event === 'connection') sockets++;
        return emit.call(this, event, ...args);
      };
      try {
        const server = await serve(LOOPBACK, async (conn) => {
          await conn.end(`${conn.remoteAddress}:${conn.remotePort} ${conn.localAddress}:${conn.localPort}`);
        });
        try {
          const port = (server.address as net.AddressInfo).port;
          const client = await dial(port);
          const reply = (await within(collect(client), 10_000, 'the reply')).toString();
          assert.equal(reply, `127.0.0.1:${client.localPort} 127.0.0.1:${port}`);
          assert.equal(sockets, 0, 'no net.Socket made');
        } finally {
          await stop(server);
        }
      } finally {
        proto.emit = emit;
      }
    },
  );
});
