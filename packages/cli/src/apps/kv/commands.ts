// Over the ~400-line guide on purpose: a table of small handlers (strings, keys, expiry), each a few lines over one
// Store, with the reply constants and argument helpers they share; apart, each file would re-import all of them.
import { ErrorReply, RawReply, type RespReply } from 'tcpkit';
import { globMatch } from './glob.js';
import type { InfoState } from './info.js';
import { addInt64, INT64_MAX, INT64_MIN, type Int64, parseInt64 } from './numbers.js';
import type { Store } from './store.js';

/** What one connection remembers between commands. */
export interface ClientState {
  readonly id: number;
  /** The selected database (SELECT); one of `ServerContext.databases`. */
  db: Store;
  /** Set by CLIENT SETNAME / HELLO SETNAME; null when unnamed. */
  name: Buffer | null;
  /** Set by QUIT: reply, then close. */
  quit: boolean;
  /** `IP:port` of the client (behind a PROXY-protocol balancer, the client's own) and of the server end. */
  readonly addr: string;
  readonly laddr: string;
  /** The socket's file descriptor (`conn.fd`, -1 when unknown), CLIENT INFO's `fd`: asked only when printed. */
  fd(): number;
  /** Unix ms of the connection's start and of its latest command (CLIENT INFO age and idle). */
  readonly createdAt: number;
  lastInteraction: number;
  /** Full name of the latest command (`client|info`), as CLIENT INFO's `cmd`. */
  lastCommand: string;
  /** Bytes of replies queued for the client (CLIENT INFO `omem`). */
  queuedBytes(): number;
}

/** What every connection shares. */
export interface ServerContext {
  /** The databases, 16 as in Redis: SELECT picks one by index; SWAPDB exchanges their contents. */
  readonly databases: readonly Store[];
  /** The version INFO and HELLO report; clients use it to pick features. */
  readonly version: string;
  /** What INFO reports: counters, meters and, once attached, the tcpkit server's own counters. */
  readonly info: InfoState;
  /** Every connection being served, oldest first (CLIENT LIST). */
  clients(): Iterable<ClientState>;
}

/** A command's handler: a pure function of the store, the client and the arguments to a reply. */
export type CommandHandler = (ctx: ServerContext, client: ClientState, args: Buffer[], now: number) => RespReply;

/** Redis 7's command metadata, as COMMAND INFO and COMMAND DOCS report it. */
export interface CommandSpec {
  /** Lower case; `parent|sub` for a subcommand, as Redis's error messages name it. */
  readonly fullName: string;
  /** Argument count including the name; negative: at least that many. */
  readonly arity: number;
  readonly flags: readonly string[];
  readonly categories: readonly string[];
  readonly keys: readonly [first: number, last: number, step: number];
  readonly summary: string;
  readonly since: string;
  readonly group: string;
  readonly run: CommandHandler;
  readonly subcommands?: ReadonlyMap<string, CommandSpec>;
}

// Replies sent often enough to encode once.
export const OK = new RawReply('+OK\r\n');
export const NULL = new RawReply('$-1\r\n');
export const ZERO = new RawReply(':0\r\n');
export const ONE = new RawReply(':1\r\n');
const EMPTY_ARRAY = new RawReply('*0\r\n');

/** `-ERR <message>`. */
export const err = (message: string): ErrorReply => new ErrorReply(`ERR ${message}`);
export const SYNTAX = err('syntax error');
export const NOT_INTEGER = err('value is not an integer or out of range');
const MAX_STRING = 512 * 1024 * 1024;

/** An argument as C's `%s` prints it: bytes as latin1 chars, cut at the first NUL, at most `max` bytes. */
export function cstr(arg: Buffer, max = Number.POSITIVE_INFINITY): string {
  const nul = arg.indexOf(0);
  const end = Math.min(nul === -1 ? arg.length : nul, max);
  return arg.toString('latin1', 0, end);
}

export const lower = (arg: Buffer): string => arg.toString('latin1').toLowerCase();
export const keyOf = (arg: Buffer): string => arg.toString('latin1');
/** The store keeps values; request arguments are views of the socket's chunk and must be copied. */
const copy = (arg: Buffer): Buffer => Buffer.from(arg);
const int64Bytes = (n: Int64): Buffer => Buffer.from(String(n), 'latin1');

/** `-ERR wrong number of arguments for '<name>' command`. */
export const arityError = (fullName: string): ErrorReply => err(`wrong number of arguments for '${fullName}' command`);

const expireError = (fullName: string): ErrorReply => err(`invalid expire time in '${fullName}' command`);

// ---- strings ---------------------------------------------------------------------------------

const get: CommandHandler = (_x, client, args, now) => client.db.get(keyOf(args[1]!), now) ?? NULL;

