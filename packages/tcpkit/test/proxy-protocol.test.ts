import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  crc32c,
  detectProxyHeader,
  encodeProxyHeader,
  type ProxyHeader,
  parseProxyHeader,
} from '../src/proxy-protocol.js';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function tlv(type: number, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const out = Buffer.alloc(3 + v.length);
  out[0] = type;
  out.writeUInt16BE(v.length, 1);
  v.copy(out, 3);
  return out;
}

/** A v2 header: version/command byte, family/protocol byte, then the body (addresses + TLVs). */
function v2(verCmd: number, famProto: number, body: Buffer, declared = body.length): Buffer {
  const head = Buffer.alloc(16);
  SIG.copy(head);
  head[12] = verCmd;
  head[13] = famProto;
  head.writeUInt16BE(declared, 14);
  return Buffer.concat([head, body]);
}

const INET = Buffer.from([1, 2, 3, 4, 10, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90]); // 1.2.3.4:12345 -> 10.0.0.1:8080
const INET6 = Buffer.concat([
  Buffer.from('20010db8000000000000000000000001', 'hex'),
  Buffer.from('00000000000000000000000000000001', 'hex'),
  Buffer.from([0x01, 0xbb, 0x00, 0x50]),
]);
const UNIX = Buffer.alloc(216);

/** A v2 header with a valid CRC32C TLV over everything. */
function withCrc(verCmd: number, famProto: number, body: Buffer): Buffer {
  const h = v2(verCmd, famProto, Buffer.concat([body, tlv(0x03, Buffer.alloc(4))]));
  h.writeUInt32BE(crc32c(h), h.length - 4);
  return h;
}

const ssl = Buffer.concat([
  Buffer.from([0x07, 0, 0, 0, 0]),
  tlv(0x21, 'TLSv1.3'),
  tlv(0x22, 'client.example'),
  tlv(0x23, 'TLS_AES_128_GCM_SHA256'),
  tlv(0x24, 'SHA256'),
  tlv(0x25, 'RSA2048'),
]);

interface Valid {
  name: string;
  bytes: Buffer;
  expect: Partial<ProxyHeader>;
}

