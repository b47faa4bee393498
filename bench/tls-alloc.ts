/**
 * Allocations per TLS handshake (issue 12): what a TLS churn server allocates per handshake, bytes and
 * objects, and where, for plain `tls.createServer` and tcpkit builds side by side.
 *
 *   npm run build && node --import tsx bench/tls-alloc.ts [--resume] [--seconds 3] [--warmup 6] \
 *     [--trace-gc] plain tcpkit=packages/tcpkit/dist/index.js before=/tmp/b/packages/tcpkit/dist/index.js
 *
 * Each server runs in its own process (pinned to CPU 0 when taskset is there; the generator, tcpkit bench's
 * engine, in this one on CPU 1): `--warmup` s of churn (50 loops), then a window of `--seconds` under V8's
 * sampling heap profiler at a 1-byte interval, objects collected by minor and major GC kept (every
 * allocation is sampled). The handshakes counted are those the server completed inside the window. With
 * `--trace-gc`, a second window without the profiler counts scavenges and mark-compacts per 1,000
 * handshakes. Allocations are not time: confirm with bench/tls.ts's CPU rounds.
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { runBench } from '../packages/cli/src/loadgen/runner.js';
import type { Conn, ServeOptions, Server } from '../packages/tcpkit/src/index.js';
import { pinSelf, type SamplingProfile, type Site, sitesOf } from './common.js';

// ---- the server (child) ------------------------------------------------------------------------

async function child(kind: string, key: string, cert: string, stacks: boolean): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const k = readFileSync(key);
  const c = readFileSync(cert);
  let handshakes = 0;
  let port: number;
  if (kind === 'plain') {
    const tls = await import('node:tls');
    const s = tls.createServer({ key: k, cert: c }, (sock) => {
      handshakes++;
      sock.setNoDelay(true);
      sock.on('data', (d) => sock.write(d));
      sock.on('error', () => {});
    });
    s.on('tlsClientError', () => {});
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    port = (s.address() as { port: number }).port;
  } else {
    // Another build's dist: typed as this one's, with `chunks` optional (a build that predates it).
    type AnyConn = Omit<Conn, 'chunks'> & { chunks?: Conn['chunks'] };
    const { serve } = (await import(kind)) as {
      serve: (o: ServeOptions, h: (c: AnyConn) => Promise<void>) => Promise<Server>;
    };
    const s = await serve({ host: '127.0.0.1', port: 0, tls: { key: k, cert: c } }, async (conn) => {
      handshakes++;
      for await (const ch of conn.chunks ? conn.chunks({ reuse: true }) : conn) await conn.write(ch);
    });
    port = (s.address as { port: number }).port;
  }
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  let at = 0;
  let gcs = { minor: 0, major: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kindOf = (e as unknown as { detail: { kind: number } }).detail.kind;
      // NODE_PERFORMANCE_GC_MINOR = 1, MAJOR = 4, INCREMENTAL = 8, WEAKCB = 16
      if (kindOf === 1) gcs.minor++;
      else gcs.major++;
    }
  });
  process.on('message', async (m: { cmd: string }) => {
    if (m.cmd === 'sample') {
      await session.post('HeapProfiler.startSampling', {
        samplingInterval: 1,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      at = handshakes;
      process.send!({ ok: true });
    } else if (m.cmd === 'sampled') {
      const n = handshakes - at;
      const { profile } = await session.post('HeapProfiler.stopSampling');
      process.send!({
        handshakes: n,
        sites: sitesOf(profile as unknown as SamplingProfile, stacks ? /tcpkit\/dist|tls-alloc/ : undefined),
      });
    } else if (m.cmd === 'gc') {
      gcs = { minor: 0, major: 0 };
      obs.observe({ entryTypes: ['gc'] });
      at = handshakes;
      process.send!({ ok: true });
    } else if (m.cmd === 'gc-end') {
      obs.disconnect();
      process.send!({ handshakes: handshakes - at, ...gcs });
    }
  });
  process.send!({ port });
}

// ---- the generator (parent) --------------------------------------------------------------------

function ask<T>(cp: ChildProcess, cmd: string): Promise<T> {
  const p = once(cp, 'message').then(([m]) => m as T);
  cp.send({ cmd });
  return p;
}

async function parent(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string): boolean => {
    const i = args.indexOf(name);
    if (i !== -1) args.splice(i, 1);
    return i !== -1;
  };
  const value = (name: string, d: number): number => {
    const i = args.indexOf(name);
    return i === -1 ? d : Number(args.splice(i, 2)[1]);
  };
  const resume = flag('--resume');
  const traceGc = flag('--trace-gc');
  const stacks = flag('--stacks');
  const seconds = value('--seconds', 3);
  const warmup = value('--warmup', 6);
  const top = value('--top', 25);
  pinSelf(1);
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpkit-tls-alloc-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  execFileSync('openssl', ['req', '-x509', '-new', '-key', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
  const self = fileURLToPath(import.meta.url);
  for (const spec of args) {
    const [name, dist] = spec.includes('=') ? spec.split('=') : [spec, spec];
    const kind = dist === 'plain' ? 'plain' : resolve(dist!);
    const cp = fork(self, ['--child', kind, key, cert, stacks ? 'stacks' : ''], {
      execArgv: ['--import', 'tsx'],
      stdio: 'inherit',
    });
    try {
      if (os.platform() === 'linux') {
        try {
          execFileSync('taskset', ['-pc', '0', String(cp.pid)], { stdio: 'ignore' });
        } catch {}
      }
      const [{ port }] = (await once(cp, 'message')) as [{ port: number }];
      const windows = 1 + (traceGc ? 1 : 0);
      const load = runBench({
        port,
        tls: true,
        tlsResume: resume,
        mode: 'churn',
        connections: 50,
        warmupMs: 0,
        durationMs: (warmup + windows * seconds + 1) * 1000,
        connectTimeoutMs: 20_000,
      });
      await new Promise((r) => setTimeout(r, warmup * 1000));
      await ask(cp, 'sample');
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const { handshakes, sites } = await ask<{ handshakes: number; sites: Site[] }>(cp, 'sampled');
      let gc = '';
      if (traceGc) {
        await ask(cp, 'gc');
        await new Promise((r) => setTimeout(r, seconds * 1000));
        const g = await ask<{ handshakes: number; minor: number; major: number }>(cp, 'gc-end');
        gc = `; without the profiler: ${g.handshakes} handshakes, ${((g.minor * 1000) / g.handshakes).toFixed(2)} scavenges and ${((g.major * 1000) / g.handshakes).toFixed(2)} major GCs per 1,000`;
      }
      const r = await load;
      const bytes = sites.reduce((s, x) => s + x.bytes, 0);
      const objects = sites.reduce((s, x) => s + x.objects, 0);
      console.log(
        `\n## ${name}${resume ? ' (resumed)' : ''}: ${handshakes} handshakes in ${seconds} s, ${(bytes / handshakes).toFixed(0)} B and ${(objects / handshakes).toFixed(1)} objects per handshake; generator: ${r.connections.resumed}/${r.connections.established} resumed${gc}`,
      );
      for (const s of sites.slice(0, top))
        console.log(
          `${(s.bytes / handshakes).toFixed(1).padStart(8)} B ${(s.objects / handshakes).toFixed(2).padStart(6)}  ${s.site}`,
        );
    } finally {
      cp.kill('SIGKILL');
    }
  }
}

if (process.argv[2] === '--child')
  await child(process.argv[3]!, process.argv[4]!, process.argv[5]!, process.argv[6] === 'stacks');
else await parent();
