// Over the ~400-line guide on purpose: a data table, Redis 7.0's metadata for every command served (arity, flags,
// ACL categories, key positions, docs), with the COMMAND introspection and the dispatch that read it.
import { ErrorReply, type RespReply, SimpleString } from 'tcpkit';
import type { ClientState, CommandHandler, CommandSpec, ServerContext } from './commands.js';
import * as c from './commands.js';
import * as db from './databases.js';
import { info } from './info.js';

type Spec = Omit<CommandSpec, 'fullName' | 'subcommands'> & { subcommands?: Record<string, Spec> };

const S = (flags: string, categories: string, keys: [number, number, number] = [1, 1, 1]) => ({
  flags: flags.split(' ').filter(Boolean),
  categories: categories.split(' ').filter(Boolean),
  keys,
});
const NO_KEYS: [number, number, number] = [0, 0, 0];
const ALL_KEYS: [number, number, number] = [1, -1, 1];

const help =
  (name: string, lines: string[]): CommandHandler =>
  () => [
    new SimpleString(`${name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:`),
    ...lines.map((l) => new SimpleString(l)),
  ];

/** Redis 7.0's metadata for the commands served here (arity, flags, ACL categories, key positions). */
const SPECS: Record<string, Spec> = {
  ping: {
    arity: -1,
    ...S('fast', '@fast @connection', NO_KEYS),
    summary: 'Ping the server',
    since: '1.0.0',
    group: 'connection',
    run: c.ping,
  },
  echo: {
    arity: 2,
    ...S('fast', '@fast @connection', NO_KEYS),
    summary: 'Echo the given string',
    since: '1.0.0',
    group: 'connection',
    run: c.echo,
  },
  get: {
    arity: 2,
    ...S('readonly fast', '@read @string @fast'),
    summary: 'Get the value of a key',
    since: '1.0.0',
    group: 'string',
    run: c.get,
  },
  set: {
    arity: -3,
    ...S('write denyoom', '@write @string @slow'),
    summary: 'Set the string value of a key',
    since: '1.0.0',
    group: 'string',
    run: c.set,
  },
  getdel: {
    arity: 2,
    ...S('write fast', '@write @string @fast'),
    summary: 'Get the value of a key and delete the key',
    since: '6.2.0',
    group: 'string',
    run: c.getdel,
  },
  del: {
    arity: -2,
    ...S('write', '@keyspace @write @slow', ALL_KEYS),
    summary: 'Delete a key',
    since: '1.0.0',
    group: 'generic',
    run: c.del,
  },
  exists: {
    arity: -2,
    ...S('readonly fast', '@keyspace @read @fast', ALL_KEYS),
    summary: 'Determine if a key exists',
    since: '1.0.0',
    group: 'generic',
    run: c.exists,
  },
  incr: {
    arity: 2,
    ...S('write denyoom fast', '@write @string @fast'),
    summary: 'Increment the integer value of a key by one',
    since: '1.0.0',
    group: 'string',
    run: c.incr,
  },
  decr: {
    arity: 2,
    ...S('write denyoom fast', '@write @string @fast'),
    summary: 'Decrement the integer value of a key by one',
    since: '1.0.0',
    group: 'string',
    run: c.decr,
  },
  incrby: {
    arity: 3,
    ...S('write denyoom fast', '@write @string @fast'),
    summary: 'Increment the integer value of a key by the given amount',
    since: '1.0.0',
    group: 'string',
    run: c.incrby,
  },
  decrby: {
    arity: 3,
    ...S('write denyoom fast', '@write @string @fast'),
    summary: 'Decrement the integer value of a key by the given number',
    since: '1.0.0',
    group: 'string',
    run: c.decrby,
  },
  append: {
    arity: 3,
    ...S('write denyoom fast', '@write @string @fast'),
    summary: 'Append a value to a key',
    since: '2.0.0',
    group: 'string',
    run: c.append,
  },
  strlen: {
    arity: 2,
    ...S('readonly fast', '@read @string @fast'),
    summary: 'Get the length of the value stored in a key',
    since: '2.2.0',
    group: 'string',
    run: c.strlen,
  },
  mget: {
    arity: -2,
    ...S('readonly fast', '@read @string @fast', ALL_KEYS),
    summary: 'Get the values of all the given keys',
    since: '1.0.0',
    group: 'string',
    run: c.mget,
  },
  mset: {
    arity: -3,
    ...S('write denyoom', '@write @string @slow', [1, -1, 2]),
    summary: 'Set multiple keys to multiple values',
    since: '1.0.1',
    group: 'string',
    run: c.mset,
  },
  expire: {
    arity: -3,
    ...S('write fast', '@keyspace @write @fast'),
    summary: "Set a key's time to live in seconds",
    since: '1.0.0',
    group: 'generic',
    run: c.expireGeneric('expire', true),
  },
  pexpire: {
    arity: -3,
    ...S('write fast', '@keyspace @write @fast'),
    summary: "Set a key's time to live in milliseconds",
    since: '2.6.0',
    group: 'generic',
    run: c.expireGeneric('pexpire', false),
  },
  ttl: {
    arity: 2,
    ...S('readonly fast', '@keyspace @read @fast'),
    summary: 'Get the time to live for a key in seconds',
    since: '1.0.0',
    group: 'generic',
    run: c.ttlGeneric(false),
  },
  pttl: {
    arity: 2,
    ...S('readonly fast', '@keyspace @read @fast'),
    summary: 'Get the time to live for a key in milliseconds',
    since: '2.6.0',
    group: 'generic',
    run: c.ttlGeneric(true),
  },
  persist: {
    arity: 2,
    ...S('write fast', '@keyspace @write @fast'),
    summary: 'Remove the expiration from a key',
    since: '2.2.0',
    group: 'generic',
    run: c.persist,
  },
  keys: {
    arity: 2,
    ...S('readonly', '@keyspace @read @slow @dangerous', NO_KEYS),
    summary: 'Find all keys matching the given pattern',
    since: '1.0.0',
    group: 'generic',
    run: c.keys,
  },
  dbsize: {
    arity: 1,
    ...S('readonly fast', '@keyspace @read @fast', NO_KEYS),
    summary: 'Return the number of keys in the selected database',
    since: '1.0.0',
    group: 'server',
    run: db.dbsize,
  },
  flushall: {
    arity: -1,
    ...S('write', '@keyspace @write @slow @dangerous', NO_KEYS),
    summary: 'Remove all keys from all databases',
    since: '1.0.0',
    group: 'server',
    run: db.flushall,
  },
  flushdb: {
    arity: -1,
    ...S('write', '@keyspace @write @slow @dangerous', NO_KEYS),
    summary: 'Remove all keys from the current database',
    since: '1.0.0',
    group: 'server',
    run: db.flushdb,
  },
  swapdb: {
    arity: 3,
    ...S('write fast', '@keyspace @write @fast @dangerous', NO_KEYS),
    summary: 'Swaps two Redis databases',
    since: '4.0.0',
    group: 'server',
    run: db.swapdb,
  },
  move: {
    arity: 3,
    ...S('write fast', '@keyspace @write @fast'),
    summary: 'Move a key to another database',
    since: '1.0.0',
    group: 'generic',
    run: db.move,
  },
  info: {
    arity: -1,
    ...S('loading stale', '@slow @dangerous', NO_KEYS),
    summary: 'Get information and statistics about the server',
    since: '1.0.0',
    group: 'server',
    run: info,
  },
  select: {
    arity: 2,
    ...S('loading stale fast', '@fast @connection', NO_KEYS),
    summary: 'Change the selected database for the current connection',
    since: '1.0.0',
    group: 'connection',
    run: db.select,
  },
  hello: {
    arity: -1,
    ...S('noscript loading stale fast no_auth allow_busy', '@fast @connection', NO_KEYS),
    summary: 'Handshake with Redis',
    since: '6.0.0',
    group: 'connection',
    run: c.hello,
  },
  quit: {
    arity: -1,
    ...S('allow_busy noscript loading stale fast no_auth', '@fast @connection', NO_KEYS),
    summary: 'Close the connection',
    since: '1.0.0',
    group: 'connection',
    run: c.quit,
  },
  client: {
    arity: -2,
    ...S('', '@slow', NO_KEYS),
    summary: 'A container for client connection commands',
    since: '2.4.0',
    group: 'connection',
    run: () => c.arityError('client'),
    subcommands: {
      setname: {
        arity: 3,
        ...S('noscript loading stale', '@slow @connection', NO_KEYS),
        summary: 'Set the current connection name',
        since: '2.6.9',
        group: 'connection',
        run: c.clientSetname,
      },
      getname: {
        arity: 2,
        ...S('noscript loading stale', '@slow @connection', NO_KEYS),
        summary: 'Get the current connection name',
        since: '2.6.9',
        group: 'connection',
        run: c.clientGetname,
      },
      info: {
        arity: 2,
        ...S('noscript loading stale', '@slow @connection', NO_KEYS),
        summary: 'Returns information about the current client connection.',
        since: '6.2.0',
        group: 'connection',
        run: c.clientInfo,
      },
      list: {
        arity: -2,
        ...S('admin noscript loading stale', '@admin @slow @dangerous @connection', NO_KEYS),
        summary: 'Get the list of client connections',
        since: '2.4.0',
        group: 'connection',
        run: c.clientList,
      },
      id: {
        arity: 2,
        ...S('noscript loading stale', '@slow @connection', NO_KEYS),
        summary: 'Returns the client ID for the current connection',
        since: '5.0.0',
        group: 'connection',
        run: c.clientId,
      },
      help: {
        arity: 2,
        ...S('loading stale', '@slow @connection', NO_KEYS),
        summary: 'Show helpful text about the different subcommands',
        since: '5.0.0',
        group: 'connection',
        run: help('CLIENT', [
          'GETNAME',
          '    Return the name of the current connection.',
          'ID',
          '    Return the ID of the current connection.',
          'INFO',
          '    Return information about the current client connection.',
          'LIST [TYPE <NORMAL|MASTER|REPLICA|PUBSUB>] [ID <id> [<id> ...]]',
          '    Return information about client connections.',
          'SETNAME <name>',
          '    Assign the name <name> to the current connection.',
          'HELP',
          '    Prints this help.',
        ]),
      },
    },
  },
  config: {
    arity: -2,
    ...S('', '@slow', NO_KEYS),
    summary: 'A container for server configuration commands',
    since: '2.0.0',
    group: 'server',
    run: () => c.arityError('config'),
    subcommands: {
      // redis-benchmark reads `save` and `appendonly` before it starts.
      get: {
        arity: -3,
        ...S('admin noscript loading stale', '@admin @slow @dangerous', NO_KEYS),
        summary: 'Get the values of configuration parameters',
        since: '2.0.0',
        group: 'server',
        run: configGet,
      },
      help: {
        arity: 2,
        ...S('loading stale', '@slow', NO_KEYS),
        summary: 'Show helpful text about the different subcommands',
        since: '5.0.0',
        group: 'server',
        run: help('CONFIG', [
          'GET <pattern>',
          '    Return parameters matching the glob-like <pattern> and their values.',
          'HELP',
          '    Prints this help.',
        ]),
      },
    },
  },
  command: {
    arity: -1,
    ...S('loading stale', '@slow @connection', NO_KEYS),
    summary: 'Get array of Redis command details',
    since: '2.8.13',
    group: 'server',
    run: () => [...COMMANDS.values()].map(commandInfo),
    subcommands: {
      count: {
        arity: 2,
        ...S('loading stale', '@slow @connection', NO_KEYS),
        summary: 'Get total number of Redis commands',
        since: '2.8.13',
        group: 'server',
        run: () => COMMANDS.size,
      },
      info: {
        arity: -2,
        ...S('loading stale', '@slow @connection', NO_KEYS),
        summary: 'Get array of specific Redis command details, or all when no argument is given',
        since: '2.8.13',
        group: 'server',
        run: commandInfoCommand,
      },
      docs: {
        arity: -2,
        ...S('loading stale', '@slow @connection', NO_KEYS),
        summary: 'Get array of specific Redis command documentation',
        since: '7.0.0',
        group: 'server',
        run: commandDocs,
      },
      list: {
        arity: -2,
        ...S('loading stale', '@slow @connection', NO_KEYS),
        summary: 'Get an array of Redis command names',
        since: '7.0.0',
        group: 'server',
        run: () => [...COMMANDS.keys()],
      },
      help: {
        arity: 2,
        ...S('loading stale', '@slow @connection', NO_KEYS),
        summary: 'Show helpful text about the different subcommands',
        since: '5.0.0',
        group: 'server',
        run: help('COMMAND', [
          '(no subcommand)',
          '    Return details about all Redis commands.',
          'COUNT',
          '    Return the total number of commands in this Redis server.',
          'LIST',
          '    Return a list of all commands in this Redis server.',
          'INFO [<command-name> ...]',
          '    Return details about multiple Redis commands.',
          'DOCS [<command-name> ...]',
          '    Return documentation details about multiple Redis commands.',
          'HELP',
          '    Prints this help.',
        ]),
      },
    },
  },
};