const valid: Valid[] = [
  {
    name: 'v1 TCP4',
    bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 12345 8080\r\n'),
    expect: {
      version: 1,
      command: 'proxy',
      family: 'ipv4',
      source: { address: '1.2.3.4', port: 12345 },
      destination: { address: '10.0.0.1', port: 8080 },
    },
  },
  {
    name: 'v1 TCP6',
    bytes: Buffer.from('PROXY TCP6 2001:db8::1 ::1 443 80\r\n'),
    expect: {
      family: 'ipv6',
      source: { address: '2001:db8::1', port: 443 },
      destination: { address: '::1', port: 80 },
    },
  },
  {
    // As v2's binary addresses and Node's sockets give them: one client, one string (per-peer caps, logs).
    name: 'v1 TCP6 written out in full and in capitals: read in the canonical form',
    bytes: Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::FFFF:10.0.0.1 443 80\r\n'),
    expect: {
      family: 'ipv6',
      source: { address: '2001:db8::1', port: 443 },
      destination: { address: '::ffff:10.0.0.1', port: 80 },
    },
  },
  {
    name: 'v1 TCP6 at the 107-byte maximum',
    bytes: Buffer.from(`PROXY TCP6 ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`),
    expect: { family: 'ipv6', source: { address: `${'ffff:'.repeat(7)}ffff`, port: 65535 } },
  },
  { name: 'v1 UNKNOWN', bytes: Buffer.from('PROXY UNKNOWN\r\n'), expect: { version: 1, family: 'unspec' } },
  {
    name: 'v1 UNKNOWN with ignored addresses',
    bytes: Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'),
    expect: { family: 'unspec', source: undefined },
  },
  {
    name: 'v1 port 0',
    bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 0 0\r\n'),
    expect: { source: { address: '1.2.3.4', port: 0 } },
  },
  {
    name: 'v2 PROXY TCP4',
    bytes: v2(0x21, 0x11, INET),
    expect: {
      version: 2,
      command: 'proxy',
      family: 'ipv4',
      source: { address: '1.2.3.4', port: 12345 },
      destination: { address: '10.0.0.1', port: 8080 },
      tlvs: [],
    },
  },
  {
    name: 'v2 PROXY TCP6',
    bytes: v2(0x21, 0x21, INET6),
    expect: {
      family: 'ipv6',
      source: { address: '2001:db8::1', port: 443 },
      destination: { address: '::1', port: 80 },
    },
  },
  {
    name: 'v2 PROXY over UNSPEC protocol',
    bytes: v2(0x21, 0x10, INET),
    expect: { family: 'ipv4', source: { address: '1.2.3.4', port: 12345 } },
  },
  {
    name: 'v2 LOCAL (health check)',
    bytes: v2(0x20, 0x00, Buffer.alloc(0)),
    expect: { command: 'local', family: 'unspec' },
  },
  {
    name: 'v2 LOCAL with an address block and TLVs, all discarded',
    bytes: v2(0x20, 0x11, Buffer.concat([INET, tlv(0x05, 'x')])),
    expect: { command: 'local', source: undefined, tlvs: [] },
  },
  {
    name: 'v2 PROXY AF_UNSPEC',
    bytes: v2(0x21, 0x00, Buffer.alloc(0)),
    expect: { command: 'proxy', family: 'unspec', source: undefined },
  },
  { name: 'v2 PROXY AF_UNIX keeps no IP', bytes: v2(0x21, 0x31, UNIX), expect: { family: 'unix', source: undefined } },
  {
    name: 'v2 TLVs: ALPN, AUTHORITY, UNIQUE_ID, NOOP, NETNS, unknown',
    bytes: v2(
      0x21,
      0x11,
      Buffer.concat([
        INET,
        tlv(0x01, 'h2'),
        tlv(0x02, 'example.com'),
        tlv(0x05, Buffer.from('abc123')),
        tlv(0x04, Buffer.alloc(3)),
        tlv(0x30, 'blue'),
        tlv(0xe0, 'custom'),
      ]),
    ),
    expect: { alpn: 'h2', authority: 'example.com', uniqueId: Buffer.from('abc123'), netns: 'blue' },
  },
  {
    name: 'v2 UNIQUE_ID of 128 bytes',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x05, Buffer.alloc(128, 1))])),
    expect: { uniqueId: Buffer.alloc(128, 1) },
  },
  {
    name: 'v2 SSL TLV with sub-TLVs',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x20, ssl)])),
    expect: {
      ssl: {
        ssl: true,
        certConn: true,
        certSess: true,
        verified: true,
        version: 'TLSv1.3',
        cn: 'client.example',
        cipher: 'TLS_AES_128_GCM_SHA256',
        sigAlg: 'SHA256',
        keyAlg: 'RSA2048',
      },
    },
  },
  {
    // What HAProxy 2.6 sends for a TLS client that presented no certificate: verify 0. The spec's verify is
    // 0 only "if the client presented a certificate and it was successfully verified": no certificate, none verified.
    name: 'v2 SSL TLV, no client certificate, verify field 0 (HAProxy): not verified',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x20, Buffer.from([0x01, 0, 0, 0, 0]))])),
    expect: { ssl: { ssl: true, certConn: false, certSess: false, verified: false } },
  },
  {
    name: 'v2 SSL TLV, not verified, no sub-TLVs',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x20, Buffer.from([0x01, 0, 0, 0, 1]))])),
    expect: { ssl: { ssl: true, certConn: false, certSess: false, verified: false } },
  },
  {
    name: 'v2 with a correct CRC32C',
    bytes: withCrc(0x21, 0x11, INET),
    expect: { source: { address: '1.2.3.4', port: 12345 } },
  },
  {
    name: 'v2 AF_UNSPEC with TLVs',
    bytes: v2(0x21, 0x00, tlv(0x02, 'a.example')),
    expect: { family: 'unspec', authority: 'a.example' },
  },
];

describe('parseProxyHeader: valid headers', () => {
  for (const c of valid) {
    it(c.name, () => {
      const after = Buffer.from('first bytes of the stream');
      const r = parseProxyHeader(Buffer.concat([c.bytes, after]));
      assert.ok(r !== undefined);
      assert.equal(r.length, c.bytes.length, 'the header length, so the bytes after it are kept');
      for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(r.header[k as keyof ProxyHeader], v, k);
      assert.deepEqual(Buffer.concat([c.bytes, after]).subarray(r.length), after);
    });
    it(`${c.name}: every proper prefix needs more bytes`, () => {
      for (let n = 0; n < c.bytes.length; n++) {
        assert.equal(parseProxyHeader(c.bytes.subarray(0, n)), undefined, `prefix of ${n} bytes`);
      }
    });
  }
});

