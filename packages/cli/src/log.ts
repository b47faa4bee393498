// The CLI's logger: pino JSON lines on stdout, or pino-pretty for a person at a terminal.
import { InvalidArgumentError } from 'commander';
import { destination, type Logger, pino, stdSerializers } from 'pino';
import pretty from 'pino-pretty';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'pretty';

export function parseLogLevel(v: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new InvalidArgumentError(`expected one of ${LOG_LEVELS.join(', ')}, got "${v}"`);
  }
  return v as LogLevel;
}

export function parseLogFormat(v: string): LogFormat {
  if (v !== 'json' && v !== 'pretty') throw new InvalidArgumentError(`expected json or pretty, got "${v}"`);
  return v;
}

/**
 * A pino logger writing to stdout (or `fd` 2, stderr): JSON lines (pino's `level`, `time`, `msg`, ...)
 * unless `format` is 'pretty' or, with no format given, that stream is a terminal. Writes are
 * synchronous, so the last lines (shut down) are out before the process exits.
 */
export function createLogger(level: LogLevel, format: LogFormat | undefined, fd: 1 | 2 = 1): Logger {
  const tty = (fd === 1 ? process.stdout : process.stderr).isTTY === true;
  const usePretty = format === 'pretty' || (format === undefined && tty);
  // tcpkit's messages already end with their cause's ("connection closed: <the socket error>"): pino's
  // default err serializer would append it once more; this one keeps the message and nests the cause.
  const options = { level, serializers: { err: stdSerializers.errWithCause } };
  if (usePretty) return pino(options, pretty({ sync: true, colorize: tty, destination: fd }));
  return pino(options, destination({ dest: fd, sync: true }));
}
