// Hostile PROXY headers against a real server on loopback while an honest balancer connection
// streams through it: every bad header is refused with a typed ERR_PROXY_PROTOCOL on that connection
// only, and the honest connection's bytes come back exact and in order.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { type Conn, encodeProxyHeader, serve } from '../../src/index.js';
import { ChannelProbe, LOOPBACK, portOf, pseudoRandom, stop, within } from '../helpers.js';

const TEST = { timeout: 60_000 };
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const INET = Buffer.from([10, 0, 0, 1, 127, 0, 0, 1, 0x04, 0xd2, 0x00, 0x50]); // 10.0.0.1:1234 -> 127.0.0.1:80

function tlv(type: number, value: Buffer): Buffer {
  const out = Buffer.alloc(3 + value.length);
  out[0] = type;
  out.writeUInt16BE(value.length, 1);
  value.copy(out, 3);
  return out;
}

function v2(body: Buffer, famProto = 0x11, declared = body.length): Buffer {
  const head = Buffer.alloc(16);
  SIG.copy(head);
  head[12] = 0x21;
  head[13] = famProto;
  head.writeUInt16BE(declared, 14);
  return Buffer.concat([head, body]);
}

/** SSL TLVs, each the only sub-TLV of the one around it, `depth` deep. */
function nestedSsl(depth: number): Buffer {
  let inner: Buffer = Buffer.alloc(0);
  for (let i = 0; i < depth; i++) inner = tlv(0x20, Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0]), inner]));
  return inner;
}

/** Sends `bytes`, then FIN; resolves with everything the server sent before it closed. */
async function send(port: number, bytes: Buffer): Promise<Buffer> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  await once(s, 'connect');
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  const closed = once(s, 'close');
  s.end(bytes);
  await within(closed, 15_000, 'the server to close the connection');
  return Buffer.concat(chunks);
}

/** An honest balancer connection that echoes `rounds` pseudo-random chunks one after another and checks each. */
async function honest(port: number, rounds: number): Promise<number> {
  const s = net.connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  s.write(encodeProxyHeader(1, { address: '10.9.9.9', port: 4000 }, { address: '127.0.0.1', port: 80 }));
  let checked = 0;
  let got: Buffer[] = [];
  let have = 0;
  let want: Buffer = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  s.on('data', (d: Buffer) => {
    got.push(d);
    have += d.length;
    if (have >= want.length) wake?.();
  });
  for (let i = 0; i < rounds; i++) {
    want = pseudoRandom(1 + ((i * 7919) % 30_000), i + 1);
    got = [];
    have = 0;
    const arrived = new Promise<void>((resolve) => {
      wake = resolve;
    });
    s.write(want);
    await within(arrived, 15_000, `the echo of round ${i}`);
    assert.ok(Buffer.concat(got).equals(want), `round ${i}: the echo is exact`);
    checked += want.length;
  }
  s.end();
  await once(s, 'close');
  return checked;
}

describe('PROXY protocol under hostile headers', () => {
  it(
    'each bad header closes its connection with ERR_PROXY_PROTOCOL; an honest stream beside them is intact',
    TEST,
    async () => {
      const conns: Conn[] = [];
      const server = await serve({ ...LOOPBACK, proxyProtocol: { trusted: ['127.0.0.1'] } }, async (conn) => {
        conns.push(conn);
        for await (const chunk of conn) await conn.write(chunk);
      });
      const refused = new ChannelProbe<{ error: Error & { code?: string } }>('tcpkit:proxy:error');
      try {
        const port = portOf(server);
        const stream = honest(port, 200);
        const bad: [string, Buffer][] = [
          ['v1 without CRLF within 107 bytes', Buffer.from(`PROXY TCP4 ${'1'.repeat(200)}\r\n`)],
          ['v1 port out of range', Buffer.from('PROXY TCP4 10.0.0.1 127.0.0.1 99999 80\r\nhi')],
          ['v1 truncated then FIN', Buffer.from('PROXY TCP4 10.0.0.1')],
          ['v2 truncated then FIN', v2(INET).subarray(0, 20)],
          ['v2 declares 65535 bytes, sends 12', v2(INET, 0x11, 65_535)],
          ['v2 bad family', v2(INET, 0x41)],
          ['v2 TLV overruns the header', v2(Buffer.concat([INET, Buffer.from([0x04, 0x00, 0xff, 0x00])]))],
          ['v2 CRC32C mismatch', v2(Buffer.concat([INET, tlv(0x03, Buffer.from([1, 2, 3, 4]))]))],
          ['no header at all', Buffer.from('GET / HTTP/1.0\r\n\r\n')],
        ];
        for (const [name, bytes] of bad) {
          assert.equal((await send(port, bytes)).length, 0, `${name}: nothing reaches a handler or comes back`);
        }
        await refused.next(() => refused.messages.length >= bad.length, 10_000);
        for (const [i, m] of refused.messages.entries()) {
          assert.equal(m.error.code, 'ERR_PROXY_PROTOCOL', `${bad[i]?.[0]}: ${m.error.message}`);
          assert.equal(m.error.name, 'ProxyProtocolError');
        }
        // SSL TLVs nested 8,000 deep used to overflow the parser's stack (a RangeError, not a typed
        // refusal); the spec's sub-TLVs are one flat level, so the header is read and the connection served.
        const deep = v2(Buffer.concat([INET, nestedSsl(8000)]));
        assert.equal(
          (await send(port, Buffer.concat([deep, Buffer.from('after the header')]))).toString(),
          'after the header',
        );
        const served = conns.at(-1)!;
        assert.equal(served.remoteAddress, '10.0.0.1');
        assert.equal(served.proxy?.ssl?.ssl, true);
        assert.ok((await stream) > 0);
        assert.equal(server.stats().proxyErrors, bad.length);
      } finally {
        refused.stop();
        await stop(server);
      }
    },
  );
});
