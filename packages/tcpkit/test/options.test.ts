import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, it } from 'node:test';
import { DEFAULTS, InvalidOptionError, type ServeOptions, serve } from '../src/index.js';
import { OPTION_NAMES, resolveOptions } from '../src/options.js';

/** [option, a wrong value, the option the error names when it is a field inside it] */
const INVALID: Array<[string, unknown, string?]> = [
  ['port', -1],
  ['port', 65536],
  ['port', 1.5],
  ['port', '7000'],
  ['port', Number.NaN],
  ['host', 127],
  ['host', ''],
  ['path', `/tmp/${'p'.repeat(103)}`],
  ['abortOnClose', 'yes'],
  ['exitOnShutdown', 1],
  ['exitOnShutdown', true],
  ['path', ''],
  ['path', 5],
  ['backlog', 0],
  ['backlog', 'x'],
  ['maxConnections', 0],
  ['maxConnections', -5],
  ['maxConnections', 2.5],
  ['maxConnections', '100'],
  ['maxConnections', Number.POSITIVE_INFINITY],
  ['whenFull', 'drop'],
  ['whenFull', true],
  ['maxWaiting', -1],
  ['maxWaiting', 'all'],
  ['waitTimeout', -1],
  ['waitTimeout', '10s'],
  ['waitTimeout', 2 ** 31],
  ['maxConnectionsPerPeer', -1],
  ['maxConnectionsPerPeer', 0.5],
  ['blockList', {}],
  ['blockList', ['127.0.0.1']],
  ['firstByteTimeout', -1],
  ['firstByteTimeout', 1.5],
  ['idleTimeout', '60s'],
  ['idleTimeout', Number.NaN],
  ['frameTimeout', -100],
  ['writeTimeout', null],
  ['writeTimeout', 2 ** 31],
  ['maxLifetime', -1],
  ['maxReadBuffer', 0],
  ['maxReadBuffer', '64k'],
  ['maxWriteBuffer', 0],
  ['maxWriteBuffer', -1],
  ['maxQueuedBytes', 0],
  ['maxQueuedBytes', 1.5],
  ['lingerTimeout', -1],
  ['noDelay', 'yes'],
  ['noDelay', 1],
  ['keepAlive', -1],
  ['keepAlive', 'on'],
  ['signal', {}],
  ['signal', new AbortController()],
  ['shutdownOn', 'SIGTERM'],
  ['shutdownOn', ['sigterm']],
  ['shutdownOn', [15]],
  ['shutdownOn', ['SIGKILL']],
  ['shutdownOn', ['SIGNOPE']],
  ['drainTimeout', -1],
  ['drainTimeout', '30s'],
  ['shutdownDelay', -1],
  ['shutdownDelay', '5s'],
  ['admin', 9090],
  ['admin', null],
  ['admin', { port: -1 }, 'admin.port'],
  ['admin', {}, 'admin.port'],
  ['admin', { port: 1, prot: 2 }, 'admin.prot'],
  ['admin', { port: 1, host: '' }, 'admin.host'],
  ['admin', { port: 1, maxEventLoopDelay: -1 }, 'admin.maxEventLoopDelay'],
  ['admin', { port: 1, processMetrics: 'yes' }, 'admin.processMetrics'],
  ['logger', {}],
  ['logger', { error() {}, warn() {}, info() {} }],
  ['tls', 'cert.pem'],
  ['tls', {}],
  ['handshakeTimeout', -1],
  ['handshakeTimeout', 1.5],
  ['proxyProtocol', 'yes'],
  ['proxyProtocol', { trusted: [] }, 'proxyProtocol.trusted'],
  ['proxyProtocol', { trusted: ['::1'], timeout: -1 }, 'proxyProtocol.timeout'],
  ['proxyProtocol', { trusted: ['::1'], required: 1 }, 'proxyProtocol.required'],
  ['proxyProtocol', { trusted: ['::1'], trust: 1 }, 'proxyProtocol.trust'],
  ['workers', 0],
  ['workers', 'all'],
  ['workers', 1025],
  ['balance', 'random'],
  ['crashLoop', 5],
  ['crashLoop', { deaths: 0 }, 'crashLoop.deaths'],
  ['crashLoop', { window: -1 }, 'crashLoop.window'],
  ['crashLoop', { retries: 1 }, 'crashLoop.retries'],
];

/** [option, a valid value] */
const VALID: Array<[string, unknown]> = [
  ['port', 0],
  ['port', 65535],
  ['host', '127.0.0.1'],
  ['path', '/tmp/tcpkit.sock'],
  ['path', `/tmp/${'p'.repeat(102)}`],
  ['abortOnClose', true],
  ['backlog', 1],
  ['maxConnections', 1],
  ['whenFull', 'reject'],
  ['maxWaiting', 0],
  ['waitTimeout', 0],
  ['waitTimeout', 2 ** 31 - 1],
  ['maxConnectionsPerPeer', 3],
  ['blockList', new BlockList()],
  ['firstByteTimeout', 0],
  ['idleTimeout', 250],
  ['frameTimeout', 0],
  ['writeTimeout', 1],
  ['maxLifetime', 60_000],
  ['maxReadBuffer', 1],
  ['maxWriteBuffer', 1024],
  ['maxQueuedBytes', 64 * 1024],
  ['lingerTimeout', 0],
  ['noDelay', false],
  ['keepAlive', true],
  ['keepAlive', 0],
  ['keepAlive', 30_000],
  ['signal', new AbortController().signal],
  ['shutdownOn', []],
  ['shutdownOn', ['SIGTERM', 'SIGINT']],
  ['drainTimeout', 0],
];

