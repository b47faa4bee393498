// Helpers of the metrics tests: the documented metric table (read from docs/deploy.md, so the doc and
// the tests cannot drift) and a text-format parse by name.
import { readFileSync } from 'node:fs';
import parsePrometheusTextFormat, { type MetricFamily } from 'parse-prometheus-text-format';

/**
 * The metric names and types of a table in docs/deploy.md: `server` (every server's), or `workers` (a
 * primary's series per worker, the table under "### With workers").
 */
export function documentedMetrics(table: 'server' | 'workers' = 'server'): { name: string; type: string }[] {
  const doc = readFileSync(new URL('../../../docs/deploy.md', import.meta.url), 'utf8');
  const [server = '', rest = ''] = doc.split(/^### With workers$/m);
  const text = table === 'server' ? server : (rest.split(/^## /m)[0] ?? '');
  const rows = [...text.matchAll(/^\| `(tcpkit_[a-z_]+)` \| (gauge|counter|histogram) \|/gm)];
  return rows.map((m) => ({ name: m[1]!, type: m[2]! }));
}

/** Parses Prometheus text format into families by name. */
export function parseMetrics(text: string): Map<string, MetricFamily> {
  return new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
}

/** The value of the sample of `name` whose labels include `labels`. */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`metric ${name} missing`);
  const sample = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  if (sample === undefined) throw new Error(`no ${name} sample with labels ${JSON.stringify(labels)}`);
  return Number(sample.value ?? sample.count);
}
