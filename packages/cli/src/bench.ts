/** `tcpkit bench`: the load generator's command line. */
import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { addFlags, type Flag, givenValues, inFlagTerms, UsageError, withDefaults } from './flags.js';
import { renderHtml } from './loadgen/html.js';
import {
  BENCH_DEFAULTS,
  BENCH_MODES,
  type BenchOptions,
  parseSourceAddresses,
  resolveBenchOptions,
} from './loadgen/options.js';
import { benchOutcome, formatSummary, progressLine } from './loadgen/report.js';
import { runBench } from './loadgen/runner.js';
import { choice, count, duration, text, type ValueType } from './parse.js';

const rate: ValueType<number> = {
  placeholder: '<msgs>',
  parse(t) {
    const value = Number(t);
    if (!(value > 0) || !Number.isFinite(value)) throw new InvalidArgumentError('expected a number > 0');
    return value;
  },
  format: String,
};

const addresses: ValueType<string[]> = {
  placeholder: '<list>',
  parse(t) {
    try {
      return parseSourceAddresses(t);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  },
  format: (list) => list.join(','),
};

const proxyVersion: ValueType<1 | 2> = {
  placeholder: '<v1|v2>',
  parse(t) {
    if (t !== 'v1' && t !== 'v2') throw new InvalidArgumentError('expected v1 or v2');
    return t === 'v1' ? 1 : 2;
  },
  format: (v) => `v${v}`,
};

/** What the output flags set; not load-generation options. */
interface OutputFlags {
  json?: boolean;
  html?: string;
  quiet?: boolean;
  allowErrors?: boolean;
}

/** The load-generation flags; their defaults are BENCH_DEFAULTS (filled in below). */
const BENCH_FLAGS: Flag<keyof BenchOptions>[] = withDefaults<keyof BenchOptions>(BENCH_DEFAULTS, [
  { name: '--host', key: 'host', type: { ...text, placeholder: '<host>' }, help: 'target host' },
  { name: '--port', key: 'port', type: count, help: 'target port' },
  { name: '--mode', key: 'mode', type: choice(...BENCH_MODES), help: 'what each connection does' },
  {
    name: '--connections',
    short: '-c',
    key: 'connections',
    type: count,
    help: 'concurrent connections (churn: concurrent connect loops)',
  },
  { name: '--size', key: 'size', type: count, help: 'message size in bytes' },
  { name: '--depth', key: 'depth', type: count, help: 'messages in flight per connection (echo, open-loop)' },
  { name: '--rate', key: 'rate', type: rate, help: 'open-loop: messages per second across all connections' },
  { name: '--duration', short: '-d', key: 'durationMs', type: duration, help: 'measured window' },
  { name: '--warmup', key: 'warmupMs', type: duration, help: 'unmeasured load before the window' },
  { name: '--ramp-up', key: 'rampUpMs', type: duration, help: 'open the connections evenly over this time' },
  {
    name: '--connect-timeout',
    key: 'connectTimeoutMs',
    type: duration,
    help: 'give up on a connect attempt after this time',
  },
  {
    name: '--source-addresses',
    key: 'sourceAddresses',
    type: addresses,
    help: 'local addresses to bind round-robin: 127.0.0.1-127.0.0.16 or a comma list',
  },
  { name: '--workers', key: 'workers', type: count, help: 'worker threads generating load (1: this thread)' },
  {
    name: '--processes',
    key: 'processes',
    type: count,
    help: 'processes generating load, results merged (each its own descriptors; not with --workers)',
  },
  { name: '--payload', key: 'payload', type: choice('random', 'zeros'), help: 'message bytes' },
  { name: '--verify', key: 'verify', help: 'check every echoed byte; mismatches count as errors' },
  {
    name: '--server-pid',
    key: 'serverPid',
    type: count,
    help: 'sample this process for server CPU per message and RSS per connection',
  },
  {
    name: '--tls',
    key: 'tls',
    help: 'connect over TLS (the certificate is not verified); churn then measures handshakes/s',
  },
  {
    name: '--tls-resume',
    key: 'tlsResume',
    help: 'with --tls: resume the previous session of each connection slot (churn)',
  },
  {
    name: '--servername',
    key: 'servername',
    type: { ...text, placeholder: '<name>' },
    help: 'with --tls: the SNI server name to send',
  },
  {
    name: '--proxy-protocol',
    key: 'proxyProtocol',
    type: proxyVersion,
    help: 'send a PROXY protocol header (v1 or v2) first, as a load balancer would',
  },
]);

const OUTPUT_FLAGS: Flag<keyof OutputFlags>[] = [
  { name: '--json', key: 'json', help: 'print the result as JSON on stdout' },
  { name: '--html', key: 'html', type: { ...text, placeholder: '<file>' }, help: 'write a self-contained HTML report' },
  { name: '--quiet', short: '-q', key: 'quiet', help: 'no progress lines' },
  {
    name: '--allow-errors',
    key: 'allowErrors',
    help: 'exit 0 even if errors occurred (a run with no connection still exits 1)',
  },
];

/** Registers `bench` and its flags on `program`. */
export function registerBench(program: Command): void {
  const cmd = program
    .command('bench')
    .description(
      'load-test a TCP echo server: ping-pong, pipelining, open-loop rate, connection churn or idle connections',
    );
  addFlags(cmd, [...BENCH_FLAGS, ...OUTPUT_FLAGS]);
  cmd.action(async (parsed: Record<string, unknown>) => {
    const options = givenValues(BENCH_FLAGS, parsed) as BenchOptions;
    const output = givenValues(OUTPUT_FLAGS, parsed) as OutputFlags;
    try {
      resolveBenchOptions(options);
    } catch (error) {
      throw new UsageError(inFlagTerms(BENCH_FLAGS, (error as Error).message));
    }
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
      const result = await runBench(options, {
        signal: controller.signal,
        onInterval: output.quiet
          ? undefined
          : (point) => process.stderr.write(tty ? `\r\x1b[K${progressLine(point)}` : `${progressLine(point)}\n`),
      });
      if (tty && !output.quiet) process.stderr.write('\n');
      if (output.html) writeFileSync(output.html, renderHtml(result));
      process.stdout.write(output.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatSummary(result)}\n`);
      const outcome = benchOutcome(result, output.allowErrors ?? false);
      if (outcome.code !== 0) {
        process.stderr.write(`tcpkit: ${outcome.reason}\n`);
        process.exitCode = outcome.code;
      }
    } finally {
      process.off('SIGINT', onSigint);
    }
  });
}
