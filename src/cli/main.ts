#!/usr/bin/env node
import { Command } from 'commander';
import { registerServe } from './serve.js';

const program = new Command('tcpkit').description('production TCP servers on Node.js').showHelpAfterError();
registerServe(program);
try {
  // The load generator lives in its own module; a build without it still serves.
  const bench = (await import(['.', 'bench.js'].join('/'))) as { registerBench(p: Command): void };
  bench.registerBench(program);
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
}
await program.parseAsync(process.argv);