function configGet(ctx: ServerContext, _client: ClientState, args: Buffer[]): RespReply {
  const config: Record<string, string> = {
    save: '',
    appendonly: 'no',
    databases: String(ctx.databases.length),
    maxclients: String(ctx.info.maxClients),
  };
  const out: string[] = [];
  for (const [name, value] of Object.entries(config)) {
    if (args.slice(2).some((p) => p.toString('latin1').toLowerCase() === name || p.toString() === '*'))
      out.push(name, value);
  }
  return out;
}

function build(name: string, spec: Spec, parent?: string): CommandSpec {
  const fullName = parent === undefined ? name : `${parent}|${name}`;
  const subcommands =
    spec.subcommands === undefined
      ? undefined
      : new Map(Object.entries(spec.subcommands).map(([sub, s]) => [sub, build(sub, s, name)]));
  return { ...spec, fullName, subcommands };
}

/** Every command, by lower-case name. */
export const COMMANDS: ReadonlyMap<string, CommandSpec> = new Map(
  Object.entries(SPECS).map(([name, spec]) => [name, build(name, spec)]),
);

/** COMMAND INFO's ten fields. Tips and key specs are left empty: no client of this server needs them. */
function commandInfo(spec: CommandSpec): RespReply {
  return [
    spec.fullName,
    spec.arity,
    spec.flags.map((f) => new SimpleString(f)),
    ...spec.keys,
    spec.categories.map((f) => new SimpleString(f)),
    [],
    [],
    spec.subcommands === undefined ? [] : [...spec.subcommands.values()].map(commandInfo),
  ];
}

