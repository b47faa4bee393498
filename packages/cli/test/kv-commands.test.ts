/** The kv command executor as a pure function of (store, client, args, now): no sockets, no clock. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type RespReply, resp } from 'tcpkit';
import type { ClientState, ServerContext } from '../src/apps/kv/commands.js';
import { DATABASES } from '../src/apps/kv/databases.js';
import { globMatch } from '../src/apps/kv/glob.js';
import { bytesToHuman, InfoState, InstantaneousMetric } from '../src/apps/kv/info.js';
import { addInt64, parseInt64 } from '../src/apps/kv/numbers.js';
import { Store } from '../src/apps/kv/store.js';
import { COMMANDS, execute } from '../src/apps/kv/table.js';

/** A client as the app makes one, connected at time 0 from 127.0.0.9:40000. */
function newClient(id: number, db: Store): ClientState {
  return {
    id,
    db,
    name: null,
    quit: false,
    addr: '127.0.0.9:40000',
    laddr: '127.0.0.1:6380',
    fd: () => 12,
    createdAt: 0,
    lastInteraction: 0,
    lastCommand: 'NULL',
    queuedBytes: () => 0,
  };
}

function session() {
  const databases = Array.from({ length: DATABASES }, () => new Store());
  const client = newClient(7, databases[0]!);
  const others = [client, newClient(8, databases[3]!)];
  const ctx: ServerContext = { databases, version: '7.0.0', info: new InfoState(10_000), clients: () => others };
  const codec = resp();
  /** Runs one command at time `now` and returns the reply as RESP text. */
  const run = (now: number, ...args: string[]): string => {
    const reply: RespReply = execute(
      ctx,
      client,
      args.map((a) => Buffer.from(a, 'latin1')),
      now,
    );
    const chunks: Array<Uint8Array | string> = [];
    codec.encode(reply, { push: (...c) => chunks.push(...c) });
    return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))).toString('latin1');
  };
  return { ctx, client, run };
}

describe('kv command lookup', () => {
  test('every command name, in any case, runs what its lower-case name runs; near misses are unknown', () => {
    const { run, client } = session();
    const mixed = (name: string): string =>
      [...name].map((ch, i) => (i % 2 === 0 ? ch.toUpperCase() : ch.toLowerCase())).join('');
    /** Which command ran (CLIENT INFO's cmd), or the arity error naming the command that was found. */
    const found = (name: string): string => {
      client.lastCommand = 'NULL';
      const reply = run(0, name);
      return client.lastCommand !== 'NULL' ? client.lastCommand : reply;
    };
    for (const [name, spec] of COMMANDS) {
      const expected = found(name);
      assert.ok(expected === spec.fullName || expected.includes(`'${spec.fullName}'`), `${name}: ${expected}`);
      assert.equal(found(name.toUpperCase()), expected, name);
      assert.equal(found(mixed(name)), expected, name);
    }
    // The same bytes folded wrongly, one byte short or long, or with a latin1 letter: not commands.
    for (const name of ['GE', 'GETT', 'G\xc9T', 'GET\x00', '\x00GET', 'PIN\x7f', 'EXISTS_', 'EXIST']) {
      assert.match(run(0, name), /^-ERR unknown command /, JSON.stringify(name));
    }
  });
});

