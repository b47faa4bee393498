/** `tcpkit bench`: the load generator's command line. */
import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { renderHtml } from './loadgen/html.js';
import {
  BENCH_MODES,
  type BenchMode,
  type PayloadKind,
  parseDuration,
  parseSourceAddresses,
} from './loadgen/options.js';
import { benchOutcome, formatSummary, progressLine } from './loadgen/report.js';
import { runBench } from './loadgen/runner.js';

interface BenchFlags {
  host: string;
  port: number;
  mode: BenchMode;
  connections: number;
  size: number;
  depth: number;
  rate?: number;
  duration: number;
  warmup: number;
  rampUp: number;
  connectTimeout: number;
  sourceAddresses?: string[];
  workers: number;
  payload: PayloadKind;
  verify: boolean;
  serverPid?: number;
  json: boolean;
  html?: string;
  quiet: boolean;
  allowErrors: boolean;
  tls: boolean;
  tlsResume: boolean;
  servername?: string;
  proxyProtocol?: 1 | 2;
}

function integer(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value)) throw new InvalidArgumentError('expected an integer');
  return value;
}

function positiveNumber(text: string): number {
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value)) throw new InvalidArgumentError('expected a number > 0');
  return value;
}

function duration(text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function addresses(text: string): string[] {
  try {
    return parseSourceAddresses(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** Registers `bench` and its flags on `program`. */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'load-test a TCP echo server: ping-pong, pipelining, open-loop rate, connection churn or idle connections',
    )
    .option('--host <host>', 'target host', '127.0.0.1')
    .option('--port <port>', 'target port', integer, 7000)
    .addOption(new Option('--mode <mode>', 'what each connection does').choices(BENCH_MODES).default('echo'))
    .option('-c, --connections <n>', 'concurrent connections (churn: concurrent connect loops)', integer, 10)
    .option('--size <bytes>', 'message size in bytes', integer, 64)
    .option('--depth <n>', 'messages in flight per connection (echo, open-loop)', integer, 1)
    .option('--rate <msgs>', 'open-loop: messages per second across all connections', positiveNumber)
    .option('-d, --duration <time>', 'measured window (10s, 500ms, 2m)', duration, 10_000)
    .option('--warmup <time>', 'unmeasured load before the window', duration, 1_000)
    .option('--ramp-up <time>', 'open the connections evenly over this time', duration, 0)
    .option('--connect-timeout <time>', 'give up on a connect attempt after this time', duration, 5_000)
    .option(
      '--source-addresses <list>',
      'local addresses to bind round-robin: 127.0.0.1-127.0.0.16 or a comma list',
      addresses,
    )
    .option('--workers <n>', 'worker threads generating load (1: this thread)', integer, 1)
    .addOption(new Option('--payload <kind>', 'message bytes').choices(['random', 'zeros']).default('random'))
    .option('--verify', 'check every echoed byte; mismatches count as errors', false)
    .option('--server-pid <pid>', 'sample this process for server CPU per message and RSS per connection', integer)
    .option('--json', 'print the result as JSON on stdout', false)
    .option('--html <file>', 'write a self-contained HTML report with charts')
    .option('-q, --quiet', 'no progress lines', false)
    .option('--tls', 'connect over TLS (the certificate is not verified); churn then measures handshakes/s', false)
    .option('--tls-resume', 'with --tls: resume the previous session of each connection slot (churn)', false)
    .option('--servername <name>', 'with --tls: the SNI server name to send')
    .addOption(
      new Option(
        '--proxy-protocol <version>',
        'send a PROXY protocol header (v1 or v2) first, as a load balancer would',
      )
        .choices(['v1', 'v2'])
        .argParser((v) => {
          if (v !== 'v1' && v !== 'v2') throw new InvalidArgumentError('expected v1 or v2');
          return v === 'v1' ? 1 : 2;
        }),
    )
    .option('--allow-errors', 'exit 0 even if errors occurred (a run with no connection still exits 1)', false)
    .action(async (flags: BenchFlags) => {
      const controller = new AbortController();
      let interrupts = 0;
      const onSigint = () => {
        // First Ctrl-C: stop and report what was measured; second: give up at once.
        if (++interrupts > 1) process.exit(130);
        controller.abort();
      };
      process.on('SIGINT', onSigint);
      const tty = process.stderr.isTTY === true;
      try {
        const result = await runBench(
          {
            host: flags.host,
            port: flags.port,
            mode: flags.mode,
            connections: flags.connections,
            size: flags.size,
            depth: flags.depth,
            rate: flags.rate,
            durationMs: flags.duration,
            warmupMs: flags.warmup,
            rampUpMs: flags.rampUp,
            connectTimeoutMs: flags.connectTimeout,
            sourceAddresses: flags.sourceAddresses,
            workers: flags.workers,
            payload: flags.payload,
            verify: flags.verify,
            serverPid: flags.serverPid,
            tls: flags.tls,
            tlsResume: flags.tlsResume,
            servername: flags.servername,
            proxyProtocol: flags.proxyProtocol,
          },
          {
            signal: controller.signal,
            onInterval: flags.quiet
              ? undefined
              : (point) => process.stderr.write(tty ? `\r\x1b[K${progressLine(point)}` : `${progressLine(point)}\n`),
          },
        );
        if (tty && !flags.quiet) process.stderr.write('\n');
        if (flags.html) writeFileSync(flags.html, renderHtml(result));
        process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatSummary(result)}\n`);
        const outcome = benchOutcome(result, flags.allowErrors);
        if (outcome.code !== 0) {
          process.stderr.write(`tcpkit bench: ${outcome.reason}\n`);
          process.exitCode = outcome.code;
        }
      } catch (error) {
        process.stderr.write(`tcpkit bench: ${(error as Error).message}\n`);
        process.exitCode = 2;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
