// Hot-path check for the core (issue 2): the idiomatic tcpkit echo handler against a plain
// node:net echo server, same run, server pinned to CPU 0 and this client to CPU 1.
// Usage: npm run build && node --import tsx bench/core-echo.ts [connections=1000] [seconds=5] [rounds=3] [--idle]
// The tcpkit server runs the built dist/, as users run it. `npm run bench` is the full suite (with Go).
import net from 'node:net';
import os from 'node:os';
import { cpuUs, median, pingPongLoop, pinSelf, rssKiB, startInline } from './common.js';

const connections = Number(process.argv[2] ?? 1000);
const seconds = Number(process.argv[3] ?? 5);
const rounds = Number(process.argv[4] ?? 3);
pinSelf(1);

const SERVERS: Record<string, string> = {
  plain: `const net=require('node:net');const s=net.createServer((c)=>{c.setNoDelay(true);c.on('data',(d)=>c.write(d));c.on('error',()=>{})});s.listen(0,'127.0.0.1',()=>console.log(s.address().port));`,
  tcpkit: `import('${new URL('../packages/tcpkit/dist/index.js', import.meta.url).pathname}').then(async({serve})=>{const s=await serve({host:'127.0.0.1',port:0},async(c)=>{for await(const ch of c) await c.write(ch)});console.log(s.address.port)})`,
};

async function idleRss(kind: string, n: number): Promise<number> {
  const srv = await startInline(SERVERS[kind]!);
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
  await srv.stop('SIGKILL');
  return ((rss - base) * 1024) / n;
}

const results: Record<string, { rate: number; cpuUs: number }[]> = { plain: [], tcpkit: [] };
for (let r = 0; r < rounds; r++) {
  for (const kind of ['plain', 'tcpkit']) {
    const srv = await startInline(SERVERS[kind]!);
    const marks: number[] = [];
    const n = await pingPongLoop(srv.port, connections, seconds * 1000, () => {
      marks.push(cpuUs(srv.pid));
    });
    await srv.stop('SIGKILL');
    results[kind]!.push({ rate: n / seconds, cpuUs: (marks[1]! - marks[0]!) / n });
  }
}
const p = { rate: median(results.plain!.map((x) => x.rate)), cpu: median(results.plain!.map((x) => x.cpuUs)) };
const t = { rate: median(results.tcpkit!.map((x) => x.rate)), cpu: median(results.tcpkit!.map((x) => x.cpuUs)) };
console.log(
  `node ${process.version}, ${os.cpus()[0]?.model}, ${os.cpus().length} cores, ${connections} conns, 64 B ping-pong, ${rounds}x${seconds}s`,
);
console.log('| server | msgs/s (median) | server CPU µs/msg |');
console.log('|---|---|---|');
console.log(`| plain node:net | ${p.rate.toFixed(0)} | ${p.cpu.toFixed(1)} |`);
console.log(`| tcpkit | ${t.rate.toFixed(0)} | ${t.cpu.toFixed(1)} |`);
console.log(`| ratio tcpkit/plain | ${(t.rate / p.rate).toFixed(2)} | ${(t.cpu / p.cpu).toFixed(2)} |`);
if (process.argv.includes('--idle')) {
  const pi = await idleRss('plain', 10_000);
  const ti = await idleRss('tcpkit', 10_000);
  console.log(
    `idle RSS per connection at 10,000: plain ${(pi / 1024).toFixed(2)} KiB, tcpkit ${(ti / 1024).toFixed(2)} KiB`,
  );
}
