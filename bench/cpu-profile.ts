/**
 * Reads a V8 `.cpuprofile` (as `node --cpu-prof` writes it) and sums the sampled CPU of a time window,
 * split into the samples whose stack runs through given code and the rest. A profile's timestamps are
 * CLOCK_MONOTONIC microseconds, the clock of `process.hrtime` in any process of the machine, so another
 * process can name the window.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Sampled CPU of a window, µs. */
export interface WindowCpu {
  /** Samples that were not idle. */
  busyUs: number;
  /** Samples with a frame of the matched code anywhere on the stack. */
  matchedUs: number;
}

/** The main thread's profile in `dir` (Node names it `CPU.<date>.<time>.<pid>.0.<seq>.cpuprofile`). */
export function mainThreadProfile(dir: string): string {
  const file = readdirSync(dir).find((name) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(name));
  if (file === undefined) throw new Error(`no main-thread .cpuprofile in ${dir}`);
  return path.join(dir, file);
}

/** The CPU sampled in the profile `file` between `fromUs` and `toUs` (monotonic µs); `match` tests a frame's URL. */
export function windowCpu(file: string, fromUs: number, toUs: number, match: (url: string) => boolean): WindowCpu {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  // Whether a node's stack (it and its callers) runs through matched code, memoised per node.
  const matched = new Map<number, boolean>();
  const isMatched = (id: number): boolean => {
    let known = matched.get(id);
    if (known === undefined) {
      const up = parent.get(id);
      known = match(byId.get(id)!.callFrame.url) || (up !== undefined && isMatched(up));
      matched.set(id, known);
    }
    return known;
  };
  let at = profile.startTime;
  let busyUs = 0;
  let matchedUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i]!;
    at += delta;
    if (at < fromUs || at >= toUs) continue;
    const id = profile.samples[i]!;
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    busyUs += delta;
    if (isMatched(id)) matchedUs += delta;
  }
  return { busyUs, matchedUs };
}