interface Invalid {
  name: string;
  bytes: Buffer;
  message: RegExp;
}

const invalid: Invalid[] = [
  {
    name: 'wrong signature (plain data)',
    bytes: Buffer.from('GET / HTTP/1.1\r\n'),
    message: /not a PROXY protocol header/,
  },
  {
    name: 'wrong signature (v2 signature altered)',
    bytes: Buffer.concat([SIG.subarray(0, 11), Buffer.from([0x0b])]),
    message: /not a PROXY/,
  },
  { name: 'lower-case v1', bytes: Buffer.from('proxy TCP4 1.2.3.4 10.0.0.1 1 2\r\n'), message: /not a PROXY/ },
  {
    name: 'v1 oversized (no CRLF within 107 bytes)',
    bytes: Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`),
    message: /longer than 107/,
  },
  {
    name: 'v1 oversized (CRLF at byte 108)',
    bytes: Buffer.from(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`),
    message: /longer than 107/,
  },
  { name: 'v1 LF without CR', bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n'), message: /CRLF/ },
  {
    name: 'v1 wrong protocol',
    bytes: Buffer.from('PROXY UDP4 1.2.3.4 10.0.0.1 1 2\r\n'),
    message: /TCP4, TCP6 or UNKNOWN/,
  },
  { name: 'v1 too few fields', bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 1\r\n'), message: /fields/ },
  { name: 'v1 double space', bytes: Buffer.from('PROXY TCP4 1.2.3.4  10.0.0.1 1 2\r\n'), message: /single spaces/ },
  {
    name: 'v1 TCP4 with an IPv6 address',
    bytes: Buffer.from('PROXY TCP4 ::1 ::1 1 2\r\n'),
    message: /source address is not an ipv4/,
  },
  {
    name: 'v1 TCP6 with an IPv4 address',
    bytes: Buffer.from('PROXY TCP6 ::1 1.2.3.4 1 2\r\n'),
    message: /destination address is not an ipv6/,
  },
  { name: 'v1 bad IPv4', bytes: Buffer.from('PROXY TCP4 1.2.3.256 10.0.0.1 1 2\r\n'), message: /source address/ },
  {
    name: 'v1 port above 65535',
    bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 65536 2\r\n'),
    message: /source port/,
  },
  {
    name: 'v1 port with a leading zero',
    bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 1 080\r\n'),
    message: /destination port/,
  },
  { name: 'v1 negative port', bytes: Buffer.from('PROXY TCP4 1.2.3.4 10.0.0.1 -1 2\r\n'), message: /source port/ },
  { name: 'v2 wrong version (1)', bytes: v2(0x11, 0x11, INET), message: /version 1, expected 2/ },
  { name: 'v2 wrong version (3)', bytes: v2(0x31, 0x11, INET), message: /version 3/ },
  {
    name: 'v2 wrong command',
    bytes: v2(0x22, 0x11, INET),
    message: /command must be LOCAL \(0\) or PROXY \(1\), got 2/,
  },
  { name: 'v2 wrong family', bytes: v2(0x21, 0x41, INET), message: /address family must be 0 to 3/ },
  { name: 'v2 wrong transport', bytes: v2(0x21, 0x13, INET), message: /transport must be 0 to 2/ },
  { name: 'v2 datagram', bytes: v2(0x21, 0x12, INET), message: /DGRAM/ },
  {
    name: 'v2 TCP4 length too short for addresses',
    bytes: v2(0x21, 0x11, INET.subarray(0, 8)),
    message: /fewer than the 12/,
  },
  { name: 'v2 TCP6 length too short for addresses', bytes: v2(0x21, 0x21, INET), message: /fewer than the 36/ },
  { name: 'v2 UNIX length too short', bytes: v2(0x21, 0x31, INET6), message: /fewer than the 216/ },
  {
    name: 'v2 TLV truncated header',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, Buffer.from([0x01, 0x00])])),
    message: /TLV truncated/,
  },
  {
    name: 'v2 TLV longer than the header',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, Buffer.from([0x01, 0x00, 0x09, 0x68])])),
    message: /declares 9 bytes, only 1 remain/,
  },
  {
    name: 'v2 UNIQUE_ID over 128 bytes',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x05, Buffer.alloc(129))])),
    message: /unique ID is 129 bytes/,
  },
  {
    name: 'v2 SSL TLV too short',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x20, Buffer.from([1, 0]))])),
    message: /SSL TLV must be at least 5/,
  },
  {
    name: 'v2 SSL sub-TLV overruns',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x20, Buffer.from([1, 0, 0, 0, 0, 0x21, 0, 5, 0x41]))])),
    message: /declares 5 bytes/,
  },
  {
    name: 'v2 CRC32C wrong size',
    bytes: v2(0x21, 0x11, Buffer.concat([INET, tlv(0x03, Buffer.alloc(2))])),
    message: /CRC32C TLV must be 4 bytes/,
  },
  {
    name: 'v2 CRC32C mismatch',
    bytes: (() => {
      const h = withCrc(0x21, 0x11, INET);
      h[16] = 9; // change the source address after the checksum was computed
      return h;
    })(),
    message: /CRC32C mismatch/,
  },
];

