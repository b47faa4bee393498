/**
 * INFO: the sections Redis tools read (redis-cli --stat, exporters, client ready checks), laid
 * out as Redis 7 lays them out, with values from real counters: the app's own (commands, clients,
 * keys) and, once attached, the tcpkit server's (connections turned away, bytes in and out).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Server } from 'tcpkit';
import { type CommandHandler, lower } from './commands.js';

/** Samples kept by each instantaneous metric; with one sample every 100 ms they span 1.6 s (Redis's STATS_METRIC_SAMPLES). */
const SAMPLES = 16;
/** How often the app samples its meters, in ms: Redis samples in serverCron at its default hz of 10. */
export const SAMPLE_INTERVAL = 100;

/**
 * A rate over a sliding window, as Redis computes `instantaneous_ops_per_sec`: each sample is the
 * rate since the previous one (a whole number per second), and the value is the mean of the last 16.
 */
export class InstantaneousMetric {
  readonly #samples = new Array<number>(SAMPLES).fill(0);
  #index = 0;
  #lastTime: number;
  #lastCount = 0;

  constructor(now: number) {
    this.#lastTime = now;
  }

  /** Records that the counter read `count` at `now` (ms). */
  sample(count: number, now: number): void {
    const elapsed = now - this.#lastTime;
    this.#samples[this.#index] = elapsed > 0 ? Math.floor(((count - this.#lastCount) * 1000) / elapsed) : 0;
    this.#index = (this.#index + 1) % SAMPLES;
    this.#lastTime = now;
    this.#lastCount = count;
  }

  /** The mean rate over the window, per second, truncated as Redis's integer division does. */
  get value(): number {
    let sum = 0;
    for (const s of this.#samples) sum += s;
    return Math.floor(sum / SAMPLES);
  }
}

/** What INFO reads, shared by every connection of one app. */
export class InfoState {
  readonly startedAt = Date.now();
  /** Random per app start, as Redis's run_id: tells a restarted server from one that kept running. */
  readonly runId = randomBytes(20).toString('hex');
  /** Reported as `maxclients`: the `maxConnections` the app is served with. */
  readonly maxClients: number;
  /** The server the app is served by (KvApp.attach): the source of the connection and byte counters. */
  server: Server | undefined;
  /** Handlers running (connected_clients) and started (total_connections_received). */
  connectedClients = 0;
  connectionsReceived = 0;
  /** Commands run (unknown commands and arity errors excluded, as Redis counts them). */
  commands = 0;
  /** Error replies sent, whatever the cause. */
  errorReplies = 0;
  readonly ops = new InstantaneousMetric(this.startedAt);
  readonly input = new InstantaneousMetric(this.startedAt);
  readonly output = new InstantaneousMetric(this.startedAt);
  #peakMemory = 0;

  constructor(maxClients: number) {
    this.maxClients = maxClients;
  }

  /** One tick of the meters (every SAMPLE_INTERVAL ms). */
  sample(now: number): void {
    this.ops.sample(this.commands, now);
    if (this.server !== undefined) {
      const { bytesRead, bytesWritten } = this.server.stats();
      this.input.sample(bytesRead, now);
      this.output.sample(bytesWritten, now);
    }
    this.usedMemory();
  }

