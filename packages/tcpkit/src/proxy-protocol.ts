/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 (text) and 2 (binary): the header a
 * load balancer sends before the client's bytes to pass on the client's real address.
 * The parser is incremental: it is handed everything received so far and answers "need more",
 * a parsed header with its length, or throws `ProxyProtocolError` naming what is wrong.
 */
import net from 'node:net';
import { ProxyProtocolError } from './errors.js';

/** A v1 header is at most 107 bytes, CRLF included (the spec's bound for `TCP6` with the longest addresses). */
export const V1_MAX_LENGTH = 107;
/** Signature, version/command, family/protocol and the 16-bit length. */
const V2_FIXED_LENGTH = 16;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** TLV types of PROXY v2 that tcpkit interprets. */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  SSL_VERSION: 0x21,
  SSL_CN: 0x22,
  SSL_CIPHER: 0x23,
  SSL_SIG_ALG: 0x24,
  SSL_KEY_ALG: 0x25,
  NETNS: 0x30,
} as const;

/** The spec caps a unique ID at 128 bytes. */
const UNIQUE_ID_MAX = 128;

/** One v2 TLV as received (every TLV, including those tcpkit interprets and unknown ones). */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/** The `PP2_TYPE_SSL` TLV: how the client reached the balancer over TLS. */
export interface ProxySslInfo {
  /** The client connected over TLS (`PP2_CLIENT_SSL`). */
  ssl: boolean;
  /** The client presented a certificate on this connection (`PP2_CLIENT_CERT_CONN`). */
  certConn: boolean;
  /** The client presented a certificate at least once in this TLS session (`PP2_CLIENT_CERT_SESS`). */
  certSess: boolean;
  /**
   * The client presented a certificate and the balancer verified it: the `verify` field was 0 and
   * `certConn` or `certSess` is set. (HAProxy sends verify 0 for a client with no certificate too; the
   * spec's 0 means "presented and successfully verified", so that is not counted as verified.)
   */
  verified: boolean;
  /** TLS version, e.g. `TLSv1.3` (`PP2_SUBTYPE_SSL_VERSION`). */
  version?: string;
  /** The client certificate's Common Name (`PP2_SUBTYPE_SSL_CN`). */
  cn?: string;
  /** Cipher, e.g. `ECDHE-RSA-AES128-GCM-SHA256` (`PP2_SUBTYPE_SSL_CIPHER`). */
  cipher?: string;
  /** Signature algorithm of the client certificate (`PP2_SUBTYPE_SSL_SIG_ALG`). */
  sigAlg?: string;
  /** Key algorithm of the client certificate (`PP2_SUBTYPE_SSL_KEY_ALG`). */
  keyAlg?: string;
}

/** A parsed PROXY header. */
export interface ProxyHeader {
  version: 1 | 2;
  /** `'proxy'`: the header carries the client's connection; `'local'`: the balancer's own (a health check). */
  command: 'proxy' | 'local';
  /**
   * Address family of the carried connection. `'unspec'` (v1 `UNKNOWN`, v2 `AF_UNSPEC`) and `'unix'` carry
   * no usable IP address: the socket's own addresses stay, as for `'local'`.
   */
  family: 'ipv4' | 'ipv6' | 'unix' | 'unspec';
  /** The client's address and port, and the address it connected to (IP families with command `'proxy'` only). */
  source?: { address: string; port: number };
  destination?: { address: string; port: number };
  /** Application protocol the client negotiated with the balancer (`PP2_TYPE_ALPN`). */
  alpn?: string;
  /** Host name the client asked for, usually its TLS SNI (`PP2_TYPE_AUTHORITY`). */
  authority?: string;
  /** The balancer's unique ID for this connection (`PP2_TYPE_UNIQUE_ID`, up to 128 bytes). */
  uniqueId?: Buffer;
  /** TLS details of the client's connection to the balancer (`PP2_TYPE_SSL`). */
  ssl?: ProxySslInfo;
  /** Network namespace name (`PP2_TYPE_NETNS`). */
  netns?: string;
  /** Every TLV in the order received (v2; empty for v1). */
  tlvs: ProxyTlv[];
}

/** A header and the number of bytes it took; what follows is the stream's own data. */
export interface ParsedProxyHeader {
  header: ProxyHeader;
  length: number;
}

/**
 * Whether `data` (the first bytes of a connection) begins a PROXY header: `1` or `2` (the version),
 * `0` (it cannot be one), `-1` (too few bytes to tell).
 */
