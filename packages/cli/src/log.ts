// The CLI's logger: pino JSON lines on stdout, or pino-pretty for a person at a terminal.
import { InvalidArgumentError } from 'commander';
import { destination, type Logger, pino } from 'pino';
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
 * A pino logger writing to stdout: JSON lines (pino's `level`, `time`, `msg`, ...) unless `format` is
 * 'pretty' or, with no format given, stdout is a terminal. Writes are synchronous, so the last lines
 * (shut down) are out before the process exits.
 */
export function createLogger(level: LogLevel, format: LogFormat | undefined): Logger {
  const usePretty = format === 'pretty' || (format === undefined && process.stdout.isTTY === true);
  if (usePretty) return pino({ level }, pretty({ sync: true, colorize: process.stdout.isTTY === true }));
  return pino({ level }, destination({ dest: 1, sync: true }));
}