describe('parseProxyHeader: malformed headers', () => {
  for (const c of invalid) {
    it(c.name, () => {
      assert.throws(
        () => parseProxyHeader(c.bytes),
        (e: Error & { code?: string }) =>
          e.name === 'ProxyProtocolError' && e.code === 'ERR_PROXY_PROTOCOL' && c.message.test(e.message),
      );
    });
  }
  it('a truncated v2 header (declared length not yet received) waits for more', () => {
    assert.equal(parseProxyHeader(v2(0x21, 0x11, INET, 40)), undefined);
  });
  it('an unknown first byte fails at once, without waiting for more', () => {
    assert.throws(() => parseProxyHeader(Buffer.from('G')), /not a PROXY/);
  });
});

describe('parseProxyHeader: SSL sub-TLVs are one flat level', () => {
  /** An SSL TLV whose only sub-TLV is another SSL TLV, `depth` times over. */
  function nestedSsl(depth: number): Buffer {
    let inner: Buffer = Buffer.alloc(0);
    for (let i = 0; i < depth; i++) inner = tlv(0x20, Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0]), inner]));
    return v2(0x21, 0x11, Buffer.concat([INET, inner]));
  }
  it('SSL TLVs nested 8,000 deep (64 KiB of header) parse in one pass, the inner ones not interpreted', () => {
    const bytes = nestedSsl(8000);
    const r = parseProxyHeader(bytes);
    assert.equal(r?.length, bytes.length);
    assert.deepEqual(r?.header.ssl, { ssl: true, certConn: false, certSess: false, verified: false });
    assert.equal(r?.header.tlvs.length, 1);
  });
  it('a malformed TLV deep inside the nesting is not looked at: only the first level of sub-TLVs is checked', () => {
    const broken = tlv(0x20, Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0]), Buffer.from([0x21, 0, 9])]));
    const outer = tlv(0x20, Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0]), broken]));
    assert.equal(parseProxyHeader(v2(0x21, 0x11, Buffer.concat([INET, outer])))?.header.ssl?.ssl, true);
  });
});

describe('detectProxyHeader', () => {
  const cases: [string, Buffer, 0 | 1 | 2 | -1][] = [
    ['empty', Buffer.alloc(0), -1],
    ['v1 prefix', Buffer.from('PRO'), -1],
    ['v1', Buffer.from('PROXY '), 1],
    ['v2 prefix', SIG.subarray(0, 5), -1],
    ['v2', SIG, 2],
    ['TLS ClientHello', Buffer.from([0x16, 0x03, 0x01]), 0],
    ['RESP', Buffer.from('*1\r\n'), 0],
    ['PROXY without the space', Buffer.from('PROXYX'), 0],
  ];
  for (const [name, bytes, expected] of cases) it(name, () => assert.equal(detectProxyHeader(bytes), expected));
});

describe('encodeProxyHeader', () => {
  const src = { address: '127.0.0.9', port: 40000 };
  const dst = { address: '127.0.0.1', port: 7000 };
  for (const version of [1, 2] as const) {
    it(`v${version} round-trips through the parser`, () => {
      const r = parseProxyHeader(encodeProxyHeader(version, src, dst));
      assert.deepEqual(r?.header.source, src);
      assert.deepEqual(r?.header.destination, dst);
    });
    it(`v${version} IPv6 round-trips`, () => {
      const r = parseProxyHeader(
        encodeProxyHeader(version, { address: 'fe80::1', port: 1 }, { address: '::1', port: 2 }),
      );
      assert.deepEqual(r?.header.source, { address: 'fe80::1', port: 1 });
      assert.deepEqual(r?.header.destination, { address: '::1', port: 2 });
    });
  }
});

describe('crc32c', () => {
  it('matches the standard check value', () => assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283));
});
