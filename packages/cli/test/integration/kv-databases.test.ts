/**
 * Redis's 16 numbered databases, byte for byte against a real redis-server: SELECT, per-database
 * DBSIZE, KEYS and FLUSHDB, FLUSHALL, SWAPDB, MOVE and INFO keyspace, with their error texts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { needs, runOnBoth, type Script, useKvAndRedis } from './kv-helpers.js';

const SCRIPTS: Record<string, Script> = {
  SELECT: [
    ['SELECT', '0'],
    ['SELECT', '1'],
    ['SELECT', '15'],
    ['SELECT', '16'],
    ['SELECT', 'x'],
    ['SELECT', '1.5'],
    ['SELECT', '01'],
    ['SELECT', ' 1'],
    ['SELECT', ''],
    ['SELECT', '99999999999'],
    ['SELECT', '-2147483649'],
    ['SELECT'],
    ['SELECT', '1', '2'],
    ['SELECT', '-1'],
  ],
  'databases are separate key spaces': [
    ['SET', 'k', 'zero'],
    ['SELECT', '1'],
    ['GET', 'k'],
    ['SET', 'k', 'one'],
    ['MSET', 'a', '1', 'b', '2'],
    ['DBSIZE'],
    ['KEYS', 'a*'],
    ['SELECT', '15'],
    ['SET', 'k', 'fifteen', 'EX', '100'],
    ['DBSIZE'],
    ['SELECT', '0'],
    ['GET', 'k'],
    ['DBSIZE'],
    ['KEYS', '*'],
    ['INFO', 'keyspace'],
    ['SELECT', '1'],
    ['FLUSHDB'],
    ['DBSIZE'],
    ['SELECT', '0'],
    ['DBSIZE'],
    ['SELECT', '15'],
    ['TTL', 'k'],
    ['INFO', 'KEYSPACE'],
    ['FLUSHALL'],
    ['DBSIZE'],
    ['SELECT', '0'],
    ['DBSIZE'],
    ['INFO', 'keyspace'],
  ],
  SWAPDB: [
    ['SET', 'k', 'zero'],
    ['SELECT', '2'],
    ['SET', 'k', 'two'],
    ['SET', 'only2', 'x', 'EX', '100'],
    ['SWAPDB', '0', '2'],
    ['GET', 'k'],
    ['TTL', 'only2'],
    ['SELECT', '0'],
    ['GET', 'k'],
    ['TTL', 'only2'],
    ['SWAPDB', '0', '0'],
    ['GET', 'k'],
    ['SWAPDB', '0', '5'],
    ['DBSIZE'],
    ['SELECT', '5'],
    ['DBSIZE'],
    ['SWAPDB', '0', '16'],
    ['SWAPDB', '16', '0'],
    ['SWAPDB', '-1', '0'],
    ['SWAPDB', 'x', '1'],
    ['SWAPDB', '0', 'x'],
    ['SWAPDB', 'x', 'y'],
    ['SWAPDB', '99999999999', '1'],
    ['SWAPDB', '1', '99999999999'],
    ['SWAPDB', '1.0', '1'],
    ['SWAPDB', '0'],
    ['SWAPDB', '0', '1', '2'],
  ],
  MOVE: [
    ['SET', 'k', 'v', 'EX', '100'],
    ['MOVE', 'k', '0'],
    ['MOVE', 'k', '3'],
    ['EXISTS', 'k'],
    ['MOVE', 'k', '3'],
    ['SELECT', '3'],
    ['GET', 'k'],
    ['TTL', 'k'],
    ['SET', 'other', 'in3'],
    ['SELECT', '0'],
    ['SET', 'other', 'in0'],
    ['MOVE', 'other', '3'],
    ['GET', 'other'],
    ['MOVE', 'missing', '3'],
    ['MOVE', 'other', '16'],
    ['MOVE', 'other', '-1'],
    ['MOVE', 'other', 'x'],
    ['MOVE', 'other', '99999999999'],
    ['MOVE', 'missing', '0'],
    ['MOVE', 'missing', '16'],
    ['MOVE', 'other'],
    ['MOVE', 'other', '1', '2'],
    ['SET', 'gone', 'v', 'PX', '1'],
    ['SELECT', '3'],
    ['DBSIZE'],
  ],
  'INFO with unknown or no sections': [
    ['INFO', 'nosuchsection'],
    ['INFO', 'keyspace'],
    ['INFO', 'Keyspace', 'foo'],
  ],
};

describe('kv databases against redis-server, byte for byte', { skip: needs('redis-server') }, () => {
  const both = useKvAndRedis();

  for (const [name, script] of Object.entries(SCRIPTS)) {
    test(name, async () => {
      const [expected, actual] = await runOnBoth(both, script);
      assert.equal(actual, expected);
    });
  }

  test('a client keeps its database across SWAPDB and sees the swapped contents', async () => {
    const script: Script = [
      ['SELECT', '4'],
      ['SET', 'k', 'four'],
      ['SWAPDB', '4', '9'],
      ['GET', 'k'],
      ['SELECT', '9'],
      ['GET', 'k'],
    ];
    const [expected, actual] = await runOnBoth(both, script);
    assert.equal(actual, expected);
    assert.match(actual, /\$-1\r\n\+OK\r\n\$4\r\nfour\r\n/);
  });
});
