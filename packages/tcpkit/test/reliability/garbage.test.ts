// Garbage: random bytes, oversized frames and truncated frames against every codec. Only the
// offending connection closes, with the right error code; honest connections to the same server
// stay up and keep being answered.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import { attackerAddress, closed, HONEST, type ServerProcess, startServer } from './harness.js';
import { recordResult } from './report.js';
import type { CodecApp } from './server.js';

const APPS: CodecApp[] = ['lines', 'lines-utf8', 'delimited', 'lengthPrefixed', 'fixed', 'resp'];
const RANDOM_PER_CODEC = 20;

/** A case: bytes sent, whether FIN follows, and the error code the server must report (null: none; 'any': none or a frame error). */
interface Case {
  app: CodecApp;
  name: string;
  bytes: Buffer;
  fin: boolean;
  expect: string | null | 'any';
  /** The exact bytes the server must send back before it closes (replies to the valid frames in front). */
  reply?: Buffer;
}

const be32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const TOO_LARGE = 'ERR_FRAME_TOO_LARGE';
const INVALID = 'ERR_FRAME_INVALID';

const cases: Case[] = [
  {
    app: 'lines',
    name: 'oversized line (4 KiB, maxLength 1 KiB)',
    bytes: Buffer.alloc(4096, 'a'),
    fin: false,
    expect: TOO_LARGE,
  },
  { app: 'lines', name: 'truncated last line, then FIN', bytes: Buffer.from('ping 1\nabc'), fin: true, expect: null },
  {
    app: 'lines-utf8',
    name: 'invalid UTF-8 line',
    bytes: Buffer.from([0x66, 0xff, 0xfe, 0x0a]),
    fin: false,
    expect: INVALID,
  },
  { app: 'delimited', name: 'oversized frame', bytes: Buffer.alloc(4096, 'a'), fin: false, expect: TOO_LARGE },
  { app: 'delimited', name: 'truncated frame, then FIN', bytes: Buffer.from('ok\0abc'), fin: true, expect: INVALID },
  {
    app: 'lengthPrefixed',
    name: 'length field 2^31 (maxLength 1 KiB)',
    bytes: be32(2 ** 31),
    fin: false,
    expect: TOO_LARGE,
  },
  {
    app: 'lengthPrefixed',
    name: 'truncated payload (50 of 100 bytes), then FIN',
    bytes: Buffer.concat([be32(100), Buffer.alloc(50)]),
    fin: true,
    expect: INVALID,
  },
  {
    app: 'lengthPrefixed',
    name: 'truncated length field, then FIN',
    bytes: Buffer.from([0, 0]),
    fin: true,
    expect: INVALID,
  },
  {
    app: 'fixed',
    name: 'truncated frame (10 of 16 bytes), then FIN',
    bytes: Buffer.alloc(10),
    fin: true,
    expect: INVALID,
  },
  {
    app: 'resp',
    name: 'bulk length beyond maxBulkLength',
    bytes: Buffer.from('*1\r\n$99999999\r\n'),
    fin: false,
    expect: TOO_LARGE,
  },
  { app: 'resp', name: "'X' where '$' is expected", bytes: Buffer.from('*1\r\nX\r\n'), fin: false, expect: INVALID },
  { app: 'resp', name: 'non-numeric multibulk length', bytes: Buffer.from('*abc\r\n'), fin: false, expect: INVALID },
  { app: 'resp', name: 'unbalanced quotes (inline)', bytes: Buffer.from('"abc\r\n'), fin: false, expect: INVALID },
  {
    app: 'resp',
    name: 'inline line over maxInlineLength',
    bytes: Buffer.alloc(4096, 'a'),
    fin: false,
    expect: TOO_LARGE,
  },
  // Valid requests in front of the garbage are answered before the connection closes.
  {
    app: 'lines',
    name: 'valid lines, then an oversized one',
    bytes: Buffer.concat([Buffer.from('ping 1\nping 2\n'), Buffer.alloc(4096, 'a')]),
    fin: false,
    expect: TOO_LARGE,
    reply: Buffer.from('pong 1\npong 2\n'),
  },
  {
    app: 'lengthPrefixed',
    name: 'a valid frame, then a length field of 2^31',
    bytes: Buffer.concat([be32(2), Buffer.from('ok'), be32(2 ** 31)]),
    fin: false,
    expect: TOO_LARGE,
    reply: Buffer.concat([be32(2), Buffer.from('ok')]),
  },
  {
    app: 'resp',
    name: 'a valid request, then a bad bulk length',
    bytes: Buffer.from('*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n'),
    fin: false,
    expect: INVALID,
    reply: Buffer.from('*1\r\n$4\r\nPING\r\n'),
  },
  // Redis drops a partial request at end of stream without a word; so does resp().
  {
    app: 'resp',
    name: 'truncated request, then FIN',
    bytes: Buffer.from('*2\r\n$3\r\nGET\r\n'),
    fin: true,
    expect: null,
  },
];
for (const app of APPS) {
  for (let i = 0; i < RANDOM_PER_CODEC; i++) {
    // For fixed(16), 64 KiB + 5 random bytes always ends mid-frame.
    const bytes = randomBytes(64 * 1024 + (app === 'fixed' ? 5 : 0));
    cases.push({ app, name: 'random bytes, then FIN', bytes, fin: true, expect: app === 'fixed' ? INVALID : 'any' });
  }
}

