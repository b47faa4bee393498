// Unit tests of the load generator's accounting: options, histogram merging across workers,
// open-loop pacing and coordinated-omission correction, --verify, /proc sampling, the HTML report.
import assert from 'node:assert/strict';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { LoadEngine } from '../src/loadgen/engine.js';
import {
  createLatencyHistogram,
  decodeHistogram,
  encodeHistogram,
  mergeEncoded,
  percentileCurve,
  summarize,
} from '../src/loadgen/histogram.js';
import { renderHtml } from '../src/loadgen/html.js';
import { parseSourceAddresses, resolveBenchOptions } from '../src/loadgen/options.js';
import {
  parseMachineCpu,
  parseStatCpuUs,
  parseStatTimes,
  parseStatusRssBytes,
  sampleProcess,
} from '../src/loadgen/proc.js';
import { runBench, splitConfig } from '../src/loadgen/runner.js';

/** Starts a server on 127.0.0.1 with the given per-socket behaviour. */
async function listen(onSocket: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const plainEcho = (socket: net.Socket) => socket.on('data', (d) => socket.write(d));

describe('loadgen options', () => {
  it('expands source address ranges and lists', () => {
    assert.deepEqual(parseSourceAddresses('127.0.0.1-127.0.0.3'), ['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    assert.deepEqual(parseSourceAddresses('127.0.0.255-127.0.1.0,::1'), ['127.0.0.255', '127.0.1.0', '::1']);
    assert.equal(parseSourceAddresses('127.0.0.1-127.0.0.16').length, 16);
    assert.throws(() => parseSourceAddresses('127.0.0.9-127.0.0.1'), /bad source address range/);
    assert.throws(() => parseSourceAddresses('127.0.0-127.0.0.3'), /not an IPv4 address/);
  });

  it('applies defaults and names the bad option', () => {
    const options = resolveBenchOptions();
    assert.equal(options.host, '127.0.0.1');
    assert.equal(options.port, 7000);
    assert.equal(options.mode, 'echo');
    assert.equal(options.workers, 1);
    assert.throws(() => resolveBenchOptions({ mode: 'open-loop' }), /rate must be > 0 in open-loop mode/);
    assert.throws(() => resolveBenchOptions({ connections: 0 }), /connections must be an integer >= 1/);
    assert.equal(resolveBenchOptions({ connections: 3, workers: 8 }).workers, 3);
  });

  it('splits connections and the open-loop rate over workers', () => {
    const configs = splitConfig(resolveBenchOptions({ mode: 'open-loop', rate: 1000, connections: 10, workers: 3 }));
    assert.deepEqual(
      configs.map((c) => c.connections),
      [4, 3, 3],
    );
    assert.deepEqual(
      configs.map((c) => c.firstConnection),
      [0, 4, 7],
    );
    assert.equal(
      configs.reduce((sum, c) => sum + c.rate!, 0),
      1000,
    );
  });
});

describe('loadgen histogram', () => {
  it('merges serialized histograms into the distribution of all values', () => {
    const all = createLatencyHistogram();
    const parts = [createLatencyHistogram(), createLatencyHistogram(), createLatencyHistogram()];
    for (let value = 1; value <= 30_000; value++) {
      all.recordValue(value);
      parts[value % 3]!.recordValue(value);
    }
    const merged = mergeEncoded(parts.map(encodeHistogram));
    // Serialization keeps each value's bucket (3 significant digits), so compare with the whole
    // distribution after the same round trip, and with the raw one within that precision.
    const roundTrip = mergeEncoded([encodeHistogram(all)]);
    assert.deepEqual(summarize(merged), summarize(roundTrip));
    assert.deepEqual(percentileCurve(merged), percentileCurve(roundTrip));
    assert.equal(merged.totalCount, 30_000);
    assert.ok(Math.abs(merged.maxValue - 30_000) <= 30, `max ${merged.maxValue}`);
    assert.ok(Math.abs(merged.getValueAtPercentile(50) - 15_000) <= 15);
  });

  it('summarizes an empty histogram as zeros', () => {
    assert.equal(summarize(createLatencyHistogram()).p99, 0);
    assert.deepEqual(percentileCurve(createLatencyHistogram()), []);
  });
});

describe('loadgen accounting against real sockets', () => {
  let echo: Awaited<ReturnType<typeof listen>>;
  before(async () => {
    echo = await listen(plainEcho);
  });
  after(() => echo.close());

  it('records every message exactly once across worker threads', async () => {
    const result = await runBench({
      port: echo.port,
      connections: 6,
      workers: 2,
      depth: 4,
      durationMs: 600,
      warmupMs: 100,
      intervalMs: 200,
    });
    assert.equal(result.errorsTotal, 0, JSON.stringify(result.errors));
    assert.ok(result.messages > 0);
    // The merged histogram holds one latency per completed message of the window.
    assert.equal(result.latencyUs.count, result.messages);
    assert.equal(result.bytesReceived, result.messages * 64);
    assert.equal(result.connections.established, 6);
  });

  it('paces open-loop sends at the rate, not faster', async () => {
    const rate = 400;
    const connections = 4;
    const result = await runBench({
      port: echo.port,
      mode: 'open-loop',
      rate,
      connections,
      durationMs: 800,
      warmupMs: 200,
      intervalMs: 200,
    });
    assert.equal(result.errorsTotal, 0, JSON.stringify(result.errors));
    assert.ok(result.messages > 0);
    // Messages completed in the window can only be those scheduled up to its end: on a loaded machine the
    // warm-up's backlog (several in flight per connection, as open-loop allows) may complete inside it.
    // Sending as fast as the server answers would be thousands.
    const scheduledByEnd = (rate * (200 + result.measuredMs)) / 1000;
    assert.ok(result.messages <= Math.ceil(scheduledByEnd) + connections, `${result.messages} > ${scheduledByEnd}`);
  });

  it("reports open-loop send lag, the generator's own stall, within the latency", async () => {
    let blocked = false;
    const result = await runBench(
      {
        port: echo.port,
        mode: 'open-loop',
        rate: 400,
        connections: 4,
        durationMs: 800,
        warmupMs: 100,
        intervalMs: 200,
      },
      {
        onInterval(point) {
          if (point.phase !== 'measure' || blocked) return;
          // The generator's thread stalls for 300 ms: every message due meanwhile leaves late.
          blocked = true;
          const until = performance.now() + 300;
          while (performance.now() < until) {}
        },
      },
    );
    assert.ok(blocked, 'the window had an interval');
    assert.equal(result.errorsTotal, 0, JSON.stringify(result.errors));
    const lag = result.sendLagUs;
    assert.ok(lag !== null && lag.count > 0, JSON.stringify(lag));
    assert.ok(lag.max >= 250_000, `send lag max ${lag.max} µs after a 300 ms stall`);
    // A message is answered after it left: its latency counts its send lag.
    assert.ok(result.latencyUs.max >= lag.max, `latency max ${result.latencyUs.max} < send lag max ${lag.max}`);
  });

  it('reports no send lag outside open-loop mode', async () => {
    const result = await runBench({ port: echo.port, connections: 2, durationMs: 300, warmupMs: 100, intervalMs: 100 });
    assert.equal(result.sendLagUs, null);
  });

  it('counts corrupted echoes as verify errors', async () => {
    // Flips one byte in the 10th chunk it echoes and every 1000th after: a run on a loaded machine that
    // gets through few messages still meets a corrupted one.
    let chunks = 0;
    const corrupting = await listen((socket) =>
      socket.on('data', (d) => {
        if (++chunks % 1000 === 10) d[d.length >> 1]! ^= 0xff;
        socket.write(d);
      }),
    );
    try {
      const checked = await runBench({
        port: corrupting.port,
        connections: 2,
        durationMs: 500,
        warmupMs: 0,
        verify: true,
        intervalMs: 100,
      });
      assert.ok(checked.messages > 10, `too few messages to corrupt one: ${checked.messages}`);
      assert.ok((checked.errors.verify ?? 0) >= 1, JSON.stringify(checked.errors));
      const unchecked = await runBench({ port: corrupting.port, connections: 2, durationMs: 300, warmupMs: 0 });
      assert.equal(unchecked.errors.verify, undefined);
    } finally {
      await corrupting.close();
    }
  });

  it('passes --verify against a correct server', async () => {
    const result = await runBench({
      port: echo.port,
      connections: 3,
      size: 1000,
      depth: 3,
      durationMs: 300,
      warmupMs: 0,
      verify: true,
    });
    assert.equal(result.errorsTotal, 0, JSON.stringify(result.errors));
    assert.ok(result.messages > 0);
  });

  it('reports a server that sends more than was asked as an error', async () => {
    const chatty = await listen((socket) => socket.on('data', (d) => socket.write(Buffer.concat([d, d]))));
    try {
      const result = await runBench({ port: chatty.port, connections: 1, durationMs: 200, warmupMs: 0 });
      assert.ok((result.errors['unexpected data'] ?? 0) >= 1, JSON.stringify(result.errors));
    } finally {
      await chatty.close();
    }
  });

  it('counts refused connections as failed', async () => {
    const gone = await listen(plainEcho);
    const port = gone.port;
    await gone.close();
    const result = await runBench({ port, connections: 2, durationMs: 100, warmupMs: 0 });
    assert.equal(result.connections.established, 0);
    assert.ok(result.connections.failed >= 2);
    assert.ok((result.errors['connect ECONNREFUSED'] ?? 0) >= 2, JSON.stringify(result.errors));
  });
});

/**
 * An echo server that, once it has echoed `stallAfter` messages of `size` bytes, holds what it receives until
 * `release()`: a stall whose start and end are events the test sees (`held`, then its own call to `release`).
 */
async function stallingServer(stallAfter: number, size: number) {
  let echoed = 0;
  let holding = false;
  let released = false;
  const held: Buffer[] = [];
  let socket: net.Socket | null = null;
  let onHeld: (() => void) | null = null;
  const waiters: Array<{ bytes: number; resolve: () => void }> = [];
  const echo = (s: net.Socket, data: Buffer) => {
    s.write(data);
    echoed += data.length;
    for (const w of waiters.filter((x) => echoed >= x.bytes)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const server = await listen((s) => {
    socket = s;
    s.on('data', (data) => {
      if (!released && (holding || echoed >= stallAfter * size)) {
        holding = true;
        held.push(data);
        onHeld?.();
        return;
      }
      echo(s, data);
    });
  });
  return {
    port: server.port,
    close: server.close,
    /** Resolves with the messages echoed before the stall once the first one is held. */
    held: new Promise<number>((resolve) => {
      onHeld = () => resolve(echoed / size);
    }),
    release() {
      released = true;
      for (const data of held.splice(0)) echo(socket!, data);
    },
    /** Resolves once `messages` messages in all have been echoed. */
    echoed: (messages: number) =>
      new Promise<void>((resolve) => {
        if (echoed >= messages * size) resolve();
        else waiters.push({ bytes: messages * size, resolve });
      }),
  };
}

/** Polls `condition` every millisecond; the bound only stops a hang. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(1);
  }
}

/** An open-loop engine on one connection at 1,000 messages/s, every latency it records kept (ms). */
function openLoopEngine(port: number) {
  const [config] = splitConfig(resolveBenchOptions({ port, mode: 'open-loop', rate: 1000, connections: 1 }));
  const engine = new LoadEngine(config!);
  const latencies: number[] = [];
  const record = engine.recordLatency.bind(engine);
  engine.recordLatency = (ms: number) => {
    latencies.push(ms);
    record(ms);
  };
  return { engine, latencies };
}

/**
 * Every message from `first` up to `end` (exclusive) was sent or answered no earlier than `since`, so its
 * latency from its intended time is at least `since - intendedTime(j)`: the k-th largest recorded latency
 * must reach the bound of message `first + k`. A generator that times from the actual send (coordinated
 * omission), or drops what it still owed, fails this.
 */
function assertBacklogRecorded(
  engine: LoadEngine,
  latencies: number[],
  first: number,
  end: number,
  since: number,
): void {
  const largest = [...latencies].sort((a, b) => b - a);
  assert.ok(end - first > 1, `a backlog of ${end - first} messages`);
  for (let j = first; j < end; j++) {
    const bound = since - engine.intendedTime(j);
    const got = largest[j - first];
    assert.ok(
      got !== undefined && got >= bound,
      `message ${j}: the ${j - first + 1}th largest latency is ${got} ms, below ${bound} ms (owed since its intended time)`,
    );
  }
}

describe('loadgen open-loop: latency from the intended send time (coordinated omission)', () => {
  const STALL_AFTER = 50;
  /** Messages that fall due while the server stalls. */
  const BACKLOG = 100;

  it('the schedule starts when the load starts, not when the engine is built or connects', async () => {
    const server = await listen(plainEcho);
    try {
      const { engine } = openLoopEngine(server.port);
      try {
        await engine.start();
        assert.equal(engine.scheduled, 0, 'nothing is due before the load starts');
        const before = performance.now();
        engine.startLoad();
        assert.ok(engine.intendedTime(0) >= before, 'message 0 is due at startLoad(), not at the engine build');
      } finally {
        engine.stop();
      }
    } finally {
      await server.close();
    }
  });

  /** A running engine whose server holds message `first` until BACKLOG more messages have fallen due. */
  async function stalledRun(t: TestContext) {
    const server = await stallingServer(STALL_AFTER, 64);
    const { engine, latencies } = openLoopEngine(server.port);
    t.after(() => {
      engine.stop();
      return server.close();
    });
    await engine.start();
    engine.startLoad();
    const first = await server.held;
    assert.equal(first, STALL_AFTER);
    await until(() => engine.scheduled >= first + 1 + BACKLOG, 'the backlog to fall due');
    return { server, engine, latencies, first };
  }

  it('a drained backlog counts from each message’s intended time', async (t) => {
    const { server, engine, latencies, first } = await stalledRun(t);
    const releasedAt = performance.now();
    server.release();
    const end = engine.scheduled;
    await server.echoed(end);
    engine.stop();
    // Depth 1: the held message blocked the connection, so every later one left after the release.
    assertBacklogRecorded(engine, latencies, first, end, releasedAt);
  });

  it('a run stopped during a stall still records what it owed', async (t) => {
    const { engine, latencies, first } = await stalledRun(t);
    const stoppedAt = performance.now();
    const end = engine.scheduled;
    const report = engine.stop();
    // The held message and the ones still owed, each with its latency so far.
    assertBacklogRecorded(engine, latencies, first, end, stoppedAt);
    assert.ok(decodeHistogram(report.histogram).totalCount >= end - first);
  });
});

describe('loadgen /proc sampling', () => {
  it('parses /proc/PID/stat and /proc/PID/status', () => {
    const stat = '1234 (node (x) y) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 11 0 123 456 789';
    assert.equal(parseStatCpuUs(stat, 100), 3_000_000);
    assert.deepEqual(parseStatTimes(stat, 100), { userUs: 2_500_000, systemUs: 500_000 });
    assert.equal(parseStatusRssBytes('Name:\tnode\nVmRSS:\t   51200 kB\nVmHWM:\t1 kB\n'), 51200 * 1024);
  });

  it('parses the machine line of /proc/stat', () => {
    const stat = 'cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n';
    assert.deepEqual(parseMachineCpu(stat), { busy: 160, total: 1180 });
  });

  it('samples a live process and reports a missing one as undefined', () => {
    const sample = sampleProcess(process.pid);
    assert.ok(sample && sample.rssBytes > 0 && sample.cpuUs > 0);
    assert.ok(sample.userUs > 0 && sample.userUs <= sample.cpuUs);
    assert.equal(sampleProcess(2 ** 30), undefined);
  });
});

describe('loadgen HTML report', () => {
  it('is self-contained: two inline SVG charts, no script, nothing fetched', async () => {
    const server = await listen(plainEcho);
    const result = await runBench({
      port: server.port,
      connections: 2,
      durationMs: 300,
      warmupMs: 100,
      intervalMs: 100,
    });
    await server.close();
    const html = renderHtml(result);
    assert.equal(html.match(/<svg /g)?.length, 2);
    assert.match(html, /Latency by percentile/);
    assert.match(html, /Throughput over time/);
    assert.doesNotMatch(html, /<script|<link|<img|src=|url\(/i);
  });
});
