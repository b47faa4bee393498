import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { constants } from 'node:os';
import { test } from 'node:test';
import { systemError } from '../src/system-error.js';

test('systemError has the shape of the error Node itself raises for the same failure', async () => {
  // Node's own: a connect to a closed port fails with ECONNREFUSED.
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const socket = net.connect(port, '127.0.0.1');
  const [nodes] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
  const ours = systemError(-constants.errno.ECONNREFUSED, 'connect') as NodeJS.ErrnoException;
  assert.equal(ours.code, nodes.code);
  assert.equal(ours.errno, nodes.errno);
  assert.equal(ours.syscall, nodes.syscall);
  assert.ok(nodes.message.startsWith(ours.message), `${nodes.message} / ${ours.message}`);
  assert.ok(ours instanceof Error);
});

test('systemError names a status that is not an error UNKNOWN', () => {
  const err = systemError(0, 'read') as NodeJS.ErrnoException;
  assert.equal(err.code, 'UNKNOWN');
  assert.equal(err.message, 'read UNKNOWN');
});
