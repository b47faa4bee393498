/**
 * Byte-for-byte comparison with a real Redis 7: every script below runs on a fresh connection
 * against redis-server and against the kv app, and the two byte streams must be identical
 * (replies, error texts, protocol errors and the close that follows them).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { encodeCommand, exchange, needs, type Running, startKv, startRedis } from './kv-helpers.js';

type Script = Array<Array<string | Buffer> | Buffer>;

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const ESC = (s: string): Buffer => B(s); // readability: a raw inline or malformed request

/** Scripts whose replies do not depend on timing, ids or hash order. */
const SCRIPTS: Record<string, Script> = {
  'PING and ECHO': [
    ['PING'],
    ['PING', 'hi'],
    ['PING', 'a', 'b'],
    ['ECHO'],
    ['ECHO', 'x'],
    ['echo', 'x', 'y'],
    ['ping', ''],
  ],
  'GET and SET options': [
    ['GET', 'k'],
    ['SET', 'k', 'v'],
    ['GET', 'k'],
    ['SET', 'k', 'v2', 'NX'],
    ['SET', 'k', 'v3', 'XX'],
    ['GET', 'k'],
    ['SET', 'n', 'v', 'XX'],
    ['SET', 'k', 'v4', 'GET'],
    ['SET', 'nk', 'v', 'GET'],
    ['SET', 'k', 'v', 'NX', 'XX'],
    ['SET', 'k', 'v', 'XX', 'NX'],
    ['SET', 'k', 'v', 'nx', 'nx'],
    ['SET', 'k', 'v', 'EX'],
    ['SET', 'k', 'v', 'EX', '0'],
    ['SET', 'k', 'v', 'EX', '-1'],
    ['SET', 'k', 'v', 'EX', 'abc'],
    ['SET', 'k', 'v', 'PX', '10000', 'EX', '10'],
    ['SET', 'k', 'v', 'KEEPTTL', 'EX', '10'],
    ['SET', 'k', 'v', 'EX', '100', 'KEEPTTL'],
    ['SET', 'k', 'v', 'foo'],
    ['SET', 'k', 'v', 'EX', '9223372036854775807'],
    ['SET', 'k', 'v', 'PX', '9223372036854775807'],
    ['SET', 'k', 'v', 'EX', '10', 'EX', '20'],
    ['TTL', 'k'],
    ['SET', 'k'],
    ['SET', 'k', 'v', 'nx', 'get'],
    ['SET', 'new', 'v', 'NX', 'GET'],
    ['GET', 'new'],
    ['SET', 'k', 'v', 'EXAT', '1'],
    ['GET', 'k'],
    ['SET', 'k', 'v', 'PXAT', '1', 'XX'],
    ['SET', 'k', 'v', 'EX', '100'],
    ['TTL', 'k'],
    ['SET', 'k', 'w'],
    ['TTL', 'k'],
    ['SET', 'k', 'v', 'EX', '100'],
    ['SET', 'k', 'x', 'KEEPTTL'],
    ['TTL', 'k'],
    ['SET', 'k', 'v', 'EX', '1.5'],
    ['SET', 'k', 'v', 'EX', '01'],
    ['SET', 'k', 'v', 'ex', ' 1'],
    ['SET', 'bin', B('\x00\xff\r\n')],
    ['GET', 'bin'],
  ],
  GETDEL: [['SET', 'k', 'v'], ['GETDEL', 'k'], ['GETDEL', 'k'], ['GETDEL'], ['GET', 'k']],
  'DEL and EXISTS': [
    ['MSET', 'a', '1', 'b', '2', 'c', '3'],
    ['EXISTS', 'a', 'b', 'c', 'c', 'x'],
    ['DEL', 'a', 'b', 'x', 'a'],
    ['EXISTS', 'a', 'b', 'c'],
    ['DEL'],
    ['EXISTS'],
  ],
  'INCR family': [
    ['INCR', 'n'],
    ['INCR', 'n'],
    ['DECR', 'n'],
    ['INCRBY', 'n', '10'],
    ['DECRBY', 'n', '5'],
    ['INCRBY', 'n', 'abc'],
    ['INCRBY', 'n', '1.5'],
    ['SET', 's', 'abc'],
    ['INCR', 's'],
    ['SET', 'big', '9223372036854775807'],
    ['INCR', 'big'],
    ['INCRBY', 'big', '-1'],
    ['SET', 'small', '-9223372036854775808'],
    ['DECR', 'small'],
    ['DECRBY', 'n', '-9223372036854775808'],
    ['INCRBY', 'n', '9223372036854775807'],
    ['INCRBY', 'x', '-9223372036854775808'],
    ['SET', 'lz', '012'],
    ['INCR', 'lz'],
    ['SET', 'sp', ' 1'],
    ['INCR', 'sp'],
    ['SET', 'plus', '+1'],
    ['INCR', 'plus'],
    ['INCRBY', 'n', '99999999999999999999'],
    ['SET', 'm', '9007199254740993'],
    ['INCR', 'm'],
    ['DECRBY', 'm', '18014398509481990'],
    ['GET', 'm'],
    ['INCR'],
    ['INCRBY', 'n'],
    ['DECR', 'a', 'b'],
    ['SET', 'neg0', '-0'],
    ['INCR', 'neg0'],
    ['SET', 'ttl', '5', 'EX', '100'],
    ['INCR', 'ttl'],
    ['TTL', 'ttl'],
  ],
  'APPEND and STRLEN': [
    ['APPEND', 'a', 'hello'],
    ['APPEND', 'a', ' world'],
    ['GET', 'a'],
    ['STRLEN', 'a'],
    ['STRLEN', 'none'],
    ['APPEND'],
    ['STRLEN', 'a', 'b'],
    ['APPEND', 'a', ''],
  ],
  'MGET and MSET': [
    ['MSET', 'a', '1', 'b', '2'],
    ['MGET', 'a', 'b', 'c'],
    ['MSET', 'a'],
    ['MSET', 'a', '1', 'b'],
    ['MGET'],
    ['SET', 't', 'v', 'EX', '100'],
    ['MSET', 't', 'w'],
    ['TTL', 't'],
  ],
  'EXPIRE, TTL and PERSIST': [
    ['SET', 'k', 'v'],
    ['TTL', 'k'],
    ['PTTL', 'k'],
    ['EXPIRE', 'k', '100'],
    ['TTL', 'k'],
    ['PERSIST', 'k'],
    ['TTL', 'k'],
    ['PERSIST', 'k'],
    ['PERSIST', 'nokey'],
    ['EXPIRE', 'nokey', '10'],
    ['EXPIRE', 'k', 'abc'],
    ['EXPIRE', 'k', '10', 'NX'],
    ['EXPIRE', 'k', '20', 'NX'],
    ['TTL', 'k'],
    ['EXPIRE', 'k', '30', 'XX'],
    ['TTL', 'k'],
    ['EXPIRE', 'k', '5', 'GT'],
    ['EXPIRE', 'k', '500', 'GT'],
    ['EXPIRE', 'k', '1000', 'LT'],
    ['EXPIRE', 'k', '10', 'LT'],
    ['TTL', 'k'],
    ['EXPIRE', 'k', '10', 'NX', 'XX'],
    ['EXPIRE', 'k', '10', 'GT', 'LT'],
    ['EXPIRE', 'k', '10', 'FOO'],
    ['EXPIRE', 'k', '10', 'nx', 'gt'],
    ['EXPIRE', 'k', '9223372036854775807'],
    ['PEXPIRE', 'k', '9223372036854775807'],
    ['EXPIRE', 'k', '-9223372036854775808'],
    ['PERSIST', 'k'],
    ['EXPIRE', 'k', '10', 'XX'],
    ['EXPIRE', 'k', '10', 'GT'],
    ['EXPIRE', 'k', '10', 'LT'],
    ['TTL', 'k'],
    ['EXPIRE', 'k', '-1'],
    ['EXISTS', 'k'],
    ['SET', 'k', 'v'],
    ['PEXPIRE', 'k', '0'],
    ['GET', 'k'],
    ['TTL', 'nokey'],
    ['PTTL', 'nokey'],
    ['EXPIRE', 'k'],
    ['PERSIST'],
    ['TTL'],
    ['PTTL', 'a', 'b'],
    ['SET', 'p', 'v'],
    ['PEXPIRE', 'p', '100000'],
    ['TTL', 'p'],
  ],
  'KEYS glob': [
    ['MSET', 'hello', '1', 'hallo', '2', 'hxllo', '3', 'hllo', '4', 'heeello', '5', 'h?llo', '6', 'a*b', '7'],
    ['KEYS', 'hel*'],
    ['KEYS', 'h[^ae?]llo'],
    ['KEYS', 'h[a-b]llo'],
    ['KEYS', 'h[b-a]llo'],
    ['KEYS', '*eee*'],
    ['KEYS', 'h\\?llo'],
    ['KEYS', 'a\\*b'],
    ['KEYS', 'nomatch*'],
    ['KEYS', 'h[x]llo'],
    ['KEYS', 'hll?'],
    ['KEYS', 'h[\\x]llo'],
    ['KEYS', '**eello'],
    ['KEYS', 'hllo*'],
    ['KEYS', 'h[a'],
    ['KEYS'],
    ['KEYS', 'a', 'b'],
  ],
  'DBSIZE, FLUSHDB and FLUSHALL': [
    ['DBSIZE'],
    ['MSET', 'a', '1', 'b', '2'],
    ['DBSIZE'],
    ['FLUSHDB'],
    ['DBSIZE'],
    ['MSET', 'a', '1'],
    ['FLUSHALL', 'ASYNC'],
    ['FLUSHALL', 'sync'],
    ['FLUSHALL', 'foo'],
    ['FLUSHDB', 'a', 'b'],
    ['DBSIZE', 'x'],
    ['DBSIZE'],
  ],
  'CLIENT SETNAME and GETNAME': [
    ['CLIENT', 'GETNAME'],
    ['CLIENT', 'SETNAME', 'foo'],
    ['CLIENT', 'GETNAME'],
    ['CLIENT', 'SETNAME', 'a b'],
    ['CLIENT', 'SETNAME', B('\xe9')],
    ['CLIENT', 'SETNAME', ''],
    ['CLIENT', 'GETNAME'],
    ['CLIENT'],
    ['CLIENT', 'FOO'],
    ['client', 'bar', 'x'],
    ['CLIENT', 'SETNAME'],
    ['CLIENT', 'GETNAME', 'x'],
  ],
  SELECT: [['SELECT', '0'], ['SELECT', '1'], ['SELECT', 'x'], ['SELECT', '99999999999'], ['SELECT'], ['SELECT', '-1']],
  'HELLO errors': [
    ['HELLO', '1'],
    ['HELLO', 'x'],
    ['HELLO', '2', 'FOO'],
    ['HELLO', '2', 'AUTH', 'bob', 'pw'],
    ['HELLO', '4'],
    ['HELLO', '2', 'SETNAME', 'a b'],
    ['HELLO', '2', 'AUTH', 'x'],
  ],
  'unknown commands and subcommands': [
    ['FOO'],
    ['foo', 'a', 'b'],
    Array.from({ length: 40 }, (_, i) => (i === 0 ? 'NOPE' : `argument-${i}`)),
    ['foo', 'a\r\nb'],
    ['foo', B('a\x00b'), 'c'],
    [B('f\x00o')],
    ['x'.repeat(200)],
    ['foo', 'y'.repeat(300)],
    [''],
    ['COMMAND', 'FOO'],
    ['COMMAND', 'COUNT', 'x'],
    ['CONFIG'],
    [B('\xe9t\xe9')],
  ],
  'inline commands': [
    ESC("set  'a b'  \"c\\x41\\n\\t\\\"\\q\"\r\nget 'a b'\r\n"),
    ESC('\r\n\n  \r\nPING\r\n'),
    ESC('echo "\\x4"\r\n'),
    ESC("echo 'it\\'s'\r\n"),
    ESC('echo a\tb\r\n'),
    ESC('*0\r\n*-1\r\nPING\r\n'),
    ESC('*-9223372036854775808\r\n*-9223372036854775807\r\nPING\r\n'),
  ],
  'QUIT with arguments stops the pipeline': [
    ['SET', 'a', '1'],
    ['QUIT', 'now'],
    ['SET', 'a', '2'],
  ],
};