function commandInfoCommand(_ctx: ServerContext, _client: ClientState, args: Buffer[]): RespReply {
  if (args.length === 2) return [...COMMANDS.values()].map(commandInfo);
  return args.slice(2).map((name) => {
    const spec = COMMANDS.get(name.toString('latin1').toLowerCase());
    return spec === undefined ? null : commandInfo(spec);
  });
}

function docsOf(spec: CommandSpec): RespReply {
  const doc: RespReply[] = ['summary', spec.summary, 'since', spec.since, 'group', spec.group];
  if (spec.subcommands !== undefined) {
    doc.push(
      'subcommands',
      [...spec.subcommands.values()].flatMap((s) => [s.fullName, docsOf(s)]),
    );
  }
  return doc;
}

/** COMMAND DOCS, which redis-cli 7 sends first for its hints: a map (flat in RESP2) of name to docs. */
function commandDocs(_ctx: ServerContext, _client: ClientState, args: Buffer[]): RespReply {
  const names = args.length === 2 ? [...COMMANDS.keys()] : args.slice(2).map((a) => a.toString('latin1').toLowerCase());
  const out: RespReply[] = [];
  for (const name of names) {
    const spec = COMMANDS.get(name);
    if (spec !== undefined) out.push(name, docsOf(spec));
  }
  return out;
}

