// The control of bench/workers.ts: a plain node:net echo server under node:cluster, the same
// topology as tcpkit's workers with none of tcpkit (no stats reports, no gate, no handler).
// Usage: node bench/workers-plain-echo.ts <workers> <balance>: 'primary' is cluster's round-robin,
// 'kernel' gives each worker its own SO_REUSEPORT socket (Node 22.12+). One worker runs in this
// process, without cluster. The primary prints {"port"} once every worker listens.
import cluster from 'node:cluster';
import net from 'node:net';

const [workers = '1', balance = 'primary'] = process.argv.slice(2);
const count = Number(workers);

function listen(port: number): void {
  const server = net.createServer((socket) => {
    socket.on('data', (d) => socket.write(d));
    socket.on('error', () => {});
  });
  const reuse = balance === 'kernel' && count > 1 ? { reusePort: true, exclusive: true } : {};
  server.listen({ port, host: '127.0.0.1', ...reuse }, () => {
    if (count === 1) console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port }));
    else process.send?.({ listening: true });
  });
  process.on('SIGTERM', () => process.exit(0));
}

if (count === 1) listen(0);
else if (cluster.isWorker) listen(Number(process.env.PLAIN_PORT));
else {
  cluster.schedulingPolicy = cluster.SCHED_RR;
  // A free port first, so that every worker (and every SO_REUSEPORT socket) binds the same one.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  let up = 0;
  for (let i = 0; i < count; i++) {
    cluster.fork({ PLAIN_PORT: String(port) }).on('message', () => {
      if (++up === count) console.log(JSON.stringify({ port }));
    });
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exit(0);
  });
}
