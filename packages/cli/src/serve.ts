import cluster from 'node:cluster';
import { BlockList } from 'node:net';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type ServeOptions, serve, TcpkitError } from 'tcpkit';
import { APPS } from './apps/index.js';
import { createLogger, type LogFormat, type LogLevel, parseLogFormat, parseLogLevel } from './log.js';
import { parseBoolean, parseCount, parseDuration, parseSize } from './parse.js';
import { certificateFiles, registerTlsFlags, reloadOnSighup, tlsAndProxyOptions } from './tls-flags.js';
import { isModulePath, loadUserModule, ModuleError } from './user-module.js';

/** ServeOptions limits and timeouts as kebab-case flags: [flag, option key, parser, description]. */
const FLAGS: [string, keyof ServeOptions, (v: string) => unknown, string][] = [
  ['--backlog <n>', 'backlog', parseCount, 'kernel accept queue length (default 511)'],
  ['--max-connections <n>', 'maxConnections', parseCount, 'handlers running at once (default 10000)'],
  ['--when-full <mode>', 'whenFull', parseWhenFull, "at the cap: 'wait' or 'reject' (default wait)"],
  ['--max-waiting <n>', 'maxWaiting', parseCount, 'connections queued at the cap (default max-connections)'],
  ['--wait-timeout <duration>', 'waitTimeout', parseDuration, 'longest wait in the queue (default 10s, 0 = none)'],
  ['--max-connections-per-peer <n>', 'maxConnectionsPerPeer', parseCount, 'per remote IP (default 0 = none)'],
  ['--first-byte-timeout <duration>', 'firstByteTimeout', parseDuration, 'accept to first byte (default 10s)'],
  ['--idle-timeout <duration>', 'idleTimeout', parseDuration, 'no input while waiting for it (default 60s)'],
  ['--frame-timeout <duration>', 'frameTimeout', parseDuration, "a frame's first to last byte (default 30s)"],
  ['--write-timeout <duration>', 'writeTimeout', parseDuration, 'unflushed output (default 30s)'],
  ['--max-lifetime <duration>', 'maxLifetime', parseDuration, 'connection lifetime (default 0 = none)'],
  ['--max-read-buffer <size>', 'maxReadBuffer', parseSize, 'unread input before pausing (default 64KiB)'],
  ['--max-write-buffer <size>', 'maxWriteBuffer', parseSize, 'queued output before write() waits (default 64KiB)'],
  ['--max-queued-bytes <size>', 'maxQueuedBytes', parseSize, 'queued output before slow-consumer kill (default 4MiB)'],
  ['--linger-timeout <duration>', 'lingerTimeout', parseDuration, 'lingering close after FIN (default 2s)'],
  ['--drain-timeout <duration>', 'drainTimeout', parseDuration, 'graceful shutdown budget (default 30s)'],
  [
    '--shutdown-delay <duration>',
    'shutdownDelay',
    parseDuration,
    'at SIGTERM, keep serving this long after /readyz turns 503 (default 0)',
  ],
  ['--keep-alive <duration>', 'keepAlive', parseDuration, 'TCP keep-alive initial delay (default 0 = off)'],
  ['--nodelay <on|off>', 'noDelay', parseBoolean, 'TCP_NODELAY (default on)'],
  ['--workers <n|auto>', 'workers', parseWorkers, 'worker processes, auto = one per core (default 1: one process)'],
  ['--balance <mode>', 'balance', parseBalance, "with workers: 'auto', 'kernel' or 'primary' (default auto)"],
  [
    '--abort-on-close <on|off>',
    'abortOnClose',
    parseBoolean,
    'drop a waiting connection at FIN after data (default off)',
  ],
];

function parseWhenFull(v: string): 'wait' | 'reject' {
  if (v !== 'wait' && v !== 'reject') throw new InvalidArgumentError(`expected wait or reject, got "${v}"`);
  return v;
}

function parseWorkers(v: string): number | 'auto' {
  if (v === 'auto') return v;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`expected auto or a number >= 1, got "${v}"`);
  return Number(v);
}

function parseBalance(v: string): 'auto' | 'kernel' | 'primary' {
  if (v !== 'auto' && v !== 'kernel' && v !== 'primary') {
    throw new InvalidArgumentError(`expected auto, kernel or primary, got "${v}"`);
  }
  return v;
}

