/**
 * Decode throughput of tcpkit's codecs against the code users write without them.
 *
 *   node --import tsx bench/framing.ts [--quick]
 *
 * For lines and lengthPrefixed, 64-byte and 4 KiB frames, fed in 1 KiB, 16 KiB and 64 KiB chunks
 * and in 1-byte chunks (worst case, on a smaller stream), it measures frames/s and MB/s of:
 * - tcpkit: ByteQueue + codec, as conn.frames() drives them (and with a BufferPool for lines);
 * - naive: `buf = Buffer.concat([buf, chunk])` then an indexOf / readUInt32BE loop;
 * - split2 (lines only), the stream most Node code uses for lines.
 * It counts copies (ByteQueue.copies; one per Buffer.concat for naive) and GC time from
 * perf_hooks 'gc' entries. Each case runs in ROUNDS rounds and the median is reported, because
 * this runs on shared machines. Prints a markdown table and writes it into docs/benchmarks.md (the framing section).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import split2 from 'split2';
import { BufferPool } from '../packages/tcpkit/src/buffer-pool.js';
import { ByteQueue } from '../packages/tcpkit/src/byte-queue.js';
import { lengthPrefixed } from '../packages/tcpkit/src/framing/length-prefixed.js';
import { lines } from '../packages/tcpkit/src/framing/lines.js';
import type { Decoder } from '../packages/tcpkit/src/framing/types.js';
import { writeSection } from './common.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : 3;
/** Each measurement repeats the stream until at least this long has passed. */
const MIN_MS = QUICK ? 50 : 150;
const STREAM_BYTES = 4 * 1024 * 1024;
/** The 1-byte-chunk stream is smaller: it makes a million calls per MiB. */
const ONE_BYTE_STREAM_BYTES = 128 * 1024;

type Impl = 'tcpkit' | 'tcpkit + pool' | 'naive' | 'split2';

interface Result {
  codec: string;
  frame: number;
  chunk: number;
  impl: Impl;
  framesPerSec: number;
  mbPerSec: number;
  copiesPer1k: number;
  copiedPerByte: number;
  gcMsPerMillion: number;
}

/** One pass over the stream. */
interface PassResult {
  frames: number;
  /** Frames copied (tcpkit) or Buffer.concat calls (naive). */
  copies: number;
  /** Bytes copied in all. */
  copiedBytes: number;
}
type Pass = (chunks: Buffer[]) => PassResult | Promise<PassResult>;

// ---- the stream --------------------------------------------------------------------------------

function lineStream(frameSize: number, total: number): Buffer {
  const line = Buffer.alloc(frameSize, 'x');
  line[frameSize - 1] = 0x0a;
  return Buffer.concat(Array.from({ length: Math.max(1, Math.floor(total / frameSize)) }, () => line));
}

function lengthStream(frameSize: number, total: number): Buffer {
  const frame = Buffer.alloc(frameSize, 'x');
  frame.writeUInt32BE(frameSize - 4, 0);
  return Buffer.concat(Array.from({ length: Math.max(1, Math.floor(total / frameSize)) }, () => frame));
}

/** Separate buffers, as sockets deliver them (copied so no two chunks share memory). */
function chunksOf(stream: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < stream.length; at += size) out.push(Buffer.from(stream.subarray(at, at + size)));
  return out;
}

// ---- the contenders ----------------------------------------------------------------------------

/** Keeps the decoded frames observable so the work is not optimised away. */
let sink = 0;

/** Drives a tcpkit codec as conn.frames() does. */
function tcpkitPass(makeCodec: () => Decoder<{ length: number }>, pool?: BufferPool): Pass {
  const codec = makeCodec();
  return (chunks) => {
    const q = new ByteQueue(pool);
    let frames = 0;
    for (const c of chunks) {
      q.push(c);
      for (let f = codec.decode(q); f !== undefined; f = codec.decode(q)) {
        sink += f.length;
        frames++;
      }
    }
    return { frames, copies: q.copies, copiedBytes: q.copiedBytes };
  };
}