/**
 * Command names of up to 6 bytes (GET, SET, PING, INCR, ...: what a busy client sends) by a number
 * packing their lower-cased bytes and length, so the common lookup builds no string. Other names,
 * and bytes that match nothing here, take the string lookup, which owns case folding and the errors.
 */
const BY_PACKED_NAME = new Map<number, CommandSpec>();
const PACK_MAX = 6;

/** The packed key of `name`'s bytes, A-Z folded to a-z; -1 when longer than {@link PACK_MAX}. */
function packedName(name: Uint8Array): number {
  const n = name.length;
  if (n > PACK_MAX) return -1;
  let key = n;
  for (let i = 0; i < n; i++) {
    const c = name[i]!;
    key = key * 256 + (c >= 0x41 && c <= 0x5a ? c | 0x20 : c);
  }
  return key;
}

/** Lookups try the name as sent first: clients send upper case, so most skip `toLowerCase`. */
const BY_EXACT_NAME = new Map<string, CommandSpec>();
for (const [name, spec] of COMMANDS) {
  BY_EXACT_NAME.set(name, spec);
  BY_EXACT_NAME.set(name.toUpperCase(), spec);
  const packed = packedName(Buffer.from(name, 'latin1'));
  if (packed !== -1) BY_PACKED_NAME.set(packed, spec);
}