const SET_NX = 1;
const SET_XX = 2;
const SET_GET = 4;
const SET_KEEPTTL = 8;
const SET_EX = 16;
const SET_PX = 32;
const SET_EXAT = 64;
const SET_PXAT = 128;
const ANY_EXPIRE = SET_EX | SET_PX | SET_EXAT | SET_PXAT;

/** Redis's parseExtendedStringArgumentsOrReply for SET, condition for condition. */
const set: CommandHandler = (_x, client, args, now) => {
  let flags = 0;
  let expire: Buffer | undefined;
  for (let j = 3; j < args.length; j++) {
    const opt = lower(args[j]!);
    const next = j === args.length - 1 ? undefined : args[j + 1];
    if (opt === 'nx' && !(flags & SET_XX)) flags |= SET_NX;
    else if (opt === 'xx' && !(flags & SET_NX)) flags |= SET_XX;
    else if (opt === 'get') flags |= SET_GET;
    else if (opt === 'keepttl' && !(flags & ANY_EXPIRE)) flags |= SET_KEEPTTL;
    else if (next !== undefined && !(flags & SET_KEEPTTL)) {
      const unit =
        opt === 'ex' ? SET_EX : opt === 'px' ? SET_PX : opt === 'exat' ? SET_EXAT : opt === 'pxat' ? SET_PXAT : 0;
      if (unit === 0 || flags & (ANY_EXPIRE & ~unit)) return SYNTAX;
      flags |= unit;
      expire = next;
      j++;
    } else return SYNTAX;
  }
  let expireAt: number | undefined;
  if (expire !== undefined) {
    const n = parseInt64(expire);
    if (n === undefined) return NOT_INTEGER;
    const seconds = (flags & (SET_EX | SET_EXAT)) !== 0;
    let ms = BigInt(n);
    if (ms <= 0n || (seconds && ms > INT64_MAX / 1000n)) return expireError('set');
    if (seconds) ms *= 1000n;
    if (flags & (SET_EX | SET_PX)) ms += BigInt(now);
    if (ms > INT64_MAX) return expireError('set');
    expireAt = Number(ms);
  }
  const key = keyOf(args[1]!);
  const old = client.db.get(key, now);
  if ((flags & SET_NX && old !== undefined) || (flags & SET_XX && old === undefined)) {
    return flags & SET_GET ? (old ?? NULL) : NULL;
  }
  client.db.set(key, copy(args[2]!), expireAt, (flags & SET_KEEPTTL) !== 0);
  return flags & SET_GET ? (old ?? NULL) : OK;
};

const getdel: CommandHandler = (_x, client, args, now) => {
  const key = keyOf(args[1]!);
  const value = client.db.get(key, now);
  if (value === undefined) return NULL;
  client.db.delete(key);
  return value;
};

const incrDecr = (client: ClientState, keyArg: Buffer, by: Int64, now: number): RespReply => {
  const key = keyOf(keyArg);
  const current = client.db.get(key, now);
  const value = current === undefined ? 0 : parseInt64(current);
  if (value === undefined) return NOT_INTEGER;
  const sum = addInt64(value, by);
  if (sum === undefined) return err('increment or decrement would overflow');
  client.db.set(key, int64Bytes(sum), undefined, true);
  return sum;
};

const incr: CommandHandler = (_x, client, args, now) => incrDecr(client, args[1]!, 1, now);
const decr: CommandHandler = (_x, client, args, now) => incrDecr(client, args[1]!, -1, now);
const incrby: CommandHandler = (_x, client, args, now) => {
  const by = parseInt64(args[2]!);
  return by === undefined ? NOT_INTEGER : incrDecr(client, args[1]!, by, now);
};
const decrby: CommandHandler = (_x, client, args, now) => {
  const by = parseInt64(args[2]!);
  if (by === undefined) return NOT_INTEGER;
  if (by === INT64_MIN) return err('decrement would overflow');
  return incrDecr(client, args[1]!, typeof by === 'bigint' ? -by : -by, now);
};

const append: CommandHandler = (_x, client, args, now) => {
  const key = keyOf(args[1]!);
  const current = client.db.get(key, now);
  const extra = args[2]!;
  if (current === undefined) {
    client.db.set(key, copy(extra));
    return extra.length;
  }
  const total = current.length + extra.length;
  if (total > MAX_STRING) return err('string exceeds maximum allowed size (proto-max-bulk-len)');
  client.db.set(key, Buffer.concat([current, extra], total), undefined, true);
  return total;
};

const strlen: CommandHandler = (_x, client, args, now) => client.db.get(keyOf(args[1]!), now)?.length ?? 0;

