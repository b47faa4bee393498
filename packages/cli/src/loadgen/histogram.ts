/**
 * Latency histograms: recorded in microseconds, shipped between threads as compressed base64
 * (HdrHistogram's own interchange format), merged in the main thread.
 */
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;

/** Summary of a latency distribution, in microseconds. */
export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** One point of the percentile curve, for charts. */
export interface PercentilePoint {
  percentile: number;
  valueUs: number;
}

/** A histogram for microsecond latencies with 3 significant digits; resizes itself past its initial 60 s. */
export function createLatencyHistogram(): Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });
}

/** Serializes for `postMessage` (a short string rather than a big counts array). */
export function encodeHistogram(histogram: Histogram): string {
  return hdr.encodeIntoCompressedBase64(histogram);
}

export function decodeHistogram(encoded: string): Histogram {
  return hdr.decodeFromCompressedBase64(encoded);
}

/** Merges serialized histograms (one per worker) into a fresh histogram. */
export function mergeEncoded(encoded: readonly string[]): Histogram {
  const merged = createLatencyHistogram();
  for (const item of encoded) merged.add(decodeHistogram(item));
  return merged;
}

export function summarize(histogram: Histogram): LatencySummary {
  const count = histogram.totalCount;
  if (count === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return {
    count,
    min: histogram.minNonZeroValue,
    mean: Math.round(histogram.mean * 10) / 10,
    p50: histogram.getValueAtPercentile(50),
    p90: histogram.getValueAtPercentile(90),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
    max: histogram.maxValue,
  };
}

/**
 * The percentile curve at points spaced evenly on a log scale of 1/(1-p), the HdrHistogram
 * plotter's axis, so the tail gets as much room as the median.
 */
export function percentileCurve(histogram: Histogram): PercentilePoint[] {
  if (histogram.totalCount === 0) return [];
  const points: PercentilePoint[] = [];
  for (let step = 0; step <= 50; step++) {
    const percentile = 100 * (1 - 10 ** (-step / 10));
    points.push({ percentile: Number(percentile.toFixed(4)), valueUs: histogram.getValueAtPercentile(percentile) });
  }
  points.push({ percentile: 100, valueUs: histogram.maxValue });
  return points;
}