/** Malformed requests: Redis replies `-ERR Protocol error: ...` and closes; earlier requests are answered first. */
const MALFORMED: Record<string, string> = {
  'multibulk length not a number': '*abc\r\n',
  'multibulk length with a leading zero': '*01\r\n$4\r\nPING\r\n',
  'multibulk length beyond 2^31': '*3000000000\r\n',
  'element not a bulk string': '*1\r\nX\r\n',
  'element is a latin1 byte': '*1\r\n\xe9\r\n',
  'element header starts with CR': '*1\r\n\r\n',
  'negative bulk length': '*1\r\n$-1\r\n',
  'bulk length not a number': '*1\r\n$abc\r\n',
  'bulk length beyond proto-max-bulk-len': '*1\r\n$536870913\r\n',
  'unbalanced double quote': 'echo "abc\r\n',
  'closing quote followed by a character': 'set a "b"c\r\n',
  'unbalanced single quote': "echo 'abc\r\n",
  'valid requests answered before the error': 'PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n',
  'count of 2^63': '*9223372036854775808\r\n',
  // A NUL before the line end hides it (Redis's strchr stops there): silence, until the buffer passes 64 KiB.
  'NUL in an inline line, then 64 KiB': `PING\r\nEC\x00HO a\r\nPING\r\n${'x'.repeat(70_000)}`,
  'NUL in a bulk header, then 64 KiB': `PING\r\n*1\r\n$4\x00\r\nPING\r\n${'x'.repeat(70_000)}`,
  'NUL in the count, then 64 KiB': `PING\r\n*1\x00\r\n$4\r\nPING\r\n${'x'.repeat(70_000)}`,
};

