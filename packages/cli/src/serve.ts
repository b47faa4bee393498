/** `tcpkit serve <app>`: one of the shipped apps behind every limit and timeout of `serve()`. */
import cluster from 'node:cluster';
import { BlockList, isIP } from 'node:net';
import { type Command, InvalidArgumentError } from 'commander';
import { DEFAULTS, InvalidOptionError, ListenError, type ServeOptions, serve } from 'tcpkit';
import { APPS, type AppSpec } from './apps/index.js';
import { addFlags, type Flag, givenValues, inFlagTerms, UsageError, withDefaults } from './flags.js';
import { createLogger, LOG_LEVELS, type LogFormat, type LogLevel } from './log.js';
import { choice, count, duration, keepAlive, onOff, size, text, type ValueType } from './parse.js';
import {
  certificateFiles,
  failureFields,
  onSighup,
  reloadOnSighup,
  TLS_FLAGS,
  tlsAndProxyOptions,
} from './tls-flags.js';
import { ADMIN_HOST, adminUrl, liveView } from './top.js';
import { isModulePath, loadUserModule } from './user-module.js';

/** An address or a subnet for `--block`: `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`. */
interface Cidr {
  address: string;
  prefix: number | undefined;
  family: 'ipv4' | 'ipv6';
}

const cidr: ValueType<Cidr> = {
  placeholder: '<cidr>',
  parse(t) {
    const [address = '', prefixText, extra] = t.trim().split('/');
    const version = isIP(address);
    if (version === 0 || extra !== undefined) {
      throw new InvalidArgumentError('expected an address or a subnet such as 10.0.0.0/8 or fd00::/8');
    }
    const bits = version === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? undefined : Number(prefixText);
    if (prefix !== undefined && !(/^\d+$/.test(prefixText!) && prefix <= bits)) {
      throw new InvalidArgumentError(`the prefix length of an IPv${version} subnet is 0 to ${bits}`);
    }
    return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
  },
  format: (c) => (c.prefix === undefined ? c.address : `${c.address}/${c.prefix}`),
};

const workers: ValueType<number | 'auto'> = {
  placeholder: '<n|auto>',
  parse(t) {
    if (t === 'auto') return t;
    if (!/^\d+$/.test(t) || Number(t) < 1) throw new InvalidArgumentError('expected auto or a number >= 1');
    return Number(t);
  },
  format: String,
};

const placeholder = (type: ValueType<string>, name: string): ValueType<string> => ({ ...type, placeholder: name });

