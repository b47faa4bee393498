// `tcpkit bench --processes N`: the connections are opened by N child processes, each binding its own
// source addresses, and their results are merged into one report. The server is a plain node:net echo
// in this process that records who connected and how many bytes each connection echoed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { resolveBenchOptions } from '../src/loadgen/options.js';
import type { BenchResult } from '../src/loadgen/result.js';
import { splitConfig } from '../src/loadgen/runner.js';

const run = promisify(execFile);
const cli = new URL('../src/main.ts', import.meta.url).pathname;

describe('splitConfig with processes', () => {
  it('gives each process its share of the connections and its own source addresses', () => {
    const options = resolveBenchOptions({ connections: 10, processes: 3, sourceAddresses: ['a', 'b', 'c', 'd'] });
    const configs = splitConfig(options);
    assert.deepEqual(
      configs.map((c) => [c.connections, c.firstConnection, c.sourceAddresses]),
      [
        [4, 0, ['a', 'd']],
        [3, 4, ['b']],
        [3, 7, ['c']],
      ],
    );
  });

  it('shares the addresses when there are fewer than processes, and refuses processes with workers', () => {
    const configs = splitConfig(resolveBenchOptions({ connections: 4, processes: 2, sourceAddresses: ['a'] }));
    assert.deepEqual(
      configs.map((c) => c.sourceAddresses),
      [['a'], ['a']],
    );
    assert.throws(() => resolveBenchOptions({ processes: 2, workers: 2 }), /workers or processes, not both/);
  });
});

describe('tcpkit bench --mode idle --processes 3', () => {
  const closed: { address: string; bytes: number }[] = [];
  let server: net.Server;
  let port: number;

  before(async () => {
    server = net.createServer((socket) => {
      let bytes = 0;
      const address = socket.remoteAddress ?? '';
      socket.on('data', (chunk) => {
        bytes += chunk.length;
        socket.write(chunk);
      });
      socket.on('error', () => {});
      socket.on('close', () => closed.push({ address, bytes }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => server.close());

  it('opens 150 connections from 3 processes and 3 source addresses; every one echoes on opening and before closing', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        cli,
        'bench',
        '--port',
        String(port),
        '--json',
        '--quiet',
        '--mode',
        'idle',
        '--connections',
        '150',
        '--processes',
        '3',
        '--source-addresses',
        '127.0.0.1-127.0.0.3',
        '--duration',
        '500ms',
        '--warmup',
        '0',
      ],
      { timeout: 60_000 },
    );
    const result = JSON.parse(stdout) as BenchResult;
    assert.equal(result.errorsTotal, 0, JSON.stringify(result.errors));
    assert.deepEqual(
      { established: result.connections.established, failed: result.connections.failed },
      { established: 150, failed: 0 },
      'merged counts',
    );
    assert.equal(result.messages, 150, 'one echo per connection before it closed, summed over the processes');
    assert.equal(typeof result.connections.openMs, 'number');
    const pids = new Set(result.generators.map((g) => g.pid));
    assert.equal(pids.size, 3, 'three processes');
    assert.ok(!pids.has(process.pid));
    assert.deepEqual(
      result.generators.map((g) => g.established),
      [50, 50, 50],
    );
    // The server's view, once every socket has closed.
    const deadline = performance.now() + 30_000;
    while (closed.length < 150 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const byAddress = new Map<string, number>();
    for (const c of closed) byAddress.set(c.address, (byAddress.get(c.address) ?? 0) + 1);
    assert.deepEqual(
      [...byAddress.entries()].sort(),
      [
        ['127.0.0.1', 50],
        ['127.0.0.2', 50],
        ['127.0.0.3', 50],
      ],
      'each process bound its own source address',
    );
    assert.ok(
      closed.every((c) => c.bytes === 2 * 64),
      'every connection sent one message on opening and one before closing',
    );
  });
});