  /** V8's heap in use plus memory outside it (the stored values are Buffers), and the peak seen. */
  usedMemory(): { used: number; rss: number; peak: number } {
    const m = process.memoryUsage();
    const used = m.heapUsed + m.external;
    if (used > this.#peakMemory) this.#peakMemory = used;
    return { used, rss: m.rss, peak: this.#peakMemory };
  }
}

/** Redis's bytesToHuman: `1023B`, `1.00K`, `11.84M`, `1.50G`. */
export function bytesToHuman(n: number): string {
  const units = ['K', 'M', 'G', 'T', 'P'];
  if (n < 1024) return `${n}B`;
  let d = n / 1024;
  let i = 0;
  while (d >= 1024 && i < units.length - 1) {
    d /= 1024;
    i++;
  }
  return `${d.toFixed(2)}${units[i]}`;
}

/** Seconds with six decimals, as Redis prints CPU time. */
const cpuSeconds = (micros: number): string => `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')}`;

const kbps = (bytesPerSecond: number): string => (bytesPerSecond / 1024).toFixed(2);

type Section = (ctx: Parameters<CommandHandler>[0], now: number) => string[];

/** Redis's sections in Redis's order; each is printed only when asked for (or by default). */
const SECTIONS: Array<[name: string, title: string, fields: Section]> = [
  [
    'server',
    'Server',
    (ctx, now) => {
      const { info } = ctx;
      const uptime = Math.floor((now - info.startedAt) / 1000);
      const address = info.server?.address;
      return [
        `redis_version:${ctx.version}`,
        'redis_mode:standalone',
        `os:${os.type()} ${os.release()} ${os.machine()}`,
        `arch_bits:${process.arch.endsWith('64') ? 64 : 32}`,
        `process_id:${process.pid}`,
        `run_id:${info.runId}`,
        // 0 on a unix socket, as Redis with `port 0`.
        `tcp_port:${typeof address === 'object' ? address.port : 0}`,
        `server_time_usec:${now * 1000}`,
        `uptime_in_seconds:${uptime}`,
        `uptime_in_days:${Math.floor(uptime / 86400)}`,
        `hz:${1000 / SAMPLE_INTERVAL}`,
        `configured_hz:${1000 / SAMPLE_INTERVAL}`,
        `executable:${process.execPath}`,
        'config_file:',
      ];
    },
  ],
  [
    'clients',
    'Clients',
    ({ info }) => [
      `connected_clients:${info.connectedClients}`,
      'cluster_connections:0',
      `maxclients:${info.maxClients}`,
      // No blocking commands here, so no client is ever blocked.
      'blocked_clients:0',
      'tracking_clients:0',
    ],
  ],
  [
    'memory',
    'Memory',
    ({ info }) => {
      const { used, rss, peak } = info.usedMemory();
      const total = os.totalmem();
      return [
        `used_memory:${used}`,
        `used_memory_human:${bytesToHuman(used)}`,
        `used_memory_rss:${rss}`,
        `used_memory_rss_human:${bytesToHuman(rss)}`,
        `used_memory_peak:${peak}`,
        `used_memory_peak_human:${bytesToHuman(peak)}`,
        `used_memory_peak_perc:${((used * 100) / peak).toFixed(2)}%`,
        `total_system_memory:${total}`,
        `total_system_memory_human:${bytesToHuman(total)}`,
        'maxmemory:0',
        'maxmemory_human:0B',
        'maxmemory_policy:noeviction',
        `mem_fragmentation_ratio:${(rss / used).toFixed(2)}`,
      ];
    },
  ],
  // Nothing is ever loaded or saved: clients that wait for `loading:0` (ioredis) go ahead at once.
  ['persistence', 'Persistence', () => ['loading:0', 'async_loading:0', 'rdb_bgsave_in_progress:0', 'aof_enabled:0']],
  [
    'stats',
    'Stats',
    ({ info, databases }) => {
      const fields = [
        `total_connections_received:${info.connectionsReceived}`,
        `total_commands_processed:${info.commands}`,
        `instantaneous_ops_per_sec:${info.ops.value}`,
      ];
      const s = info.server?.stats();
      if (s !== undefined) {
        fields.push(
          `total_net_input_bytes:${s.bytesRead}`,
          `total_net_output_bytes:${s.bytesWritten}`,
          `instantaneous_input_kbps:${kbps(info.input.value)}`,
          `instantaneous_output_kbps:${kbps(info.output.value)}`,
          // Every connection tcpkit turned away (gate, blocklist, shutdown) or shed at accept.
          `rejected_connections:${Object.values(s.rejected).reduce((a, b) => a + b, 0) + s.acceptErrors}`,
        );
      }
      let expired = 0;
      for (const db of databases) expired += db.expiredKeys;
      fields.push(`expired_keys:${expired}`, 'evicted_keys:0', `total_error_replies:${info.errorReplies}`);
      return fields;
    },
  ],
  ['replication', 'Replication', () => ['role:master', 'connected_slaves:0']],
  [
    'cpu',
    'CPU',
    () => {
      const { user, system } = process.cpuUsage();
      return [
        `used_cpu_sys:${cpuSeconds(system)}`,
        `used_cpu_user:${cpuSeconds(user)}`,
        'used_cpu_sys_children:0.000000',
        'used_cpu_user_children:0.000000',
      ];
    },
  ],
  ['modules', 'Modules', () => []],
  ['cluster', 'Cluster', () => ['cluster_enabled:0']],
  [
    'keyspace',
    'Keyspace',
    ({ databases }) =>
      databases.flatMap((db, i) =>
        db.size === 0 ? [] : [`db${i}:keys=${db.size},expires=${db.expiresCount},avg_ttl=${db.avgTtl}`],
      ),
  ],
];

/** INFO [section ...]: `default`, `all` and `everything` as in Redis 7; unknown sections give an empty reply. */
export const info: CommandHandler = (ctx, _c, args, now) => {
  const wanted = new Set(args.slice(1).map(lower));
  const every = wanted.size === 0 || wanted.has('default') || wanted.has('all') || wanted.has('everything');
  const out: string[] = [];
  for (const [name, title, fields] of SECTIONS) {
    if (!every && !wanted.has(name)) continue;
    out.push([`# ${title}`, ...fields(ctx, now)].join('\r\n'));
  }
  return out.length === 0 ? '' : `${out.join('\r\n\r\n')}\r\n`;
};
