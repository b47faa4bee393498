/** Oversized and malformed requests: `-ERR Protocol error: ...`, then the server closes, without buffering the excess. */
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Conn } from 'tcpkit';
import { encodeCommand, exchange, type Running, startKv } from './kv-helpers.js';

describe('kv limits', () => {
  let kv: Running;
  let small: Running;
  before(async () => {
    [kv, small] = await Promise.all([startKv(), startKv({ maxBulkLength: 1024 })]);
  });
  after(async () => {
    await Promise.all([kv?.close(), small?.close()]);
  });

  test('a bulk longer than 512 MiB is refused from its header while the body is still coming', async () => {
    const socket = net.connect(kv.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {}); // writes racing the close may fail; the reply is what counts
    await once(socket, 'connect');
    socket.write('*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n');
    socket.write(Buffer.alloc(256 * 1024, 0x61)); // part of the body: the server must not wait for the rest
    await once(socket, 'close');
    assert.equal(Buffer.concat(chunks).toString(), '+PONG\r\n-ERR Protocol error: invalid bulk length\r\n');
  });

  test('maxBulkLength is configurable', async () => {
    const ok = await exchange(
      small.port,
      Buffer.concat([encodeCommand(['SET', 'k', 'x'.repeat(1024)]), encodeCommand(['QUIT'])]),
    );
    assert.equal(ok.toString(), '+OK\r\n+OK\r\n');
    const refused = await exchange(small.port, encodeCommand(['SET', 'k', 'x'.repeat(1025)]));
    assert.equal(refused.toString(), '-ERR Protocol error: invalid bulk length\r\n');
  });

  test('an inline request longer than 64 KiB', async () => {
    const reply = await exchange(kv.port, `SET k ${'x'.repeat(70_000)}`);
    assert.equal(reply.toString(), '-ERR Protocol error: too big inline request\r\n');
  });

  test('a multibulk count header longer than 64 KiB', async () => {
    const reply = await exchange(kv.port, `*${'1'.repeat(70_000)}`);
    assert.equal(reply.toString(), '-ERR Protocol error: too big mbulk count string\r\n');
  });

  test('more than 1048576 arguments', async () => {
    const reply = await exchange(kv.port, '*1048577\r\n');
    assert.equal(reply.toString(), '-ERR Protocol error: invalid multibulk length\r\n');
  });

  test('a large value split across many small writes is reassembled', async () => {
    const value = Buffer.alloc(512 * 1024, 0x62);
    const bytes = Buffer.concat([
      encodeCommand(['SET', 'big', value]),
      encodeCommand(['STRLEN', 'big']),
      encodeCommand(['QUIT']),
    ]);
    const socket = net.connect(kv.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    await once(socket, 'connect');
    for (let i = 0; i < bytes.length; i += 1000) socket.write(bytes.subarray(i, i + 1000));
    await once(socket, 'close');
    assert.equal(Buffer.concat(chunks).toString(), '+OK\r\n:524288\r\n+OK\r\n');
  });

  test('a connection cut mid-request is dropped quietly, not counted as an error', async () => {
    const errorsBefore = kv.server.stats().errors;
    const socket = net.connect(kv.port, '127.0.0.1');
    await once(socket, 'connect');
    const localPort = socket.localPort;
    // The server publishes tcpkit:connection:close once the handler has settled and the socket closed.
    const closed = new Promise<void>((resolve) => {
      const onClose = (message: unknown): void => {
        if ((message as { conn: Conn }).conn.remotePort !== localPort) return;
        diagnostics_channel.unsubscribe('tcpkit:connection:close', onClose);
        resolve();
      };
      diagnostics_channel.subscribe('tcpkit:connection:close', onClose);
    });
    socket.end('*2\r\n$3\r\nGET\r\n$10\r\nabc');
    await closed;
    assert.equal(kv.server.stats().errors, errorsBefore);
  });
});