/** A valid request for each app and the exact reply it gets. */
const VALID: Record<CodecApp, [Buffer, Buffer]> = {
  lines: [Buffer.from('ping x\n'), Buffer.from('pong x\n')],
  'lines-utf8': [Buffer.from('ping é\n'), Buffer.from('pong é\n')],
  delimited: [Buffer.from('hello\0'), Buffer.from('hello\0')],
  lengthPrefixed: [Buffer.concat([be32(5), Buffer.from('hello')]), Buffer.concat([be32(5), Buffer.from('hello')])],
  fixed: [Buffer.from('0123456789abcdef'), Buffer.from('0123456789abcdef')],
  resp: [Buffer.from('*1\r\n$4\r\nPING\r\n'), Buffer.from('*1\r\n$4\r\nPING\r\n')],
};

/** An honest connection: sends a valid request and checks the exact reply, as often as asked. */
async function honestConnection(
  port: number,
): Promise<{ socket: net.Socket; roundTrip: (req: Buffer, res: Buffer) => Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: HONEST });
  await once(socket, 'connect');
  let got = Buffer.alloc(0);
  let want: { res: Buffer; resolve: () => void; reject: (e: Error) => void } | null = null;
  socket.on('data', (d: Buffer) => {
    got = Buffer.concat([got, d]);
    if (want !== null && got.length >= want.res.length) {
      const w = want;
      want = null;
      const reply = got.subarray(0, w.res.length);
      got = got.subarray(w.res.length);
      if (reply.equals(w.res)) w.resolve();
      else w.reject(new Error(`wrong reply ${JSON.stringify(reply.toString('latin1'))}`));
    }
  });
  const fail = (e: Error): void => want?.reject(e);
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('honest connection closed')));
  return {
    socket,
    roundTrip: (req, res) =>
      new Promise((resolve, reject) => {
        want = { res, resolve, reject };
        socket.write(req);
      }),
  };
}

let server: ServerProcess | undefined;
after(() => server?.stop());

test('garbage: only the offending connection closes, with the right error code', { timeout: 60_000 }, async () => {
  const started = performance.now();
  server = await startServer({ apps: APPS, options: {}, trackPeers: true });
  const portOf = (app: CodecApp): number => server!.ports[APPS.indexOf(app)]!;

  const honest = await Promise.all(APPS.map((app) => honestConnection(portOf(app))));
  await Promise.all(APPS.map((app, i) => honest[i]!.roundTrip(...VALID[app])));

  const outcomes = await Promise.all(
    cases.map(async (c, i) => {
      const socket = net.connect({ host: '127.0.0.1', port: portOf(c.app), localAddress: attackerAddress(i % 20) });
      const received: Buffer[] = [];
      socket.on('data', (d: Buffer) => received.push(d));
      const result = closed(socket);
      await once(socket, 'connect');
      const key = `${socket.localAddress}:${socket.localPort}`;
      socket.write(c.bytes);
      if (c.fin) socket.end();
      await result;
      if (c.reply !== undefined) {
        assert.equal(
          Buffer.concat(received).toString('latin1'),
          c.reply.toString('latin1'),
          `${c.app}: ${c.name}: replies before the close`,
        );
      }
      return key;
    }),
  );

  // The honest connections are still up and answered, and no error was recorded for them.
  await Promise.all(APPS.map((app, i) => honest[i]!.roundTrip(...VALID[app])));
  const report = await server.report();
  for (const h of honest) {
    assert.equal(
      report.peers[`${h.socket.localAddress}:${h.socket.localPort}`],
      undefined,
      'honest connection unharmed',
    );
    h.socket.end();
  }

  const byCode: Record<string, number> = {};
  const wrong: string[] = [];
  cases.forEach((c, i) => {
    const code = report.peers[outcomes[i]!] ?? null;
    byCode[code ?? 'none'] = (byCode[code ?? 'none'] ?? 0) + 1;
    const ok = c.expect === 'any' ? code === null || code === TOO_LARGE || code === INVALID : code === c.expect;
    if (!ok) wrong.push(`${c.app}: ${c.name}: expected ${c.expect}, got ${code}`);
  });
  assert.deepEqual(wrong, [], 'every garbage connection closed with the expected code');
  assert.ok(server.alive, 'server survived');
  assert.equal(report.stats.errors, Object.values(byCode).reduce((a, b) => a + b, 0) - (byCode.none ?? 0));
  const leak = await server.assertNoLeaks();

  recordResult({
    id: '4-garbage',
    title: 'Garbage',
    load: `${cases.length} hostile connections at once (${cases.length - APPS.length * RANDOM_PER_CODEC} crafted oversized/truncated/invalid frames, ${APPS.length * RANDOM_PER_CODEC} × 64 KiB random bytes) against ${APPS.join(', ')} + one honest connection per codec`,
    defence: 'codec maxLength / validation -> FrameError; the handler throws, only that connection is destroyed',
    outcome: `every crafted case closed with its expected code; honest connections answered before and after; server up`,
    lost: '0 (honest connections unharmed)',
    measured: {
      'connections by final code': Object.entries(byCode)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', '),
      ...Object.fromEntries(
        cases
          .filter((c) => c.name !== 'random bytes, then FIN')
          .map((c) => [`${c.app}: ${c.name}`, report.peers[outcomes[cases.indexOf(c)]!] ?? 'no error (by design)']),
      ),
      'handler errors (stats.errors)': report.stats.errors,
      'active / waiting after': `${leak.stats.active} / ${leak.stats.waiting}`,
    },
    durationMs: Math.round(performance.now() - started),
  });
});
