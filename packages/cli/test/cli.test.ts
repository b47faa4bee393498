import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, connect, exchange, within } from '../../tcpkit/test/helpers.js';
import { formatDuration, keepAlive, parseBoolean, parseCount, parseDuration, parseSize } from '../src/parse.js';

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

describe('parseDuration: one rule for every duration flag', () => {
  const cases: Array<[string, number]> = [
    ['0', 0],
    ['1500ms', 1500],
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
  it('refuses a bare number other than 0, asking for a unit', () => {
    for (const bare of ['30', '1500', '1.5']) assert.throws(() => parseDuration(bare), /needs a unit, such as/);
  });
  it('prints defaults as the README writes them', () => {
    const cases: Array<[number, string]> = [
      [0, '0'],
      [500, '500ms'],
      [2000, '2s'],
      [60_000, '60s'],
      [600_000, '10m'],
      [3_600_000, '1h'],
    ];
    for (const [ms, text] of cases) assert.equal(formatDuration(ms), text);
  });
});

describe('keepAlive values', () => {
  it('reads on, off and a duration', () => {
    assert.equal(keepAlive.parse('on'), true);
    assert.equal(keepAlive.parse('off'), false);
    assert.equal(keepAlive.parse('0'), false);
    assert.equal(keepAlive.parse('30s'), 30_000);
    assert.throws(() => keepAlive.parse('maybe'), /on, off or a duration/);
    assert.throws(() => keepAlive.parse('30'), /needs a unit/);
  });
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

  // Usage errors: one `tcpkit:` line naming what the user typed (and a hint), exit status 2, no stack trace.
  const invalid: Array<[string, string[], RegExp]> = [
    ['a malformed number', ['--max-connections', 'abc'], /--max-connections.*abc.*whole number/],
    ['a malformed duration', ['--idle-timeout', '5parsecs'], /5parsecs/],
    ['a bare number as a duration', ['--idle-timeout', '30'], /'30'.*needs a unit, such as 30s or 30ms/],
    ['an unknown --when-full mode', ['--when-full', 'maybe'], /maybe/],
    ['an unknown flag', ['--bogus', '1'], /bogus/],
    ['a --block that is not an address', ['--block', 'notacidr'], /--block.*'notacidr'.*address or a subnet/],
    ['a --block prefix out of range', ['--block', '10.0.0.0/33'], /'10\.0\.0\.0\/33'.*prefix length.*0 to 32/],
    ['a value serve() refuses, by its flag', ['--max-connections', '0'], /^tcpkit: --max-connections: must be/m],
    [
      'options serve() refuses together',
      ['--max-write-buffer', '1MiB', '--max-queued-bytes', '1KiB'],
      /--max-queued-bytes: must be >= --max-write-buffer/,
    ],
    ['a kv flag given to echo', ['--max-bulk-length', '1KiB'], /--max-bulk-length applies to the kv app only/],
    ['an empty --host', ['--host', ''], /host: must not be empty/],
  ];
  for (const [name, flags, message] of invalid) {
    it(`exits 2 with one message for ${name}`, SLOW, async () => {
      const proc = tcpkit('serve', 'echo', '--port', '0', ...flags);
      try {
        const exit = await within(proc.exited, 30_000, 'the CLI to exit');
        assert.equal(exit.code, 2, proc.stderr);
        assert.match(proc.stderr, message);
        assertOneError(proc.stderr);
        assert.ok(!proc.lines.some((l) => l.includes('"msg":"listening"')), 'it never listened');
      } finally {
        proc.kill();
      }
    });
  }

  it('exits 2 for an unknown app', SLOW, async () => {
    const proc = tcpkit('serve', 'nope', '--port', '0');
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 2);
      assert.match(
        proc.stderr,
        /^tcpkit: unknown app "nope"; choose one of echo, kv or a path such as \.\/server\.js$/m,
      );
      assertOneError(proc.stderr);
    } finally {
      proc.kill();
    }
  });

  it('a port in use: exit 1 and the error alone, with the flag that fixes it', SLOW, async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    const proc = tcpkit('serve', 'echo', '--port', String(port));
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 1, proc.stderr);
      assert.equal(proc.stderr, `tcpkit: port ${port} is in use on 127.0.0.1; choose another with --port\n`);
    } finally {
      proc.kill();
      taken.close();
    }
  });

  it('a port in use with --workers 2: the primary reports it once, exit 1, no worker replaced', SLOW, async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    const proc = tcpkit('serve', 'echo', '--port', String(port), '--workers', '2');
    try {
      const exit = await within(proc.exited, 60_000, 'the CLI to exit');
      assert.equal(exit.code, 1, proc.stderr);
      assert.equal(proc.stderr, `tcpkit: port ${port} is in use on 127.0.0.1; choose another with --port\n`);
    } finally {
      proc.kill();
      taken.close();
    }
  });

  it('an address not on this machine: exit 1, naming --host', SLOW, async () => {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails locally, nothing is sent.
    const proc = tcpkit('serve', 'echo', '--host', '192.0.2.1', '--port', '0');
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 1, proc.stderr);
      assert.equal(proc.stderr, 'tcpkit: 192.0.2.1 is not an address of this machine; choose another with --host\n');
    } finally {
      proc.kill();
    }
  });

  it('--keep-alive on is accepted (on with the OS delay)', SLOW, async () => {
    const proc = tcpkit('serve', 'echo', '--port', '0', '--keep-alive', 'on');
    try {
      const port = await listening(proc);
      assert.equal((await exchange(port, 'ka')).toString(), 'ka');
      proc.signal('SIGTERM');
      assert.equal((await within(proc.exited, 15_000, 'the CLI to exit')).code, 0);
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
      ['--admin-host', '127.0.0.1'],
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

describe('tcpkit serve --admin-process-metrics', () => {
  /** The metric names of `/metrics` of `tcpkit serve echo --admin-port 0 ...flags`. */
  async function metricNames(...flags: string[]): Promise<string[]> {
    const proc = tcpkit('serve', 'echo', '--port', '0', '--admin-port', '0', ...flags);
    try {
      const line = await proc.line((l) => l.includes('"msg":"listening"'), 'the listening line', 30_000);
      const admin = String((JSON.parse(line) as LogLine).admin);
      const res = await within(fetch(`http://${admin}/metrics`), 10_000, 'GET /metrics');
      const text = await res.text();
      return [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!);
    } finally {
      proc.kill();
    }
  }

  it("serves prom-client's process metrics by default and leaves them out with off", SLOW, async () => {
    const on = await metricNames();
    assert.ok(on.includes('process_resident_memory_bytes'), 'process metrics by default');
    assert.ok(on.includes('tcpkit_connections_active'));
    const off = await metricNames('--admin-process-metrics', 'off');
    assert.ok(off.includes('tcpkit_connections_active'));
    assert.deepEqual(
      off.filter((name) => /^(process|nodejs)_/.test(name)),
      [],
      'no process_* or nodejs_* metric',
    );
  });

  it('needs --admin-port', SLOW, async () => {
    const proc = tcpkit('serve', 'echo', '--port', '0', '--admin-process-metrics', 'off');
    try {
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 2);
      assert.match(proc.stderr, /--admin-process-metrics needs --admin-port/);
    } finally {
      proc.kill();
    }
  });
});

describe('tcpkit --version and --help', () => {
  it('--version prints the CLI package version', SLOW, async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const proc = tcpkit('--version');
    const exit = await within(proc.exited, 30_000, 'the CLI to exit');
    assert.equal(exit.code, 0);
    assert.deepEqual(proc.lines, [version]);
  });

  it('help texts show every default one way, durations as the README writes them', SLOW, async () => {
    for (const command of ['serve', 'bench', 'top']) {
      const proc = tcpkit(command, '--help');
      assert.equal((await within(proc.exited, 30_000, 'the CLI to exit')).code, 0);
      const help = proc.lines.join('\n');
      assert.doesNotMatch(help, /\(default: /, `${command}: commander's own default format`);
      if (command === 'serve') {
        assert.match(help, /--idle-timeout <duration> +no input while waiting for it \(default 60s\)/);
        assert.match(help, /--max-read-buffer <size> +unread input before pausing \(default 64KiB\)/);
        // The TLS flags are rows of the same table: the default is DEFAULTS.handshakeTimeout, printed the same way.
        assert.match(help, /--handshake-timeout <duration> +longest TLS handshake, 0 = none \(default 10s\)/);
        assert.match(help, /--trusted-proxy <cidr> +a load balancer/);
      } else if (command === 'top') {
        assert.match(help, /--admin-port <n> +port of the admin endpoint\n/);
        assert.match(help, /--admin-host <address> +address of the admin endpoint \(default 127\.0\.0\.1\)/);
      } else {
        assert.match(help, /measured window \(default 10s\)/);
        assert.doesNotMatch(help, /10000/, 'the duration default as a raw number of milliseconds');
      }
    }
  });
});

describe('one duration rule for serve and bench', () => {
  for (const command of ['serve', 'bench']) {
    it(`${command} refuses a bare number with the same message`, SLOW, async () => {
      const flag = command === 'serve' ? '--idle-timeout' : '--duration';
      const proc = tcpkit(command, ...(command === 'serve' ? ['echo'] : []), flag, '30');
      const exit = await within(proc.exited, 30_000, 'the CLI to exit');
      assert.equal(exit.code, 2);
      assert.match(proc.stderr, /a duration needs a unit, such as 30s or 30ms \(a bare number is refused, except 0\)/);
    });
  }
});

/** A usage or runtime error: `tcpkit: ...` lines only (plus the --help hint), no usage text, no stack. */
function assertOneError(stderr: string): void {
  const lines = stderr.trimEnd().split('\n');
  assert.match(lines[0]!, /^tcpkit: /);
  assert.ok(lines.length <= 2 && (lines.length === 1 || lines[1] === '(add --help for usage)'), stderr);
  assert.doesNotMatch(stderr, /Usage:|\n\s+at /);
}

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
