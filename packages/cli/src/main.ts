#!/usr/bin/env node
import { Command } from 'commander';
import { registerBench } from './bench.js';
import { registerServe } from './serve.js';

const program = new Command('tcpkit').description('production TCP servers on Node.js').showHelpAfterError();
registerServe(program);
registerBench(program);
await program.parseAsync(process.argv);
