// Requests built to hurt the server, sent to the kv app and to a real redis-server: the replies
// must be Redis's, byte for byte, and the connection must go on serving.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { needs, runOnBoth, useKvAndRedis } from './kv-helpers.js';

const TEST = { timeout: 60_000, skip: needs('redis-server') };

describe('kv against redis-server: abusive KEYS patterns', () => {
  const both = useKvAndRedis();

  it(
    'a pattern nesting 1000 stars matches, 1001 or 30,000 match nothing, and the connection serves on',
    TEST,
    async () => {
      const key = 'a'.repeat(3000);
      const script = [
        ['SET', key, '1'],
        ['KEYS', '*a'.repeat(1000)],
        ['KEYS', '*a'.repeat(1001)],
        // One recursion per star used to overflow the stack: the handler threw, the reply never came.
        ['KEYS', '*a'.repeat(30_000)],
        ['PING'],
      ];
      const [expected, actual] = await runOnBoth(both, script);
      assert.equal(actual, expected);
      assert.ok(actual.endsWith('+PONG\r\n+OK\r\n'), 'PING answered, then QUIT');
      assert.equal(both.kv.server.stats().errors, 0);
    },
  );
});
