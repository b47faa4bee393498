/**
 * The checks behind every option tcpkit validates: `serve()`'s options, the codecs' options, `conn.setTimeouts()`,
 * the buffer pool. One convention: a bad value throws {@link InvalidOptionError} (`ERR_INVALID_OPTION`) whose
 * `option` is the option's name as the user wrote it (`maxLength`, `admin.port`) and whose message starts with
 * it, then says what is allowed and what was given.
 */
import { InvalidOptionError } from './errors.js';

/** Largest duration accepted: what `setTimeout` can represent (about 24.8 days). */
export const MAX_DURATION = 2 ** 31 - 1;

/** A value as the user would recognise it in a message: strings quoted, objects by their constructor's name. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(describe).join(', ')}]`;
  if (typeof value === 'object' && value !== null) return `an object (${value.constructor?.name ?? 'no prototype'})`;
  return String(value);
}

/** An integer from `min` to `max` (default: the largest safe integer). */
export function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new InvalidOptionError(name, `must be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/** A whole number of milliseconds from 0 (no limit) to {@link MAX_DURATION}. */
export function duration(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_DURATION) {
    throw new InvalidOptionError(
      name,
      `must be a whole number of milliseconds from 0 (no limit) to ${MAX_DURATION}, got ${describe(value)}`,
    );
  }
  return value;
}

export function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidOptionError(name, `must be a boolean, got ${describe(value)}`);
  return value;
}

/** One of `choices` (compared with `===`). */
export function oneOf<const T>(name: string, value: unknown, choices: readonly T[]): T {
  if (!choices.includes(value as T)) {
    // Choices as they are written in code ('auto', '\r\n', null).
    const shown = choices.map((c) => (typeof c === 'string' ? `'${JSON.stringify(c).slice(1, -1)}'` : String(c)));
    const list = shown.length > 1 ? `${shown.slice(0, -1).join(', ')} or ${shown.at(-1)}` : shown[0];
    throw new InvalidOptionError(name, `must be ${list}, got ${describe(value)}`);
  }
  return value as T;
}

/** A string, not empty. */
export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidOptionError(name, `must be a non-empty string, got ${describe(value)}`);
  }
  return value;
}

/**
 * A plain options object whose keys are all in `known`; `example` shows the shape in the message. A key
 * outside `known` is refused under its full name (`admin.prot: is not a known option (port, host)`).
 */
export function optionsObject(
  name: string,
  value: unknown,
  known: readonly string[],
  example: string,
): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(name, `must be an object such as ${example}, got ${describe(value)}`);
  }
  // for-in over own keys rather than Object.keys: no array made per call (conn.chunks({ reuse: true })
  // checks its options once per connection).
  for (const key in value) {
    if (Object.hasOwn(value, key) && !known.includes(key)) {
      throw new InvalidOptionError(`${name}.${key}`, `is not a known option (${known.join(', ')})`);
    }
  }
  return value as Record<string, unknown>;
}

/** The object without its `undefined` values, so that defaults spread under it apply to them. */
export function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
