// One table per command lists its flags: name, value type, help line and default. Commander's
// options, the help text (defaults in one format) and the names in error messages are derived from it,
// so a new flag is one row.
import { type Command, Option } from 'commander';
import type { ValueType } from './parse.js';

/** One flag of a command. */
export interface Flag<K extends string = string> {
  /** The long name, e.g. `--max-connections`. */
  name: string;
  /** A one-letter alias, e.g. `-c`. */
  short?: string;
  /** The option the flag sets (a `ServeOptions` or `BenchOptions` key, or an app's option). */
  key: K;
  /** How the value is read and how its default is printed; omitted: a switch without a value. */
  type?: ValueType<unknown>;
  /** What the flag does; the help line appends the default. */
  help: string;
  /** The default `--help` shows (formatted by `type`); the library applies it, not commander. */
  default?: unknown;
  /** The default in words when it is not a value, e.g. "the app's: echo 7000, kv 6380". */
  defaultText?: string;
  /** May be given more than once; the values are collected in order. */
  repeatable?: boolean;
  /** The command refuses to run without it. */
  required?: boolean;
}

/** A usage mistake (a bad flag or argument): `tcpkit: <message>`, exit status 2. */
export class UsageError extends Error {}

/** Registers `flags` on `cmd`; the help line of each shows its default as the README writes it. */
export function addFlags(cmd: Command, flags: readonly Flag[]): void {
  for (const flag of flags) {
    const type = flag.type;
    const shown = flag.defaultText ?? (flag.default !== undefined && type ? type.format(flag.default) : undefined);
    const spelling = `${flag.short ? `${flag.short}, ` : ''}${flag.name}${type ? ` ${type.placeholder}` : ''}`;
    const option = new Option(spelling, shown === undefined ? flag.help : `${flag.help} (default ${shown})`);
    if (type) {
      if (flag.repeatable) {
        option.argParser((text: string, previous: unknown[] | undefined) => [...(previous ?? []), type.parse(text)]);
      } else option.argParser((text: string) => type.parse(text));
    }
    if (flag.required) option.makeOptionMandatory();
    cmd.addOption(option);
  }
}

/** `flags` with each default not written in the table read from `defaults` (the library's own). */
export function withDefaults<K extends string>(defaults: object, flags: Flag<K>[]): Flag<K>[] {
  return flags.map((flag) => ({ default: (defaults as Record<string, unknown>)[flag.key], ...flag }));
}

/** The values the user gave, by key; flags left out are absent, so the library's defaults apply. */
export function givenValues(flags: readonly Flag[], parsed: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const flag of flags) {
    const value = parsed[attributeName(flag.name)];
    if (value !== undefined) out[flag.key] = value;
  }
  return out;
}

/**
 * `message` (from the library, which names options as `maxConnections`) in the user's terms: the option
 * it starts with, and every camelCase option key in it, become the flag that sets it (`--max-connections`).
 * A plain-word key (`rate`, `mode`) inside the sentence stays a word.
 */
export function inFlagTerms(flags: readonly Flag[], message: string): string {
  let out = message;
  for (const flag of flags) {
    const anywhere = /[A-Z]/.test(flag.key) ? '' : '^';
    out = out.replace(new RegExp(`${anywhere}(?<![\\w-])${flag.key}(?![\\w-])`, 'g'), flag.name);
  }
  return out;
}

/** Commander's attribute name for a long flag: `--max-connections` -> `maxConnections`. */
function attributeName(name: string): string {
  return name.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
