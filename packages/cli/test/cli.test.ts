import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, connect, exchange, within } from '../../tcpkit/test/helpers.js';
import { parseBoolean, parseCount, parseDuration, parseSize } from '../src/parse.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SLOW = { timeout: 40_000 };

function tcpkit(...args: string[]): Child {
  return new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
}

/** A pino JSON line: level, time and msg, plus the fields of the event. */
type LogLine = { level: number; time: number; msg: string } & Record<string, unknown>;

/** Every stdout line parsed as JSON (fails on a line that is not). */
function logLines(proc: Child): LogLine[] {
  return proc.lines.filter((l) => l !== '').map((l) => JSON.parse(l) as LogLine);
}

/** Starts `tcpkit serve ...` and resolves with the port of its `listening` log line. */
async function listening(proc: Child): Promise<number> {
  const line = await proc.line((l) => l.includes('"msg":"listening"'), 'the listening line', 30_000);
  const m = /^127\.0\.0\.1:(\d+)$/.exec(String((JSON.parse(line) as LogLine).address));
  assert.ok(m, `an address in ${JSON.stringify(line)}`);
  return Number(m[1]);
}

describe('parseDuration', () => {
  const cases: Array<[string, number]> = [
    ['0', 0],
    ['1500', 1500],
    ['250ms', 250],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['1h', 3_600_000],
  ];
  for (const [text, ms] of cases) it(`${text} -> ${ms}`, () => assert.equal(parseDuration(text), ms));
  for (const bad of ['', 'abc', '-1s', '10 parsecs', '5d', 's']) {
    it(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseDuration(bad), /duration/));
  }
});

describe('parseSize', () => {
  const cases: Array<[string, number]> = [
    ['65536', 65536],
    ['64k', 65536],
    ['64KiB', 65536],
    ['1kb', 1000],
    ['4MiB', 4 * 1024 * 1024],
    ['1mb', 1_000_000],
  ];
  for (const [text, bytes] of cases) it(`${text} -> ${bytes}`, () => assert.equal(parseSize(text), bytes));
  for (const bad of ['', 'lots', '-1', '5 parsecs', '1tb']) {
    it(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseSize(bad), /size/));
  }
});

describe('parseCount and parseBoolean', () => {
  it('parses whole numbers only', () => {
    assert.equal(parseCount('0'), 0);
    assert.equal(parseCount('1000'), 1000);
    for (const bad of ['-1', '1.5', 'ten', '']) assert.throws(() => parseCount(bad), /whole number/);
  });
  it('parses on/off words', () => {
    for (const t of ['on', 'true', '1', 'YES']) assert.equal(parseBoolean(t), true);
    for (const f of ['off', 'false', '0', 'no']) assert.equal(parseBoolean(f), false);
    assert.throws(() => parseBoolean('maybe'), /on or off/);
  });
});

describe('tcpkit serve echo', () => {
  it('prints its address, echoes, drains on SIGTERM and exits 0', SLOW, async () => {
    const proc = tcpkit('serve', 'echo', '--host', '127.0.0.1', '--port', '0');
    try {
      const port = await listening(proc);
      assert.notEqual(port, 0);
      assert.equal((await exchange(port, 'through the CLI')).toString(), 'through the CLI');
      const idle = await connect(port);
      idle.write('hi');
      await idle.receive(2);
      proc.signal('SIGTERM');
      const closed = await idle.waitClosed(10_000);
      assert.equal(closed.ended, true, 'the open connection was drained with FIN');
      const exit = await within(proc.exited, 15_000, 'the CLI to exit');
      assert.deepEqual(exit, { code: 0, signal: null }, proc.stderr);
      const done = logLines(proc).find((l) => l.msg === 'shut down');
      assert.equal(done?.graceful, 1, proc.lines.join('\n'));
      assert.equal(done?.forced, 0);
    } finally {
      proc.kill();
    }
  });

  it('passes limit and timeout flags to serve()', SLOW, async () => {
    const proc = tcpkit(
      'serve',
      'echo',
      '--port',
      '0',
      '--max-connections',
      '1',
      '--when-full',
      'reject',
      '--first-byte-timeout',
      '300ms',
      '--idle-timeout',
      '30s',
    );
    try {
      const port = await listening(proc);
      const a = await connect(port);
      a.write('a');
      await a.receive(1);
      // --max-connections 1 --when-full reject: a second connection is closed unserved.
      const b = await connect(port);
      b.write('b');
      await b.waitClosed();
      assert.equal(b.receivedLength, 0);
      a.end();
      await a.waitClosed();
      // --first-byte-timeout 300ms: a silent connection is cut off.
      const c = await connect(port);
      await c.waitClosed(10_000);
      assert.equal(c.receivedLength, 0);
      proc.signal('SIGTERM');
      assert.equal((await within(proc.exited, 15_000, 'the CLI to exit')).code, 0);
    } finally {
      proc.kill();
    }
  });

  const invalid: Array<[string, string[], RegExp]> = [
    ['a malformed number', ['--max-connections', 'abc'], /max-connections.*abc|abc/s],
    ['a malformed duration', ['--idle-timeout', '5parsecs'], /5parsecs/],
    ['an unknown --when-full mode', ['--when-full', 'maybe'], /maybe/],
    ['an unknown flag', ['--bogus', '1'], /bogus/],
    ['options serve() refuses', ['--max-write-buffer', '1MiB', '--max-queued-bytes', '1KiB'], /maxQueuedBytes/],
    ['a kv flag given to echo', ['--max-bulk-length', '1KiB'], /--max-bulk-length applies to the kv app only/],
    ['an empty --host', ['--host', ''], /host: must not be empty/],
  ];
  for (const [name, flags, message] of invalid) {
    it(`exits non-zero with a message for ${name}`, SLOW, async () => {
      const proc = tcpkit('serve', 'echo', '--port', '0', ...flags);
      try {
        const exit = await within(proc.exited, 30_000, 'the CLI to exit');
        assert.notEqual(exit.code, 0);
        assert.match(proc.stderr, message);
        assert.ok(!proc.lines.some((l) => l.includes('"msg":"listening"')), 'it never listened');
      } finally {
        proc.kill();
      }
    });
  }

  it('exits non-zero for an unknown app', SLOW, async () => {
    const proc = tcpkit('serve', 'nope', '--port', '0');
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.notEqual(exit.code, 0);
      assert.match(proc.stderr, /unknown app "nope"/);
    } finally {
      proc.kill();
    }
  });
});

