// Sockets still reading their PROXY header count in the descriptor budget: a flood of connections that
// never send one is shed at accept (counted in acceptErrors) instead of running the process out of
// descriptors, and the budget frees once they go.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeProxyHeader, type ServerStats } from '../../src/index.js';
import { Child, within } from '../helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/emfile-child.ts', import.meta.url));
const FD_LIMIT = 128;
/** Connections beyond the budget: fewer than the 32 descriptors the budget keeps free, so without it none is shed. */
const EXTRA = 20;
const OPTIONS = { proxyProtocol: { trusted: ['127.0.0.1'], timeout: 0 } };
const HEADER = encodeProxyHeader(2, { address: '203.0.113.7', port: 4000 }, { address: '10.0.0.1', port: 7000 });

/** Connects and resolves once connected (or failed: a shed socket may be closed before its connect is seen). */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s));
  });
}

/** Sends `data` after a PROXY header and resolves with the echo. */
async function echoThrough(s: net.Socket, data: string): Promise<string> {
  const reply = once(s, 'data');
  s.write(Buffer.concat([HEADER, Buffer.from(data)]));
  return String((await within(reply, 10_000, 'the echo'))[0]);
}

describe('PROXY stage and the descriptor budget', () => {
  it(`connections without their header are shed past the budget (ulimit -n ${FD_LIMIT}), and it frees when they go`, {
    timeout: 60_000,
  }, async () => {
    const proc = new Child('bash', [
      '-c',
      `ulimit -n ${FD_LIMIT} && exec "${process.execPath}" --import tsx "${CHILD}" '${JSON.stringify(OPTIONS)}'`,
    ]);
    const clients: net.Socket[] = [];
    const stats = async (): Promise<ServerStats> =>
      (await proc.request<{ stats: ServerStats }>('stats', 'stats')).stats;
    /** Bounded poll of the child's stats (a request per step, no fixed sleep). */
    const until = async (check: (s: ServerStats) => boolean, what: string): Promise<ServerStats> => {
      for (let i = 0; i < 500; i++) {
        const s = await stats();
        if (check(s)) return s;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await stats())}`);
    };
    try {
      const { port } = await proc.json<{ port: number }>('port', 30_000);
      const budget = (await stats()).descriptors.budget;
      assert.ok(budget > 0 && budget < FD_LIMIT, `a budget below the limit is known: ${budget}`);

      // Header-less connections: the budget's worth and EXTRA more.
      for (let i = 0; i < budget + EXTRA; i++) clients.push(await connect(port));
      const flooded = await until((s) => s.accepted === budget + EXTRA, 'every connection accepted');
      assert.ok(flooded.acceptErrors >= 1, `connections past the budget are shed: ${JSON.stringify(flooded)}`);
      assert.equal(
        flooded.descriptors.open + flooded.acceptErrors,
        budget + EXTRA,
        'each connection either holds a descriptor (reading its header) or was shed',
      );
      // (The budget is recounted when it trips: descriptors the runtime freed since listen raise it.)
      assert.ok(flooded.descriptors.open <= flooded.descriptors.budget, 'no more sockets held than the budget');
      assert.equal(flooded.served, 0, 'no handler ran: no header came');

      // A header arrives on a held connection: it is served, on the descriptor it already holds.
      const held = clients.find((c) => !c.destroyed && !c.readableEnded)!;
      assert.equal(await echoThrough(held, 'held'), 'held');

      // They go: the budget frees, and a new connection is served.
      for (const c of clients) c.destroy();
      await until((s) => s.descriptors.open === 0, 'every descriptor given back');
      const fresh = await connect(port);
      clients.push(fresh);
      assert.equal(await echoThrough(fresh, 'fresh'), 'fresh');
      const after = await stats();
      assert.equal(after.served, 2);
      assert.equal(after.acceptErrors, flooded.acceptErrors, 'nothing shed once the budget freed');

      await proc.request('exit', 'result', 15_000);
      const exit = await within(proc.exited, 15_000, 'the child to exit');
      assert.deepEqual(exit, { code: 0, signal: null }, proc.stderr);
    } finally {
      for (const c of clients) c.destroy();
      proc.kill();
    }
  });
});