/** `serve()`'s options as flags. Defaults not given here are `DEFAULTS`' (filled in below). */
const OPTION_FLAGS: Flag<keyof ServeOptions>[] = withDefaults<keyof ServeOptions>(DEFAULTS, [
  {
    name: '--host',
    key: 'host',
    type: placeholder(text, '<address>'),
    help: 'address to listen on',
    default: '127.0.0.1',
  },
  { name: '--port', key: 'port', type: count, help: 'port to listen on', defaultText: 'echo 7000, kv 6380' },
  { name: '--path', key: 'path', type: placeholder(text, '<socket>'), help: 'listen on a unix socket instead' },
  {
    name: '--block',
    key: 'blockList',
    type: cidr,
    repeatable: true,
    help: 'refuse connections from this address or subnet (repeat the flag for more)',
  },
  { name: '--backlog', key: 'backlog', type: count, help: 'kernel accept queue length' },
  { name: '--max-connections', key: 'maxConnections', type: count, help: 'handlers running at once' },
  { name: '--when-full', key: 'whenFull', type: choice('wait', 'reject'), help: 'at the cap: queue or close' },
  {
    name: '--max-waiting',
    key: 'maxWaiting',
    type: count,
    help: 'connections queued at the cap',
    defaultText: 'the --max-connections value',
  },
  { name: '--wait-timeout', key: 'waitTimeout', type: duration, help: 'longest wait in the queue, 0 = none' },
  {
    name: '--max-connections-per-peer',
    key: 'maxConnectionsPerPeer',
    type: count,
    help: 'per remote IP, 0 = no limit',
  },
  { name: '--first-byte-timeout', key: 'firstByteTimeout', type: duration, help: 'admission to first byte' },
  { name: '--idle-timeout', key: 'idleTimeout', type: duration, help: 'no input while waiting for it' },
  { name: '--frame-timeout', key: 'frameTimeout', type: duration, help: "a frame's first to last byte" },
  { name: '--write-timeout', key: 'writeTimeout', type: duration, help: 'output the peer does not read' },
  { name: '--max-lifetime', key: 'maxLifetime', type: duration, help: 'connection lifetime, 0 = none' },
  { name: '--max-read-buffer', key: 'maxReadBuffer', type: size, help: 'unread input before pausing' },
  { name: '--max-write-buffer', key: 'maxWriteBuffer', type: size, help: 'queued output before write() waits' },
  { name: '--max-queued-bytes', key: 'maxQueuedBytes', type: size, help: 'queued output before a slow-consumer cut' },
  { name: '--linger-timeout', key: 'lingerTimeout', type: duration, help: 'lingering close after FIN' },
  { name: '--drain-timeout', key: 'drainTimeout', type: duration, help: 'graceful shutdown budget' },
  {
    name: '--shutdown-delay',
    key: 'shutdownDelay',
    type: duration,
    help: 'at SIGTERM, keep serving this long after /readyz turns 503',
  },
  {
    name: '--keep-alive',
    key: 'keepAlive',
    type: keepAlive,
    help: 'TCP keep-alive: on (the OS delay), off, or the idle time before the first probe',
  },
  { name: '--nodelay', key: 'noDelay', type: onOff, help: 'TCP_NODELAY' },
  { name: '--workers', key: 'workers', type: workers, help: 'worker processes, auto = one per core', default: 1 },
  {
    name: '--balance',
    key: 'balance',
    type: choice('auto', 'kernel', 'primary'),
    help: 'with workers: how connections reach them',
    // The library's own default (the workers' options are not in DEFAULTS); shown, not applied.
    default: 'auto',
  },
  {
    name: '--abort-on-close',
    key: 'abortOnClose',
    type: onOff,
    help: 'drop a waiting connection at FIN after data',
  },
]);

/** What the CLI itself does around `serve()`: the admin endpoint and the logger. */
interface CliOptions {
  adminPort?: number;
  adminHost?: string;
  adminProcessMetrics?: boolean;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
  top?: boolean;
}

const CLI_FLAGS: Flag<keyof CliOptions>[] = [
  {
    name: '--admin-port',
    key: 'adminPort',
    type: count,
    help: 'serve /metrics, /healthz, /readyz and /stats on this port',
    defaultText: 'none',
  },
  {
    name: '--admin-host',
    key: 'adminHost',
    type: placeholder(text, '<address>'),
    help: 'address of the admin endpoint',
    default: ADMIN_HOST,
  },
  {
    name: '--admin-process-metrics',
    key: 'adminProcessMetrics',
    type: onOff,
    help: "also serve prom-client's process_* and nodejs_* metrics on /metrics",
    // admin.processMetrics' own default.
    default: true,
  },
  {
    name: '--log-level',
    key: 'logLevel',
    type: choice(...LOG_LEVELS),
    help: 'least severe level logged',
    default: 'info',
  },
  {
    name: '--log-format',
    key: 'logFormat',
    type: choice('json', 'pretty'),
    help: 'log lines as JSON or for a person',
    defaultText: 'pretty on a terminal, json otherwise',
  },
  {
    name: '--top',
    key: 'top',
    help: 'show the live view (tcpkit top) in the foreground; the log goes to stderr, silent while the view runs if that is the terminal; q or Ctrl-C drains',
    defaultText: 'off',
  },
];

const APP_FLAGS = Object.values(APPS).flatMap((app) => app.flags);
const ALL_FLAGS: readonly Flag[] = [...OPTION_FLAGS, ...TLS_FLAGS, ...CLI_FLAGS, ...APP_FLAGS];