describe('tcpkit serve logs', () => {
  it('writes pino JSON lines only, a handler error with the connection id and peer', SLOW, async () => {
    const proc = tcpkit('serve', 'echo', '--port', '0', '--first-byte-timeout', '300ms', '--log-level', 'debug');
    try {
      const port = await listening(proc);
      const silent = await connect(port);
      const local = `127.0.0.1:${silent.socket.localPort}`;
      await silent.waitClosed(10_000);
      const failed = await proc.line((l) => l.includes('connection handler failed'), 'the handler error line');
      const entry = JSON.parse(failed) as LogLine;
      assert.equal(entry.level, 40, 'warn');
      assert.equal(entry.peer, local);
      assert.equal(typeof entry.connId, 'number');
      assert.equal((entry.err as { code?: string }).code, 'ERR_FIRST_BYTE_TIMEOUT');
      await proc.line((l) => l.includes('"msg":"connection closed"'), 'the debug close line');
      proc.signal('SIGTERM');
      assert.equal((await within(proc.exited, 15_000, 'the CLI to exit')).code, 0);
      const lines = logLines(proc);
      for (const l of lines) {
        assert.equal(typeof l.level, 'number');
        assert.equal(typeof l.time, 'number');
        assert.equal(typeof l.msg, 'string');
      }
      const closed = lines.find((l) => l.msg === 'connection closed' && l.connId === entry.connId);
      assert.equal(closed?.reason, 'ERR_FIRST_BYTE_TIMEOUT');
      assert.deepEqual(
        lines.filter((l) => l.level === 30).map((l) => l.msg),
        ['listening', 'draining', 'shut down'],
      );
    } finally {
      proc.kill();
    }
  });

  it('refuses an unknown --log-level or --log-format', SLOW, async () => {
    for (const flags of [
      ['--log-level', 'loud'],
      ['--log-format', 'xml'],
      ['--admin-host', '0.0.0.0'],
    ]) {
      const proc = tcpkit('serve', 'echo', '--port', '0', ...flags);
      try {
        const exit = await within(proc.exited, 30_000, 'the CLI to exit');
        assert.notEqual(exit.code, 0);
        assert.match(proc.stderr, /loud|xml|--admin-host needs --admin-port/);
      } finally {
        proc.kill();
      }
    }
  });
});

describe('tcpkit serve kv', () => {
  it('--max-bulk-length lowers the longest value the kv accepts', SLOW, async () => {
    const proc = tcpkit('serve', 'kv', '--port', '0', '--max-bulk-length', '1KiB');
    try {
      const port = await listening(proc);
      const ok = await exchange(
        port,
        `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1024\r\n${'v'.repeat(1024)}\r\n*1\r\n$4\r\nQUIT\r\n`,
      );
      assert.equal(ok.toString(), '+OK\r\n+OK\r\n');
      // Refused from the header, before any of the body is buffered.
      const refused = await exchange(port, '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n');
      assert.equal(refused.toString(), '-ERR Protocol error: invalid bulk length\r\n');
      proc.signal('SIGTERM');
      assert.equal((await within(proc.exited, 15_000, 'the CLI to exit')).code, 0);
    } finally {
      proc.kill();
    }
  });
});
