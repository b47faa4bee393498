// `tcpkit serve echo --path <socket>`: the real CLI on a unix socket, from listening to exit.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Child, within } from '../../tcpkit/test/helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

it('serves echo on a unix socket, drains on SIGTERM, exits 0 and removes the file', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpkit-cli-unix-'));
  const path = join(dir, 'echo.sock');
  const proc = new Child(process.execPath, [
    '--import',
    'tsx',
    MAIN,
    'serve',
    'echo',
    '--path',
    path,
    '--log-format',
    'json',
  ]);
  try {
    const line = await proc.line((l) => l.includes('"msg":"listening"'), 'listening', 30_000);
    assert.ok(line.includes(`"address":${JSON.stringify(path)}`), line);
    const socket = net.connect(path);
    await once(socket, 'connect');
    socket.write('over unix');
    const [reply] = await once(socket, 'data');
    assert.equal(String(reply), 'over unix');
    socket.end();
    await once(socket, 'close');
    proc.signal('SIGTERM');
    assert.deepEqual(await within(proc.exited, 30_000, 'the CLI to exit'), { code: 0, signal: null });
    assert.equal(existsSync(path), false);
  } finally {
    proc.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
