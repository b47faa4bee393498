/** The kv example driven by ioredis, a client nobody on this team wrote: every command, pipelining, expiry. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis, ReplyError } from 'ioredis';
import { type Running, startKv } from './kv-helpers.js';

describe('kv with ioredis', () => {
  let kv: Running;
  let redis: Redis;
  before(async () => {
    kv = await startKv({ sweepInterval: 10 });
    redis = new Redis({ host: '127.0.0.1', port: kv.port, lazyConnect: true, maxRetriesPerRequest: 0 });
    await redis.connect();
  });
  after(async () => {
    redis?.disconnect();
    await kv?.close();
  });

  test('PING, ECHO, SELECT 0, HELLO 2, CLIENT SETNAME/GETNAME, INFO, COMMAND', async () => {
    assert.equal(await redis.ping(), 'PONG');
    assert.equal(await redis.ping('hi'), 'hi');
    assert.equal(await redis.echo('hello'), 'hello');
    assert.equal(await redis.select(0), 'OK');
    await assert.rejects(redis.select(16), /DB index is out of range/);
    const hello = (await redis.call('HELLO', '2')) as unknown[];
    assert.deepEqual(hello.slice(0, 2), ['server', 'redis']);
    assert.deepEqual(hello.slice(4, 6), ['proto', 2]);
    assert.equal(await redis.client('SETNAME', 'tester'), 'OK');
    assert.equal(await redis.client('GETNAME'), 'tester');
    assert.match(await redis.info('server'), /^# Server\r\nredis_version:7\.0\.0\r\n/);
    assert.equal(await redis.command('COUNT'), 33);
  });

  test('strings: GET, SET (EX, PX, NX, XX, GET), GETDEL, APPEND, STRLEN, MGET, MSET', async () => {
    await redis.flushall();
    assert.equal(await redis.get('k'), null);
    assert.equal(await redis.set('k', 'v'), 'OK');
    assert.equal(await redis.get('k'), 'v');
    assert.equal(await redis.set('k', 'x', 'NX'), null);
    assert.equal(await redis.set('k', 'w', 'XX'), 'OK');
    assert.equal(await redis.set('missing', 'w', 'XX'), null);
    assert.equal(await redis.set('k', 'z', 'GET'), 'w');
    assert.equal(await redis.set('e', 'v', 'EX', 100), 'OK');
    assert.equal(await redis.ttl('e'), 100);
    assert.equal(await redis.set('p', 'v', 'PX', 100_000), 'OK');
    assert.ok((await redis.pttl('p')) > 99_000);
    await assert.rejects(redis.set('k', 'v', 'EX', 0), /invalid expire time in 'set' command/);
    assert.equal(await redis.getdel('k'), 'z');
    assert.equal(await redis.getdel('k'), null);
    assert.equal(await redis.append('a', 'hello'), 5);
    assert.equal(await redis.append('a', ' world'), 11);
    assert.equal(await redis.strlen('a'), 11);
    assert.equal(await redis.mset('m1', '1', 'm2', '2'), 'OK');
    assert.deepEqual(await redis.mget('m1', 'm2', 'm3'), ['1', '2', null]);
    const binary = Buffer.from([0, 255, 13, 10, 128]);
    await redis.set('bin', binary);
    assert.deepEqual(await redis.getBuffer('bin'), binary);
  });

  test('counters: INCR, DECR, INCRBY, DECRBY and their errors', async () => {
    await redis.flushdb();
    assert.equal(await redis.incr('n'), 1);
    assert.equal(await redis.incrby('n', 41), 42);
    assert.equal(await redis.decr('n'), 41);
    assert.equal(await redis.decrby('n', 40), 1);
    await redis.set('s', 'abc');
    await assert.rejects(
      redis.incr('s'),
      (err: Error) => err instanceof ReplyError && /not an integer/.test(err.message),
    );
    await redis.set('max', '9223372036854775807');
    await assert.rejects(redis.incr('max'), /increment or decrement would overflow/);
  });

  test('keys: DEL, EXISTS, KEYS, DBSIZE, FLUSHDB, FLUSHALL', async () => {
    await redis.flushall();
    await redis.mset('user:1', 'a', 'user:2', 'b', 'item:1', 'c');
    assert.equal(await redis.exists('user:1', 'user:2', 'nope'), 2);
    assert.deepEqual((await redis.keys('user:*')).sort(), ['user:1', 'user:2']);
    assert.deepEqual((await redis.keys('*')).sort(), ['item:1', 'user:1', 'user:2']);
    assert.equal(await redis.dbsize(), 3);
    assert.equal(await redis.del('user:1', 'nope'), 1);
    assert.equal(await redis.flushdb(), 'OK');
    assert.equal(await redis.dbsize(), 0);
  });

  test('databases: a client configured with db: 5 selects it at connect; SWAPDB and MOVE', async () => {
    await redis.flushall();
    const five = new Redis({ host: '127.0.0.1', port: kv.port, db: 5, lazyConnect: true, maxRetriesPerRequest: 0 });
    await five.connect();
    try {
      await five.set('k', 'in5');
      assert.equal(await redis.get('k'), null);
      assert.equal(await five.dbsize(), 1);
      assert.equal(await redis.dbsize(), 0);
      assert.equal(await redis.swapdb(0, 5), 'OK');
      assert.equal(await redis.get('k'), 'in5');
      assert.equal(await five.get('k'), null);
      assert.equal(await redis.move('k', 5), 1);
      assert.equal(await five.get('k'), 'in5');
      assert.match(await redis.info('keyspace'), /^# Keyspace\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n$/);
    } finally {
      five.disconnect();
    }
  });

  test('errors: unknown command and wrong arity', async () => {
    await assert.rejects(
      redis.call('NOPE', 'a'),
      /^ReplyError: ERR unknown command 'NOPE', with args beginning with: 'a' $/,
    );
    await assert.rejects(redis.call('GET'), /ERR wrong number of arguments for 'get' command/);
  });

  test('expiry: EXPIRE, PEXPIRE, TTL, PTTL, PERSIST, and keys that pass their deadline', async () => {
    await redis.flushall();
    await redis.set('k', 'v');
    assert.equal(await redis.ttl('k'), -1);
    assert.equal(await redis.expire('k', 100), 1);
    assert.equal(await redis.ttl('k'), 100);
    assert.equal(await redis.persist('k'), 1);
    assert.equal(await redis.ttl('k'), -1);
    assert.equal(await redis.ttl('none'), -2);
    assert.equal(await redis.pexpire('k', 30), 1);
    await redis.set('short', 'v', 'PX', 30);
    // Expiry is the behaviour under test: wait past the deadline, then read (lazy expiry).
    await delay(60);
    assert.equal(await redis.get('short'), null);
    assert.equal(await redis.exists('k'), 0);
  });

  test('expiry: the periodic sweep removes keys nobody reads again', async () => {
    await redis.flushall();
    const pipeline = redis.pipeline();
    // Long enough that a loaded machine still counts all 200 before any expires.
    for (let i = 0; i < 200; i++) pipeline.set(`tmp:${i}`, 'v', 'PX', 1500);
    await pipeline.exec();
    assert.equal(await redis.dbsize(), 200); // DBSIZE counts keys not yet reclaimed, as Redis does
    const deadline = Date.now() + 20_000;
    while ((await redis.dbsize()) > 0 && Date.now() < deadline) await delay(20);
    assert.equal(await redis.dbsize(), 0);
  });

  test('pipelining: 1000 commands in one batch answered in order', async () => {
    await redis.flushall();
    const pipeline = redis.pipeline();
    for (let i = 0; i < 500; i++) pipeline.incr('counter').echo(`m${i}`);
    const results = (await pipeline.exec())!;
    assert.equal(results.length, 1000);
    for (let i = 0; i < 500; i++) {
      assert.deepEqual(results[2 * i], [null, i + 1]);
      assert.deepEqual(results[2 * i + 1], [null, `m${i}`]);
    }
  });

  test('pipelining: a large value amid small commands', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
    const results = (await redis.pipeline().set('big', big).strlen('big').getBuffer('big').ping().exec())!;
    assert.deepEqual(results[0], [null, 'OK']);
    assert.deepEqual(results[1], [null, big.length]);
    assert.ok((results[2]![1] as Buffer).equals(big));
    assert.deepEqual(results[3], [null, 'PONG']);
  });

  test('QUIT closes the connection after +OK', async () => {
    const other = new Redis({ host: '127.0.0.1', port: kv.port, lazyConnect: true, retryStrategy: () => null });
    await other.connect();
    const ended = new Promise((resolve) => other.once('end', resolve));
    assert.equal(await other.quit(), 'OK');
    await ended;
  });
});
