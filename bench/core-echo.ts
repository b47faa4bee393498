// Hot-path check for the core (issue 2): the idiomatic tcpkit echo handler against a plain
// node:net echo server, same run, server pinned to CPU 0 and this client to CPU 1.
// Usage: npm run build && node --import tsx bench/core-echo.ts [connections=1000] [seconds=5] [rounds=3] [--idle]
// The tcpkit server runs the built dist/, as users run it.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

const connections = Number(process.argv[2] ?? 1000);
const seconds = Number(process.argv[3] ?? 5);
const rounds = Number(process.argv[4] ?? 3);
const hasTaskset = spawnSync('taskset', ['-V']).status === 0;
if (hasTaskset) spawnSync('taskset', ['-pc', '1', String(process.pid)]);
const CLK = 100; // USER_HZ on Linux

const SERVERS: Record<string, string> = {
  plain: `const net=require('node:net');const s=net.createServer((c)=>{c.setNoDelay(true);c.on('data',(d)=>c.write(d));c.on('error',()=>{})});s.listen(0,'127.0.0.1',()=>console.log(s.address().port));`,
  tcpkit: `import('${new URL('../packages/tcpkit/dist/index.js', import.meta.url).pathname}').then(async({serve})=>{const s=await serve({host:'127.0.0.1',port:0},async(c)=>{for await(const ch of c) await c.write(ch)});console.log(s.address.port)})`,
};

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}
function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

async function start(kind: string): Promise<{ pid: number; port: number; kill(): void }> {
  const args = ['-e', SERVERS[kind]!];
  const cmd = hasTaskset ? 'taskset' : process.execPath;
  const argv = hasTaskset ? ['-c', '0', process.execPath, ...args] : args;
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (d) => resolve(Number(String(d)))));
  return { pid: child.pid!, port, kill: () => child.kill('SIGKILL') };
}

async function load(port: number, n: number, ms: number): Promise<number> {
  const msg = Buffer.alloc(64, 120);
  let count = 0;
  let running = true;
  const sockets: net.Socket[] = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => resolve());
          let got = 0;
          s.on('data', (d) => {
            got += d.length;
            while (got >= 64) {
              got -= 64;
              count++;
              if (running) s.write(msg);
            }
          });
          s.on('error', () => {});
          sockets.push(s);
        }),
    ),
  );
  const before = count;
  for (const s of sockets) s.write(msg);
  await new Promise((r) => setTimeout(r, ms));
  running = false;
  const done = count - before;
  for (const s of sockets) s.destroy();
  return done;
}

async function idleRss(kind: string, n: number): Promise<number> {
  const srv = await start(kind);
  const base = rssKiB(srv.pid);
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ port: srv.port, host: '127.0.0.1' });
    s.on('error', () => {});
    sockets.push(s);
    if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 1500));
  const rss = rssKiB(srv.pid);
  for (const s of sockets) s.destroy();
  srv.kill();
  return ((rss - base) * 1024) / n;
}

const results: Record<string, { rate: number; cpuUs: number }[]> = { plain: [], tcpkit: [] };
for (let r = 0; r < rounds; r++) {
  for (const kind of ['plain', 'tcpkit']) {
    const srv = await start(kind);
    await load(srv.port, Math.min(connections, 50), 500); // warm up
    const t0 = cpuTicks(srv.pid);
    const n = await load(srv.port, connections, seconds * 1000);
    const cpu = ((cpuTicks(srv.pid) - t0) / CLK) * 1e6;
    srv.kill();
    results[kind]!.push({ rate: n / seconds, cpuUs: cpu / n });
  }
}
const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p = { rate: med(results.plain!.map((x) => x.rate)), cpu: med(results.plain!.map((x) => x.cpuUs)) };
const t = { rate: med(results.tcpkit!.map((x) => x.rate)), cpu: med(results.tcpkit!.map((x) => x.cpuUs)) };
const idle = process.argv.includes('--idle');
console.log(
  `node ${process.version}, ${os.cpus()[0]?.model}, ${os.cpus().length} cores, ${connections} conns, 64 B ping-pong, ${rounds}x${seconds}s`,
);
console.log('| server | msgs/s (median) | server CPU µs/msg |');
console.log('|---|---|---|');
console.log(`| plain node:net | ${p.rate.toFixed(0)} | ${p.cpu.toFixed(1)} |`);
console.log(`| tcpkit | ${t.rate.toFixed(0)} | ${t.cpu.toFixed(1)} |`);
console.log(`| ratio tcpkit/plain | ${(t.rate / p.rate).toFixed(2)} | ${(t.cpu / p.cpu).toFixed(2)} |`);
if (idle) {
  const pi = await idleRss('plain', 10_000);
  const ti = await idleRss('tcpkit', 10_000);
  console.log(
    `idle RSS per connection at 10,000: plain ${(pi / 1024).toFixed(2)} KiB, tcpkit ${(ti / 1024).toFixed(2)} KiB`,
  );
}
