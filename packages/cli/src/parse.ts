// The kinds of flag value the CLI reads (durations, sizes, counts, on/off), each parsed and printed
// one way for every command, so `serve --idle-timeout 30s` and `bench --duration 30s` agree and
// `--help` shows defaults as the README writes them.
import { InvalidArgumentError } from 'commander';

/** A kind of flag value: how to read it from the command line and how `--help` prints a default. */
export interface ValueType<T> {
  /** Placeholder in the help text, e.g. `<duration>`. */
  readonly placeholder: string;
  /** @throws InvalidArgumentError with a message that shows a valid example. */
  parse(text: string): T;
  format(value: T): string;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/**
 * `500ms`, `30s`, `1.5s`, `2m`, `1h` -> milliseconds. A bare number is refused, except `0` (which
 * every duration flag reads as "none" or "off"): `30` could mean 30 ms or 30 s, and the two commands
 * of this CLI once read it differently.
 */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^0+(\.0*)?$/.test(t)) return 0;
  if (/^\d+(\.\d+)?$/.test(t)) {
    throw new InvalidArgumentError(
      `a duration needs a unit, such as ${t}s or ${t}ms (a bare number is refused, except 0)`,
    );
  }
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(t);
  if (m === null) throw new InvalidArgumentError('expected a duration such as 500ms, 30s, 2m or 1h');
  const value = Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError('duration out of range');
  return value;
}

/** Milliseconds as the README writes them: `0`, `500ms`, `10s`, `60s`, `10m`, `1h`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 600_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `65536`, `64KiB`, `64k`, `4MiB`, `1mb` -> bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m?.[2]?.toLowerCase() ?? '';
  if (m === null || !(unit in SIZE_UNITS)) {
    throw new InvalidArgumentError('expected a size such as 65536, 64KiB or 4MiB');
  }
  const value = Math.round(Number(m[1]) * SIZE_UNITS[unit]!);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError('size out of range');
  return value;
}

/** Bytes as `64KiB`, `4MiB`, `1GiB` when whole, else as a number of bytes. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** A non-negative whole number. */
export function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidArgumentError('expected a whole number');
  return Number(text);
}

export function parseBoolean(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(t)) return true;
  if (['0', 'false', 'off', 'no'].includes(t)) return false;
  throw new InvalidArgumentError('expected on or off');
}

export const duration: ValueType<number> = { placeholder: '<duration>', parse: parseDuration, format: formatDuration };
export const size: ValueType<number> = { placeholder: '<size>', parse: parseSize, format: formatSize };
export const count: ValueType<number> = { placeholder: '<n>', parse: parseCount, format: String };
export const onOff: ValueType<boolean> = {
  placeholder: '<on|off>',
  parse: parseBoolean,
  format: (v) => (v ? 'on' : 'off'),
};
export const text: ValueType<string> = { placeholder: '<text>', parse: (t) => t, format: (t) => t };

/** One of `choices`, e.g. `choice('wait', 'reject')`. */
export function choice<T extends string>(...choices: T[]): ValueType<T> {
  return {
    placeholder: `<${choices.join('|')}>`,
    parse(t) {
      if (!(choices as string[]).includes(t)) {
        throw new InvalidArgumentError(`expected ${choices.join(' or ')}`);
      }
      return t as T;
    },
    format: (v) => v,
  };
}

/** TCP keep-alive: `on` (the OS's delay), `off`, or the idle time before the first probe (`30s`). */
export const keepAlive: ValueType<boolean | number> = {
  placeholder: '<on|off|duration>',
  parse(t) {
    const word = t.trim().toLowerCase();
    if (word === 'on') return true;
    if (word === 'off') return false;
    if (!/^\d/.test(word)) throw new InvalidArgumentError('expected on, off or a duration such as 30s');
    const ms = parseDuration(t);
    return ms === 0 ? false : ms;
  },
  format: (v) => (typeof v === 'number' ? formatDuration(v) : v ? 'on' : 'off'),
};
