/**
 * The kv app behind a real HAProxy sending PROXY v2: CLIENT INFO and CLIENT LIST show the client's own
 * address, and `tcpkit serve kv` drains on SIGTERM without a reset while clients run through HAProxy.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { serve } from 'tcpkit';
import { Child, within } from '../../../tcpkit/test/helpers.js';
import { freePort, Haproxy, needsHaproxy } from '../../../tcpkit/test/integration/haproxy.js';
import { createApp } from '../../src/apps/kv/index.js';
import { encodeCommand } from './kv-helpers.js';

const TEST = { timeout: 90_000, skip: needsHaproxy() };
const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

function haproxyConfig(front: number, backend: number): string {
  return `frontend fe
  bind 127.0.0.1:${front}
  default_backend be

backend be
  server tcpkit 127.0.0.1:${backend} send-proxy-v2 check check-send-proxy inter 200ms fall 1 rise 1
`;
}

/** A RESP client on one connection: sends a command, resolves to the next whole reply (bulk or simple). */
class RespClient {
  readonly socket: net.Socket;
  #buffer = '';
  #waiters: ((reply: string | null) => void)[] = [];
  ended = false;
  error: NodeJS.ErrnoException | undefined;

  constructor(port: number, localAddress: string) {
    this.socket = net.connect({ host: '127.0.0.1', port, localAddress });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.#buffer += d;
      this.#drain();
    });
    this.socket.on('end', () => {
      this.ended = true;
    });
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error = e;
    });
    // A request still unanswered when the connection closes gets null.
    this.socket.on('close', () => {
      for (const w of this.#waiters.splice(0)) w(null);
    });
  }

  #drain(): void {
    for (;;) {
      const reply = takeReply(this.#buffer);
      if (reply === undefined || this.#waiters.length === 0) return;
      this.#buffer = this.#buffer.slice(reply.length);
      this.#waiters.shift()!(reply);
    }
  }

  /** The reply, or null if the connection closed first. */
  send(...args: string[]): Promise<string | null> {
    if (this.socket.destroyed) return Promise.resolve(null);
    const reply = new Promise<string | null>((resolve) => this.#waiters.push(resolve));
    this.socket.write(encodeCommand(args));
    this.#drain();
    return within(reply, 20_000, `the reply to ${args.join(' ')}`);
  }
}

/** The first whole RESP reply at the start of `buffer` (simple, error, integer or bulk), or undefined. */
function takeReply(buffer: string): string | undefined {
  const eol = buffer.indexOf('\r\n');
  if (eol === -1) return undefined;
  if (buffer[0] !== '$') return buffer.slice(0, eol + 2);
  const n = Number(buffer.slice(1, eol));
  const end = eol + 2 + n + 2;
  return n < 0 ? buffer.slice(0, eol + 2) : buffer.length >= end ? buffer.slice(0, end) : undefined;
}

describe('kv behind HAProxy (PROXY v2)', () => {
  it("CLIENT INFO and CLIENT LIST show the client's own address (127.0.0.9), not HAProxy's", TEST, async () => {
    const app = createApp();
    const server = await serve({ host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.1'] } }, app.handler);
    const backend = (server.address as net.AddressInfo).port;
    const front = await freePort();
    const haproxy = await Haproxy.start(haproxyConfig(front, backend));
    try {
      await haproxy.waitStatus('be', 'tcpkit', 'UP');
      const client = new RespClient(front, '127.0.0.9');
      await once(client.socket, 'connect');
      const info = (await client.send('CLIENT', 'INFO')) ?? '';
      assert.match(info, new RegExp(`addr=127\\.0\\.0\\.9:${client.socket.localPort} laddr=127\\.0\\.0\\.1:${front} `));
      assert.match(info, /cmd=client\|info/);
      const other = new RespClient(front, '127.0.0.10');
      await once(other.socket, 'connect');
      await other.send('CLIENT', 'SETNAME', 'second');
      const list = (await client.send('CLIENT', 'LIST')) ?? '';
      assert.match(list, /addr=127\.0\.0\.9:\d+ /);
      assert.match(list, /addr=127\.0\.0\.10:\d+ laddr=[^ ]+ fd=\d+ name=second /);
      client.socket.destroy();
      other.socket.destroy();
    } finally {
      await haproxy.stop();
      await server.shutdown({ timeout: 2000 });
      app.close();
    }
  });

  it(
    'SIGTERM to tcpkit serve kv amid clients through HAProxy: every request received is answered, no reset, backend DOWN',
    TEST,
    async () => {
      const proc = new Child(process.execPath, [
        '--import',
        'tsx',
        MAIN,
        'serve',
        'kv',
        '--port',
        '0',
        '--proxy-protocol',
        '--trusted-proxy',
        '127.0.0.1',
      ]);
      const line = await proc.line((l) => l.includes('"msg":"listening"'), 'the listening line', 30_000);
      const backend = Number(/:(\d+)$/.exec(String((JSON.parse(line) as { address: unknown }).address))?.[1]);
      const front = await freePort();
      const haproxy = await Haproxy.start(haproxyConfig(front, backend));
      try {
        await haproxy.waitStatus('be', 'tcpkit', 'UP');
        const clients = Array.from({ length: 20 }, (_, i) => new RespClient(front, `127.0.0.${10 + (i % 5)}`));
        await Promise.all(clients.map((c) => once(c.socket, 'connect')));
        let answered = 0;
        let signalled = false;
        // Each client: INCR in a loop until the server ends the connection; every reply must be an integer.
        const loops = clients.map(async (c, i) => {
          while (!c.ended && c.error === undefined) {
            const r = await c.send('INCR', `k${i}`);
            if (r === null) break;
            assert.match(r, /^:\d+\r\n$/);
            answered++;
            if (answered === 200 && !signalled) {
              signalled = true;
              proc.signal('SIGTERM');
            }
          }
        });
        await within(Promise.all(loops), 60_000, 'every client to see the end of its connection');
        assert.ok(signalled, 'the server was signalled mid-traffic');
        for (const c of clients) assert.equal(c.error, undefined, `no client saw a reset (${c.error?.code})`);
        assert.equal((await within(proc.exited, 30_000, 'tcpkit to exit')).code, 0);
        await haproxy.waitStatus('be', 'tcpkit', 'DOWN');
      } finally {
        proc.kill();
        await haproxy.stop();
      }
    },
  );
});