export function detectProxyHeader(data: Buffer): 0 | 1 | 2 | -1 {
  if (data.length === 0) return -1;
  if (startsWith(data, V2_SIGNATURE)) return data.length >= V2_SIGNATURE.length ? 2 : -1;
  if (startsWith(data, V1_PREFIX)) return data.length >= V1_PREFIX.length ? 1 : -1;
  return 0;
}

/** True if `data` is a prefix of `prefix` or starts with it. */
function startsWith(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.compare(prefix, 0, n, 0, n) === 0;
}

/**
 * Parses a PROXY header at the start of `data`: `undefined` if more bytes are needed, else the header
 * and its length. Throws `ProxyProtocolError` (`ERR_PROXY_PROTOCOL`) as soon as the bytes cannot be a
 * valid header (wrong signature, version, command, family, length, malformed address or TLV, CRC mismatch).
 */
export function parseProxyHeader(data: Buffer): ParsedProxyHeader | undefined {
  const version = detectProxyHeader(data);
  if (version === -1) return undefined;
  if (version === 1) return parseV1(data);
  if (version === 2) return parseV2(data);
  throw new ProxyProtocolError(`not a PROXY protocol header: starts with ${printable(data.subarray(0, 16))}`);
}

function printable(bytes: Buffer): string {
  return JSON.stringify(bytes.toString('latin1')).replace(/[^\x20-\x7e]/g, '?');
}

// ---- version 1 -----------------------------------------------------------------------------

const PORT = /^(0|[1-9][0-9]{0,4})$/;

function parseV1(data: Buffer): ParsedProxyHeader | undefined {
  const window = data.subarray(0, V1_MAX_LENGTH);
  const lf = window.indexOf(0x0a);
  if (lf === -1) {
    if (data.length >= V1_MAX_LENGTH) {
      throw new ProxyProtocolError(`PROXY v1 header longer than ${V1_MAX_LENGTH} bytes (no CRLF within them)`);
    }
    return undefined;
  }
  if (lf === 0 || window[lf - 1] !== 0x0d) throw new ProxyProtocolError('PROXY v1 header line does not end in CRLF');
  const line = window.toString('latin1', 0, lf - 1);
  const length = lf + 1;
  const fields = line.split(' ');
  const proto = fields[1];
  if (proto === 'UNKNOWN') {
    // The spec: the receiver ignores whatever follows UNKNOWN up to the CRLF.
    return { header: { version: 1, command: 'proxy', family: 'unspec', tlvs: [] }, length };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') {
    throw new ProxyProtocolError(
      `PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, got ${printable(Buffer.from(proto ?? ''))}`,
    );
  }
  if (fields.length !== 6) {
    throw new ProxyProtocolError(
      `PROXY v1 ${proto} header must be "PROXY ${proto} <src> <dst> <sport> <dport>" with single spaces, got ${fields.length - 2} fields`,
    );
  }
  const family = proto === 'TCP4' ? 'ipv4' : 'ipv6';
  const isIP = family === 'ipv4' ? net.isIPv4 : net.isIPv6;
  const [, , src, dst, sport, dport] = fields as [string, string, string, string, string, string];
  for (const [what, a] of [
    ['source', src],
    ['destination', dst],
  ] as const) {
    if (!isIP(a))
      throw new ProxyProtocolError(
        `PROXY v1 ${what} address is not an ${family} address: ${printable(Buffer.from(a))}`,
      );
  }
  const sourcePort = v1Port('source', sport);
  const destinationPort = v1Port('destination', dport);
  // IPv6 text has many spellings of one address (`2001:DB8:0:0::1`, `2001:db8::1`): the canonical one, as
  // v2's binary addresses and Node's own sockets give it, so one client is one string (per-peer cap, logs).
  const canonical = family === 'ipv6' ? canonicalIPv6 : (a: string) => a;
  return {
    header: {
      version: 1,
      command: 'proxy',
      family,
      source: { address: canonical(src), port: sourcePort },
      destination: { address: canonical(dst), port: destinationPort },
      tlvs: [],
    },
    length,
  };
}

function v1Port(what: string, s: string): number {
  const port = PORT.test(s) ? Number(s) : -1;
  if (port < 0 || port > 65535) {
    throw new ProxyProtocolError(
      `PROXY v1 ${what} port must be a decimal from 0 to 65535, got ${printable(Buffer.from(s))}`,
    );
  }
  return port;
}

// ---- version 2 -----------------------------------------------------------------------------

