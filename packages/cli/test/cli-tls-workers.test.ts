// `tcpkit serve echo --workers 2 --tls-cert F --tls-key F`: SIGHUP to the primary is a rolling restart
// whose new workers read the certificate files again. After a rotation every worker presents the new
// certificate, and a connection running request/response through the restart is drained (answered,
// then a clean close), never reset. A broken file at SIGHUP stops the restart at its first new worker:
// the running workers keep serving with the certificate they have, and the log says which file.
// Balance 'primary' on every Node; 'kernel' too where this Node has SO_REUSEPORT (22.12+).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { reusePortSupported } from '../../tcpkit/src/workers/balance.js';
import { certs, selfSignedLocalhost } from '../../tcpkit/test/fixtures/certs.js';
import { Child, within } from '../../tcpkit/test/helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const SLOW = { timeout: 180_000 };
const children: Child[] = [];
after(() => {
  for (const c of children) c.kill();
});

interface WorkerRow {
  pid: number;
  slot: number;
  state: string;
  active: number;
}

function tcpkit(...args: string[]): Child {
  const child = new Child(process.execPath, ['--import', 'tsx', MAIN, ...args]);
  children.push(child);
  return child;
}

type LogLine = Record<string, unknown> & { level: number; msg: string };

function parsed(line: string): LogLine | undefined {
  if (!line.startsWith('{')) return undefined;
  return JSON.parse(line) as LogLine;
}

/** The workers as the primary's admin endpoint lists them (it asks each worker for fresh figures first). */
async function workersOf(admin: string): Promise<WorkerRow[]> {
  const response = await fetch(`http://${admin}/stats`);
  return ((await response.json()) as { workers: WorkerRow[] }).workers;
}

async function workersUntil(admin: string, ok: (w: WorkerRow[]) => boolean, what: string): Promise<WorkerRow[]> {
  const deadline = performance.now() + 60_000;
  let last: WorkerRow[] = [];
  while (performance.now() < deadline) {
    last = await workersOf(admin);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

/** A TLS client that accepts any certificate (the test compares fingerprints itself). */
async function handshake(port: number): Promise<tls.TLSSocket> {
  const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
  s.on('error', () => {});
  await within(once(s, 'secureConnect'), 20_000, 'the TLS handshake');
  return s;
}

/** Sends one line and waits for its echo. */
async function echoOnce(s: tls.TLSSocket, line: string): Promise<void> {
  let got = '';
  await within(
    new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (got.length >= line.length) {
          s.off('data', onData);
          if (got === line) resolve();
          else reject(new Error(`echo ${JSON.stringify(got)} for ${JSON.stringify(line)}`));
        }
      };
      s.on('data', onData);
      s.write(line);
    }),
    20_000,
    'the echo',
  );
}

/**
 * Request/response on one connection until the server ends it: each request waits for its echo. Counts
 * the answers (and those after `mark()`), and how the connection ended: the peer's end (FIN after its
 * TLS close) or an error such as ECONNRESET.
 */
class RequestLoop {
  answered = 0;
  answeredAfterMark = 0;
  wrong: string[] = [];
  error: NodeJS.ErrnoException | undefined;
  ended = false;
  readonly done: Promise<void>;
  #marked = false;
  #stop = false;

  constructor(readonly socket: tls.TLSSocket) {
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error ??= e;
    });
    socket.on('end', () => {
      this.ended = true;
    });
    this.done = this.#run();
  }

  mark(): void {
    this.#marked = true;
  }

  stop(): void {
    this.#stop = true;
  }

  async #run(): Promise<void> {
    const s = this.socket;
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    for (let n = 0; !this.#stop && !s.destroyed && !this.ended; n++) {
      const line = `request ${n}\n`;
      let got = '';
      const answered = new Promise<boolean>((resolve) => {
        const onData = (d: Buffer): void => {
          got += d.toString();
          if (got.length < line.length) return;
          s.off('data', onData);
          if (got !== line) this.wrong.push(got);
          resolve(true);
        };
        s.on('data', onData);
        void closed.then(() => {
          s.off('data', onData);
          resolve(false);
        });
      });
      s.write(line);
      if (!(await within(answered, 30_000, `the answer to ${line.trim()}`))) break;
      this.answered++;
      if (this.#marked) this.answeredAfterMark++;
    }
    await within(closed, 30_000, 'the close of the request/response connection');
  }
}

const modes: ('primary' | 'kernel')[] = reusePortSupported() ? ['primary', 'kernel'] : ['primary'];

