// `tcpkit serve ./module.js`: the user's handler in real worker processes, its exported options under
// the flags, SIGHUP restarts, SIGTERM drains, and a module without a handler refused.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, type Client, connect, within } from '../../tcpkit/test/helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const children: Child[] = [];
after(() => {
  for (const c of children) c.kill();
});

function tcpkit(...args: string[]): Child {
  const child = new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
  children.push(child);
  return child;
}

async function listeningPort(proc: Child, from = 0): Promise<number> {
  const line = await proc.line(
    (l) => l.includes('"msg":"listening"') && l.includes('"workers"'),
    'the primary listening',
    60_000,
    from,
  );
  return Number(/:(\d+)"/.exec(line)![1]);
}

/** Connects one client and resolves with the pid that greeted it, or null if it was closed unanswered (rejected: full). */
async function greet(port: number): Promise<{ pid: number | null; client: Client }> {
  const client = await connect(port);
  const text = (await Promise.race([client.receiveText('\n', 30_000), client.closed.then(() => '')])).trim();
  return { pid: text === '' ? null : Number(text), client };
}

/**
 * Connects clients one at a time, keeping the greeted ones open, until `want` are greeted, then checks that
 * `extra` more are all turned away (every worker full). One at a time, not all at once: how the workers share
 * a burst (node:cluster's round-robin hands a connection to whichever worker is free first; the kernel spreads
 * by address hash) is not what is under test, and a slow worker on a loaded machine could get none of a burst.
 * Connections a worker rejects while it still has room would show as a count below `want` at the bound.
 */
async function greeted(port: number, want: number, extra = 4): Promise<{ pids: number[]; clients: Client[] }> {
  const pids: number[] = [];
  const clients: Client[] = [];
  for (let attempts = 0; pids.length < want && attempts < 200; attempts++) {
    const { pid, client } = await greet(port);
    clients.push(client);
    if (pid !== null) pids.push(pid);
  }
  for (let i = 0; i < extra; i++) {
    const { pid, client } = await greet(port);
    clients.push(client);
    if (pid !== null) pids.push(pid);
  }
  return { pids, clients };
}

async function stop(proc: Child): Promise<void> {
  proc.signal('SIGTERM');
  assert.deepEqual(await within(proc.exited, 60_000, 'exit'), { code: 0, signal: null });
}

describe('tcpkit serve ./module.js', () => {
  it("--workers 2 serves the module's handler in two workers; its options apply (maxConnections 2 in total)", async () => {
    const proc = tcpkit('serve', fixture('hold-handler.js'), '--port', '0', '--workers', '2');
    const port = await listeningPort(proc);
    const { pids, clients } = await greeted(port, 2);
    assert.equal(pids.length, 2, `maxConnections: 2 from the module, split over 2 workers (${pids})`);
    assert.equal(new Set(pids).size, 2, 'one connection on each worker');
    for (const c of clients) c.destroy();
    await stop(proc);
  });

  it('flags win over the module options; SIGHUP replaces every worker', async () => {
    const proc = tcpkit('serve', fixture('hold-handler.js'), '--port', '0', '--workers', '2', '--max-connections', '4');
    const port = await listeningPort(proc);
    const first = await greeted(port, 4);
    assert.equal(first.pids.length, 4, "--max-connections 4 over the module's 2");
    for (const c of first.clients) c.destroy();
    const from = proc.lines.length;
    proc.signal('SIGHUP');
    await proc.line((l) => l.includes('"msg":"restarted workers"'), 'the restart', 60_000, from);
    const second = await greeted(port, 4);
    assert.equal(second.pids.length, 4);
    for (const pid of second.pids) assert.ok(!first.pids.includes(pid), `pid ${pid} is a new worker`);
    for (const c of second.clients) c.destroy();
    await stop(proc);
  });

  it('loads a TypeScript module through tsx', async () => {
    const proc = tcpkit('serve', fixture('typed-handler.ts'), '--port', '0');
    const line = await proc.line((l) => l.includes('"msg":"listening"'), 'listening', 60_000);
    const port = Number(/:(\d+)"/.exec(line)![1]);
    const client = await connect(port);
    assert.match(await client.receiveText('\n', 30_000), /^typed \d+\n$/);
    await stop(proc);
  });

  it('refuses a module without a default handler export, saying what to export', async () => {
    const proc = tcpkit('serve', fixture('no-handler.js'), '--port', '0');
    const exit = await within(proc.exited, 60_000, 'exit');
    assert.notEqual(exit.code, 0);
    assert.match(proc.stderr, /no-handler\.js exports no handler: export the connection handler as the default export/);
  });
});