describe('kv against redis-server, byte for byte', { skip: needs('redis-server') }, () => {
  let kv: Running;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  before(async () => {
    [kv, redis] = await Promise.all([startKv(), startRedis()]);
  });
  after(async () => {
    await Promise.all([kv?.close(), redis?.close()]);
  });

  const run = async (port: number, script: Script): Promise<string> => {
    const parts = [encodeCommand(['FLUSHALL']), ...script.map((c) => (Buffer.isBuffer(c) ? c : encodeCommand(c)))];
    parts.push(encodeCommand(['QUIT']));
    return (await exchange(port, Buffer.concat(parts))).toString('latin1');
  };

  for (const [name, script] of Object.entries(SCRIPTS)) {
    test(name, async () => {
      const [expected, actual] = await Promise.all([run(redis.port, script), run(kv.port, script)]);
      assert.equal(actual, expected);
    });
  }

  for (const [name, request] of Object.entries(MALFORMED)) {
    test(`protocol error: ${name}`, async () => {
      const bytes = B(request);
      const [expected, actual] = await Promise.all([exchange(redis.port, bytes), exchange(kv.port, bytes)]);
      assert.match(expected.toString('latin1'), /-ERR Protocol error: /);
      assert.equal(actual.toString('latin1'), expected.toString('latin1'));
    });
  }
});