describe('kv commands', () => {
  test('CLIENT INFO: Redis 7 fields in Redis order, age and idle in seconds, cmd the latest command', () => {
    const { run } = session();
    run(1000, 'CLIENT', 'SETNAME', 'worker-1');
    assert.equal(
      run(5500, 'CLIENT', 'INFO'),
      '$174\r\nid=7 addr=127.0.0.9:40000 laddr=127.0.0.1:6380 fd=12 name=worker-1 age=5 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 omem=0 cmd=client|info user=default redir=-1 resp=2\n\r\n',
    );
  });

  test('CLIENT LIST: every client, ID and TYPE filters, errors as Redis words them', () => {
    const { run } = session();
    const all = run(3000, 'CLIENT', 'LIST');
    assert.match(
      all,
      /^\$\d+\r\nid=7 addr=127\.0\.0\.9:40000 .* cmd=client\|list .*\nid=8 .* idle=3 .* cmd=NULL .*\n\r\n$/s,
    );
    assert.match(run(0, 'CLIENT', 'LIST', 'ID', '8'), /^\$\d+\r\nid=8 [^\n]*\n\r\n$/);
    assert.match(run(0, 'CLIENT', 'LIST', 'TYPE', 'normal'), /id=7 .*id=8/s);
    assert.equal(run(0, 'CLIENT', 'LIST', 'TYPE', 'pubsub'), '$0\r\n\r\n');
    assert.equal(run(0, 'CLIENT', 'LIST', 'TYPE', 'bogus'), "-ERR Unknown client type 'bogus'\r\n");
    assert.equal(run(0, 'CLIENT', 'LIST', 'ID', 'x'), '-ERR Invalid client ID\r\n');
    assert.equal(run(0, 'CLIENT', 'LIST', 'WHAT'), '-ERR syntax error\r\n');
  });

  test('SET PX expires lazily at the deadline, not before', () => {
    const { run } = session();
    assert.equal(run(1000, 'SET', 'k', 'v', 'PX', '100'), '+OK\r\n');
    assert.equal(run(1099, 'GET', 'k'), '$1\r\nv\r\n');
    assert.equal(run(1099, 'PTTL', 'k'), ':1\r\n');
    assert.equal(run(1100, 'GET', 'k'), '$-1\r\n');
    assert.equal(run(1100, 'TTL', 'k'), ':-2\r\n');
  });

  test('TTL rounds to the nearest second as Redis does', () => {
    const { run } = session();
    run(0, 'SET', 'k', 'v', 'PX', '1499');
    assert.equal(run(0, 'TTL', 'k'), ':1\r\n');
    run(0, 'SET', 'k', 'v', 'PX', '1500');
    assert.equal(run(0, 'TTL', 'k'), ':2\r\n');
  });

  test('EXPIRE in the past deletes the key and replies 1', () => {
    const { run } = session();
    run(5000, 'SET', 'k', 'v');
    assert.equal(run(5000, 'EXPIRE', 'k', '-1'), ':1\r\n');
    assert.equal(run(5000, 'EXISTS', 'k'), ':0\r\n');
  });

  test('SET without KEEPTTL clears the TTL; INCR and APPEND keep it', () => {
    const { run } = session();
    run(0, 'SET', 'n', '1', 'EX', '10');
    run(0, 'INCR', 'n');
    run(0, 'APPEND', 'n', '0');
    assert.equal(run(0, 'TTL', 'n'), ':10\r\n');
    assert.equal(run(0, 'GET', 'n'), '$2\r\n20\r\n');
    run(0, 'SET', 'n', '1');
    assert.equal(run(0, 'TTL', 'n'), ':-1\r\n');
  });

  test('values are copied out of the request buffer', () => {
    const { ctx } = session();
    const client = newClient(1, ctx.databases[0]!);
    const value = Buffer.from('abc');
    execute(ctx, client, [Buffer.from('SET'), Buffer.from('k'), value], 0);
    value.fill(0x78);
    assert.equal(ctx.databases[0]!.get('k', 0)?.toString(), 'abc');
  });

  test('QUIT flags the client to close after the reply', () => {
    const { run, client } = session();
    assert.equal(run(0, 'QUIT'), '+OK\r\n');
    assert.equal(client.quit, true);
  });

  test('CLIENT SETNAME and HELLO SETNAME name the connection', () => {
    const { run, client } = session();
    assert.equal(run(0, 'CLIENT', 'SETNAME', 'a'), '+OK\r\n');
    assert.equal(client.name?.toString(), 'a');
    run(0, 'HELLO', '2', 'SETNAME', 'b');
    assert.equal(run(0, 'CLIENT', 'GETNAME'), '$1\r\nb\r\n');
  });

  test('HELLO 3 is refused with NOPROTO (RESP3 is not spoken)', () => {
    assert.equal(session().run(0, 'HELLO', '3'), '-NOPROTO unsupported protocol version\r\n');
  });

  test('COMMAND COUNT, LIST and DOCS describe the table', () => {
    const { run } = session();
    assert.equal(run(0, 'COMMAND', 'COUNT'), `:${COMMANDS.size}\r\n`);
    assert.match(run(0, 'COMMAND', 'DOCS', 'get'), /^\*2\r\n\$3\r\nget\r\n\*6\r\n\$7\r\nsummary\r\n/);
    assert.match(run(0, 'COMMAND', 'INFO', 'get', 'nope'), /^\*2\r\n\*10\r\n\$3\r\nget\r\n:2\r\n/);
  });

  test('INFO keyspace counts keys and expiries', () => {
    const { run } = session();
    run(0, 'MSET', 'a', '1', 'b', '2');
    run(0, 'EXPIRE', 'a', '10');
    assert.equal(run(0, 'INFO', 'keyspace'), '$44\r\n# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n\r\n');
  });
});

describe('kv databases', () => {
  test('SELECT switches the key space; INFO keyspace lists every database that has keys', () => {
    const { run } = session();
    run(0, 'SET', 'a', '1');
    assert.equal(run(0, 'SELECT', '15'), '+OK\r\n');
    run(0, 'MSET', 'b', '2', 'c', '3');
    assert.equal(run(0, 'GET', 'a'), '$-1\r\n');
    assert.equal(
      run(0, 'INFO', 'keyspace'),
      '$77\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\ndb15:keys=2,expires=0,avg_ttl=0\r\n\r\n',
    );
  });

  test('MOVE keeps the TTL and leaves a key that exists in the target alone', () => {
    const { run } = session();
    run(0, 'SET', 'k', 'v', 'PX', '5000');
    assert.equal(run(0, 'MOVE', 'k', '2'), ':1\r\n');
    run(0, 'SET', 'k', 'again');
    assert.equal(run(0, 'MOVE', 'k', '2'), ':0\r\n');
    run(0, 'SELECT', '2');
    assert.equal(run(1000, 'PTTL', 'k'), ':4000\r\n');
  });
});

