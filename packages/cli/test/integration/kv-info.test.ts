/**
 * kv INFO against a real redis-server: the same sections and fields in Redis's order and format,
 * and counters that move as Redis's do for the same traffic; then what only tcpkit knows
 * (connections it turned away) and redis-cli --stat reading it all.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { serve } from 'tcpkit';
import { createApp } from '../../src/apps/kv/index.js';
import { encodeCommand, exchange, needs, type Running, startKv, useKvAndRedis } from './kv-helpers.js';

type Info = Map<string, Map<string, string>>;

/** INFO's text as sections of fields, in order. */
function parseInfo(text: string): Info {
  const sections: Info = new Map();
  let current: Map<string, string> | undefined;
  for (const line of text.split('\r\n')) {
    if (line.startsWith('# ')) {
      current = new Map();
      sections.set(line.slice(2), current);
    } else if (line !== '') {
      const colon = line.indexOf(':');
      current!.set(line.slice(0, colon), line.slice(colon + 1));
    }
  }
  return sections;
}

/** One connection that sends a command and reads its whole reply (bulk strings, integers, status, errors). */
class Client {
  readonly #socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #waiter: (() => void) | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
      this.#waiter?.();
    });
  }

  static async open(port: number): Promise<Client> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new Client(socket);
  }

  /** Sends one command and returns its reply's raw bytes. */
  async call(...args: string[]): Promise<string> {
    this.#socket.write(encodeCommand(args));
    for (;;) {
      const end = replyEnd(this.#buffer);
      if (end !== -1) {
        const reply = this.#buffer.subarray(0, end).toString('latin1');
        this.#buffer = this.#buffer.subarray(end);
        return reply;
      }
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
    }
  }

  async info(...sections: string[]): Promise<Info> {
    const reply = await this.call('INFO', ...sections);
    return parseInfo(reply.slice(reply.indexOf('\r\n') + 2));
  }

  close(): Promise<void> {
    this.#socket.end();
    return once(this.#socket, 'close').then(() => {});
  }
}

/** Where the reply that starts at `at` ends, or -1 while it is incomplete. */
function replyEnd(buf: Buffer, at = 0): number {
  const line = buf.indexOf('\r\n', at);
  if (line === -1) return -1;
  const type = buf[at];
  const n = Number(buf.toString('latin1', at + 1, line));
  let end = line + 2;
  if (type === 0x24 && n >= 0) {
    end += n + 2; // $: bulk string
  } else if (type === 0x2a) {
    for (let i = 0; i < n && end !== -1; i++) end = replyEnd(buf, end);
  }
  return end !== -1 && buf.length >= end ? end : -1;
}

/** A value's form: digits collapsed and sizes in any unit alike, so `1.02M` and `11.84K` match but `1.02M` and `1048576` do not. */
const shape = (value: string): string => value.replace(/^\d+(\.\d\d)?[BKMGTP]$/, '9.9X').replace(/\d+/g, '9');
/** Fields whose values legitimately differ in form (free text, or another program's identity). */
const FREE_TEXT = new Set(['redis_version', 'run_id', 'executable']);
/** Redis sections kv does not emit: per-command and per-error tables it does not keep. */
const OMITTED = new Set(['Commandstats', 'Errorstats', 'Latencystats']);

/** The fields Redis tools read (redis-cli --stat, exporters, dashboards): kv must always report them. */
const REQUIRED: Record<string, string[]> = {
  Clients: ['connected_clients', 'blocked_clients', 'maxclients'],
  Memory: ['used_memory', 'used_memory_rss', 'used_memory_peak'],
  Stats: [
    'total_connections_received',
    'total_commands_processed',
    'instantaneous_ops_per_sec',
    'total_net_input_bytes',
    'total_net_output_bytes',
    'rejected_connections',
  ],
};

const numberOf = (info: Info, section: string, field: string): number => {
  const value = info.get(section)?.get(field);
  assert.ok(value !== undefined, `${section}.${field} missing`);
  return Number(value);
};

describe('kv INFO against redis-server', { skip: needs('redis-server') }, () => {
  const both = useKvAndRedis();

  for (const args of [
    [],
    ['default'],
    ['all'],
    ['everything'],
    ['server'],
    ['clients', 'STATS'],
    ['memory'],
    ['cpu'],
  ]) {
    test(`INFO ${args.join(' ')}: Redis's sections and fields, in Redis's order and format`, async () => {
      const [expected, actual] = await Promise.all(
        [both.redis.port, both.kv.port].map(async (port) => {
          const client = await Client.open(port);
          const info = await client.info(...args);
          await client.close();
          return info;
        }),
      );
      const redisSections = [...expected!.keys()].filter((name) => !OMITTED.has(name));
      assert.deepEqual([...actual!.keys()], redisSections);
      for (const [name, fields] of actual!) {
        const redisFields = [...expected!.get(name)!.keys()];
        const kvFields = [...fields.keys()];
        // kv's fields are Redis's, in Redis's order (a subsequence: some of Redis's are about features kv lacks).
        let at = 0;
        for (const field of kvFields) {
          at = redisFields.indexOf(field, at);
          assert.notEqual(at, -1, `${name}: ${field} is not a Redis field, or out of Redis's order`);
        }
        for (const [field, value] of fields) {
          if (FREE_TEXT.has(field)) continue;
          assert.equal(shape(value), shape(expected!.get(name)!.get(field)!), `${name}.${field}: ${value}`);
        }
      }
      for (const [name, fields] of Object.entries(REQUIRED)) {
        for (const field of fields) {
          if (actual!.has(name)) assert.ok(actual!.get(name)!.has(field), `${name}.${field} missing`);
        }
      }
    });
  }

  test("the stats counters move as Redis's do for the same commands", async () => {
    const deltas = await Promise.all(
      [both.redis.port, both.kv.port].map(async (port) => {
        const client = await Client.open(port);
        const before = await client.info('stats');
        const middleReply = await client.call('INFO', 'stats');
        const middle = parseInfo(middleReply.slice(middleReply.indexOf('\r\n') + 2));
        let replies = 0;
        for (const command of [
          ['SET', 'a', '1'],
          ['GET', 'a'],
          ['INCR', 'a'],
          ['INCR', 'nonint-free'],
          ['SET', 'a', 'x'],
          ['INCR', 'a'], // an error reply from a command that ran
          ['NOSUCH', 'x'], // not run: not counted as a command, counted as an error reply
          ['GET'], // wrong arity: likewise
        ]) {
          replies += (await client.call(...command)).length;
        }
        const after = await client.info('stats');
        await client.close();
        const d = (field: string): number => numberOf(after, 'Stats', field) - numberOf(middle, 'Stats', field);
        return {
          // INFO counts after it runs, so between two INFOs: the commands and the second INFO's predecessor.
          commands:
            numberOf(middle, 'Stats', 'total_commands_processed') -
            numberOf(before, 'Stats', 'total_commands_processed'),
          commandsBetween: d('total_commands_processed'),
          errorReplies: d('total_error_replies'),
          // Input is counted as read: the commands and the final INFO.
          input: d('total_net_input_bytes'),
          // Output is counted as written: the middle INFO's reply, then the commands' replies.
          output: d('total_net_output_bytes') - middleReply.length,
          replies,
        };
      }),
    );
    const [expected, actual] = deltas;
    assert.deepEqual(actual, expected);
    assert.equal(actual!.commandsBetween, 7);
    assert.equal(actual!.errorReplies, 3);
    assert.equal(actual!.output, actual!.replies);
  });

  test("connected_clients and total_connections_received follow connections as Redis's do", async () => {
    const [expected, actual] = await Promise.all(
      [both.redis.port, both.kv.port].map(async (port) => {
        const watcher = await Client.open(port);
        const before = await watcher.info('clients', 'stats');
        const extra = await Promise.all([1, 2, 3].map(() => Client.open(port)));
        // A reply on each proves the server has taken the connection.
        for (const c of extra) assert.equal(await c.call('PING'), '+PONG\r\n');
        const during = await watcher.info('clients', 'stats');
        await Promise.all(extra.map((c) => c.close()));
        // The server sees the closes a moment after the client does: poll, bounded.
        let after = await watcher.info('clients');
        for (
          let i = 0;
          i < 100 &&
          numberOf(after, 'Clients', 'connected_clients') !== numberOf(before, 'Clients', 'connected_clients');
          i++
        ) {
          await delay(20);
          after = await watcher.info('clients');
        }
        await watcher.close();
        return {
          connected:
            numberOf(during, 'Clients', 'connected_clients') - numberOf(before, 'Clients', 'connected_clients'),
          received:
            numberOf(during, 'Stats', 'total_connections_received') -
            numberOf(before, 'Stats', 'total_connections_received'),
          afterClose:
            numberOf(after, 'Clients', 'connected_clients') - numberOf(before, 'Clients', 'connected_clients'),
        };
      }),
    );
    assert.deepEqual(actual, expected);
    assert.deepEqual(actual, { connected: 3, received: 3, afterClose: 0 });
  });

  test('expired_keys counts a key expired on access, as Redis does', async () => {
    const [expected, actual] = await Promise.all(
      [both.redis.port, both.kv.port].map(async (port) => {
        const client = await Client.open(port);
        const before = numberOf(await client.info('stats'), 'Stats', 'expired_keys');
        await client.call('SET', 'shortlived', 'v', 'PX', '1');
        // Expired once a GET misses it; bounded poll (1 ms TTL).
        for (let i = 0; i < 200 && (await client.call('GET', 'shortlived')) !== '$-1\r\n'; i++) await delay(5);
        const after = numberOf(await client.info('stats'), 'Stats', 'expired_keys');
        await client.close();
        return after - before;
      }),
    );
    assert.equal(actual, expected);
    assert.equal(actual, 1);
  });
});

describe('kv INFO from tcpkit counters', () => {
  test('rejected_connections and maxclients come from the server the app is attached to', async () => {
    const app = createApp({ maxClients: 1 });
    const server = await serve({ host: '127.0.0.1', port: 0, maxConnections: 1, whenFull: 'reject' }, app.handler);
    app.attach(server);
    const { port } = server.address as net.AddressInfo;
    try {
      const holder = await Client.open(port);
      assert.equal(await holder.call('PING'), '+PONG\r\n');
      // Turned away at the cap: tcpkit closes it without a reply.
      await exchange(port, encodeCommand(['PING']));
      const info = await holder.info('clients', 'stats');
      assert.equal(numberOf(info, 'Stats', 'rejected_connections'), 1);
      assert.equal(server.stats().rejected.full, 1);
      assert.equal(numberOf(info, 'Clients', 'maxclients'), 1);
      assert.equal(numberOf(info, 'Clients', 'connected_clients'), 1);
      assert.equal(await holder.call('CONFIG', 'GET', 'maxclients'), '*2\r\n$10\r\nmaxclients\r\n$1\r\n1\r\n');
      assert.equal(numberOf(await holder.info('server'), 'Server', 'tcp_port'), port);
      await holder.close();
    } finally {
      await server.shutdown({ timeout: 2000 });
      app.close();
    }
  });

  test('without attach(), the fields only the server knows are left out rather than invented', async () => {
    const app = createApp();
    const server = await serve({ host: '127.0.0.1', port: 0 }, app.handler);
    try {
      const client = await Client.open((server.address as net.AddressInfo).port);
      const stats = (await client.info('stats')).get('Stats')!;
      assert.equal(stats.has('rejected_connections'), false);
      assert.equal(stats.has('total_net_input_bytes'), false);
      assert.equal(stats.get('total_connections_received'), '1');
      await client.close();
    } finally {
      await server.shutdown({ timeout: 2000 });
      app.close();
    }
  });

  test('instantaneous_ops_per_sec rises with load and falls back to 0 when idle', async () => {
    const kv = await startKv();
    try {
      const client = await Client.open(kv.port);
      // 2000 pipelined PINGs, then wait for their replies.
      const replies = exchange(
        kv.port,
        Buffer.concat([...Array.from({ length: 2000 }, () => encodeCommand(['PING'])), encodeCommand(['QUIT'])]),
      );
      await replies;
      let ops = 0;
      for (let i = 0; i < 200 && ops === 0; i++) {
        ops = numberOf(await client.info('stats'), 'Stats', 'instantaneous_ops_per_sec');
        if (ops === 0) await delay(10);
      }
      assert.ok(ops > 0, 'the burst shows in the meter');
      // Idle apart from INFO itself: once the 1.6 s window has passed, one INFO in it rounds to 0.
      for (let i = 0; i < 30 && ops !== 0; i++) {
        await delay(2000);
        ops = numberOf(await client.info('stats'), 'Stats', 'instantaneous_ops_per_sec');
      }
      assert.equal(ops, 0);
      await client.close();
    } finally {
      await kv.close();
    }
  });
});

describe('kv INFO read by redis-cli --stat', { skip: needs('redis-cli') }, () => {
  let kv: Running;
  before(async () => {
    kv = await startKv();
  });
  after(async () => {
    await kv?.close();
  });

  test('keys summed over databases, clients and requests', async () => {
    const setup = await Client.open(kv.port);
    await setup.call('MSET', 'a', '1', 'b', '2');
    await setup.call('SELECT', '7');
    await setup.call('SET', 'c', '3');
    // Line-buffered, so each sample arrives as redis-cli prints it; stopped by PID.
    const child = spawn(
      'stdbuf',
      ['-oL', 'redis-cli', '-h', '127.0.0.1', '-p', String(kv.port), '--stat', '-i', '0.1'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          output += d.toString();
          if (output.split('\n').filter((l) => /^\d/.test(l)).length >= 2) resolve();
        });
        child.once('exit', (code) => reject(new Error(`redis-cli exited with ${code}: ${output}`)));
      });
    } finally {
      child.kill();
    }
    await setup.close();
    const rows = output
      .split('\n')
      .filter((l) => /^\d/.test(l))
      .map((l) => l.trim().split(/\s+/));
    assert.match(output, /keys\s+mem\s+clients\s+blocked\s+requests\s+connections/);
    const [keys, mem, clients, blocked] = rows[1]!;
    assert.equal(keys, '3');
    assert.match(mem!, /^\d+(\.\d+)?[BKMG]$/);
    // The setup connection and redis-cli's own.
    assert.equal(clients, '2');
    assert.equal(blocked, '0');
  });
});
