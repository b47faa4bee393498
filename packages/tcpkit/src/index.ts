export type { AdminOptions } from './admin.js';
export { BufferPool, type BufferPoolOptions, defaultPool } from './buffer-pool.js';
export { ByteQueue } from './byte-queue.js';
export { type ChunkOptions, Conn, type WriteData } from './conn.js';
export * from './errors.js';
export * from './framing/index.js';
export type { LogFn, Logger } from './logging.js';
export type { ConnTimeouts, ServeOptions } from './options.js';
export { DEFAULTS } from './options.js';
export {
  encodeProxyHeader,
  type ParsedProxyHeader,
  type ProxyHeader,
  type ProxySslInfo,
  type ProxyTlv,
  parseProxyHeader,
} from './proxy-protocol.js';
export type { ConnProxyInfo, ProxyProtocolOptions } from './proxy-stage.js';
export {
  type Handler,
  type RejectReason,
  type RestartResult,
  type Server,
  type ServerAddress,
  type ServerStats,
  type ShutdownResult,
  serve,
} from './server.js';
export type { ConnTlsInfo, TlsOptions } from './tls.js';
export type { WorkerStats } from './workers/stats.js';
