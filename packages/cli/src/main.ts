#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerBench } from './bench.js';
import { registerServe } from './serve.js';
import { registerTop } from './top.js';

// package.json sits one level above both src/main.ts (run from source) and dist/main.js (installed).
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command('tcpkit')
  .description('production TCP servers on Node.js')
  .version(version, '-V, --version', 'print the version of tcpkit (the CLI package) and exit')
  .showHelpAfterError();
registerServe(program);
registerBench(program);
registerTop(program);
await program.parseAsync(process.argv);
