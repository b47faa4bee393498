/** Where and how a run happened, recorded in every result so two reports can be told apart. */
import { createRequire } from 'node:module';
import os from 'node:os';

export interface BenchEnvironment {
  /** The command line as typed, arguments quoted where a shell would need it. */
  commandLine: string;
  /** The tcpkit library's version. */
  tcpkitVersion: string;
  /** `process.version`, e.g. `v20.20.2`. */
  nodeVersion: string;
  /** `os.platform() os.release() os.arch()`, e.g. `linux 6.8.0 x64`. */
  os: string;
  /** The first CPU's model name as the OS reports it. */
  cpuModel: string;
  /** Logical CPUs the OS reports (cores x threads per core). */
  cpuCount: number;
}

/** Quotes an argument for a POSIX shell when it holds anything but safe characters. */
function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function tcpkitVersion(): string {
  try {
    // Resolved as a dependency would resolve it, so it names the library the generator runs with.
    return (createRequire(import.meta.url)('tcpkit/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Describes this process and host; `argv` is the command line to record (default: this process's). */
export function describeEnvironment(argv: readonly string[] = ['tcpkit', ...process.argv.slice(2)]): BenchEnvironment {
  const cpus = os.cpus();
  return {
    commandLine: argv.map(quote).join(' '),
    tcpkitVersion: tcpkitVersion(),
    nodeVersion: process.version,
    os: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
  };
}
