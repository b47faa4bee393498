/** The kv example under redis-cli and redis-benchmark (Debian's redis-tools). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { needs, type Running, startKv } from './kv-helpers.js';

const run = promisify(execFile);

/** Runs redis-cli with `script` on stdin (one command a line), as a user piping commands would. */
async function cli(port: number, script: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'redis-cli',
      ['-h', '127.0.0.1', '-p', String(port), ...args],
      { timeout: 10_000 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
    child.stdin!.end(script);
  });
}

describe('kv with redis-cli', { skip: needs('redis-cli') }, () => {
  let kv: Running;
  before(async () => {
    kv = await startKv();
  });
  after(async () => {
    await kv?.close();
  });

  test('a scripted session: strings, counters, expiry, keys, errors', async () => {
    const script = [
      'SET greeting "hello world"',
      'GET greeting',
      'INCR hits',
      'INCRBY hits 9',
      'MSET a 1 b 2',
      'MGET a b missing',
      'EXPIRE a 100',
      'TTL a',
      'PERSIST a',
      'KEYS gr*',
      'DEL a b',
      'DBSIZE',
      'GET missing',
      'INCR greeting',
      'FROB x',
      'GET',
      'PING',
    ].join('\n');
    const expected = [
      'OK',
      'hello world',
      '1',
      '10',
      'OK',
      '1',
      '2',
      '',
      '1',
      '100',
      '1',
      'greeting',
      '2',
      '2',
      '',
      // redis-cli prints a blank line after each error reply.
      'ERR value is not an integer or out of range',
      '',
      "ERR unknown command 'FROB', with args beginning with: 'x' ",
      '',
      "ERR wrong number of arguments for 'get' command",
      '',
      'PONG',
      '',
    ].join('\n');
    assert.equal(await cli(kv.port, script), expected);
  });

  test('one command per invocation, with arguments on the command line', async () => {
    assert.equal((await run('redis-cli', ['-p', String(kv.port), 'SET', 'bin', 'a\tb'])).stdout, 'OK\n');
    assert.equal((await run('redis-cli', ['-p', String(kv.port), '--no-raw', 'GET', 'bin'])).stdout, '"a\\tb"\n');
    assert.equal(
      (await run('redis-cli', ['-p', String(kv.port), '--no-raw', 'STRLEN', 'bin'])).stdout,
      '(integer) 3\n',
    );
  });

  test('CLIENT SETNAME/GETNAME, SELECT 0, HELLO 2 and INFO', async () => {
    const out = await cli(kv.port, 'CLIENT SETNAME cli\nCLIENT GETNAME\nSELECT 0\nHELLO 2\nINFO keyspace\n');
    const lines = out.split('\n');
    assert.deepEqual(lines.slice(0, 5), ['OK', 'cli', 'OK', 'server', 'redis']);
    assert.match(out, /# Keyspace/);
  });

  test('redis-cli -n 3 selects database 3 for its session', async () => {
    assert.equal(await cli(kv.port, 'SET where three\n', '-n', '3'), 'OK\n');
    assert.equal(await cli(kv.port, 'GET where\n'), '\n');
    assert.equal(await cli(kv.port, 'GET where\n', '-n', '3'), 'three\n');
    assert.match(await cli(kv.port, 'INFO keyspace\n'), /^db3:keys=1,expires=0,avg_ttl=0\r?$/m);
  });
});

/** Parses redis-benchmark --csv output into test name -> requests per second. */
function parseCsv(stdout: string): Map<string, number> {
  const rows = new Map<string, number>();
  for (const line of stdout.trim().split('\n').slice(1)) {
    const [name, rps] = line.split(',').map((f) => f.replace(/"/g, ''));
    rows.set(name!, Number(rps));
  }
  return rows;
}

describe('kv under redis-benchmark', { skip: needs('redis-benchmark') }, () => {
  let kv: Running;
  before(async () => {
    kv = await startKv();
  });
  after(async () => {
    await kv?.close();
  });

  for (const pipeline of [1, 16]) {
    test(`ping,set,get,incr,mset -n 20000 -c 50 -P ${pipeline}: every test completes without an error`, async () => {
      // redis-benchmark 7 exits non-zero on the first error reply, so a zero exit means zero errors.
      const { stdout, stderr } = await run(
        'redis-benchmark',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(kv.port),
          '-t',
          'ping,set,get,incr,mset',
          '-n',
          '20000',
          '-c',
          '50',
          '-P',
          String(pipeline),
          '--csv',
        ],
        { timeout: 60_000 },
      );
      assert.doesNotMatch(stdout + stderr, /error/i);
      const rows = parseCsv(stdout);
      assert.deepEqual([...rows.keys()], ['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR', 'MSET (10 keys)']);
      for (const [name, rps] of rows) assert.ok(rps > 0, `${name}: ${rps} requests/s`);
      // redis-benchmark's INCR hits one key (`counter:__rand_int__` without -r): 20000 increments.
      assert.equal(
        kv.app.databases[0]!.get('counter:__rand_int__', Date.now())?.toString(),
        String(20000 * (pipeline === 1 ? 1 : 2)),
      );
      assert.equal(kv.server.stats().errors, 0);
    });
  }

  test('--dbnum 5: the benchmark selects database 5 on every connection and writes there', async () => {
    for (const db of kv.app.databases) db.clear();
    await run(
      'redis-benchmark',
      ['-h', '127.0.0.1', '-p', String(kv.port), '-t', 'set', '-n', '2000', '-c', '10', '--dbnum', '5', '-q'],
      { timeout: 60_000 },
    );
    assert.equal(kv.app.databases[5]!.get('key:__rand_int__', Date.now())?.length, 3);
    assert.equal(kv.app.databases[0]!.size, 0);
  });
});
