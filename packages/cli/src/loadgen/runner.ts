/**
 * `runBench()`: splits the connections over engines (this thread, or worker threads), walks the
 * phases connect -> warmup -> measure, collects one report per interval from every engine, merges
 * them, samples the server, and returns a `BenchResult`. Every run ends by itself.
 */

import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { type EngineConfig, type IntervalReport, LoadEngine } from './engine.js';
import { describeEnvironment } from './environment.js';
import { createLatencyHistogram, decodeHistogram, percentileCurve, summarize } from './histogram.js';
import { type BenchOptions, type ResolvedBenchOptions, resolveBenchOptions } from './options.js';
import { type MachineCpu, type ProcSample, sampleMachine, sampleProcess } from './proc.js';
import { RemoteEngine } from './remote.js';
import type { BenchResult, Phase, ServerCost, TimelinePoint } from './result.js';

/** Hooks into a run. */
export interface RunHooks {
  /** Aborting stops the run early; the result covers what was measured (`interrupted: true`). */
  signal?: AbortSignal;
  /** Called after every interval (progress line). */
  onInterval?: (point: TimelinePoint) => void;
  /** The command line recorded in `result.environment`; default `tcpkit` and this process's arguments. */
  commandLine?: readonly string[];
}

interface EngineHandle {
  /** The process the engine runs in. */
  readonly pid: number;
  /** Resolves once the engine is loaded and can take requests. */
  ready(): Promise<void>;
  start(): Promise<void>;
  startLoad(): Promise<void>;
  interval(): Promise<IntervalReport>;
  farewell(): Promise<void>;
  stop(): Promise<IntervalReport>;
}

class LocalHandle implements EngineHandle {
  readonly pid = process.pid;
  readonly #engine: LoadEngine;
  async ready(): Promise<void> {}
  constructor(config: EngineConfig) {
    this.#engine = new LoadEngine(config);
  }
  start(): Promise<void> {
    return this.#engine.start();
  }
  async startLoad(): Promise<void> {
    this.#engine.startLoad();
  }
  async interval(): Promise<IntervalReport> {
    return this.#engine.interval();
  }
  farewell(): Promise<void> {
    return this.#engine.farewell();
  }
  async stop(): Promise<IntervalReport> {
    return this.#engine.stop();
  }
}

/**
 * Splits connections (and the open-loop rate, in proportion) over the engines: `workers` threads or
 * `processes` processes. With processes and at least as many source addresses, each process binds
 * its own addresses (every address's ephemeral ports then belong to one process).
 */
export function splitConfig(options: ResolvedBenchOptions): EngineConfig[] {
  const configs: EngineConfig[] = [];
  const engines = Math.max(options.workers, options.processes);
  const addresses = options.sourceAddresses;
  const ownAddresses = options.processes > 1 && addresses.length >= options.processes;
  let first = 0;
  for (let w = 0; w < engines; w++) {
    const share = Math.floor(options.connections / engines) + (w < options.connections % engines ? 1 : 0);
    configs.push({
      mode: options.mode,
      host: options.host,
      port: options.port,
      size: options.size,
      depth: options.depth,
      connections: share,
      firstConnection: first,
      rate: options.rate === null ? null : (options.rate * share) / options.connections,
      payload: options.payload,
      verify: options.verify,
      sourceAddresses: ownAddresses ? addresses.filter((_, i) => i % engines === w) : addresses,
      rampUpMs: options.rampUpMs,
      connectTimeoutMs: options.connectTimeoutMs,
      tls: options.tls,
      tlsResume: options.tlsResume,
      servername: options.servername,
      proxyProtocol: options.proxyProtocol,
    });
    first += share;
  }
  return configs;
}

const MIB = 1024 * 1024;

