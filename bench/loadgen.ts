/**
 * Runs `tcpkit bench` straight from source (`node --import tsx bench/loadgen.ts bench --port 7000`),
 * without the rest of the CLI; `npm run bench` drives the generator through it.
 */
import { Command } from 'commander';
import { registerBench } from '../packages/cli/src/bench.js';

const program = new Command('tcpkit');
registerBench(program);
await program.parseAsync();