const mget: CommandHandler = (_x, client, args, now) => {
  const out: RespReply[] = new Array(args.length - 1);
  for (let i = 1; i < args.length; i++) out[i - 1] = client.db.get(keyOf(args[i]!), now) ?? null;
  return out;
};

const mset: CommandHandler = (_x, client, args) => {
  if (args.length % 2 === 0) return arityError('mset');
  for (let i = 1; i < args.length; i += 2) client.db.set(keyOf(args[i]!), copy(args[i + 1]!));
  return OK;
};

// ---- keys ------------------------------------------------------------------------------------

const del: CommandHandler = (_x, client, args, now) => {
  let n = 0;
  for (let i = 1; i < args.length; i++) {
    const key = keyOf(args[i]!);
    if (client.db.has(key, now)) {
      client.db.delete(key);
      n++;
    }
  }
  return n;
};

const exists: CommandHandler = (_x, client, args, now) => {
  let n = 0;
  for (let i = 1; i < args.length; i++) if (client.db.has(keyOf(args[i]!), now)) n++;
  return n;
};

const EXPIRE_NX = 1;
const EXPIRE_XX = 2;
const EXPIRE_GT = 4;
const EXPIRE_LT = 8;

/** Redis's expireGenericCommand: option checks, overflow checks, then the key. */
const expireGeneric =
  (fullName: string, seconds: boolean): CommandHandler =>
  (_x, client, args, now) => {
    let flags = 0;
    for (let j = 3; j < args.length; j++) {
      const opt = lower(args[j]!);
      if (opt === 'nx') flags |= EXPIRE_NX;
      else if (opt === 'xx') flags |= EXPIRE_XX;
      else if (opt === 'gt') flags |= EXPIRE_GT;
      else if (opt === 'lt') flags |= EXPIRE_LT;
      else return err(`Unsupported option ${cstr(args[j]!)}`);
    }
    if (flags & EXPIRE_NX && flags & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT)) {
      return err('NX and XX, GT or LT options at the same time are not compatible');
    }
    if (flags & EXPIRE_GT && flags & EXPIRE_LT) return err('GT and LT options at the same time are not compatible');
    const n = parseInt64(args[2]!);
    if (n === undefined) return NOT_INTEGER;
    let when = BigInt(n);
    if (seconds) {
      if (when > INT64_MAX / 1000n || when < INT64_MIN / 1000n) return expireError(fullName);
      when *= 1000n;
    }
    if (when > INT64_MAX - BigInt(now)) return expireError(fullName);
    when += BigInt(now);
    const key = keyOf(args[1]!);
    if (!client.db.has(key, now)) return ZERO;
    if (flags !== 0) {
      const current = client.db.expireAt(key);
      if (flags & EXPIRE_NX && current !== -1) return ZERO;
      if (flags & EXPIRE_XX && current === -1) return ZERO;
      if (flags & EXPIRE_GT && (current === -1 || when <= BigInt(current))) return ZERO;
      if (flags & EXPIRE_LT && current !== -1 && when >= BigInt(current)) return ZERO;
    }
    if (when <= BigInt(now)) client.db.delete(key);
    else client.db.setExpire(key, Number(when));
    return ONE;
  };

const ttlGeneric =
  (ms: boolean): CommandHandler =>
  (_x, client, args, now) => {
    const key = keyOf(args[1]!);
    if (!client.db.has(key, now)) return -2;
    const at = client.db.expireAt(key);
    if (at === -1) return -1;
    const ttl = Math.max(0, at - now);
    return ms ? ttl : Math.floor((ttl + 500) / 1000);
  };

const persist: CommandHandler = (_x, client, args, now) => {
  const key = keyOf(args[1]!);
  return client.db.has(key, now) && client.db.persist(key) ? ONE : ZERO;
};

const keys: CommandHandler = (_x, client, args, now) => {
  const pattern = args[1]!;
  const all = pattern.length === 1 && pattern[0] === 0x2a;
  const out: Buffer[] = [];
  for (const key of client.db.keys(now)) {
    const bytes = Buffer.from(key, 'latin1');
    if (all || globMatch(pattern, bytes)) out.push(bytes);
  }
  return out;
};

// ---- connection ------------------------------------------------------------------------------

const PONG = new RawReply('+PONG\r\n');

const ping: CommandHandler = (_x, _c, args) => {
  if (args.length > 2) return arityError('ping');
  return args.length === 1 ? PONG : args[1]!;
};

const echo: CommandHandler = (_x, _c, args) => args[1]!;

const quit: CommandHandler = (_x, client) => {
  client.quit = true;
  return OK;
};

/** Redis's clientSetNameOrReply; undefined when the name was set. */
function setName(client: ClientState, name: Buffer): ErrorReply | undefined {
  for (const byte of name) {
    if (byte < 0x21 || byte > 0x7e) return err('Client names cannot contain spaces, newlines or special characters.');
  }
  client.name = name.length === 0 ? null : copy(name);
  return undefined;
}

