// `tcpkit serve ./module.js`: the user's own handler. The module exports the handler as its default
// export and may export `options` (ServeOptions, applied under the command-line flags). A TypeScript
// module loads where tsx is installed (next to the module or the CLI).
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Conn, ServeOptions } from 'tcpkit';

/** What `tcpkit serve` takes for a module rather than a shipped app's name: a path. */
export function isModulePath(app: string): boolean {
  return /^(\.{1,2}\/|\/)/.test(app) || /\.(c|m)?(j|t)s$/.test(app);
}

export interface UserModule {
  handler: (conn: Conn) => Promise<void> | void;
  options: ServeOptions;
}

/** A usage mistake in the module the user named; the CLI prints the message and exits 2. */
export class ModuleError extends Error {}

/** Makes `import()` of .ts files work if tsx can be found (from the module's folder, then the CLI's). */
async function registerTypeScript(file: string): Promise<boolean> {
  for (const from of [file, import.meta.url]) {
    try {
      const api = createRequire(from).resolve('tsx/esm/api');
      const { register } = (await import(pathToFileURL(api).href)) as { register(): unknown };
      register();
      return true;
    } catch {}
  }
  return false;
}

export async function loadUserModule(path: string): Promise<UserModule> {
  const file = resolve(path);
  let mod: { default?: unknown; options?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as typeof mod;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.(c|m)?ts$/.test(file)) {
      if (!(await registerTypeScript(file))) {
        throw new ModuleError(`${path} is TypeScript: install tsx (npm i -D tsx) or serve the compiled .js`);
      }
      mod = (await import(pathToFileURL(file).href)) as typeof mod;
    } else if (code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes(file)) {
      throw new ModuleError(`cannot find the module ${path} (resolved to ${file})`);
    } else throw error;
  }
  if (typeof mod.default !== 'function') {
    throw new ModuleError(
      `${path} exports no handler: export the connection handler as the default export, e.g. export default async (conn) => { for await (const chunk of conn) await conn.write(chunk); }`,
    );
  }
  if (mod.options !== undefined && (mod.options === null || typeof mod.options !== 'object')) {
    throw new ModuleError(`${path}: export const options must be an object of serve() options`);
  }
  return { handler: mod.default as UserModule['handler'], options: (mod.options ?? {}) as ServeOptions };
}