/** Bytes of the address block per family: two IPv4 addresses and ports, two IPv6, two 108-byte unix paths. */
const ADDRESS_LENGTH = { 1: 12, 2: 36, 3: 216 } as const;
const FAMILY_NAME = { 0: 'unspec', 1: 'ipv4', 2: 'ipv6', 3: 'unix' } as const;

function parseV2(data: Buffer): ParsedProxyHeader | undefined {
  if (data.length < V2_FIXED_LENGTH) return undefined;
  const verCmd = data[12]!;
  if (verCmd >> 4 !== 2) throw new ProxyProtocolError(`PROXY v2 header has version ${verCmd >> 4}, expected 2`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw new ProxyProtocolError(`PROXY v2 command must be LOCAL (0) or PROXY (1), got ${cmd}`);
  const famProto = data[13]!;
  const fam = famProto >> 4;
  const proto = famProto & 0x0f;
  if (fam > 3)
    throw new ProxyProtocolError(`PROXY v2 address family must be 0 to 3 (UNSPEC, INET, INET6, UNIX), got ${fam}`);
  if (proto > 2)
    throw new ProxyProtocolError(`PROXY v2 transport must be 0 to 2 (UNSPEC, STREAM, DGRAM), got ${proto}`);
  const length = V2_FIXED_LENGTH + data.readUInt16BE(14);
  if (data.length < length) return undefined;
  const command = cmd === 0 ? 'local' : 'proxy';
  // A LOCAL header's address block, whatever it says, is not the client's: the spec has the receiver skip it.
  if (command === 'proxy' && proto === 2) {
    throw new ProxyProtocolError('PROXY v2 header describes a datagram (DGRAM) connection; tcpkit serves streams');
  }
  const family = FAMILY_NAME[fam as 0 | 1 | 2 | 3];
  const header: ProxyHeader = { version: 2, command, family, tlvs: [] };
  // LOCAL (a health check, or the balancer's own traffic): the spec has the receiver discard the
  // whole block, addresses and TLVs, and use the connection's own endpoints.
  if (command === 'local') return { header, length };
  let offset = V2_FIXED_LENGTH;
  if (fam !== 0) {
    const need = ADDRESS_LENGTH[fam as 1 | 2 | 3];
    if (length - V2_FIXED_LENGTH < need) {
      throw new ProxyProtocolError(
        `PROXY v2 ${family} header declares ${length - V2_FIXED_LENGTH} bytes of addresses and TLVs, fewer than the ${need} its addresses take`,
      );
    }
    if (fam !== 3) {
      const a = fam === 1 ? 4 : 16;
      header.source = { address: ipString(data, offset, a), port: data.readUInt16BE(offset + 2 * a) };
      header.destination = { address: ipString(data, offset + a, a), port: data.readUInt16BE(offset + 2 * a + 2) };
    }
    offset += need;
  }
  // AF_UNSPEC has no address block: its TLVs, if any, start right after the fixed part.
  parseTlvs(data, offset, length, header);
  return { header, length };
}

function ipString(data: Buffer, offset: number, size: 4 | 16): string {
  if (size === 4) return `${data[offset]}.${data[offset + 1]}.${data[offset + 2]}.${data[offset + 3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(data.readUInt16BE(offset + i).toString(16));
  return canonicalIPv6(groups.join(':'));
}

/** Through SocketAddress for the canonical (compressed, lower-case) form, as Node reports socket addresses. */
function canonicalIPv6(address: string): string {
  return new net.SocketAddress({ address, family: 'ipv6' }).address;
}

function parseTlvs(data: Buffer, start: number, end: number, header: ProxyHeader): void {
  let crcAt = -1;
  forEachTlv(data, start, end, (type, value, at) => {
    header.tlvs.push({ type, value });
    switch (type) {
      case PP2_TYPE.ALPN:
        header.alpn = value.toString('latin1');
        break;
      case PP2_TYPE.AUTHORITY:
        header.authority = value.toString('utf8');
        break;
      case PP2_TYPE.CRC32C:
        if (value.length !== 4)
          throw new ProxyProtocolError(`PROXY v2 CRC32C TLV must be 4 bytes, got ${value.length}`);
        crcAt = at + 3;
        break;
      case PP2_TYPE.UNIQUE_ID:
        if (value.length > UNIQUE_ID_MAX)
          throw new ProxyProtocolError(
            `PROXY v2 unique ID is ${value.length} bytes, more than the ${UNIQUE_ID_MAX} allowed`,
          );
        header.uniqueId = value;
        break;
      case PP2_TYPE.SSL:
        header.ssl = parseSsl(value);
        break;
      case PP2_TYPE.NETNS:
        header.netns = value.toString('latin1');
        break;
    }
  });
  if (crcAt !== -1) {
    const expected = data.readUInt32BE(crcAt);
    const copy = Buffer.from(data.subarray(0, end));
    copy.fill(0, crcAt, crcAt + 4);
    const actual = crc32c(copy);
    if (actual !== expected) {
      throw new ProxyProtocolError(
        `PROXY v2 CRC32C mismatch: header says 0x${expected.toString(16).padStart(8, '0')}, computed 0x${actual.toString(16).padStart(8, '0')}`,
      );
    }
  }
}

/** Walks the TLVs in `data[start, end)`, checking each one's bounds; `at` is where the TLV starts. */
function forEachTlv(
  data: Buffer,
  start: number,
  end: number,
  visit: (type: number, value: Buffer, at: number) => void,
): void {
  for (let at = start; at < end; ) {
    if (end - at < 3)
      throw new ProxyProtocolError(`PROXY v2 TLV truncated: ${end - at} bytes left, a TLV needs at least 3`);
    const type = data[at]!;
    const len = data.readUInt16BE(at + 1);
    if (at + 3 + len > end) {
      throw new ProxyProtocolError(
        `PROXY v2 TLV 0x${type.toString(16)} declares ${len} bytes, only ${end - at - 3} remain in the header`,
      );
    }
    visit(type, data.subarray(at + 3, at + 3 + len), at);
    at += 3 + len;
  }
}

function parseSsl(value: Buffer): ProxySslInfo {
  if (value.length < 5) throw new ProxyProtocolError(`PROXY v2 SSL TLV must be at least 5 bytes, got ${value.length}`);
  const client = value[0]!;
  const certConn = (client & 0x02) !== 0;
  const certSess = (client & 0x04) !== 0;
  const info: ProxySslInfo = {
    ssl: (client & 0x01) !== 0,
    certConn,
    certSess,
    verified: value.readUInt32BE(1) === 0 && (certConn || certSess),
  };
  // Sub-TLVs are one flat level (the spec defines only the SSL_* strings there): a sub-TLV of type
  // SSL, CRC32C or any other is not interpreted, so a header nesting SSL TLVs thousands deep costs
  // one pass, not a recursion that would overflow the stack.
  forEachTlv(value, 5, value.length, (type, v) => {
    if (type === PP2_TYPE.SSL_VERSION) info.version = v.toString('utf8');
    else if (type === PP2_TYPE.SSL_CN) info.cn = v.toString('utf8');
    else if (type === PP2_TYPE.SSL_CIPHER) info.cipher = v.toString('utf8');
    else if (type === PP2_TYPE.SSL_SIG_ALG) info.sigAlg = v.toString('utf8');
    else if (type === PP2_TYPE.SSL_KEY_ALG) info.keyAlg = v.toString('utf8');
  });
  return info;
}

// ---- CRC32C (Castagnoli), for the optional PP2_TYPE_CRC32C TLV ---------------------------------

let crcTable: Uint32Array | null = null;

/** CRC-32C of `data` (reflected polynomial 0x82F63B78), as the PROXY v2 spec uses. */
export function crc32c(data: Uint8Array): number {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// ---- writing (for the load generator and tests) ------------------------------------------------

/** Builds a PROXY header for a connection from `source` to `destination` (used by `tcpkit bench --proxy-protocol`). */
export function encodeProxyHeader(
  version: 1 | 2,
  source: { address: string; port: number },
  destination: { address: string; port: number },
): Buffer {
  const six = net.isIPv6(source.address);
  if (version === 1) {
    return Buffer.from(
      `PROXY ${six ? 'TCP6' : 'TCP4'} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`,
      'latin1',
    );
  }
  const a = six ? 16 : 4;
  const out = Buffer.alloc(V2_FIXED_LENGTH + 2 * a + 4);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21;
  out[13] = six ? 0x21 : 0x11;
  out.writeUInt16BE(2 * a + 4, 14);
  ipBytes(source.address, six).copy(out, 16);
  ipBytes(destination.address, six).copy(out, 16 + a);
  out.writeUInt16BE(source.port, 16 + 2 * a);
  out.writeUInt16BE(destination.port, 18 + 2 * a);
  return out;
}

function ipBytes(address: string, six: boolean): Buffer {
  if (!six) return Buffer.from(address.split('.').map(Number));
  const [head, tail] = address.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(Number.parseInt(groups[i] ?? '0', 16), i * 2);
  return out;
}