/** The command `name` (bytes as sent) names, if any. */
function lookup(name: Buffer): CommandSpec | undefined {
  const packed = packedName(name);
  const spec = packed === -1 ? undefined : BY_PACKED_NAME.get(packed);
  if (spec !== undefined) return spec;
  const text = name.toString('latin1');
  return BY_EXACT_NAME.get(text) ?? COMMANDS.get(text.toLowerCase());
}

/**
 * Runs one request, as Redis's processCommand does: unknown command, then unknown subcommand,
 * then arity, each with Redis 7's message; then the command. Pure apart from the store and the
 * client state, so it is unit-tested without sockets.
 */
export function execute(ctx: ServerContext, client: ClientState, args: Buffer[], now: number): RespReply {
  const reply = dispatch(ctx, client, args, now);
  if (reply instanceof ErrorReply) ctx.info.errorReplies++;
  return reply;
}

function dispatch(ctx: ServerContext, client: ClientState, args: Buffer[], now: number): RespReply {
  let spec = lookup(args[0]!);
  if (spec === undefined) return unknownCommand(args);
  if (spec.subcommands !== undefined && args.length >= 2) {
    const sub = spec.subcommands.get(args[1]!.toString('latin1').toLowerCase());
    if (sub === undefined) {
      const name = args[0]!.toString('latin1').toUpperCase();
      return c.err(`unknown subcommand '${c.cstr(args[1]!, 128)}'. Try ${name} HELP.`);
    }
    spec = sub;
  }
  const arity = spec.arity;
  if ((arity > 0 && arity !== args.length) || args.length < -arity) return c.arityError(spec.fullName);
  client.lastCommand = spec.fullName;
  client.lastInteraction = now;
  const reply = spec.run(ctx, client, args, now);
  // After the command, as Redis's call() counts it: INFO does not count itself.
  ctx.info.commands++;
  return reply;
}

/** `unknown command '<name>', with args beginning with: '<a>' '<b>' ` (args cut near 128 bytes, as Redis does). */
function unknownCommand(args: Buffer[]): RespReply {
  let list = '';
  for (let i = 1; i < args.length && list.length < 128; i++) list += `'${c.cstr(args[i]!, 128 - list.length)}' `;
  return c.err(`unknown command '${c.cstr(args[0]!, 128)}', with args beginning with: ${list}`);
}
