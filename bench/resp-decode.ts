/**
 * Decode cost of the RESP codec per request, as the kv example meets it under `redis-benchmark -P 16`:
 * reads of 16 pipelined requests each (SET, GET, PING as multibulk arrays; PING inline), decoded
 * from a ByteQueue as conn.frameBatches() drives it. No socket: this isolates the parser.
 *
 *   npm run build && node --import tsx bench/resp-decode.ts
 *   TCPKIT_BEFORE=/path/to/other/checkout (built too) adds that checkout as a column.
 *
 * Each library runs in its own process (three each, alternating); a process reports the median of 7
 * rounds of 20 passes over 4,096 reads; the table shows the median process, in ns per request.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type * as tcpkit from '../packages/tcpkit/src/index.js';
import { median, root } from './common.js';

type Lib = Pick<typeof tcpkit, 'ByteQueue' | 'resp'>;

const PIPELINE = 16;
const READS = 4096;

const multibulk = (...args: string[]): string =>
  `*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`;
const key = (i: number): string => `key:${String(i).padStart(12, '0')}`;

const CASES: Array<[string, (i: number) => string]> = [
  ['SET key:<12 digits> xxx', (i) => multibulk('SET', key(i), 'xxx')],
  ['GET key:<12 digits>', (i) => multibulk('GET', key(i))],
  ['PING (multibulk)', () => multibulk('PING')],
  ['PING (inline)', () => 'PING\r\n'],
];

function reads(request: (i: number) => string): Buffer[] {
  const out: Buffer[] = [];
  for (let r = 0; r < READS; r++) {
    let text = '';
    for (let i = 0; i < PIPELINE; i++) text += request(r * PIPELINE + i);
    out.push(Buffer.from(text, 'latin1'));
  }
  return out;
}

/** ns per request decoding `input` with `lib`, median of 7 rounds. */
function measure(lib: Lib, input: Buffer[]): number {
  const codec = lib.resp();
  const pass = (): number => {
    const queue = new lib.ByteQueue();
    let n = 0;
    for (const chunk of input) {
      queue.push(chunk);
      for (let args = codec.decode(queue); args !== undefined; args = codec.decode(queue)) n++;
    }
    return n;
  };
  for (let i = 0; i < 30; i++) pass(); // warm up the JIT
  const rounds: number[] = [];
  for (let r = 0; r < 7; r++) {
    const start = process.hrtime.bigint();
    let n = 0;
    for (let i = 0; i < 20; i++) n += pass();
    rounds.push(Number(process.hrtime.bigint() - start) / n);
  }
  return median(rounds);
}

/**
 * In a child: measures one built library (this checkout's, or another) and prints ns per case. Builds,
 * as servers run them: tsx's transform of the source runs some paths slower.
 */
async function child(dir: string | undefined): Promise<void> {
  const lib: Lib = await import(`${dir ?? root}/packages/tcpkit/dist/index.js`);
  console.log(JSON.stringify(CASES.map(([, request]) => measure(lib, reads(request)))));
}

/** Each library in its own process, so one's type feedback never slows the other's call sites. */
function inChild(dir: string | undefined): number[] {
  const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, RESP_BENCH_CHILD: dir ?? '' },
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!) as number[];
}

if (process.env.RESP_BENCH_CHILD !== undefined) {
  await child(process.env.RESP_BENCH_CHILD || undefined);
} else {
  const before = process.env.TCPKIT_BEFORE;
  // Alternate the two, three times each; medians.
  const now: number[][] = [];
  const then: number[][] = [];
  for (let r = 0; r < 3; r++) {
    now.push(inChild(undefined));
    if (before) then.push(inChild(before));
  }
  const med = (runs: number[][], i: number): number => median(runs.map((run) => run[i]!));
  console.log(`| request (${PIPELINE} a read) | ns/request${before ? ' | before ns/request | after ÷ before' : ''} |`);
  console.log(`|---|---:|${before ? '---:|---:|' : ''}`);
  CASES.forEach(([name], i) => {
    const a = med(now, i);
    if (!before) console.log(`| ${name} | ${a.toFixed(0)} |`);
    else console.log(`| ${name} | ${a.toFixed(0)} | ${med(then, i).toFixed(0)} | ${(a / med(then, i)).toFixed(2)}x |`);
  });
}
