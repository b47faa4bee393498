// The packages as a user installs them: `npm pack` both, install the tarballs into fresh projects
// (offline, from the npm cache that `npm ci` filled) and use them as a user would.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PACKAGES = fileURLToPath(new URL('../../', import.meta.url));
// Children run the built packages, not the sources: drop the test run's source condition.
const env = { ...process.env, NODE_OPTIONS: '' };

interface Packed {
  filename: string;
  files: { path: string }[];
}

/** Packs the package in `dir` (its prepack script builds it) into `dest`; returns the tarball's path and file list. */
async function pack(dir: string, dest: string): Promise<Packed> {
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dest], {
    cwd: join(PACKAGES, dir),
    env,
  });
  // npm prints the lifecycle scripts' output before the JSON array.
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf('\n[') + 1)) as Packed[];
  return { ...packed!, filename: join(dest, packed!.filename) };
}

/** A fresh project in `dir` with `tarballs` installed from the npm cache only. */
async function install(dir: string, tarballs: string[]): Promise<void> {
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'probe', private: true, type: 'module' }));
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs], { cwd: dir, env });
}

type LockEntry = { version: string; dependencies?: Record<string, string> } & Record<string, unknown>;

/**
 * A fresh project in `dir` with the library and CLI tarballs and the CLI's dependencies at the versions
 * the workspace lock pins. `npm ci --offline` takes them from the cache `npm ci` filled; a plain
 * `npm install` would need the registry's package documents, which that cache does not hold.
 */
async function installCli(dir: string, libraryTarball: string, cliTarball: string): Promise<void> {
  const workspaceLock = JSON.parse(readFileSync(join(PACKAGES, '..', 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const manifest = JSON.parse(readFileSync(join(PACKAGES, 'cli', 'package.json'), 'utf8')) as LockEntry;
  const dependencies = { tcpkit: `file:${libraryTarball}`, '@tcpkit/cli': `file:${cliTarball}` };
  const packages: Record<string, unknown> = {
    '': { name: 'probe', dependencies },
    'node_modules/tcpkit': { version: manifest.version, resolved: dependencies.tcpkit },
    'node_modules/@tcpkit/cli': {
      version: manifest.version,
      resolved: dependencies['@tcpkit/cli'],
      dependencies: manifest.dependencies,
      bin: { tcpkit: 'dist/main.js' },
    },
  };
  // [the dependent's lock key, dependency name]: a dependency resolves as Node resolves it, in the
  // nearest node_modules up from its dependent (a version that could not be hoisted is nested).
  const todo: [string, string][] = Object.keys(manifest.dependencies ?? {})
    .filter((name) => name !== 'tcpkit')
    .map((name) => ['', name]);
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    const [parent, name] = next;
    let key: string | undefined;
    for (let dir = parent; key === undefined; dir = dir.replace(/\/?node_modules\/(@[^/]+\/)?[^/]+$/, '')) {
      const candidate = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`;
      if (workspaceLock.packages[candidate] !== undefined) key = candidate;
      else assert.notEqual(dir, '', `${name} (needed by ${parent || 'the CLI'}) in the workspace lock`);
    }
    if (packages[key] !== undefined) continue;
    const entry = workspaceLock.packages[key]!;
    packages[key] = entry;
    for (const dependency of Object.keys(entry.dependencies ?? {})) todo.push([key, dependency]);
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'probe', private: true, dependencies }));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'probe', lockfileVersion: 3, packages }));
  await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: dir, env });
}

describe('packages as installed from their tarballs', { timeout: 180_000 }, () => {
  let tmp: string;
  let library: Packed;
  let cli: Packed;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tcpkit-pack-'));
    library = await pack('tcpkit', tmp);
    cli = await pack('cli', tmp); // after the library: the CLI builds against its declarations
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the library ships its license, its sources for the source maps, and no apps', () => {
    const paths = library.files.map((f) => f.path);
    for (const file of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'src/index.ts']) {
      assert.ok(paths.includes(file), `${file} in the tarball`);
    }
    assert.deepEqual(
      paths.filter((p) => /apps|examples|cli|loadgen/.test(p)),
      [],
      'the CLI, the load generator and the apps are in @tcpkit/cli only',
    );
    const maps = paths.filter((p) => p.endsWith('.js.map'));
    assert.ok(maps.length > 0, 'source maps shipped');
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(PACKAGES, 'tcpkit', map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const shipped = join(map, '..', source);
        assert.ok(paths.includes(shipped), `${map} names ${source}: ${shipped} is in the tarball`);
      }
    }
  });

  it('installs alone (no runtime dependencies) and imports as ESM', async () => {
    const project = mkdtempSync(join(tmp, 'library-'));
    await install(project, [library.filename]);
    const installed = readdirSync(join(project, 'node_modules')).filter((name) => !name.startsWith('.'));
    assert.deepEqual(installed, ['tcpkit'], 'node_modules holds nothing but tcpkit');
    const { stdout } = await run(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('tcpkit'); console.log(typeof m.serve, typeof m.lines)"],
      { cwd: project, env },
    );
    assert.equal(stdout.trim(), 'function function');
  });

  it('require() loads it on every Node that can require ES modules', async (t) => {
    // Node 20.19+, 22.12+ and 24 load ES modules with require(); older ones throw ERR_REQUIRE_ESM.
    if (!(process.features as { require_module?: boolean }).require_module) {
      t.skip(`Node ${process.version} cannot require() ES modules`);
      return;
    }
    const project = mkdtempSync(join(tmp, 'require-'));
    await install(project, [library.filename]);
    const { stdout } = await run(
      process.execPath,
      ['--no-warnings', '-e', "console.log(typeof require('tcpkit').serve)"],
      { cwd: project, env },
    );
    assert.equal(stdout.trim(), 'function');
  });

  it('the CLI installs with the library and runs: tcpkit --version', async () => {
    const project = mkdtempSync(join(tmp, 'cli-'));
    await installCli(project, library.filename, cli.filename);
    const { version } = JSON.parse(readFileSync(join(PACKAGES, 'cli', 'package.json'), 'utf8')) as { version: string };
    const { stdout } = await run(join(project, 'node_modules', '.bin', 'tcpkit'), ['--version'], { cwd: project, env });
    assert.equal(stdout.trim(), version);
    const { stdout: kv } = await run(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('@tcpkit/cli/kv'); console.log(typeof m.createApp)"],
      { cwd: project, env },
    );
    assert.equal(kv.trim(), 'function', 'the kv app on its documented subpath');
  });
});
