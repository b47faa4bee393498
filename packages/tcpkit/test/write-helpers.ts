// Helpers for the write path tests: the writes a server made, seen at the layer it wrote to (the
// socket's stream on the fallback path and for TLS, the libuv handle on the handle path).
import net from 'node:net';

type Chunk = Uint8Array | string;
type Handle = { getsockname?: (out: { port?: number }) => number };
type HandleWrite = (this: Handle, req: unknown, data: unknown, ...rest: unknown[]) => number;

/** The prototype that holds the stream handles' write methods (Node's LibuvStreamWrap). */
function streamHandlePrototype(): Record<string, HandleWrite> {
  const { TCP } = (process as unknown as { binding(name: string): { TCP: { prototype: object } } }).binding('tcp_wrap');
  let proto: object | null = TCP.prototype;
  while (proto !== null && !Object.hasOwn(proto, 'writeBuffer')) proto = Object.getPrototypeOf(proto);
  if (proto === null) throw new Error('no writeBuffer on the TCP handle');
  return proto as Record<string, HandleWrite>;
}

function text(data: unknown): string {
  if (Array.isArray(data)) {
    // writev: buffers, or chunk/encoding pairs.
    const all = data.every((c) => typeof c !== 'string');
    const chunks = all ? data : data.filter((_, i) => i % 2 === 0);
    return chunks.map((c: Chunk) => Buffer.from(c).toString()).join('');
  }
  return Buffer.from(data as Chunk).toString();
}

export interface WriteLog {
  /** One entry per write call (its text), in order. */
  readonly calls: string[];
  /** Calls per method name ('socket.write', 'writeBuffer', 'writev', 'writeUtf8String'). */
  readonly methods: Map<string, number>;
  /** Puts the patched methods back. */
  restore(): void;
}

/** The layer plain TCP writes reach first: the socket's stream when the fallback is forced, else the handle. */
export const STREAM_PATH = process.env.TCPKIT_WRITE_PATH === 'stream';

/**
 * Records every write made by sockets whose local port is `port()` (read at each call), at the layer
 * plain TCP output reaches first (see STREAM_PATH).
 */
export function logServerWrites(port: () => number): WriteLog {
  const calls: string[] = [];
  const methods = new Map<string, number>();
  const note = (method: string, data: unknown): void => {
    calls.push(text(data));
    methods.set(method, (methods.get(method) ?? 0) + 1);
  };
  if (STREAM_PATH) {
    const original = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof original>) {
      if (this.localPort === port()) note('socket.write', args[0]);
      return original.apply(this, args);
    } as typeof original;
    return {
      calls,
      methods,
      restore: () => {
        net.Socket.prototype.write = original;
      },
    };
  }
  const proto = streamHandlePrototype();
  const saved = new Map<string, HandleWrite>();
  for (const name of ['writeBuffer', 'writev', 'writeUtf8String']) {
    const method = proto[name]!;
    saved.set(name, method);
    proto[name] = function (this: Handle, req, data, ...rest) {
      const out: { port?: number } = {};
      if (this.getsockname?.(out) === 0 && out.port === port()) note(name, data);
      return method.call(this, req, data, ...rest);
    };
  }
  return {
    calls,
    methods,
    restore: () => {
      for (const [name, method] of saved) proto[name] = method;
    },
  };
}