/** Runs a load test; see `BenchOptions`. Rejects only on invalid options or a crashed worker. */
export async function runBench(input: BenchOptions, hooks: RunHooks = {}): Promise<BenchResult> {
  const options = resolveBenchOptions(input);
  const handles: EngineHandle[] = splitConfig(options).map((config) =>
    options.processes > 1
      ? RemoteEngine.process(config)
      : options.workers > 1
        ? RemoteEngine.thread(config)
        : new LocalHandle(config),
  );
  // Threads and processes load their code first: the run (and the time to open) starts once all are up.
  await Promise.all(handles.map((h) => h.ready()));
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  const pid = options.serverPid;
  const baseline = pid === null ? undefined : sampleProcess(pid);
  let rssPeak = baseline?.rssBytes ?? 0;

  const total = createLatencyHistogram();
  const sendLag = options.mode === 'open-loop' ? createLatencyHistogram() : null;
  const errors: Record<string, number> = {};
  const timeline: TimelinePoint[] = [];
  let messages = 0;
  let bytesSent = 0;
  let bytesReceived = 0;
  let established = 0;
  let resumed = 0;
  let failed = 0;
  let open = 0;
  let lastCollect = t0;

  /** Pulls one report from every engine and books it to `phase`. */
  const book = (reports: IntervalReport[], phase: Phase) => {
    const now = performance.now();
    const seconds = Math.max(1e-3, (now - lastCollect) / 1000);
    lastCollect = now;
    const interval = createLatencyHistogram();
    let intervalMessages = 0;
    let intervalBytes = 0;
    let intervalErrors = 0;
    established = 0;
    resumed = 0;
    failed = 0;
    open = 0;
    for (const report of reports) {
      interval.add(decodeHistogram(report.histogram));
      intervalMessages += report.messages;
      intervalBytes += report.bytesReceived;
      for (const [kind, count] of Object.entries(report.errors)) {
        errors[kind] = (errors[kind] ?? 0) + count;
        intervalErrors += count;
      }
      established += report.established;
      resumed += report.resumed;
      failed += report.failed;
      open += report.open;
      if (phase === 'measure') {
        if (sendLag !== null && report.sendLag !== null) sendLag.add(decodeHistogram(report.sendLag));
        messages += report.messages;
        bytesSent += report.bytesSent;
        bytesReceived += report.bytesReceived;
      }
    }
    if (phase === 'measure') total.add(interval);
    // A phase change right after a tick leaves a sliver of an interval whose rate is noise: book
    // its counts (above) but draw no point for it.
    if (seconds * 1000 < options.intervalMs / 4) return;
    const point: TimelinePoint = {
      t: Math.round((now - t0) / 10) / 100,
      phase,
      messagesPerSec: Math.round(intervalMessages / seconds),
      mibPerSec: Math.round((intervalBytes / MIB / seconds) * 100) / 100,
      p50Us: interval.totalCount ? interval.getValueAtPercentile(50) : 0,
      p99Us: interval.totalCount ? interval.getValueAtPercentile(99) : 0,
      errors: intervalErrors,
      openConnections: open,
    };
    timeline.push(point);
    if (pid !== null) {
      const sample = sampleProcess(pid);
      if (sample && sample.rssBytes > rssPeak) rssPeak = sample.rssBytes;
    }
    hooks.onInterval?.(point);
  };

  let aborted = hooks.signal?.aborted ?? false;
  let wake: (() => void) | null = null;
  const onAbort = () => {
    aborted = true;
    wake?.();
  };
  hooks.signal?.addEventListener('abort', onAbort, { once: true });
  /** Sleeps until `ms` have passed, the start promise settles, or the run is aborted. */
  const sleep = (ms: number, alsoWakeOn?: Promise<void>) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
      alsoWakeOn?.then(done);
    });

  let connectDone = false;
  let openMs: number | null = null;
  const started = Promise.all(handles.map((h) => h.start())).then(
    () => {
      connectDone = true;
      openMs = Math.round(elapsed());
    },
    // An engine that died: its next request rejects, and the run with it.
    () => {},
  );
  // A connect attempt can take connectTimeoutMs after the last one is launched; past that, go on.
  const connectDeadline = options.rampUpMs + options.connectTimeoutMs + 1000;
  let phase: Phase = 'connect';
  let phaseEnd = connectDeadline;
  let nextTick = options.intervalMs;
  let measureStart = 0;
  let cpuStart: ProcSample | undefined;
  let generatorCpuStart = process.cpuUsage();
  let machineStart: MachineCpu | undefined;
  let measureEnd = 0;

  try {
    while (!aborted) {
      const now = elapsed();
      if (phase === 'connect' && (connectDone || now >= phaseEnd)) {
        book(await Promise.all(handles.map((h) => h.interval())), phase);
        await Promise.all(handles.map((h) => h.startLoad()));
        phase = 'warmup';
        phaseEnd = elapsed() + options.warmupMs;
        continue;
      }
      if (phase === 'warmup' && now >= phaseEnd) {
        book(await Promise.all(handles.map((h) => h.interval())), phase);
        phase = 'measure';
        measureStart = elapsed();
        phaseEnd = measureStart + options.durationMs;
        cpuStart = pid === null ? undefined : sampleProcess(pid);
        generatorCpuStart = process.cpuUsage();
        machineStart = sampleMachine();
        nextTick = measureStart + options.intervalMs;
        continue;
      }
      if (phase === 'measure' && now >= phaseEnd) break;
      if (now >= nextTick) {
        book(await Promise.all(handles.map((h) => h.interval())), phase);
        nextTick += options.intervalMs;
        continue;
      }
      await sleep(Math.min(nextTick, phaseEnd) - now, phase === 'connect' ? started : undefined);
    }
  } finally {
    hooks.signal?.removeEventListener('abort', onAbort);
  }

  // Read the server before closing the connections: idle RSS must be measured while they are open.
  const cpuEnd = pid === null ? undefined : sampleProcess(pid);
  const generatorCpu = process.cpuUsage(generatorCpuStart);
  const machineEnd = sampleMachine();
  measureEnd = elapsed();
  // Idle connections show they still work: one more echo each, then they close.
  if (options.mode === 'idle' && !aborted) await Promise.all(handles.map((h) => h.farewell()));
  const finals = await Promise.all(handles.map((h) => h.stop()));
  book(finals, phase);
  const measuredMs = phase === 'measure' ? measureEnd - measureStart : 0;

  let server: ServerCost | null = null;
  if (pid !== null && baseline && cpuEnd) {
    if (cpuEnd.rssBytes > rssPeak) rssPeak = cpuEnd.rssBytes;
    const cpuUs = cpuStart ? cpuEnd.cpuUs - cpuStart.cpuUs : 0;
    server = {
      pid,
      cpuUs,
      cpuUsPerMessage: messages > 0 ? Math.round((cpuUs / messages) * 100) / 100 : null,
      userUsPerMessage:
        messages > 0 && cpuStart ? Math.round(((cpuEnd.userUs - cpuStart.userUs) / messages) * 100) / 100 : null,
      cpuPercent: measuredMs > 0 ? Math.round((cpuUs / 1000 / measuredMs) * 1000) / 10 : 0,
      rssBaselineBytes: baseline.rssBytes,
      rssEndBytes: cpuEnd.rssBytes,
      rssPeakBytes: rssPeak,
      rssPerConnectionBytes: open > 0 ? Math.round((cpuEnd.rssBytes - baseline.rssBytes) / open) : null,
    };
  }
  const seconds = measuredMs / 1000;
  const messagesPerSec = seconds > 0 ? Math.round(messages / seconds) : 0;
  const openAtEnd = finals.reduce((sum, report) => sum + report.open, 0);
  return {
    tool: 'tcpkit bench',
    startedAt,
    environment: describeEnvironment(hooks.commandLine),
    options,
    interrupted: aborted,
    measuredMs: Math.round(measuredMs),
    messages,
    messagesPerSec,
    connectionsPerSec: options.mode === 'churn' ? messagesPerSec : null,
    bytesSent,
    bytesReceived,
    mibPerSec: seconds > 0 ? Math.round((bytesReceived / MIB / seconds) * 100) / 100 : 0,
    latencyUs: summarize(total),
    sendLagUs: sendLag === null ? null : summarize(sendLag),
    percentiles: percentileCurve(total),
    errors,
    errorsTotal: Object.values(errors).reduce((sum, count) => sum + count, 0),
    connections: { target: options.connections, established, resumed, failed, open: openAtEnd, openMs },
    generators: finals.map((report, i) => ({
      pid: handles[i]!.pid,
      established: report.established,
      failed: report.failed,
    })),
    generatorCpuPercent:
      measuredMs > 0 ? Math.round(((generatorCpu.user + generatorCpu.system) / 1000 / measuredMs) * 1000) / 10 : 0,
    machineCpuPercent:
      machineStart && machineEnd && machineEnd.total > machineStart.total
        ? Math.round(
            ((machineEnd.busy - machineStart.busy) / (machineEnd.total - machineStart.total)) * cpus().length * 1000,
          ) / 10
        : null,
    server,
    timeline,
  };
}
