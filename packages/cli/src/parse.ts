import { InvalidArgumentError } from 'commander';

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

/** `1500`, `1500ms`, `30s`, `2m`, `1h` -> milliseconds; `0` means no limit. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null)
    throw new InvalidArgumentError(`expected a duration such as 500, 500ms, 30s, 2m or 1h, got "${text}"`);
  const value = Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`duration out of range: "${text}"`);
  return value;
}

/** `65536`, `64KiB`, `64k`, `4MiB`, `1mb` -> bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m?.[2]?.toLowerCase() ?? '';
  if (m === null || !(unit in SIZE_UNITS)) {
    throw new InvalidArgumentError(`expected a size such as 65536, 64KiB or 4MiB, got "${text}"`);
  }
  const value = Math.round(Number(m[1]) * SIZE_UNITS[unit]!);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`size out of range: "${text}"`);
  return value;
}

/** A non-negative whole number. */
export function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidArgumentError(`expected a whole number, got "${text}"`);
  return Number(text);
}

export function parseBoolean(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(t)) return true;
  if (['0', 'false', 'off', 'no'].includes(t)) return false;
  throw new InvalidArgumentError(`expected on or off, got "${text}"`);
}