function camel(flag: string): string {
  return flag
    .replace(/^--/, '')
    .replace(/ .*$/, '')
    .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description(`serve an app (${Object.keys(APPS).join(', ')}) or your own handler module`)
    .argument('<app>', `${Object.keys(APPS).join(' | ')} | ./module.js (its default export is the handler)`)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', "port to listen on (default: the app's, echo 7000, kv 6380)", parseCount)
    .option('--path <socket>', 'listen on a unix socket instead')
    .addOption(
      new Option('--block <cidr...>', 'refuse these addresses or subnets (e.g. 10.0.0.0/8), repeatable').default([]),
    )
    .option('--max-bulk-length <size>', 'kv only: longest value or argument accepted (default 512MiB)', parseSize)
    .option('--admin-port <n>', 'serve /metrics, /healthz, /readyz and /stats on this port (default: none)', parseCount)
    .option('--admin-host <address>', 'address of the admin endpoint (default 127.0.0.1)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (default info)', parseLogLevel)
    .option('--log-format <format>', 'json or pretty (default: pretty on a terminal, json otherwise)', parseLogFormat);
  for (const [flag, , parser, description] of FLAGS) cmd.option(flag, description, parser);
  registerTlsFlags(cmd);
  cmd.action(async (appName: string, flags: Record<string, unknown>) => {
    let spec = APPS[appName];
    let moduleOptions: ServeOptions = {};
    if (spec === undefined && isModulePath(appName)) {
      try {
        const mod = await loadUserModule(appName);
        moduleOptions = mod.options;
        spec = { port: 7000, createApp: () => ({ handler: async (conn) => mod.handler(conn), close() {} }) };
      } catch (error) {
        if (error instanceof ModuleError) cmd.error(`tcpkit: ${error.message}`);
        throw error;
      }
    }
    if (spec === undefined) {
      cmd.error(
        `unknown app "${appName}"; choose one of ${Object.keys(APPS).join(', ')} or a path such as ./server.js`,
      );
      return;
    }
    // The module's options apply under the flags: a flag given on the command line wins.
    const given = (name: string): boolean => cmd.getOptionValueSource(name) === 'cli';
    const options: ServeOptions = {
      ...moduleOptions,
      host: given('host') || moduleOptions.host === undefined ? (flags.host as string) : moduleOptions.host,
      port: (flags.port as number | undefined) ?? moduleOptions.port ?? spec.port,
      shutdownOn: ['SIGINT', 'SIGTERM'],
      // The process ends with its drain, forced or not, whatever a handler left running.
      exitOnShutdown: true,
    };
    if (flags.path !== undefined) options.path = flags.path as string;
    for (const [flag, key] of FLAGS) {
      const v = flags[camel(flag)];
      if (v !== undefined) (options as Record<string, unknown>)[key] = v;
    }
    if (flags.adminPort !== undefined) {
      options.admin = { port: flags.adminPort as number, host: (flags.adminHost as string | undefined) ?? '127.0.0.1' };
    } else if (flags.adminHost !== undefined) {
      cmd.error('tcpkit: --admin-host needs --admin-port');
      return;
    }
    const logger = createLogger(
      (flags.logLevel as LogLevel | undefined) ?? 'info',
      flags.logFormat as LogFormat | undefined,
    ).child({ app: appName });
    options.logger = logger;
    const blocked = flags.block as string[];
    if (blocked.length > 0) options.blockList = parseBlockList(blocked);
    try {
      Object.assign(options, tlsAndProxyOptions(flags));
    } catch (error) {
      cmd.error(`tcpkit: ${(error as Error).message}`);
      return;
    }
    const appOptions: Record<string, unknown> = { maxClients: options.maxConnections ?? 10_000 };
    if (flags.maxBulkLength !== undefined) {
      if (appName !== 'kv') {
        cmd.error('tcpkit: --max-bulk-length applies to the kv app only');
        return;
      }
      appOptions.maxBulkLength = flags.maxBulkLength;
    }
    const app = spec.createApp(appOptions);
    try {
      // The server logs its lifecycle (listening, draining, shut down) and every handler error.
      const server = await serve(options, app.handler);
      app.attach?.(server);
      const files = certificateFiles(flags);
      // With workers the primary restarts them on SIGHUP, and each new worker reads the certificate files
      // again. One process reloads its certificates; without any, a SIGHUP (a reload by habit, systemd's
      // ExecReload) must not kill it either.
      if (cluster.isPrimary && server.stats().workers === undefined) {
        if (files !== undefined) reloadOnSighup(server, files, logger);
        else {
          const onHup = (): void =>
            logger.warn({}, 'SIGHUP: one process has no workers to restart (serve with --workers 2 or more)');
          process.on('SIGHUP', onHup);
          void server.closed.then(() => process.off('SIGHUP', onHup));
        }
      }
      await server.closed;
      app.close();
    } catch (err) {
      app.close();
      if (err instanceof TcpkitError || (err as NodeJS.ErrnoException).code !== undefined) {
        cmd.error(`tcpkit: ${(err as Error).message}`);
      }
      throw err;
    }
  });
}

function parseBlockList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, prefix] = entry.split('/');
    const type = address!.includes(':') ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, Number(prefix), type);
  }
  return list;
}
