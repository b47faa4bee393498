/**
 * The hand-written alternative tcpkit is measured against: a plain node:net echo server.
 * Usage: node --import tsx bench/plain-echo.ts [port] [host]; prints the port it listens on.
 */
import net from 'node:net';

const port = Number(process.argv[2] ?? 0);
const host = process.argv[3] ?? '127.0.0.1';

const server = net.createServer((socket) => {
  socket.on('data', (d) => socket.write(d));
  // A peer reset is routine under load; without a listener it would crash the process.
  socket.on('error', () => {});
});
server.listen({ port, host }, () => {
  const address = server.address() as net.AddressInfo;
  process.stdout.write(`${address.port}\n`);
});

const stop = () => {
  server.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
