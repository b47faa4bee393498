import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { ListenError, serve } from '../src/index.js';
import { connectError, LOOPBACK } from './helpers.js';

describe('admin endpoint: a port it cannot listen on', () => {
  it('rejects serve() with ERR_LISTEN naming the admin endpoint, and the server port is released', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const error = await serve({ ...LOOPBACK, admin: { port } }, async () => {}).then(
        () => assert.fail('serve() resolved'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ListenError, String(error));
      assert.equal(error.code, 'ERR_LISTEN');
      assert.equal(error.endpoint, 'admin');
      assert.equal(error.reason, 'EADDRINUSE');
      assert.equal(error.address, `127.0.0.1:${port}`);
      assert.match(
        error.message,
        new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} for the admin endpoint: the port is in use`),
      );
      assert.equal((error.cause as NodeJS.ErrnoException).code, 'EADDRINUSE');
      // A ListenError without an endpoint is the server's own listener's.
      assert.equal(new ListenError('127.0.0.1:1', 'EADDRINUSE', 'x').endpoint, 'server');
    } finally {
      taken.close();
    }
  });

  it('the server listener it opened first is closed again: nothing accepts on a port it picked', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const adminPort = (taken.address() as net.AddressInfo).port;
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    probe.close();
    await once(probe, 'close');
    try {
      await assert.rejects(
        serve({ ...LOOPBACK, port, admin: { port: adminPort } }, async () => {}),
        { code: 'ERR_LISTEN' },
      );
      assert.equal(await connectError(port), 'ECONNREFUSED');
    } finally {
      taken.close();
    }
  });
});
