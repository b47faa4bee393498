// Writes one benchmark's results into its own section of docs/benchmarks.md, between
// `<!-- NAME:begin -->` and `<!-- NAME:end -->`, leaving the rest of the page as it is.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BENCHMARKS_MD = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));

export function writeSection(name: string, markdown: string, file = BENCHMARKS_MD): void {
  const begin = `<!-- ${name}:begin (generated; edit outside these markers) -->`;
  const end = `<!-- ${name}:end -->`;
  const current = readFileSync(file, 'utf8');
  const at = current.indexOf(begin);
  const stop = current.indexOf(end);
  if (at < 0 || stop < at) throw new Error(`${file} has no ${name} markers`);
  writeFileSync(file, `${current.slice(0, at + begin.length)}\n${markdown.trim()}\n${current.slice(stop)}`);
  console.log(`wrote the ${name} section of ${file}`);
}
