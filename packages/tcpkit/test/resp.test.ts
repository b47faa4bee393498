import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ByteQueue } from '../src/byte-queue.js';
import { FrameInvalidError, FrameTooLargeError, InvalidOptionError } from '../src/errors.js';
import {
  ErrorReply,
  protocolErrorReply,
  RawReply,
  type RespOptions,
  type RespReply,
  resp,
  SimpleString,
  splitArgs,
} from '../src/framing/resp.js';

const queueOf = (...chunks: Array<string | Buffer>): ByteQueue => {
  const q = new ByteQueue();
  for (const c of chunks) q.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  return q;
};

/** Every request in `input` as latin1 strings; stops at the first undefined. */
function decodeAll(input: string, options?: RespOptions): string[][] {
  const codec = resp(options);
  const q = queueOf(input);
  const out: string[][] = [];
  for (let r = codec.decode(q); r !== undefined; r = codec.decode(q)) out.push(r.map((b) => b.toString('latin1')));
  return out;
}

const encode = (reply: RespReply): string => {
  const chunks: Array<Uint8Array | string> = [];
  resp().encode(reply, { push: (...c) => chunks.push(...c) });
  return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))).toString('latin1');
};

const encodeCommand = (args: Buffer[]): Buffer => {
  const chunks: Array<Uint8Array | string> = [];
  resp().encode(args, { push: (...c) => chunks.push(...c) });
  return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
};

