import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ServerStats } from '../../src/index.js';
import { Child, exchange, within } from '../helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/emfile-child.ts', import.meta.url));
const FLOOD = 1000;
const FD_LIMIT = 256;

/** CPU time (user + system) of a process, in clock ticks (1/100 s on Linux). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
}

/** Opens one flood connection; resolves with the socket once it connected, failed or timed out. */
function floodOne(port: number, i: number): Promise<net.Socket> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: i % 2 === 0 ? '127.0.0.1' : '127.0.0.2' });
    const timer = setTimeout(() => resolve(socket), 5000);
    const done = (): void => {
      clearTimeout(timer);
      resolve(socket);
    };
    socket.on('error', () => {});
    socket.once('connect', done);
    socket.once('close', done);
  });
}

describe('accept errors (EMFILE)', () => {
  let acceptErrors = -1;

  it(`survive a flood of ${FLOOD} connections under ulimit -n ${FD_LIMIT}`, { timeout: 60_000 }, async () => {
    const proc = new Child('bash', [
      '-c',
      `ulimit -n ${FD_LIMIT} && exec "${process.execPath}" --import tsx "${CHILD}"`,
    ]);
    const flood: net.Socket[] = [];
    try {
      const { port } = await proc.json<{ port: number }>('port', 30_000);
      assert.equal((await exchange(port, 'before')).toString(), 'before');

      // Bounded batches so the test itself never opens more than FLOOD sockets.
      for (let i = 0; i < FLOOD; i += 100) {
        const batch = await Promise.all(Array.from({ length: 100 }, (_, k) => floodOne(port, i + k)));
        flood.push(...batch);
      }
      const during = await proc.request<{ stats: ServerStats; acceptErrorCodes: Record<string, number> }>(
        'stats',
        'stats',
      );
      acceptErrors = during.stats.acceptErrors;
      assert.equal(
        Object.keys(during.acceptErrorCodes).every((code) => code === 'EMFILE' || code === 'ENFILE'),
        true,
        `only descriptor exhaustion is reported: ${JSON.stringify(during.acceptErrorCodes)}`,
      );
      assert.ok(during.stats.active < FD_LIMIT, 'no more handlers than descriptors');
      // Whether shed by tcpkit's descriptor budget (counted) or by libuv (silently), the excess never ran.
      assert.ok(during.stats.served < FLOOD, `the child did not serve all ${FLOOD} (${during.stats.served})`);
      // Connections beyond the limit are closed, not left hanging in the accept queue.
      const turnedAway = flood.filter((s) => s.destroyed || s.readableEnded).length;
      assert.ok(turnedAway > 0, 'some flood connections were closed by the child');

      // The listener does not spin while the flood holds every descriptor.
      const pid = proc.process.pid!;
      const before = cpuTicks(pid);
      await new Promise((r) => setTimeout(r, 1000));
      const used = cpuTicks(pid) - before;
      assert.ok(used < 50, `the child used ${used} ticks of CPU in 1 s while flooded`);

      for (const s of flood) s.destroy();
      // Once descriptors free up, a fresh client is served (the child may need a moment to close them).
      let reply = '';
      for (let attempt = 0; attempt < 50 && reply !== 'fresh'; attempt++) {
        reply = (await exchange(port, 'fresh').catch(() => Buffer.alloc(0))).toString();
        if (reply !== 'fresh') await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(reply, 'fresh', 'a fresh client is served after the flood');

      const after = await proc.request<{ stats: ServerStats }>('stats', 'stats');
      assert.ok(after.stats.served > 2);
      await proc.request('exit', 'result', 15_000);
      const exit = await within(proc.exited, 15_000, 'the child to exit');
      assert.deepEqual(exit, { code: 0, signal: null }, proc.stderr);
    } finally {
      for (const s of flood) s.destroy();
      proc.kill();
    }
  });

  // libuv's own EMFILE handling (uv__emfile_trick) sheds connections without telling Node, so
  // tcpkit keeps a descriptor budget and sheds, counts and publishes them itself before that point.
  it('counts the connections shed for want of descriptors in stats().acceptErrors', () => {
    assert.ok(acceptErrors > 0, `acceptErrors is ${acceptErrors}`);
  });
});
