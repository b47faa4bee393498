// The published declarations show the documented API only: the library's declarations are built as
// `npm run build` builds them (tsconfig.build.json, stripInternal) into a temporary directory, then read
// back as a user's compiler sees them through the package entry point.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('..', import.meta.url));
/** Where @types/node is installed (the workspace root), for the probes compiled outside the tree. */
const typeRoots = [dirname(dirname(createRequire(import.meta.url).resolve('@types/node/package.json')))];
const TEST = { timeout: 120_000 };
/** Wiring between server, gate and connection that once leaked into the public types. */
const HOST_METHODS = [
  'admit',
  'reject',
  'waiterClosed',
  'onTimeout',
  'onSlowConsumer',
  'onOutputFlushed',
  'onSocketClosed',
  'onDeadline',
  'tick',
  'options',
];

let out = '';
let entry = '';

/** Emits the declarations of the package's sources into `dir`, as the build does. */
function buildDeclarations(dir: string): void {
  const configPath = join(root, 'tsconfig.build.json');
  const config = ts.getParsedCommandLineOfConfigFile(
    configPath,
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
  );
  assert.ok(config !== undefined, 'tsconfig.build.json parses');
  const options = {
    ...config.options,
    outDir: dir,
    emitDeclarationOnly: true,
    declarationMap: false,
    sourceMap: false,
  };
  const program = ts.createProgram(config.fileNames, options);
  const result = program.emit();
  const errors = ts.getPreEmitDiagnostics(program).concat(result.diagnostics);
  assert.deepEqual(
    errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')),
    [],
  );
}

/** Type-checks `source` against the built declarations, as a user's file importing 'tcpkit' would be. */
function check(source: string): string[] {
  const file = join(out, 'probe.ts');
  writeFileSync(file, source.replaceAll("'tcpkit'", `'${entry.replace(/\.d\.ts$/, '.js')}'`));
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: ['node'],
    typeRoots,
  });
  return ts
    .getPreEmitDiagnostics(program)
    .map(
      (d) =>
        `${d.file?.fileName === file ? 'probe' : d.file?.fileName}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`,
    );
}

describe('published declarations', () => {
  before(() => {
    out = mkdtempSync(join(tmpdir(), 'tcpkit-dts-'));
    buildDeclarations(out);
    entry = join(out, 'index.d.ts');
  });
  after(() => rmSync(out, { recursive: true, force: true }));

  it('export no `_` member and no host method on any class or interface', TEST, () => {
    const program = ts.createProgram([entry], {
      strict: true,
      types: ['node'],
      typeRoots,
    });
    const checker = program.getTypeChecker();
    const module = checker.getSymbolAtLocation(program.getSourceFile(entry)!);
    assert.ok(module !== undefined);
    const leaks: string[] = [];
    const seen: string[] = [];
    for (let symbol of checker.getExportsOfModule(module)) {
      if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
      const types: ts.Type[] = [];
      if (symbol.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface))
        types.push(checker.getDeclaredTypeOfSymbol(symbol));
      if (symbol.flags & ts.SymbolFlags.Class) types.push(checker.getTypeOfSymbol(symbol)); // statics
      for (const type of types) {
        for (const member of checker.getPropertiesOfType(type)) {
          const name = member.getName();
          if (name.startsWith('__@') || name === 'prototype' || name === '#private') continue; // symbol keys, the prototype, the marker of #fields
          seen.push(`${symbol.getName()}.${name}`);
          if (name.startsWith('_') || name.startsWith('#') || HOST_METHODS.includes(name))
            leaks.push(`${symbol.getName()}.${name}`);
        }
      }
    }
    assert.ok(seen.includes('Conn.read') && seen.includes('Server.shutdown'), 'the scan saw the public API');
    assert.deepEqual(leaks, []);
  });

  it('give users no way to construct a Conn or a Server, and no internal member to reach', TEST, () => {
    const errors = check(`
      import { ByteQueue, Conn, Server, type Conn as C } from 'tcpkit';
      declare const conn: C;
      declare const server: Server;
      declare const queue: ByteQueue;
      // @ts-expect-error internal (the RESP decoder's fast path)
      queue.flat();
      // @ts-expect-error internal
      queue.headOffset;
      // @ts-expect-error the constructor is private
      new Conn(undefined as never, '');
      // @ts-expect-error the constructor is private
      new Server(undefined as never, undefined as never);
      // @ts-expect-error internal
      conn._closed();
      // @ts-expect-error internal
      conn.onDeadline(0);
      // @ts-expect-error internal
      server.admit();
      // @ts-expect-error internal
      server.options;
      // The documented API type-checks.
      const closed: Promise<void> = conn.closed;
      const isClosed: boolean = conn.isClosed;
      void [closed, isClosed, server.stats().active, conn instanceof Conn];
    `);
    assert.deepEqual(errors, []);
  });
});