function tcpkitLines(pool?: BufferPool): Pass {
  return tcpkitPass(() => lines({ maxLength: 1024 * 1024 }), pool);
}

function naiveLines(): Pass {
  return (chunks) => {
    let buf = Buffer.alloc(0);
    let frames = 0;
    let copies = 0;
    let copiedBytes = 0;
    for (const c of chunks) {
      buf = Buffer.concat([buf, c]);
      copies++;
      copiedBytes += buf.length;
      let i = buf.indexOf(0x0a);
      while (i !== -1) {
        sink += buf.subarray(0, i).toString('utf8').length;
        frames++;
        buf = buf.subarray(i + 1);
        i = buf.indexOf(0x0a);
      }
    }
    return { frames, copies, copiedBytes };
  };
}

function split2Lines(): Pass {
  return (chunks) =>
    new Promise((resolve, reject) => {
      let frames = 0;
      const s = split2();
      s.on('data', (line: string) => {
        sink += line.length;
        frames++;
      });
      s.on('end', () => resolve({ frames, copies: Number.NaN, copiedBytes: Number.NaN }));
      s.on('error', reject);
      for (const c of chunks) s.write(c);
      s.end();
    });
}

function tcpkitLength(): Pass {
  return tcpkitPass(() => lengthPrefixed());
}

function naiveLength(): Pass {
  return (chunks) => {
    let buf = Buffer.alloc(0);
    let frames = 0;
    let copies = 0;
    let copiedBytes = 0;
    for (const c of chunks) {
      buf = Buffer.concat([buf, c]);
      copies++;
      copiedBytes += buf.length;
      while (buf.length >= 4) {
        const n = buf.readUInt32BE(0);
        if (buf.length < 4 + n) break;
        sink += buf.subarray(4, 4 + n).length;
        frames++;
        buf = buf.subarray(4 + n);
      }
    }
    return { frames, copies, copiedBytes };
  };
}

// ---- measuring ---------------------------------------------------------------------------------

const gcEntries: Array<{ start: number; duration: number }> = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcEntries.push({ start: e.startTime, duration: e.duration });
});
observer.observe({ entryTypes: ['gc'] });

