/**
 * The PROXY stage of a connection: between the gate's check of the socket's own address and the
 * gate's admission by the client's real address. It reads the header a trusted load balancer sends
 * before the client's bytes, bounded in time (`proxyProtocol.timeout`) and size (the parser's bounds).
 */
import net, { BlockList, type Socket } from 'node:net';
import { normalizeAddress } from './conn.js';
import { type DeadlineEntry, deadlines } from './deadlines.js';
import { InvalidOptionError, ProxyProtocolError } from './errors.js';
import {
  detectProxyHeader,
  type ProxyHeader,
  type ProxySslInfo,
  type ProxyTlv,
  parseProxyHeader,
} from './proxy-protocol.js';
import { PEER_LEFT } from './tls.js';
import { boolean, definedOnly, duration, optionsObject } from './validate.js';

/** The `proxyProtocol` option of `serve()`. */
export interface ProxyProtocolOptions {
  /**
   * Load balancers allowed to send a PROXY header: addresses and CIDR ranges (`'10.0.0.0/8'`, `'::1'`),
   * or a `net.BlockList` whose matches are trusted. A header from any other peer closes the connection.
   */
  trusted: string[] | BlockList;
  /**
   * Every connection must start with a header (default true): connections from peers not in `trusted`
   * are closed at accept, and a trusted peer's connection without a header is closed. With false, a
   * connection without a header is served with its socket addresses (tcpkit then waits for each
   * connection's first bytes to tell, so a protocol where the server speaks first needs `true`).
   */
  required?: boolean;
  /** Longest time from accept to the header's last byte (`ERR_PROXY_PROTOCOL`). Default 5000 (5 s); 0 = no limit. */
  timeout?: number;
}

/** `proxyProtocol` after defaults and validation (what the server reads it as). */
export interface ResolvedProxyProtocol {
  trusted: BlockList;
  required: boolean;
  timeout: number;
  /**
   * The answers of `trusted` by peer address, when tcpkit built the list from `trusted: string[]` (it
   * never changes then); null for a caller's BlockList, which may change and is asked every time.
   * `BlockList.check` builds a SocketAddress per call: about 5 µs of each connection, where the few
   * addresses of a deployment's balancers are looked up in a Map.
   */
  trustedByAddress: Map<string, boolean> | null;
}

/** Peer addresses remembered in `trustedByAddress` before it starts over (bounds a scan from many addresses). */
const TRUSTED_MEMO_SIZE = 1024;

/** What `conn.proxy` holds for a connection that arrived through a trusted load balancer. */
export interface ConnProxyInfo {
  /** The load balancer's own address and port: the socket's peer. */
  address: string;
  port: number;
  /** PROXY protocol version of the header (1 or 2). */
  version: 1 | 2;
  /** `'local'`: the balancer's own connection (a health check); addresses are the socket's own. */
  command: 'proxy' | 'local';
  /** Application protocol the client negotiated with the balancer (v2 `PP2_TYPE_ALPN`). */
  alpn?: string;
  /** Host name the client asked the balancer for, usually its TLS SNI (v2 `PP2_TYPE_AUTHORITY`). */
  authority?: string;
  /** The balancer's unique ID for this connection (v2 `PP2_TYPE_UNIQUE_ID`). */
  uniqueId?: Buffer;
  /** How the client's TLS connection to the balancer went (v2 `PP2_TYPE_SSL`). */
  ssl?: ProxySslInfo;
  /** Every v2 TLV as received, including types tcpkit does not interpret. */
  tlvs: readonly ProxyTlv[];
}

export const PROXY_PROTOCOL_DEFAULTS = { required: true, timeout: 5_000 } as const;

/** Validates `proxyProtocol`; throws `InvalidOptionError` naming the field. */
export function resolveProxyProtocol(value: unknown): ResolvedProxyProtocol | undefined {
  if (value === undefined) return undefined;
  const given = optionsObject(
    'proxyProtocol',
    value,
    ['trusted', 'required', 'timeout'],
    '{ trusted: ["10.0.0.0/8"] }',
  );
  const { trusted, required, timeout }: Record<string, unknown> = { ...PROXY_PROTOCOL_DEFAULTS, ...definedOnly(given) };
  return {
    trusted: trustedList(trusted),
    required: boolean('proxyProtocol.required', required),
    timeout: duration('proxyProtocol.timeout', timeout),
    trustedByAddress: trusted instanceof BlockList ? null : new Map(),
  };
}

