import type { Command } from 'commander';
import { addFlags, type Flag, givenValues } from './flags.js';
import { count, text } from './parse.js';

/** Where `tcpkit serve --admin-port` listens unless `--admin-host` says otherwise (`admin.host`'s default). */
export const ADMIN_HOST = '127.0.0.1';

interface TopOptions {
  adminPort: number;
  adminHost?: string;
}

const TOP_FLAGS: Flag<keyof TopOptions>[] = [
  { name: '--admin-port', key: 'adminPort', type: count, help: 'port of the admin endpoint', required: true },
  {
    name: '--admin-host',
    key: 'adminHost',
    type: { ...text, placeholder: '<address>' },
    help: 'address of the admin endpoint',
    default: ADMIN_HOST,
  },
];

export function registerTop(program: Command): void {
  const cmd = program
    .command('top')
    .description('live view of a server through its admin endpoint (tcpkit serve --admin-port N)');
  addFlags(cmd, TOP_FLAGS);
  cmd.action(async (parsed: Record<string, unknown>) => {
    const flags = givenValues(TOP_FLAGS, parsed) as unknown as TopOptions;
    await liveView(adminUrl(flags.adminHost ?? ADMIN_HOST, flags.adminPort));
    // fetch's keep-alive sockets would hold the process for seconds after the view is gone.
    process.exit(0);
  });
}

/** The base URL of an admin endpoint. */
export function adminUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The live view of the admin endpoint at `base` until q or Ctrl-C (or until `until` settles). */
export async function liveView(base: string, until?: Promise<unknown>): Promise<void> {
  // ink draws only the final frame when CI or CONTINUOUS_INTEGRATION is set, as in a CI job or a shell
  // that inherited it; on a terminal the user asked for the live view. ink (and React) load only here, so
  // the other commands do not pay for them.
  if (process.stdout.isTTY) for (const key of ['CI', 'CONTINUOUS_INTEGRATION']) delete process.env[key];
  const { runTop } = await import('./top/view.js');
  await runTop(base, 1000, until);
}