describe('kv INFO', () => {
  test('InstantaneousMetric: the mean of the last 16 per-sample rates, as Redis computes it', () => {
    const meter = new InstantaneousMetric(0);
    meter.sample(100, 100); // 1000/s in the first 100 ms
    assert.equal(meter.value, Math.floor(1000 / 16));
    for (let i = 2; i <= 16; i++) meter.sample(100 * i, 100 * i);
    assert.equal(meter.value, 1000);
    for (let i = 17; i <= 24; i++) meter.sample(1600, 100 * i); // idle for half the window
    assert.equal(meter.value, 500);
    for (let i = 25; i <= 32; i++) meter.sample(1600, 100 * i);
    assert.equal(meter.value, 0);
  });

  test('bytesToHuman formats as Redis does', () => {
    assert.equal(bytesToHuman(1023), '1023B');
    assert.equal(bytesToHuman(1024), '1.00K');
    assert.equal(bytesToHuman(12_410_880), '11.84M');
    assert.equal(bytesToHuman(25_276_502_016), '23.54G');
  });

  test("avg_ttl is the sweep's estimate, as Redis's activeExpireCycle makes it", () => {
    const { ctx, run } = session();
    for (let i = 0; i < 10; i++) run(0, 'SET', `k${i}`, 'v', 'PX', '10000');
    ctx.databases[0]!.sweep(0, 20);
    assert.match(run(0, 'INFO', 'keyspace'), /db0:keys=10,expires=10,avg_ttl=10000\r\n/);
    ctx.databases[0]!.sweep(5000, 20);
    // 49/50 of the running value plus 1/50 of the new sample (5000 left): 200 * 49 + 100.
    assert.match(run(0, 'INFO', 'keyspace'), /avg_ttl=9900\r\n/);
  });

  test('commands and error replies are counted as Redis counts them', () => {
    const { ctx, run } = session();
    run(0, 'SET', 'a', 'x');
    run(0, 'INCR', 'a'); // runs, replies with an error
    run(0, 'NOPE'); // not run
    run(0, 'GET'); // not run: wrong arity
    assert.equal(ctx.info.commands, 2);
    assert.equal(ctx.info.errorReplies, 3);
  });
});

describe('Store#sweep', () => {
  test('removes expired keys in steps, resuming where it stopped', () => {
    const store = new Store();
    for (let i = 0; i < 50; i++) store.set(`k${i}`, Buffer.from('v'), i % 2 === 0 ? 100 : 10_000);
    let removed = 0;
    for (let step = 0; step < 6; step++) removed += store.sweep(200, 10);
    assert.equal(removed, 25);
    assert.equal(store.size, 25);
    assert.equal(store.expiresCount, 25);
  });
});

describe('globMatch', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*', 'anything', true],
    ['h?llo', 'hello', true],
    ['h?llo', 'hllo', false],
    ['h*llo', 'heeeello', true],
    ['h[ae]llo', 'hallo', true],
    ['h[^e]llo', 'hello', false],
    ['h[a-c]llo', 'hbllo', true],
    ['h[c-a]llo', 'hbllo', true],
    ['h\\*llo', 'h*llo', true],
    ['h\\*llo', 'hello', false],
    ['*a*a*a*a*a*b', 'a'.repeat(40), false],
    ['', '', true],
    ['a', '', false],
  ];
  for (const [pattern, subject, expected] of cases) {
    test(`${pattern} ~ ${subject}: ${expected}`, () =>
      assert.equal(globMatch(Buffer.from(pattern), Buffer.from(subject)), expected));
  }
  test('a pattern nesting more than 1000 stars fails to match, as in Redis 7 (no stack overflow)', () => {
    const subject = Buffer.from('a'.repeat(300_000));
    assert.equal(globMatch(Buffer.from('*a'.repeat(1000)), subject), true);
    assert.equal(globMatch(Buffer.from('*a'.repeat(1001)), subject), false);
    assert.equal(globMatch(Buffer.from('*a'.repeat(30_000)), subject), false);
  });
});

describe('parseInt64 and addInt64', () => {
  const parse: Array<[string, number | bigint | undefined]> = [
    ['0', 0],
    ['-1', -1],
    ['9223372036854775807', 9223372036854775807n],
    ['-9223372036854775808', -9223372036854775808n],
    ['9223372036854775808', undefined],
    ['-0', undefined],
    ['01', undefined],
    ['+1', undefined],
    [' 1', undefined],
    ['1.0', undefined],
    ['', undefined],
  ];
  for (const [text, expected] of parse)
    test(`parse ${JSON.stringify(text)}`, () => assert.equal(parseInt64(Buffer.from(text)), expected));

  test('sums stay numbers while safe and refuse to leave int64', () => {
    assert.equal(addInt64(1, 2), 3);
    assert.equal(addInt64(Number.MAX_SAFE_INTEGER, 1), 9007199254740992n);
    assert.equal(addInt64(9007199254740992n, -1), Number.MAX_SAFE_INTEGER);
    assert.equal(addInt64(9223372036854775807n, 1), undefined);
    assert.equal(addInt64(-9223372036854775808n, -1), undefined);
  });
});