function trustedList(trusted: unknown): BlockList {
  if (trusted instanceof BlockList) return trusted;
  if (!Array.isArray(trusted) || trusted.length === 0) {
    throw new InvalidOptionError(
      'proxyProtocol.trusted',
      'must name the load balancers allowed to send a PROXY header: a non-empty array of addresses or CIDRs (e.g. ["10.0.0.0/8"]), or a net.BlockList',
    );
  }
  const list = new BlockList();
  for (const entry of trusted) {
    const [address, bits, extra] = typeof entry === 'string' ? entry.split('/') : [];
    const family = address === undefined ? 0 : net.isIP(address);
    const max = family === 4 ? 32 : 128;
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
    if (family === 0 || extra !== undefined || prefix < 0 || prefix > max) {
      throw new InvalidOptionError(
        'proxyProtocol.trusted',
        `${JSON.stringify(entry)} is not an IP address or CIDR range`,
      );
    }
    list.addSubnet(address!, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** True if `address` (a socket's peer, IPv4-mapped already normalized) may send a header. */
export function isTrustedProxy(o: ResolvedProxyProtocol, address: string): boolean {
  const memo = o.trustedByAddress;
  let trusted = memo?.get(address);
  if (trusted !== undefined) return trusted;
  trusted = o.trusted.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
  if (memo !== null) {
    if (memo.size >= TRUSTED_MEMO_SIZE) memo.clear();
    memo.set(address, trusted);
  }
  return trusted;
}

/**
 * How the stage ended: the header (null when there was none and none was required) and the bytes after it;
 * or `PEER_LEFT`: the peer closed or reset before sending a byte (a health check, a probe), which is a
 * connection turned away (`rejected.abandoned`), not a refused header.
 */
export type ProxyStageDone = (
  error: ProxyProtocolError | typeof PEER_LEFT | null,
  header: ProxyHeader | null,
  rest: Buffer | null,
) => void;

/**
 * Reads the PROXY header (or, for a peer not trusted, only enough bytes to see there is none) from a
 * paused socket, then pauses it again and calls `done` once. Bytes after the header come back as `rest`,
 * the stream's first bytes. The socket is not destroyed here: the caller closes it on error.
 */
export function readProxyHeader(socket: Socket, o: ResolvedProxyProtocol, peer: string, done: ProxyStageDone): void {
  const trusted = isTrustedProxy(o, peer);
  if (!trusted && o.required) {
    done(new ProxyProtocolError(`connection from ${peer}, which is not in proxyProtocol.trusted`), null, null);
    return;
  }
  new HeaderReader(socket, o, peer, trusted, done).start();
}

class HeaderReader implements DeadlineEntry {
  tick = -1;
  wheelPrev: DeadlineEntry | null = null;
  wheelNext: DeadlineEntry | null = null;
  #received: Buffer = Buffer.alloc(0);
  #finished = false;
  readonly #onData = (chunk: Buffer): void => this.#data(chunk);
  readonly #onEnd = (): void => this.#left('connection ended before the PROXY header was complete');
  readonly #onClose = (): void => this.#left('connection closed before the PROXY header was complete');

  constructor(
    readonly socket: Socket,
    readonly o: ResolvedProxyProtocol,
    readonly peer: string,
    readonly trusted: boolean,
    readonly done: ProxyStageDone,
  ) {}

  start(): void {
    if (this.o.timeout > 0) deadlines.schedule(this, deadlines.now() + this.o.timeout);
    this.socket.on('data', this.#onData);
    this.socket.on('end', this.#onEnd);
    this.socket.on('close', this.#onClose);
    this.socket.resume();
  }

  onDeadline(): void {
    this.#fail(`no complete PROXY header within proxyProtocol.timeout (${this.o.timeout} ms)`);
  }

  #data(chunk: Buffer): void {
    const data = this.#received.length === 0 ? chunk : Buffer.concat([this.#received, chunk]);
    this.#received = data;
    const version = detectProxyHeader(data);
    if (version === -1) return;
    if (version === 0) {
      if (this.o.required) {
        this.#fail(`trusted proxy ${this.peer} sent no PROXY header (proxyProtocol.required is true)`);
      } else {
        this.#finish(null, null, data);
      }
      return;
    }
    if (!this.trusted) {
      this.#fail(`PROXY header from ${this.peer}, which is not in proxyProtocol.trusted`);
      return;
    }
    let parsed: ReturnType<typeof parseProxyHeader>;
    try {
      parsed = parseProxyHeader(data);
    } catch (error) {
      this.#finish(error as ProxyProtocolError, null, null);
      return;
    }
    if (parsed === undefined) return;
    this.#finish(null, parsed.header, parsed.length < data.length ? data.subarray(parsed.length) : null);
  }

  #fail(message: string): void {
    this.#finish(new ProxyProtocolError(message), null, null);
  }

  /** The peer closed: before its first byte it left (nothing refused), after it the header was cut short. */
  #left(message: string): void {
    if (this.#received.length === 0) this.#finish(PEER_LEFT, null, null);
    else this.#fail(message);
  }

  #finish(error: ProxyProtocolError | typeof PEER_LEFT | null, header: ProxyHeader | null, rest: Buffer | null): void {
    if (this.#finished) return;
    this.#finished = true;
    deadlines.cancel(this);
    const s = this.socket;
    s.pause();
    s.off('data', this.#onData);
    s.off('end', this.#onEnd);
    s.off('close', this.#onClose);
    this.done(error, header, rest);
  }
}

/** `conn.proxy` for a connection whose header `header` came from the balancer at `address`:`port`. */
export function proxyInfo(header: ProxyHeader, address: string, port: number): ConnProxyInfo {
  const info: ConnProxyInfo = { address, port, version: header.version, command: header.command, tlvs: header.tlvs };
  if (header.alpn !== undefined) info.alpn = header.alpn;
  if (header.authority !== undefined) info.authority = header.authority;
  if (header.uniqueId !== undefined) info.uniqueId = header.uniqueId;
  if (header.ssl !== undefined) info.ssl = header.ssl;
  return info;
}

/** Where an admitted connection came from, when a PROXY header says so (what its Conn is made from). */
export interface ConnOrigin {
  remoteAddress: string;
  remotePort: number;
  /** The header's destination; absent when the socket's own local end applies (the Conn knows it from the listener). */
  localAddress?: string;
  localPort?: number;
  /** Null for a connection that came without a header (`required: false`). */
  proxy: ConnProxyInfo | null;
  /** Bytes that followed the header in its packet: the stream's first bytes. */
  initial: Buffer | null;
}

/**
 * The addresses of a connection with `header` from the balancer at the socket's peer `balancer`. LOCAL,
 * UNSPEC and UNIX headers keep the socket's own addresses (`conn.proxy` still says a balancer is there).
 */
export function originOf(socket: Socket, balancer: string, header: ProxyHeader, initial: Buffer | null): ConnOrigin {
  const proxy = proxyInfo(header, balancer, socket.remotePort ?? 0);
  const src = header.source;
  const dst = header.destination;
  if (src === undefined || dst === undefined) return { ...directOrigin(socket, balancer, initial), proxy };
  return {
    remoteAddress: normalizeAddress(src.address),
    remotePort: src.port,
    localAddress: normalizeAddress(dst.address),
    localPort: dst.port,
    proxy,
    initial,
  };
}

/**
 * The socket's own addresses, for a connection without a usable header. The local end is left to the
 * Conn, which has it from the listener (no getsockname per connection; a bare handle has no localPort).
 */
export function directOrigin(socket: Socket, peer: string, initial: Buffer | null): ConnOrigin {
  return { remoteAddress: peer, remotePort: socket.remotePort ?? 0, proxy: null, initial };
}