/** GC entries reach the observer a little later than the collections: wait for them. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

async function measure(pass: Pass, chunks: Buffer[], bytes: number) {
  await pass(chunks); // warm up
  await settle();
  gcEntries.length = 0;
  const start = performance.now();
  let frames = 0;
  let copies = 0;
  let copiedBytes = 0;
  let passes = 0;
  do {
    const r = await pass(chunks);
    frames += r.frames;
    copies += r.copies;
    copiedBytes += r.copiedBytes;
    passes++;
  } while (performance.now() - start < MIN_MS);
  const end = performance.now();
  await settle(); // let the observer deliver this window's gc entries
  let gc = 0;
  for (const e of gcEntries) if (e.start >= start && e.start < end) gc += e.duration;
  gcEntries.length = 0;
  const seconds = (end - start) / 1000;
  return {
    framesPerSec: frames / seconds,
    mbPerSec: (bytes * passes) / seconds / 1e6,
    copiesPer1k: (copies / frames) * 1000,
    copiedPerByte: copiedBytes / (bytes * passes),
    gcMsPerMillion: (gc / frames) * 1e6,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const results: Result[] = [];
  const pool = new BufferPool();
  const suites: Array<{ codec: string; stream: (f: number, t: number) => Buffer; impls: Array<[Impl, Pass]> }> = [
    {
      codec: 'lines',
      stream: lineStream,
      impls: [
        ['tcpkit', tcpkitLines()],
        ['tcpkit + pool', tcpkitLines(pool)],
        ['naive', naiveLines()],
        ['split2', split2Lines()],
      ],
    },
    {
      codec: 'lengthPrefixed',
      stream: lengthStream,
      impls: [
        ['tcpkit', tcpkitLength()],
        ['naive', naiveLength()],
      ],
    },
  ];
  for (const suite of suites) {
    for (const frame of [64, 4096]) {
      for (const chunk of [1024, 16 * 1024, 64 * 1024, 1]) {
        const stream = suite.stream(frame, chunk === 1 ? ONE_BYTE_STREAM_BYTES : STREAM_BYTES);
        const chunks = chunksOf(stream, chunk);
        for (const [impl, pass] of suite.impls) {
          const rounds = [];
          for (let r = 0; r < ROUNDS; r++) rounds.push(await measure(pass, chunks, stream.length));
          results.push({
            codec: suite.codec,
            frame,
            chunk,
            impl,
            framesPerSec: median(rounds.map((x) => x.framesPerSec)),
            mbPerSec: median(rounds.map((x) => x.mbPerSec)),
            copiesPer1k: median(rounds.map((x) => x.copiesPer1k)),
            copiedPerByte: median(rounds.map((x) => x.copiedPerByte)),
            gcMsPerMillion: median(rounds.map((x) => x.gcMsPerMillion)),
          });
        }
      }
    }
  }
  observer.disconnect();
  report(results);
}

// ---- reporting ---------------------------------------------------------------------------------

const size = (n: number) => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);
const count = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);

function report(results: Result[]): void {
  const naiveOf = (r: Result) =>
    results.find((x) => x.codec === r.codec && x.frame === r.frame && x.chunk === r.chunk && x.impl === 'naive')!;
  const rows = results.map((r) => {
    const ratio = r.framesPerSec / naiveOf(r).framesPerSec;
    return `| ${r.codec} | ${size(r.frame)} | ${size(r.chunk)} | ${r.impl} | ${count(r.framesPerSec)} | ${r.mbPerSec.toFixed(0)} | ${
      r.impl === 'naive' ? '1.00x' : `**${ratio.toFixed(2)}x**`
    } | ${Number.isNaN(r.copiesPer1k) ? 'n/a' : r.copiesPer1k.toFixed(1)} | ${
      Number.isNaN(r.copiedPerByte) ? 'n/a' : r.copiedPerByte.toFixed(2)
    } | ${r.gcMsPerMillion.toFixed(0)} |`;
  });
  const cpu = /model name\s*:\s*(.*)/.exec(readCpuinfo())?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const table = [
    '| codec | frame | chunk | decoder | frames/s | MB/s | vs naive | copies / 1k frames | bytes copied / byte in | GC ms / 1M frames |',
    '|---|---|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const doc = `### Decode throughput

\`node --import tsx bench/framing.ts\` on ${cpu}, ${os.cpus().length} cores, Node ${process.version}, ${new Date()
    .toISOString()
    .slice(
      0,
      10,
    )}. Load average at the end of the run: ${load} (a shared machine: other work ran at the same time, so read ratios rather than absolute numbers).

Decoding only (no socket): the stream is cut into separate buffers of the chunk size and fed to each decoder as a socket would. Streams are ${size(STREAM_BYTES)} (${size(ONE_BYTE_STREAM_BYTES)} for 1-byte chunks); each cell is the median of ${ROUNDS} rounds of at least ${MIN_MS} ms. *naive* is \`buf = Buffer.concat([buf, chunk])\` then an \`indexOf\` (lines) or \`readUInt32BE\` (length-prefixed) loop with \`subarray\`; *split2* emits strings from a stream; *tcpkit* is \`ByteQueue\` + \`lines()\` (utf8 strings) or \`lengthPrefixed()\` (zero-copy Buffers), as \`conn.frames()\` drives them; *+ pool* gives the queue a \`BufferPool\` for the scratch buffer of lines that straddle chunks. Copies: tcpkit counts frames copied because they straddled chunks (\`ByteQueue.copies\`), naive counts its \`Buffer.concat\` calls (each copies everything buffered); *bytes copied / byte in* counts every byte moved, including tcpkit gathering chunks of up to 128 bytes into its arena (all of the 1-byte case). GC: total \`perf_hooks\` 'gc' entry time during the measurement.

${table}
`;
  console.log(table);
  writeSection('framing', doc);
  console.log(`(sink ${sink > 0 ? 'ok' : 'empty'})`);
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

await main();
