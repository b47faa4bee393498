import type { Command } from 'commander';
import { parseCount } from './parse.js';
import { runTop } from './top/view.js';

export function registerTop(program: Command): void {
  program
    .command('top')
    .description('live view of a server through its admin endpoint (tcpkit serve --admin-port N)')
    .requiredOption('--admin-port <n>', 'port of the admin endpoint', parseCount)
    .option('--admin-host <address>', 'address of the admin endpoint', '127.0.0.1')
    .action(async (flags: { adminPort: number; adminHost: string }) => {
      const host = flags.adminHost.includes(':') ? `[${flags.adminHost}]` : flags.adminHost;
      await runTop(`http://${host}:${flags.adminPort}`);
      // fetch's keep-alive sockets would hold the process for seconds after the view is gone.
      process.exit(0);
    });
}