describe('tcpkit serve --workers 2 with TLS: SIGHUP reloads the certificate in every worker', () => {
  for (const balance of modes) {
    it(
      `balance '${balance}': every new worker presents the rotated certificate; an open connection is drained, not reset; a broken file keeps the running workers`,
      SLOW,
      async (t) => {
        const c = certs();
        const dir = mkdtempSync(join(tmpdir(), 'tcpkit-cli-tls-workers-'));
        const cert = join(dir, 'cert.pem');
        const key = join(dir, 'key.pem');
        copyFileSync(c.files.serverCert, cert);
        copyFileSync(c.files.serverKey, key);
        const oldPrint = new X509Certificate(c.serverCert).fingerprint256;
        const proc = tcpkit(
          'serve',
          'echo',
          '--port',
          '0',
          '--workers',
          '2',
          '--balance',
          balance,
          '--tls-cert',
          cert,
          '--tls-key',
          key,
          '--admin-port',
          '0',
          '--log-format',
          'json',
        );
        const clients: tls.TLSSocket[] = [];
        try {
          const listening = parsed(
            await proc.line((l) => l.includes('"msg":"listening"') && l.includes('"workers"'), 'the primary', 60_000),
          )!;
          const port = Number(/:(\d+)$/.exec(String(listening.address))![1]);
          const admin = String(listening.admin);
          const before = await workersUntil(
            admin,
            (w) => w.length === 2 && w.every((r) => r.state === 'serving'),
            'two serving workers',
          );
          const oldPids = new Set(before.map((w) => w.pid));

          // A connection that runs request/response before, during and after the SIGHUP.
          const long = await handshake(port);
          assert.equal(long.getPeerCertificate().fingerprint256, oldPrint);
          const loop = new RequestLoop(long);
          await within(
            (async () => {
              while (loop.answered === 0 && loop.error === undefined) await new Promise((r) => setTimeout(r, 10));
            })(),
            20_000,
            'a first answer',
          );

          // Rotate: the new certificate in the same files, then SIGHUP to the primary.
          const fresh = selfSignedLocalhost(dir);
          const newPrint = new X509Certificate(readFileSync(fresh.cert)).fingerprint256;
          assert.notEqual(newPrint, oldPrint);
          copyFileSync(fresh.cert, cert);
          copyFileSync(fresh.key, key);
          const from = proc.lines.length;
          loop.mark();
          proc.signal('SIGHUP');
          await proc.line((l) => l.includes('"msg":"restarted workers"'), 'the rolling restart', 90_000, from);

          // The old workers drained: the open connection had its requests answered, then a clean close.
          await within(loop.done, 30_000, 'the drained connection');
          assert.equal(loop.error, undefined, `no reset: ${loop.error?.code}`);
          assert.deepEqual(loop.wrong, [], 'every answer was its own request');
          assert.ok(loop.ended, 'the server ended it (TLS close and FIN), after answering');
          assert.ok(loop.answeredAfterMark > 0, 'requests were answered during the restart');
          t.diagnostic(`answered ${loop.answered}, ${loop.answeredAfterMark} of them after the SIGHUP`);

          const renewed = await workersUntil(
            admin,
            (w) => w.length === 2 && w.every((r) => r.state === 'serving' && !oldPids.has(r.pid)),
            'two new serving workers',
          );
          // New connections, held open, until every worker has one: each presents the new certificate.
          let reached: WorkerRow[] = renewed;
          for (let i = 0; i < 64 && !reached.every((w) => w.active >= 1); i++) {
            const s = await handshake(port);
            clients.push(s);
            assert.equal(s.getPeerCertificate().fingerprint256, newPrint, `connection ${i + 1}: the new certificate`);
            await echoOnce(s, `hello ${i}\n`);
            reached = await workersOf(admin);
          }
          t.diagnostic(`connections to reach both workers: ${clients.length}`);
          assert.ok(
            reached.length === 2 && reached.every((w) => w.active >= 1 && !oldPids.has(w.pid)),
            `every new worker holds a connection that presented the new certificate: ${JSON.stringify(reached)}`,
          );

          // A broken certificate file at the next SIGHUP: the first new worker cannot start, says why at
          // error level naming the file, the restart stops, and the running workers keep serving.
          writeFileSync(cert, 'not a certificate\n');
          const from2 = proc.lines.length;
          proc.signal('SIGHUP');
          const workerLine = parsed(
            await proc.line(
              (l) => l.includes('TLS certificate files not loaded'),
              "the new worker's failure",
              60_000,
              from2,
            ),
          )!;
          assert.equal(workerLine.level, 50, 'at error level');
          assert.equal(workerLine.flag, '--tls-cert');
          assert.equal(workerLine.file, cert);
          assert.match(String(workerLine.err), /no certificate/);
          const primaryRaw = await proc.line(
            (l) => l.includes('restart on SIGHUP failed'),
            "the primary's report",
            60_000,
            from2,
          );
          const primaryLine = parsed(primaryRaw)!;
          assert.equal(primaryLine.level, 50);
          // pino's own pid, once: a second "pid" key in the line is a duplicate JSON key.
          assert.equal(primaryRaw.match(/"pid":/g)?.length, 1, primaryRaw);
          assert.equal(primaryLine.pid, proc.process.pid);
          assert.match(primaryLine.msg, /the running workers keep serving/);
          const kept = await workersOf(admin);
          assert.deepEqual(kept.map((w) => w.pid).sort(), renewed.map((w) => w.pid).sort(), 'the same workers serve');
          for (const [i, s] of clients.entries()) await echoOnce(s, `still ${i}\n`);
          const again = await handshake(port);
          clients.push(again);
          assert.equal(again.getPeerCertificate().fingerprint256, newPrint, 'still the certificate they loaded');
          await echoOnce(again, 'after the failed reload\n');
          assert.equal(
            proc.lines.slice(from2).filter((l) => l.includes('"msg":"restarted workers"')).length,
            0,
            'no restart completed',
          );

          for (const s of clients) s.end();
          proc.signal('SIGTERM');
          assert.deepEqual(await within(proc.exited, 60_000, 'exit'), { code: 0, signal: null });
        } finally {
          for (const s of clients) s.destroy();
          proc.kill();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  }
});
