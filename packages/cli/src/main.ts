#!/usr/bin/env node
// Every error is one line on stderr, `tcpkit: <what went wrong; what to change>`, never followed by
// the usage text. Exit status: 0 done, 1 a runtime failure (port in use, unknown host, ...), 2 a usage
// error (unknown flag or app, a value out of range).
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerBench } from './bench.js';
import { UsageError } from './flags.js';
import { registerServe } from './serve.js';
import { registerTop } from './top.js';

// package.json sits one level above both src/main.ts (run from source) and dist/main.js (installed).
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command('tcpkit')
  .description('production TCP servers on Node.js')
  .version(version, '-V, --version', 'print the version of tcpkit (the CLI package) and exit')
  // Inherited by the subcommands registered below: commander throws instead of exiting, and its
  // own messages ("error: unknown option ...") get the one prefix.
  .exitOverride()
  .configureOutput({ outputError: (message, write) => write(`tcpkit: ${message.replace(/^error: /, '')}`) })
  .showHelpAfterError('(add --help for usage)');
registerServe(program);
registerBench(program);
registerTop(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and --version end with exit code 0; commander has printed its usage errors already.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (error instanceof UsageError) {
    process.stderr.write(`tcpkit: ${error.message}\n(add --help for usage)\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`tcpkit: ${(error as Error).message ?? String(error)}\n`);
    process.exitCode = 1;
  }
  // A worker that fails before it serves (its module no longer loads, after a rolling restart) must end:
  // its IPC channel to the primary would keep it alive, and the primary waiting for it to listen.
  if (cluster.isWorker) process.exit();
}
