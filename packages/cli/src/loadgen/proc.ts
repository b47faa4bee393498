/**
 * Samples another process's CPU time and resident memory from Linux's /proc, so the server's cost
 * can be reported per message and per connection without instrumenting the server.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** One reading of a process. */
export interface ProcSample {
  /** User plus system CPU time of all its threads, in microseconds. */
  cpuUs: number;
  /** The user part of `cpuUs`: the process's own code, without the kernel's work for its syscalls. */
  userUs: number;
  /** Resident set size, in bytes. */
  rssBytes: number;
}

let ticksPerSecond: number | undefined;

/** The kernel's clock tick (USER_HZ): /proc/PID/stat counts CPU time in these. Almost always 100. */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Parses the text of /proc/PID/stat; returns user and system CPU time in microseconds. */
export function parseStatTimes(stat: string, ticks = clockTicks()): { userUs: number; systemUs: number } {
  // The command name (field 2) may contain spaces and parentheses: split after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return { userUs: (Number(fields[11]) * 1_000_000) / ticks, systemUs: (Number(fields[12]) * 1_000_000) / ticks };
}

/** Parses the text of /proc/PID/stat; returns user+system CPU time in microseconds. */
export function parseStatCpuUs(stat: string, ticks = clockTicks()): number {
  const { userUs, systemUs } = parseStatTimes(stat, ticks);
  return userUs + systemUs;
}

/** Parses the text of /proc/PID/status; returns VmRSS in bytes. */
export function parseStatusRssBytes(status: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Reads a process; undefined if it does not exist (or /proc is not there). */
export function sampleProcess(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const { userUs, systemUs } = parseStatTimes(stat);
    return { cpuUs: userUs + systemUs, userUs, rssBytes: parseStatusRssBytes(status) };
  } catch {
    return undefined;
  }
}

/** Busy and total CPU time of the whole machine, in clock ticks summed over cores. */
export interface MachineCpu {
  busy: number;
  total: number;
}

/** Parses the aggregate `cpu` line of /proc/stat. */
export function parseMachineCpu(stat: string): MachineCpu {
  const line = stat.slice(0, stat.indexOf('\n'));
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = values.reduce((sum, v) => sum + v, 0);
  // idle and iowait are the time no task ran.
  return { busy: total - values[3]! - (values[4] ?? 0), total };
}

/** Reads the machine's CPU counters; undefined without /proc. */
export function sampleMachine(): MachineCpu | undefined {
  try {
    return parseMachineCpu(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}