function isInvalidOption(name: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof InvalidOptionError, `an InvalidOptionError, got ${String(e)}`);
    assert.equal(e.code, 'ERR_INVALID_OPTION');
    assert.equal(e.option, name);
    assert.ok(e.message.includes(name), `the message names ${name}: ${e.message}`);
    return true;
  };
}

describe('resolveOptions: every option is validated', () => {
  it('the table below has bad values for every option serve() knows', () => {
    const covered = new Set(INVALID.map(([name]) => name));
    assert.deepEqual(
      OPTION_NAMES.filter((name) => !covered.has(name)),
      [],
    );
  });

  for (const [name, value, field = name] of INVALID) {
    const shown = typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
    it(`rejects ${name}: ${shown}`, () => {
      assert.throws(() => resolveOptions({ [name]: value } as ServeOptions), isInvalidOption(field));
    });
  }

  for (const [name, value] of VALID) {
    const shown = typeof value === 'object' && value !== null ? value.constructor.name : JSON.stringify(value);
    it(`accepts ${name}: ${shown}`, () => {
      const resolved = resolveOptions({ [name]: value } as ServeOptions) as unknown as Record<string, unknown>;
      assert.equal(resolved[name], value);
    });
  }

  it('rejects an unknown option, naming it', () => {
    assert.throws(() => resolveOptions({ idle_timeout: 5 } as ServeOptions), isInvalidOption('idle_timeout'));
    assert.throws(() => resolveOptions({ maxConnection: 5 } as ServeOptions), isInvalidOption('maxConnection'));
  });

  it('rejects options that are not an object', () => {
    assert.throws(() => resolveOptions(null as unknown as ServeOptions), isInvalidOption('options'));
    assert.throws(() => resolveOptions('port=1' as unknown as ServeOptions), isInvalidOption('options'));
  });

  it('accepts exitOnShutdown with shutdownOn', () => {
    assert.equal(resolveOptions({ exitOnShutdown: true, shutdownOn: ['SIGTERM'] }).exitOnShutdown, true);
  });

  it('rejects maxQueuedBytes below maxWriteBuffer', () => {
    assert.throws(
      () => resolveOptions({ maxWriteBuffer: 1024, maxQueuedBytes: 1023 }),
      isInvalidOption('maxQueuedBytes'),
    );
    assert.throws(() => resolveOptions({ maxQueuedBytes: 1024 }), isInvalidOption('maxQueuedBytes'));
  });
});

describe('resolveOptions: defaults', () => {
  it('applies the documented defaults', () => {
    const r = resolveOptions({});
    assert.deepEqual(
      {
        maxConnections: r.maxConnections,
        whenFull: r.whenFull,
        maxWaiting: r.maxWaiting,
        waitTimeout: r.waitTimeout,
        firstByteTimeout: r.firstByteTimeout,
        idleTimeout: r.idleTimeout,
        writeTimeout: r.writeTimeout,
        maxLifetime: r.maxLifetime,
        maxWriteBuffer: r.maxWriteBuffer,
        maxQueuedBytes: r.maxQueuedBytes,
        drainTimeout: r.drainTimeout,
        noDelay: r.noDelay,
        port: r.port,
        shutdownOn: r.shutdownOn,
      },
      {
        maxConnections: 10_000,
        whenFull: 'wait',
        maxWaiting: 10_000,
        waitTimeout: 10_000,
        firstByteTimeout: 10_000,
        idleTimeout: 60_000,
        writeTimeout: 30_000,
        maxLifetime: 0,
        maxWriteBuffer: 64 * 1024,
        maxQueuedBytes: 4 * 1024 * 1024,
        drainTimeout: 30_000,
        noDelay: true,
        port: 0,
        shutdownOn: [],
      },
    );
    assert.equal(DEFAULTS.maxConnections, 10_000);
  });

  it('defaults maxWaiting to maxConnections', () => {
    assert.equal(resolveOptions({ maxConnections: 7 }).maxWaiting, 7);
    assert.equal(resolveOptions({ maxConnections: 7, maxWaiting: 2 }).maxWaiting, 2);
  });

  it('treats an undefined option as unset', () => {
    assert.equal(resolveOptions({ idleTimeout: undefined }).idleTimeout, 60_000);
  });
});

describe('serve: option validation', () => {
  it('rejects with InvalidOptionError before listening', async () => {
    await assert.rejects(
      serve({ idleTimeout: -1 }, async () => {}),
      isInvalidOption('idleTimeout'),
    );
    await assert.rejects(
      serve({ nope: 1 } as ServeOptions, async () => {}),
      isInvalidOption('nope'),
    );
  });

  it('rejects a delay under one second (the kernel counts whole seconds)', async () => {
    await assert.rejects(
      serve({ keepAlive: 500 }, async () => {}),
      (e: unknown) => e instanceof InvalidOptionError && /keepAlive/.test(e.message),
    );
  });
});
