// tcpkit reads accepted sockets into one shared buffer through Node's user-buffer read path (see
// src/conn.ts). If a Node version lacks that path, sockets fall back to the ordinary 'data'
// stream. This file runs the connection and echo suites again with the fallback forced, so both
// read paths are tested on every Node version CI runs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('read path', () => {
  it('passes the Conn, read-path and echo suites on the stream fallback (TCPKIT_READ_PATH=stream)', {
    timeout: 120_000,
  }, async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--test',
        '--test-reporter=dot',
        'test/conn.test.ts',
        'test/conn-reader.test.ts',
        'test/conn-frame-batches.test.ts',
        'test/integration/echo.test.ts',
      ],
      { cwd: root, env: { ...process.env, TCPKIT_READ_PATH: 'stream' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, `fallback read path failed:\n${output.slice(-4000)}`);
  });
});
