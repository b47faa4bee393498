/** serve({ path }): the same guarantees over a unix socket as over TCP, and the socket file's lifecycle. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type Conn, serve } from '../src/index.js';
import { within } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'tcpkit-unix-'));
let n = 0;
const socketPath = (): string => join(dir, `s${n++}.sock`);
after(() => rmSync(dir, { recursive: true, force: true }));

async function echo(conn: Conn): Promise<void> {
  for await (const chunk of conn) await conn.write(chunk);
}

/** Connects to `path`, sends `data`, ends, and resolves with everything received until the server closes. */
async function exchange(path: string, data: Buffer): Promise<Buffer> {
  const socket = net.connect(path);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await once(socket, 'connect');
  socket.end(data);
  await within(once(socket, 'close'), 20_000, 'the server to close');
  return Buffer.concat(chunks);
}

async function open(path: string): Promise<net.Socket> {
  const socket = net.connect(path);
  await once(socket, 'connect');
  return socket;
}

describe('serve({ path })', () => {
  it('echoes 4 MiB intact and counts the connection as served', async () => {
    const path = socketPath();
    let peer: string | undefined;
    const server = await serve({ path }, async (conn) => {
      peer = conn.remoteAddress;
      await echo(conn);
    });
    try {
      assert.equal(server.address, path);
      const data = randomBytes(4 * 1024 * 1024);
      assert.ok((await exchange(path, data)).equals(data));
      assert.equal(peer, '');
      const s = server.stats();
      assert.deepEqual([s.accepted, s.served, s.errors], [1, 1, 0]);
      assert.equal(
        Object.values(s.rejected).reduce((a, b) => a + b, 0),
        0,
      );
    } finally {
      await server.shutdown({ timeout: 2000 });
    }
  });

  it('applies deadlines: firstByteTimeout cuts a silent peer', async () => {
    const path = socketPath();
    const server = await serve({ path, firstByteTimeout: 200 }, echo);
    try {
      const socket = await open(path);
      socket.resume();
      await within(once(socket, 'close'), 20_000, 'the deadline to close the connection');
      assert.equal(server.stats().timeouts.firstByte, 1);
    } finally {
      await server.shutdown({ timeout: 2000 });
    }
  });

  it('drains at shutdown (FIN to an idle client) and removes the socket file', async () => {
    const path = socketPath();
    const server = await serve({ path }, echo);
    const socket = await open(path);
    socket.write('hi');
    await once(socket, 'data');
    const ended = once(socket, 'end');
    const result = await server.shutdown({ timeout: 10_000 });
    await within(ended, 10_000, 'FIN');
    socket.destroy();
    assert.deepEqual([result.graceful, result.forced], [1, 0]);
    assert.equal(existsSync(path), false);
  });

  it('does not apply the per-peer cap or the blocklist (a unix peer has no address)', async () => {
    const path = socketPath();
    const blockList = new net.BlockList();
    blockList.addSubnet('0.0.0.0', 0, 'ipv4');
    blockList.addSubnet('::', 0, 'ipv6');
    const server = await serve({ path, maxConnectionsPerPeer: 1, blockList }, echo);
    try {
      const [a, b] = await Promise.all([open(path), open(path)]);
      for (const s of [a, b]) s.write('x');
      await Promise.all([once(a, 'data'), once(b, 'data')]);
      assert.equal(server.stats().served, 2);
      a.destroy();
      b.destroy();
    } finally {
      await server.shutdown({ timeout: 2000 });
    }
  });

  it('replaces a stale socket file that a crashed process left', async () => {
    const path = socketPath();
    // A process that listens and dies without closing: its socket file stays, nothing accepts on it.
    const child = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    await once(child, 'exit');
    assert.equal(existsSync(path), true);
    const server = await serve({ path }, echo);
    try {
      assert.equal((await exchange(path, Buffer.from('again'))).toString(), 'again');
    } finally {
      await server.shutdown({ timeout: 2000 });
    }
  });

  it('refuses a socket another process accepts on, saying so, and leaves it alone', async () => {
    const path = socketPath();
    const live = net.createServer((s) => {
      s.on('error', () => {}); // serve()'s probe connects and goes
      s.end('live');
    });
    live.listen(path);
    await once(live, 'listening');
    try {
      await assert.rejects(serve({ path }, echo), {
        code: 'ERR_LISTEN',
        reason: 'EADDRINUSE',
        message: `cannot listen on ${path}: another process is accepting connections on this socket; stop it or choose another path (EADDRINUSE)`,
      });
      assert.equal((await exchange(path, Buffer.alloc(0))).toString(), 'live');
    } finally {
      live.close();
    }
  });

  it('refuses a path that exists and is not a socket', async () => {
    const path = socketPath();
    writeFileSync(path, 'not a socket');
    await assert.rejects(serve({ path }, echo), { code: 'ERR_INVALID_OPTION', option: 'path' });
    assert.equal(existsSync(path), true);
  });
});
