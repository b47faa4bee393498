/** Runs the kv app on 127.0.0.1:6380 (or $PORT) for manual testing: `node --import tsx packages/cli/src/apps/kv/main.ts`. */
import { serve } from 'tcpkit';
import { createApp } from './index.js';

const app = createApp();
const server = await serve(
  { host: '127.0.0.1', port: Number(process.env.PORT ?? 6380), shutdownOn: ['SIGINT', 'SIGTERM'] },
  app.handler,
);
app.attach(server);
console.log('kv listening on', server.address);
await server.closed;
app.close();