export function registerServe(program: Command): void {
  const names = Object.keys(APPS);
  const cmd = program
    .command('serve')
    .description(`serve an app (${names.join(', ')}) or your own handler module`)
    .argument('<app>', `${names.join(' | ')} | ./module.js (its default export is the handler)`);
  addFlags(cmd, ALL_FLAGS);
  cmd.action(async (appName: string, parsed: Record<string, unknown>) => {
    let spec: AppSpec | undefined = APPS[appName];
    let moduleOptions: ServeOptions = {};
    if (spec === undefined && isModulePath(appName)) {
      // A module that cannot be loaded is a runtime failure (exit 1) whose message says what to export.
      const mod = await loadUserModule(appName);
      moduleOptions = mod.options;
      spec = { port: 7000, flags: [], createApp: () => ({ handler: async (conn) => mod.handler(conn), close() {} }) };
    }
    if (spec === undefined) {
      throw new UsageError(`unknown app "${appName}"; choose one of ${names.join(', ')} or a path such as ./server.js`);
    }
    const appOptions = givenValues(spec.flags, parsed);
    for (const flag of APP_FLAGS) {
      if (!spec.flags.includes(flag) && givenValues([flag], parsed)[flag.key] !== undefined) {
        throw new UsageError(`${flag.name} applies to the ${appOf(flag)} app only`);
      }
    }
    // The module's options apply under the flags: a flag given on the command line wins.
    const options = {
      host: '127.0.0.1',
      port: spec.port,
      ...moduleOptions,
      ...givenValues(OPTION_FLAGS, parsed),
      shutdownOn: ['SIGINT', 'SIGTERM'],
      // The process ends with its drain, forced or not, whatever a handler left running.
      exitOnShutdown: true,
    } as ServeOptions & { blockList?: BlockList | Cidr[] };
    if (Array.isArray(options.blockList)) options.blockList = blockListOf(options.blockList);
    const cli = givenValues(CLI_FLAGS, parsed) as CliOptions;
    if (cli.adminPort !== undefined) {
      options.admin = { port: cli.adminPort, host: cli.adminHost ?? ADMIN_HOST };
      if (cli.adminProcessMetrics !== undefined) options.admin.processMetrics = cli.adminProcessMetrics;
    } else if (cli.adminHost !== undefined) throw new UsageError('--admin-host needs --admin-port');
    else if (cli.adminProcessMetrics !== undefined) throw new UsageError('--admin-process-metrics needs --admin-port');
    if (cli.top === true) {
      if (process.stdout.isTTY !== true) throw new UsageError('--top needs a terminal on stdout');
      // The view reads the admin endpoint: without --admin-port it gets one of its own.
      options.admin ??= { port: 0, host: ADMIN_HOST };
    }
    // With --top the screen is the view's: the log goes to stderr, and is silent while the view runs
    // if stderr is the same terminal (`2>tcpkit.log` keeps every line).
    const logLevel = cli.logLevel ?? 'info';
    const logger = createLogger(logLevel, cli.logFormat, cli.top === true ? 2 : 1).child({ app: appName });
    if (cli.top === true && process.stderr.isTTY === true) logger.level = 'silent';
    options.logger = logger;
    try {
      Object.assign(options, tlsAndProxyOptions(parsed));
    } catch (error) {
      // A worker reads the certificate files again when it starts (a rolling restart on SIGHUP, or a
      // replacement): files broken since the primary read them fail that one new worker, which says
      // which file at error level and exits; the primary then stops the restart and the running
      // workers keep serving with the certificate they have.
      if (cluster.isWorker) {
        logger.error(
          failureFields(error),
          'TLS certificate files not loaded: this new worker does not start; the running workers keep their certificate',
        );
        process.exit(1);
      }
      throw new UsageError((error as Error).message);
    }
    // kv reports the cap as INFO maxclients.
    const app = spec.createApp({ maxClients: options.maxConnections ?? DEFAULTS.maxConnections, ...appOptions });
    let server: Awaited<ReturnType<typeof serve>>;
    try {
      server = await serve(options as ServeOptions, app.handler);
    } catch (error) {
      app.close();
      throw explainServeError(error, options);
    }
    app.attach?.(server);
    const files = certificateFiles(parsed);
    // With workers the primary restarts them on SIGHUP, and each new worker reads the certificate files
    // again. One process reloads its certificates; without any, a SIGHUP (a reload by habit, systemd's
    // ExecReload) must not kill it either.
    if (cluster.isPrimary && server.stats().workers === undefined) {
      if (files !== undefined) reloadOnSighup(server, files, logger);
      else {
        onSighup(server, () =>
          logger.warn({}, 'SIGHUP: one process has no workers to restart (serve with --workers 2 or more)'),
        );
      }
    }
    if (cli.top === true && cluster.isPrimary) {
      await liveView(adminUrl(server.adminAddress!.address, server.adminAddress!.port), server.closed);
      // q or Ctrl-C: the view is gone, the log is back on the terminal, and the server drains as at SIGINT.
      logger.level = logLevel;
      void server.shutdown();
    }
    // The server logs its lifecycle (listening, draining, shut down) and every handler error.
    await server.closed;
    app.close();
    // The view's keep-alive fetch sockets would hold the process for seconds after the drain.
    if (cli.top === true) process.exit(0);
  });
}