const clientSetname: CommandHandler = (_x, client, args) => setName(client, args[2]!) ?? OK;
const clientGetname: CommandHandler = (_x, client) => client.name ?? NULL;
const clientId: CommandHandler = (_x, client) => client.id;

/**
 * One client as CLIENT INFO and CLIENT LIST print it: Redis 7's fields in Redis's order, those tcpkit
 * knows. No pub/sub, MULTI or client tracking in this app, so those are 0 and -1 as Redis prints them
 * for a client that uses none. Redis's buffer internals (qbuf, qbuf-free, argv-mem, multi-mem, rbs, rbp,
 * obl, oll, tot-mem) and its event-loop flags (events) have no counterpart here and are left out rather
 * than made up; omem is the bytes of replies queued (conn.queuedBytes).
 */
function clientLine(ctx: ServerContext, client: ClientState, now: number): string {
  const name = client.name === null ? '' : cstr(client.name);
  const age = Math.floor((now - client.createdAt) / 1000);
  const idle = Math.floor((now - client.lastInteraction) / 1000);
  return (
    `id=${client.id} addr=${client.addr} laddr=${client.laddr} fd=${client.fd()} name=${name} age=${age} idle=${idle} flags=N db=${ctx.databases.indexOf(client.db)}` +
    ` sub=0 psub=0 ssub=0 multi=-1 omem=${client.queuedBytes()} cmd=${client.lastCommand} user=default redir=-1 resp=2\n`
  );
}

const clientInfo: CommandHandler = (ctx, client, _a, now) => Buffer.from(clientLine(ctx, client, now), 'latin1');

/** CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id [id ...]]. */
const clientList: CommandHandler = (ctx, _c, args, now) => {
  let ids: Set<string> | null = null;
  let type = 'normal';
  for (let i = 2; i < args.length; i++) {
    const opt = lower(args[i]!);
    if (opt === 'type' && i + 1 < args.length) {
      type = lower(args[++i]!);
      if (!['normal', 'master', 'replica', 'slave', 'pubsub'].includes(type)) {
        return err(`Unknown client type '${cstr(args[i]!)}'`);
      }
    } else if (opt === 'id' && i + 1 < args.length) {
      ids = new Set();
      while (i + 1 < args.length) {
        const id = args[++i]!.toString('latin1');
        if (!/^[1-9]\d*$/.test(id)) return err('Invalid client ID');
        ids.add(id);
      }
    } else {
      return SYNTAX;
    }
  }
  let out = '';
  // Every client of this app is a normal one: no replicas, no pub/sub.
  if (type === 'normal') {
    for (const client of ctx.clients())
      if (ids === null || ids.has(String(client.id))) out += clientLine(ctx, client, now);
  }
  return Buffer.from(out, 'latin1');
};

const hello: CommandHandler = (ctx, client, args) => {
  let next = 1;
  if (args.length >= 2) {
    const version = parseInt64(args[next++]!);
    if (version === undefined) return err('Protocol version is not an integer or out of range');
    // RESP3 is not spoken here: clients fall back to RESP2 on NOPROTO, as they do with Redis 5.
    if (version !== 2) return new ErrorReply('NOPROTO unsupported protocol version');
  }
  for (let j = next; j < args.length; j++) {
    const more = args.length - 1 - j;
    const opt = lower(args[j]!);
    if (opt === 'auth' && more >= 2) {
      // No ACLs: the default user has no password, so any password for it is accepted, as in Redis.
      if (lower(args[j + 1]!) !== 'default') {
        return new ErrorReply('WRONGPASS invalid username-password pair or user is disabled.');
      }
      j += 2;
    } else if (opt === 'setname' && more >= 1) {
      const failed = setName(client, args[j + 1]!);
      if (failed) return failed;
      j++;
    } else return err(`Syntax error in HELLO option '${cstr(args[j]!)}'`);
  }
  // Identifies as Redis, as compatible servers do, so clients enable the features they check for.
  return [
    'server',
    'redis',
    'version',
    ctx.version,
    'proto',
    2,
    'id',
    client.id,
    'mode',
    'standalone',
    'role',
    'master',
    'modules',
    EMPTY_ARRAY,
  ];
};

export {
  append,
  clientGetname,
  clientId,
  clientInfo,
  clientList,
  clientSetname,
  decr,
  decrby,
  del,
  echo,
  exists,
  expireGeneric,
  get,
  getdel,
  hello,
  incr,
  incrby,
  keys,
  mget,
  mset,
  persist,
  ping,
  quit,
  set,
  strlen,
  ttlGeneric,
};
