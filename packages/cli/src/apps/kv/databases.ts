/**
 * The numbered databases, as Redis has them: SELECT, DBSIZE, FLUSHDB, FLUSHALL, SWAPDB and MOVE,
 * each with Redis 7's checks in Redis's order and its error texts.
 */
import type { ErrorReply, RespReply } from 'tcpkit';
import { type CommandHandler, err, keyOf, lower, NOT_INTEGER, OK, ONE, SYNTAX, ZERO } from './commands.js';
import { parseInt64 } from './numbers.js';
import type { Store } from './store.js';

/** Redis's default `databases`: SELECT 0 to 15. */
export const DATABASES = 16;

const OUT_OF_RANGE = err('DB index is out of range');
const INT_RANGE = err('value is out of range, value must between -2147483648 and 2147483647');

/**
 * Redis's getIntFromObjectOrReply: a strict 64-bit integer within C's int. `message` replaces both
 * failure texts when given, as SWAPDB's "invalid first DB index" does.
 */
function intArg(arg: Buffer, message?: string): number | ErrorReply {
  const n = parseInt64(arg);
  if (n === undefined) return message === undefined ? NOT_INTEGER : err(message);
  if (n > 2147483647 || n < -2147483648) return message === undefined ? INT_RANGE : err(message);
  return Number(n);
}

/** The database at `index`, or undefined when the index is out of range (Redis's selectDb). */
const dbAt = (dbs: readonly Store[], index: number): Store | undefined =>
  index >= 0 && index < dbs.length ? dbs[index] : undefined;

const select: CommandHandler = (ctx, client, args) => {
  const id = intArg(args[1]!);
  if (typeof id !== 'number') return id;
  const db = dbAt(ctx.databases, id);
  if (db === undefined) return OUT_OF_RANGE;
  client.db = db;
  return OK;
};

const dbsize: CommandHandler = (_x, client) => client.db.size;

/** FLUSHDB and FLUSHALL take an optional SYNC or ASYNC; both run synchronously here. */
function flushMode(args: Buffer[]): RespReply | undefined {
  if (args.length === 1) return undefined;
  if (args.length === 2) {
    const mode = lower(args[1]!);
    if (mode === 'sync' || mode === 'async') return undefined;
  }
  return SYNTAX;
}

const flushdb: CommandHandler = (_x, client, args) => {
  const bad = flushMode(args);
  if (bad !== undefined) return bad;
  client.db.clear();
  return OK;
};

const flushall: CommandHandler = (ctx, _c, args) => {
  const bad = flushMode(args);
  if (bad !== undefined) return bad;
  for (const db of ctx.databases) db.clear();
  return OK;
};

const swapdb: CommandHandler = (ctx, _c, args) => {
  const first = intArg(args[1]!, 'invalid first DB index');
  if (typeof first !== 'number') return first;
  const second = intArg(args[2]!, 'invalid second DB index');
  if (typeof second !== 'number') return second;
  const a = dbAt(ctx.databases, first);
  const b = dbAt(ctx.databases, second);
  if (a === undefined || b === undefined) return OUT_OF_RANGE;
  if (a !== b) a.swap(b);
  return OK;
};

const SAME_OBJECT = err('source and destination objects are the same');

const move: CommandHandler = (ctx, client, args, now) => {
  const id = intArg(args[2]!);
  if (typeof id !== 'number') return id;
  const dst = dbAt(ctx.databases, id);
  if (dst === undefined) return OUT_OF_RANGE;
  const src = client.db;
  if (dst === src) return SAME_OBJECT;
  const key = keyOf(args[1]!);
  const value = src.get(key, now);
  // A key already in the target database stays there, and the source keeps its own.
  if (value === undefined || dst.has(key, now)) return ZERO;
  const at = src.expireAt(key);
  dst.set(key, value, at === -1 ? undefined : at);
  src.delete(key);
  return ONE;
};

export { dbsize, flushall, flushdb, move, select, swapdb };