function appOf(flag: Flag): string {
  return Object.keys(APPS).find((name) => APPS[name]!.flags.includes(flag)) ?? '';
}

function blockListOf(entries: Cidr[]): BlockList {
  const list = new BlockList();
  for (const { address, prefix, family } of entries) {
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, prefix, family);
  }
  return list;
}

/**
 * What the user should read when `serve()` fails: option errors in flag terms (a usage error), and
 * listen errors with the flag that fixes them (a runtime error).
 */
function explainServeError(error: unknown, options: ServeOptions): unknown {
  if (error instanceof InvalidOptionError) return new UsageError(inFlagTerms(ALL_FLAGS, error.message));
  if (!(error instanceof ListenError)) return error;
  if (error.endpoint === 'admin') {
    const host = options.admin?.host ?? ADMIN_HOST;
    return explainListenError(error, {
      name: 'admin ',
      host,
      port: options.admin?.port,
      where: `${error.address} for the admin endpoint`,
      portFlag: '--admin-port',
      hostFlag: '--admin-host',
    });
  }
  if (options.path !== undefined) {
    if (error.reason === 'EADDRINUSE') return new Error(`${options.path} is in use; choose another path with --path`);
    if (error.reason === 'EACCES')
      return new Error(`permission denied to create ${options.path}; choose another path with --path`);
  }
  return explainListenError(error, {
    name: '',
    host: options.host,
    port: options.port,
    where: `${options.host}:${options.port}`,
    portFlag: '--port',
    hostFlag: '--host',
  });
}

/**
 * A TCP listener's error in terms of the flags that fix it: the server's (`--host`, `--port`) or the admin
 * endpoint's (`--admin-host`, `--admin-port`). `name` starts the port's and host's names (`'admin '`),
 * `where` says what was listened on.
 */
function explainListenError(
  error: ListenError,
  p: {
    name: string;
    host: string | undefined;
    port: number | undefined;
    where: string;
    portFlag: string;
    hostFlag: string;
  },
): unknown {
  switch (error.reason) {
    case 'EADDRINUSE':
      return new Error(`${p.name}port ${p.port} is in use on ${p.host}; choose another with ${p.portFlag}`);
    case 'EACCES':
      return new Error(
        `permission denied to listen on ${p.where}; ports below 1024 need privileges: choose another with ${p.portFlag}`,
      );
    case 'EADDRNOTAVAIL':
      return new Error(`${p.host} is not an address of this machine; choose another with ${p.hostFlag}`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new Error(`cannot resolve ${p.name}host "${p.host}"; check ${p.hostFlag}`);
    default:
      return error;
  }
}