describe('resp#decode', () => {
  const cases: Array<[string, string, string[][]]> = [
    ['one array', '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n', [['GET', 'k']]],
    ['pipelined arrays', '*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n', [['PING'], ['ECHO', 'hi']]],
    ['empty bulk', '*2\r\n$4\r\nECHO\r\n$0\r\n\r\n', [['ECHO', '']]],
    ['binary bulk with CRLF inside', '*1\r\n$4\r\n\r\n\x00\xff\r\n', [['\r\n\x00\xff']]],
    ['bytes after a body are skipped unchecked, as Redis does', '*1\r\n$4\r\nPINGxx', [['PING']]],
    ['*0 is an empty request', '*0\r\n*1\r\n$4\r\nPING\r\n', [[], ['PING']]],
    ['*-1 is an empty request', '*-1\r\n', [[]]],
    ['inline', 'GET k\r\n', [['GET', 'k']]],
    ['inline with LF only', 'GET k\nPING\n', [['GET', 'k'], ['PING']]],
    ['inline blank lines are empty requests', '\r\n  \r\n', [[], []]],
    ['inline double quotes and escapes', 'SET "a b" "\\x41\\n\\t\\"\\q"\r\n', [['SET', 'a b', 'A\n\t"q']]],
    ['inline single quotes', "ECHO 'it\\'s' ''\r\n", [['ECHO', "it's", '']]],
    ['inline tabs separate arguments', 'ECHO\ta\t b\r\n', [['ECHO', 'a', 'b']]],
    ['inline invalid hex escape is literal', 'ECHO "\\x4g"\r\n', [['ECHO', 'x4g']]],
    ['incomplete header', '*2\r', []],
    ['incomplete body', '*1\r\n$4\r\nPI', []],
    ['incomplete trailing CRLF', '*1\r\n$4\r\nPING\r', []],
    ['incomplete inline', 'PING', []],
    // Redis finds a line end with strchr, which stops at a NUL: it waits, silent, for more input.
    ['NUL before the CR of the count: waits', '*1\x00\r\n$4\r\nPING\r\n', []],
    ['NUL before the CR of a bulk header: waits', '*1\r\n$4\x00\r\nPING\r\n', []],
    ['NUL first in a bulk header: waits', '*1\r\n\x00x\r\n', []],
    ['NUL in an inline line: waits', 'PING\r\nEC\x00HO a\r\nPING\r\n', [['PING']]],
    ['NUL in a bulk body is data', '*1\r\n$3\r\na\x00b\r\n', [['a\x00b']]],
    ['NUL after the header CR is data', '*1\r\n$1\r\n\x00\r\n', [['\x00']]],
    ['most negative 64-bit count is an empty request', '*-9223372036854775808\r\n*0\r\n', [[], []]],
    ['largest 64-bit negative count', '*-9223372036854775807\r\n', [[]]],
  ];
  for (const [name, input, expected] of cases) {
    test(name, () => assert.deepEqual(decodeAll(input), expected));
  }

  const errors: Array<[string, string, RespOptions, typeof FrameInvalidError | typeof FrameTooLargeError, string]> = [
    ['bad multibulk length', '*x\r\n', {}, FrameInvalidError, 'Protocol error: invalid multibulk length'],
    ['multibulk length with +', '*+1\r\n', {}, FrameInvalidError, 'Protocol error: invalid multibulk length'],
    [
      'multibulk length beyond int32',
      '*2147483648\r\n',
      {},
      FrameInvalidError,
      'Protocol error: invalid multibulk length',
    ],
    [
      'multibulk length beyond maxArrayLength',
      '*4\r\n',
      { maxArrayLength: 3 },
      FrameTooLargeError,
      'Protocol error: invalid multibulk length',
    ],
    ['expected $', '*1\r\n:1\r\n', {}, FrameInvalidError, "Protocol error: expected '$', got ':'"],
    ['negative bulk length', '*1\r\n$-1\r\n', {}, FrameInvalidError, 'Protocol error: invalid bulk length'],
    ['bulk length with a space', '*1\r\n$ 1\r\n', {}, FrameInvalidError, 'Protocol error: invalid bulk length'],
    [
      'bulk length beyond 512 MiB',
      '*1\r\n$536870913\r\n',
      {},
      FrameTooLargeError,
      'Protocol error: invalid bulk length',
    ],
    [
      'bulk length beyond maxBulkLength',
      '*1\r\n$11\r\n',
      { maxBulkLength: 10 },
      FrameTooLargeError,
      'Protocol error: invalid bulk length',
    ],
    [
      'request beyond maxLength',
      '*2\r\n$5\r\nhello\r\n$5\r\n',
      { maxLength: 20 },
      FrameTooLargeError,
      'Protocol error: request longer than maxLength (20 bytes)',
    ],
    ['unbalanced double quotes', 'ECHO "a\r\n', {}, FrameInvalidError, 'Protocol error: unbalanced quotes in request'],
    [
      'count one below the 64-bit minimum',
      '*-9223372036854775809\r\n',
      {},
      FrameInvalidError,
      'Protocol error: invalid multibulk length',
    ],
    ['count of 2^63', '*9223372036854775808\r\n', {}, FrameInvalidError, 'Protocol error: invalid multibulk length'],
    [
      'bulk length of 2^63 - 1, beyond proto-max-bulk-len',
      '*1\r\n$9223372036854775807\r\n',
      {},
      FrameTooLargeError,
      'Protocol error: invalid bulk length',
    ],
    [
      'NUL in an inline line past the limit',
      `PI\x00NG\r\n${'x'.repeat(16)}`,
      { maxInlineLength: 16 },
      FrameTooLargeError,
      'Protocol error: too big inline request',
    ],
    [
      'NUL in a bulk header past the limit',
      `*1\r\n$4\x00\r\n${'x'.repeat(16)}`,
      { maxInlineLength: 16 },
      FrameTooLargeError,
      'Protocol error: too big bulk count string',
    ],
    [
      'NUL in the count past the limit',
      `*1\x00\r\n${'x'.repeat(16)}`,
      { maxInlineLength: 16 },
      FrameTooLargeError,
      'Protocol error: too big mbulk count string',
    ],
    [
      'count header longer than the limit, finished',
      `*${'1'.repeat(17)}\r\n`,
      { maxInlineLength: 16 },
      FrameTooLargeError,
      'Protocol error: too big mbulk count string',
    ],
    [
      'closing quote glued to text',
      "ECHO 'a'b\r\n",
      {},
      FrameInvalidError,
      'Protocol error: unbalanced quotes in request',
    ],
    [
      'inline beyond maxInlineLength',
      `${'a'.repeat(11)}\r\n`,
      { maxInlineLength: 10 },
      FrameTooLargeError,
      'Protocol error: too big inline request',
    ],
    [
      'no newline beyond maxInlineLength',
      'a'.repeat(11),
      { maxInlineLength: 10 },
      FrameTooLargeError,
      'Protocol error: too big inline request',
    ],
    [
      'multibulk header without CR beyond maxInlineLength',
      `*${'1'.repeat(11)}`,
      { maxInlineLength: 10 },
      FrameTooLargeError,
      'Protocol error: too big mbulk count string',
    ],
    [
      'bulk header without CR beyond maxInlineLength',
      `*1\r\n$${'1'.repeat(11)}`,
      { maxInlineLength: 10 },
      FrameTooLargeError,
      'Protocol error: too big bulk count string',
    ],
  ];
  for (const [name, input, options, type, message] of errors) {
    test(`throws: ${name}`, () => {
      assert.throws(
        () => decodeAll(input, options),
        (err: Error) => err instanceof type && err.message === message,
      );
    });
  }

  test('valid requests before a malformed one decode first', () => {
    const codec = resp();
    const q = queueOf('PING\r\n*1\r\n$x\r\n');
    assert.deepEqual(codec.decode(q)?.map(String), ['PING']);
    assert.throws(() => codec.decode(q), FrameInvalidError);
  });

  test('an oversized bulk is refused from its header, before any body arrives', () => {
    const q = queueOf('*2\r\n$3\r\nSET\r\n$1073741824\r\n');
    assert.throws(() => resp().decode(q), FrameTooLargeError);
  });

  test('returns undefined without consuming while a request is incomplete', () => {
    const codec = resp();
    const q = queueOf('*2\r\n$3\r\nGET\r\n$1');
    assert.equal(codec.decode(q), undefined);
    assert.equal(q.length, 15);
    q.push(Buffer.from('\r\nk\r\n'));
    assert.deepEqual(codec.decode(q)?.map(String), ['GET', 'k']);
    assert.equal(q.length, 0);
  });

  test('a large array fed a byte at a time decodes once, to the same arguments', () => {
    const args = Array.from({ length: 2000 }, (_, i) => Buffer.from(`v${i}`));
    const bytes = encodeCommand(args);
    const codec = resp();
    const q = new ByteQueue();
    const results: Buffer[][] = [];
    for (let i = 0; i < bytes.length; i++) {
      q.push(bytes.subarray(i, i + 1));
      const r = codec.decode(q);
      if (r !== undefined) results.push(r);
    }
    assert.equal(results.length, 1);
    assert.deepEqual(results[0], args);
  });

  test('progress is discarded when the queue is consumed by someone else', () => {
    const codec = resp();
    const q = queueOf('*2\r\n$1\r\na\r\n');
    assert.equal(codec.decode(q), undefined);
    q.clear();
    q.push(Buffer.from('*1\r\n$4\r\nPING\r\n'));
    assert.deepEqual(codec.decode(q)?.map(String), ['PING']);
  });

  test('one codec object serves many queues at once', () => {
    const codec = resp();
    const a = queueOf('*2\r\n$3\r\nGET\r\n');
    const b = queueOf('*1\r\n$4\r\nPI');
    assert.equal(codec.decode(a), undefined);
    assert.equal(codec.decode(b), undefined);
    a.push(Buffer.from('$1\r\na\r\n'));
    b.push(Buffer.from('NG\r\n'));
    assert.deepEqual(codec.decode(b)?.map(String), ['PING']);
    assert.deepEqual(codec.decode(a)?.map(String), ['GET', 'a']);
  });

  test('decodeEnd returns a complete request and drops a partial one, as Redis does', () => {
    const codec = resp();
    assert.deepEqual(codec.decodeEnd!(queueOf('PING\r\n'))?.map(String), ['PING']);
    const q = queueOf('*1\r\n$4\r\nPI');
    assert.equal(codec.decodeEnd!(q), undefined);
    assert.equal(q.length, 0);
  });

  test('property: any commands, encoded and split into any chunks, decode to the same commands', () => {
    const arg = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
    const command = fc.array(arg, { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(
        fc.array(command, { minLength: 1, maxLength: 10 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (commands, cuts) => {
          const bytes = Buffer.concat(commands.map(encodeCommand));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const codec = resp();
          const q = new ByteQueue();
          const decoded: Buffer[][] = [];
          let from = 0;
          for (const to of [...points, bytes.length]) {
            q.push(bytes.subarray(from, to));
            from = to;
            for (let r = codec.decode(q); r !== undefined; r = codec.decode(q)) decoded.push(r);
          }
          assert.deepEqual(decoded, commands);
          assert.equal(q.length, 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

/**
 * What decoding `chunks` in order comes to: the requests, then the error (if any), then what was left.
 * `queue` defaults to one that gathers tiny chunks into its arena, as a connection's does.
 */
function outcome(options: RespOptions, chunks: Buffer[], q = new ByteQueue()): string {
  const codec = resp(options);
  const out: string[] = [];
  try {
    for (const c of chunks) {
      q.push(c);
      for (let r = codec.decode(q); r !== undefined; r = codec.decode(q)) {
        out.push(JSON.stringify(r.map((b) => b.toString('latin1'))));
      }
    }
    out.push(`pending ${q.length}`);
  } catch (error) {
    out.push(`${(error as FrameInvalidError).code}: ${(error as Error).message}`);
  }
  return out.join('\n');
}

describe('resp#decode: the outcome does not depend on how the input is cut into reads', () => {
  test('an inline line of exactly maxInlineLength, cut just before its LF', () => {
    const line = Buffer.from(`${'a'.repeat(65_536)}\r\n`);
    const whole = outcome({}, [line]);
    assert.equal(outcome({}, [line.subarray(0, line.length - 1), line.subarray(line.length - 1)]), whole);
    assert.match(whole, /^\["a+"\]\npending 0$/);
  });

  test('property: hostile RESP under any chunking decodes as in one read', () => {
    const limits = fc.record({
      maxInlineLength: fc.integer({ min: 4, max: 24 }),
      maxBulkLength: fc.integer({ min: 1, max: 16 }),
    });
    const piece = fc.oneof(
      fc.constantFrom('*', '$', '\r', '\n', '\r\n', '\x00', '-', '0', '1', '9', ' ', '"', "'", 'a', 'PING'),
      fc.integer({ min: -3, max: 30 }).map((n) => `*${n}\r\n`),
      fc.integer({ min: -3, max: 30 }).map((n) => `$${n}\r\n`),
      fc.string({ maxLength: 30 }).map((t) => `${t}\r\n`),
      fc.constantFrom('-9223372036854775808', '9223372036854775807', '9223372036854775808'),
    );
    const input = fc.array(piece, { maxLength: 40 }).map((p) => Buffer.from(p.join(''), 'latin1'));
    fc.assert(
      fc.property(limits, input, fc.array(fc.nat(), { maxLength: 12 }), (options, bytes, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
        const chunks: Buffer[] = [];
        let from = 0;
        for (const to of [...points, bytes.length]) {
          chunks.push(bytes.subarray(from, to));
          from = to;
        }
        assert.equal(outcome(options, chunks), outcome(options, [bytes]));
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 2000) },
    );
  });
});

describe('resp#decode: a request whole in one read (the fast path) decodes as one cut into single bytes', () => {
  test('property: every limit, well-formed and broken multibulk requests', () => {
    const limits = fc.record({
      maxInlineLength: fc.integer({ min: 1, max: 12 }),
      maxBulkLength: fc.integer({ min: 0, max: 12 }).map((n) => n + 1),
      maxArrayLength: fc.integer({ min: 1, max: 5 }),
      maxLength: fc.integer({ min: 1, max: 80 }),
    });
    const arg = fc.string({ maxLength: 14 });
    const request = fc.array(arg, { minLength: 1, maxLength: 6 }).map((args) => {
      let text = `*${args.length}\r\n`;
      for (const a of args) text += `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`;
      return text;
    });
    const damage = fc.constantFrom('', '*', '$', '\r', '\n', '0', '01', '-1', 'x', '\x00', '$01\r\n', '*007\r\n');
    const input = fc
      .array(fc.tuple(request, damage, fc.nat()), { minLength: 1, maxLength: 5 })
      .map((parts) =>
        Buffer.from(
          parts
            .map(([r, d, at]) => (d === '' ? r : r.slice(0, at % (r.length + 1)) + d + r.slice(at % (r.length + 1))))
            .join(''),
          'latin1',
        ),
      );
    fc.assert(
      fc.property(limits, input, (options, bytes) => {
        const bytewise = [...bytes].map((b) => Buffer.of(b));
        // Without the arena, every single byte stays its own chunk: the full parser's path throughout.
        assert.equal(
          outcome(options, [bytes]),
          outcome(options, bytewise, new ByteQueue(undefined, { coalesceMax: 0 })),
        );
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 2000) },
    );
  });

  test('arguments are views of the read, the request consumed exactly', () => {
    const chunk = Buffer.from('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI', 'latin1');
    const q = new ByteQueue();
    q.push(chunk);
    const args = resp().decode(q)!;
    assert.deepEqual(
      args.map((a) => a.toString()),
      ['GET', 'k'],
    );
    assert.equal(args[0]!.buffer, chunk.buffer);
    assert.equal(q.length, '*1\r\n$4\r\nPI'.length);
    assert.equal(resp().decode(q), undefined);
  });

  test("a 10-digit count or length under limits above 2^32 gets the full parser's error, not a RangeError", () => {
    const huge = { maxArrayLength: 2 ** 40, maxBulkLength: 2 ** 40, maxLength: 2 ** 50 };
    for (const text of ['*4294967296\r\n$1\r\na\r\n', '*9999999999\r\n$1\r\na\r\n', '*1\r\n$4294967296\r\na\r\n']) {
      const bytes = Buffer.from(text, 'latin1');
      const bytewise = [...bytes].map((b) => Buffer.of(b));
      assert.equal(outcome(huge, [bytes]), outcome(huge, bytewise, new ByteQueue(undefined, { coalesceMax: 0 })));
    }
  });
});

describe('resp#encode', () => {
  const cases: Array<[string, RespReply, string]> = [
    ['bulk from bytes', Buffer.from('a\r\nb'), '$4\r\na\r\nb\r\n'],
    ['bulk from a string (UTF-8)', 'é', '$2\r\n\xc3\xa9\r\n'],
    ['empty bulk', '', '$0\r\n\r\n'],
    ['null bulk', null, '$-1\r\n'],
    ['integer', -42, ':-42\r\n'],
    ['bigint', 9223372036854775807n, ':9223372036854775807\r\n'],
    ['simple string', new SimpleString('OK'), '+OK\r\n'],
    ['error', new ErrorReply('ERR boom'), '-ERR boom\r\n'],
    ['error with CR LF becomes spaces', new ErrorReply('ERR a\r\nb'), '-ERR a  b\r\n'],
    ['error quoting a latin1 byte stays one byte', new ErrorReply("ERR 'é'"), "-ERR '\xe9'\r\n"],
    ['raw', new RawReply('+PONG\r\n'), '+PONG\r\n'],
    ['empty array', [], '*0\r\n'],
    ['nested array', [1, [null, 'x']], '*2\r\n:1\r\n*2\r\n$-1\r\n$1\r\nx\r\n'],
  ];
  for (const [name, reply, expected] of cases) test(name, () => assert.equal(encode(reply), expected));

  test('a non-integer number is refused', () => assert.throws(() => encode(1.5), FrameInvalidError));

  test('protocolErrorReply is the -ERR line Redis sends', () => {
    assert.equal(
      protocolErrorReply(new FrameInvalidError("Protocol error: expected '$', got '\xe9'")).toString('latin1'),
      "-ERR Protocol error: expected '$', got '\xe9'\r\n",
    );
  });
});

describe('resp options', () => {
  for (const option of ['maxBulkLength', 'maxInlineLength', 'maxArrayLength', 'maxLength'] as const) {
    test(`${option} must be a positive integer`, () => {
      assert.throws(
        () => resp({ [option]: 0 }),
        (err: Error) => err instanceof InvalidOptionError && err.message.startsWith(option),
      );
      assert.throws(() => resp({ [option]: 1.5 }), InvalidOptionError);
    });
  }
});

describe('splitArgs', () => {
  test('stops at a NUL byte, like the C original', () => {
    assert.deepEqual(splitArgs(Buffer.from('a b\x00c d'))?.map(String), ['a', 'b']);
  });
  test('a quote inside a token opens a quoted part', () => {
    assert.deepEqual(splitArgs(Buffer.from('a"b c"'))?.map(String), ['ab c']);
  });
});

describe('resp#decode: one codec, many connections', () => {
  test('requests split across reads on interleaved connections decode as sent (shared scratch, long requests)', () => {
    const arg = fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a));
    // Up to 100 arguments: both sides of the 64-argument scratch limit.
    const command = fc.array(arg, { minLength: 1, maxLength: 100 });
    const stream = fc.record({
      commands: fc.array(command, { minLength: 1, maxLength: 4 }),
      cuts: fc.array(fc.nat(), { maxLength: 8 }),
    });
    fc.assert(
      fc.property(fc.array(stream, { minLength: 2, maxLength: 3 }), (streams) => {
        const codec = resp();
        const conns = streams.map(({ commands, cuts }) => {
          const bytes = Buffer.concat(commands.map(encodeCommand));
          const points = [...new Set(cuts.map((c) => c % bytes.length))].sort((a, b) => a - b);
          const pieces: Buffer[] = [];
          let at = 0;
          for (const p of [...points, bytes.length]) {
            if (p > at) pieces.push(Buffer.from(bytes.subarray(at, p)));
            at = Math.max(at, p);
          }
          return { expected: commands, pieces, queue: new ByteQueue(), got: [] as Buffer[][] };
        });
        // Round robin: each connection gets its next read, then decodes what it can.
        while (conns.some((c) => c.pieces.length > 0)) {
          for (const c of conns) {
            const piece = c.pieces.shift();
            if (piece === undefined) continue;
            c.queue.push(piece);
            for (let r = codec.decode(c.queue); r !== undefined; r = codec.decode(c.queue)) c.got.push(r);
          }
        }
        for (const c of conns) {
          assert.equal(c.queue.length, 0);
          assert.deepEqual(
            c.got.map((args) => args.map((b) => b.toString('hex'))),
            c.expected.map((args) => args.map((b) => b.toString('hex'))),
          );
        }
      }),
      { numRuns: 300 },
    );
  });
});
