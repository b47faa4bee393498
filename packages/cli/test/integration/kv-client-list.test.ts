/**
 * kv's CLIENT INFO / CLIENT LIST against the real thing: the fields keep the order of a real Redis 7
 * server's CLIENT LIST (redis-server started here), redis-cli reads them, and `fd=` is the socket's own
 * descriptor in the serving process (checked through /proc: the descriptor is a socket whose inode is the
 * TCP connection from the client's port), over plain TCP and over TLS.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { serve } from 'tcpkit';
import { certs } from '../../../tcpkit/test/fixtures/certs.js';
import { within } from '../../../tcpkit/test/helpers.js';
import { createApp } from '../../src/apps/kv/index.js';
import { encodeCommand, needs, type Running, startKv, startRedis } from './kv-helpers.js';

const run = promisify(execFile);
const TEST = { timeout: 60_000 };
const linux = process.platform === 'linux' ? false : '/proc is Linux only';

/** The keys of a CLIENT LIST line, in order, and its fields. */
function fieldsOf(line: string): { keys: string[]; fields: Map<string, string> } {
  const pairs = line
    .trim()
    .split(' ')
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as [string, string]);
  return { keys: pairs.map(([k]) => k), fields: new Map(pairs) };
}

/** Sends CLIENT INFO on an open connection and resolves with the bulk string's line. */
async function clientInfo(socket: net.Socket): Promise<string> {
  let got = '';
  const reply = new Promise<string>((resolve) => {
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      const m = /^\$(\d+)\r\n/.exec(got);
      if (m && got.length >= m[0].length + Number(m[1]) + 2) {
        socket.off('data', onData);
        resolve(got.slice(m[0].length, m[0].length + Number(m[1])));
      }
    };
    socket.on('data', onData);
  });
  socket.write(encodeCommand(['CLIENT', 'INFO']));
  return within(reply, 10_000, 'the CLIENT INFO reply');
}

/** The inode of the TCP socket from `remotePort` to local port `localPort` in /proc/net/tcp, or undefined. */
function tcpInode(localPort: number, remotePort: number): string | undefined {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  for (const row of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const cols = row.trim().split(/\s+/);
    if (cols.length < 10) continue;
    if (cols[1]!.endsWith(`:${hex(localPort)}`) && cols[2]!.endsWith(`:${hex(remotePort)}`)) return cols[9];
  }
  return undefined;
}

/** Asserts that `fd` in this (serving) process is the socket of the connection from `clientPort` to `serverPort`. */
function assertSocketFd(fd: number, serverPort: number, clientPort: number): void {
  assert.ok(Number.isInteger(fd) && fd >= 0, `fd=${fd}`);
  const link = readlinkSync(`/proc/self/fd/${fd}`);
  const inode = tcpInode(serverPort, clientPort);
  assert.ok(inode !== undefined, `the connection ${clientPort} -> ${serverPort} in /proc/net/tcp`);
  assert.equal(link, `socket:[${inode}]`, `fd ${fd} is that connection's socket`);
}

describe('kv CLIENT INFO / CLIENT LIST: Redis 7 order, a real fd', {
  skip: needs('redis-server') || needs('redis-cli'),
}, () => {
  let kv: Running;
  let redisKeys: string[] = [];
  before(async () => {
    kv = await startKv();
    const redis = await startRedis();
    try {
      const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'CLIENT', 'LIST']);
      redisKeys = fieldsOf(stdout.trim().split('\n')[0]!).keys;
    } finally {
      await redis.close();
    }
  });
  after(async () => {
    await kv?.close();
  });

  test('the fields are those of redis-server 7 CLIENT LIST, in its order, fd after laddr', TEST, async () => {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(kv.port), 'CLIENT', 'LIST']);
    const { keys, fields } = fieldsOf(stdout.trim());
    assert.deepEqual(keys.slice(0, 5), ['id', 'addr', 'laddr', 'fd', 'name']);
    // Every field kv prints is one Redis prints, and they come in Redis's order.
    const positions = keys.map((k) => redisKeys.indexOf(k));
    assert.ok(!positions.includes(-1), `fields Redis does not have: ${keys.filter((k) => !redisKeys.includes(k))}`);
    assert.deepEqual(
      positions,
      [...positions].sort((a, b) => a - b),
      `kv ${keys.join(' ')} in Redis's order ${redisKeys.join(' ')}`,
    );
    assert.match(fields.get('fd')!, /^\d+$/);
    assert.equal(fields.get('cmd'), 'client|list');
  });

  test('fd= is the socket of that connection, over plain TCP', { ...TEST, skip: linux }, async () => {
    const socket = net.connect({ host: '127.0.0.1', port: kv.port });
    await within(once(socket, 'connect'), 10_000, 'connect');
    try {
      const { fields } = fieldsOf(await clientInfo(socket));
      assert.equal(fields.get('addr'), `127.0.0.1:${socket.localPort}`);
      assertSocketFd(Number(fields.get('fd')), kv.port, socket.localPort!);
    } finally {
      socket.destroy();
    }
  });

  test('over IPv6, addr and laddr are [ip]:port, as redis-server 7 prints them', TEST, async () => {
    const redis = await startRedis('--bind', '::1');
    const app = createApp();
    const server = await serve({ host: '::1', port: 0 }, app.handler);
    const kvPort = (server.address as { port: number }).port;
    try {
      for (const [who, port] of [
        ['redis-server', redis.port],
        ['kv', kvPort],
      ] as const) {
        const socket = net.connect({ host: '::1', port });
        await within(once(socket, 'connect'), 10_000, `connect to ${who}`);
        try {
          const { fields } = fieldsOf(await clientInfo(socket));
          assert.deepEqual(
            [fields.get('addr'), fields.get('laddr')],
            [`[::1]:${socket.localPort}`, `[::1]:${port}`],
            who,
          );
        } finally {
          socket.destroy();
        }
      }
    } finally {
      await redis.close();
      await server.shutdown({ timeout: 2000 });
      app.close();
    }
  });

  test('fd= is the TCP socket under the TLS session', { ...TEST, skip: linux }, async () => {
    const c = certs();
    const app = createApp();
    const server = await serve(
      { host: '127.0.0.1', port: 0, tls: { key: c.serverKey, cert: c.serverCert } },
      app.handler,
    );
    const port = (server.address as { port: number }).port;
    const socket = tls.connect({ host: '127.0.0.1', port, ca: c.ca, servername: 'localhost' });
    try {
      await within(once(socket, 'secureConnect'), 10_000, 'the TLS handshake');
      const { fields } = fieldsOf(await clientInfo(socket));
      assertSocketFd(Number(fields.get('fd')), port, socket.localPort!);
    } finally {
      socket.destroy();
      await server.shutdown({ timeout: 2000 });
      app.close();
    }
  });
});
