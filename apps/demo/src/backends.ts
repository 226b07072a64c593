/**
 * Backends by name. The demo knows architectures only through this loader: the four @gmemlab packages and the
 * core's neutral backend by default, and any other package or module listed in gmemlab.config.json. Every
 * entry is loaded with a dynamic import; its default export must be a ready ArchBackend (the @gmemlab packages
 * export a factory that is also the ready backend, with a `variants` record naming the options of each variant).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describeBackendProblems, swProtected, type ArchBackend } from '@gmemlab/core';
import { z } from 'zod';
import { nearest } from './util/nearest.js';

export const BUILTIN_PACKAGES = ['@gmemlab/tdx', '@gmemlab/sev-snp', '@gmemlab/arm-cca', '@gmemlab/pkvm'] as const;
/** The architectures `--arch` means when it is not given. */
export const DEFAULT_ARCHS = ['tdx', 'sev-snp', 'arm-cca', 'pkvm'] as const;
export const CONFIG_FILE = 'gmemlab.config.json';

/** A user-facing problem with a backend, a config file or an --arch value: one line, exit code 2. */
export class BackendError extends Error {
  override readonly name = 'BackendError';
}

export interface LoadedBackend {
  id: string;
  name: string;
  /** Where it came from: a package name, a path, or '@gmemlab/core' for the neutral backend. */
  package: string;
  version: string;
  /** Variant keys: `${id}:${key}` builds that variant. */
  variants: string[];
  backend: ArchBackend;
  /** The rules the backend lists, each with its source (ArchBackend.rules, when the backend has them). */
  build(variant: string): ArchBackend;
}

const ConfigSchema = z.strictObject({
  $schema: z.string().optional(),
  backends: z.array(z.string().min(1)).meta({ description: 'package names (resolved from this file\'s folder, then the current folder) or paths to modules' }),
});

const here = dirname(fileURLToPath(import.meta.url));

function packageJsonOf(entryFile: string): { name?: string; version?: string } {
  for (let dir = dirname(entryFile); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (json.name || json.version) return json;
      } catch {
        return {};
      }
    }
  }
  return {};
}

/** Resolve a package name from each folder in turn; a path relative to the first. */
function resolveEntry(spec: string, folders: readonly string[]): string {
  if (spec.startsWith('.') || isAbsolute(spec)) {
    const file = resolve(folders[0]!, spec);
    if (!existsSync(file)) throw new BackendError(`${spec}: no such file (looked for ${file})`);
    return file;
  }
  for (const folder of [...folders, here]) {
    try {
      return createRequire(join(folder, 'noop.js')).resolve(spec);
    } catch {
      // try the next folder
    }
  }
  throw new BackendError(`${spec}: package not found (looked from ${[...new Set(folders)].join(', ')}; install it there or give a path)`);
}

/** Load one config entry and check its default export. */
export async function loadEntry(spec: string, folders: readonly string[]): Promise<LoadedBackend> {
  const file = resolveEntry(spec, folders);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw new BackendError(`${spec}: cannot be loaded: ${String((error as Error).message).split('\n')[0]}`);
  }
  if (!('default' in module) || module.default === undefined) throw new BackendError(`${spec}: not a backend: no default export`);
  const value = module.default;
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) throw new BackendError(`${spec}: not a backend: the default export is ${value === null ? 'null' : typeof value}`);
  if (!('conversionPolicy' in value)) throw new BackendError(`${spec}: not a backend: the default export has no conversionPolicy`);
  const problems = describeBackendProblems(value);
  if (problems.length > 0) throw new BackendError(`${spec}: not an ArchBackend v1: ${problems.join('; ')}`);
  const backend = value as ArchBackend;
  const pkg = packageJsonOf(file);
  return described(backend, spec.startsWith('.') || isAbsolute(spec) ? spec : (pkg.name ?? spec), pkg.version ?? '-');
}

function described(backend: ArchBackend, from: string, version: string): LoadedBackend {
  const raw = (backend as unknown as { variants?: unknown }).variants;
  const variants = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  return {
    id: backend.id,
    name: backend.name,
    package: from,
    version,
    variants: Object.keys(variants),
    backend,
    build(variant) {
      const id = backend.id;
      if (!(variant in variants) || typeof backend !== 'function') {
        const hint = nearest(variant, Object.keys(variants));
        throw new BackendError(`${backend.id}:${variant}: unknown variant${hint ? ` (did you mean ${backend.id}:${hint}?)` : ''}; ${backend.id} has ${Object.keys(variants).length > 0 ? Object.keys(variants).map((v) => `${backend.id}:${v}`).join(', ') : 'no variants'}`);
      }
      let built: unknown;
      try {
        built = (backend as unknown as (options: unknown) => unknown)(variants[variant]);
      } catch (error) {
        throw new BackendError(`${id}:${variant}: the factory refused its own variant: ${(error as Error).message}`);
      }
      const problems = describeBackendProblems(built);
      if (problems.length > 0) throw new BackendError(`${id}:${variant}: not an ArchBackend v1: ${problems.join('; ')}`);
      return built as ArchBackend;
    },
  };
}

export interface BackendSet {
  loaded: LoadedBackend[];
  /** The config file read, if any. */
  config?: string;
}

/** The built-in backends, then those of the config file (`--config`, or gmemlab.config.json in `cwd`). */
export async function loadBackends(options: { config?: string; cwd?: string } = {}): Promise<BackendSet> {
  const cwd = options.cwd ?? process.cwd();
  const coreVersion = (createRequire(join(here, 'noop.js'))('@gmemlab/core/package.json') as { version: string }).version;
  const loaded: LoadedBackend[] = [described(swProtected, '@gmemlab/core', coreVersion)];
  for (const name of BUILTIN_PACKAGES) loaded.push(await loadEntry(name, [here]));
  const configFile = options.config ? resolve(cwd, options.config) : existsSync(join(cwd, CONFIG_FILE)) ? join(cwd, CONFIG_FILE) : undefined;
  if (configFile === undefined) return { loaded };
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BackendError(`${options.config ?? CONFIG_FILE}: ${code === 'ENOENT' ? 'no such file' : `not valid JSON: ${(error as Error).message}`}`);
  }
  const parsed = ConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BackendError(`${options.config ?? CONFIG_FILE}: ${issue.path.length > 0 ? `field '${issue.path.join('.')}': ` : ''}${issue.message}`);
  }
  const folders = [dirname(configFile), cwd];
  for (const spec of parsed.data.backends) {
    const entry = await loadEntry(spec, folders);
    const clash = loaded.find((b) => b.id === entry.id);
    if (clash) {
      // The same package listed again (e.g. "@gmemlab/tdx" in the config) is not an error; a different one is.
      if (clash.backend === entry.backend || (clash.package === entry.package && clash.version === entry.version)) continue;
      throw new BackendError(`${spec}: its id '${entry.id}' is already taken by ${clash.package}`);
    }
    loaded.push(entry);
  }
  return { loaded, config: configFile };
}

/** Backends for an --arch value: ids, `id:variant`, comma lists, or 'all' (every loaded backend). */
export function selectArchs(set: BackendSet, value: string | undefined): ArchBackend[] {
  const specs = (value ?? DEFAULT_ARCHS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (specs.length === 0) throw new BackendError('--arch: no architecture given');
  const out: ArchBackend[] = [];
  for (const spec of specs) {
    if (spec === 'all') {
      out.push(...set.loaded.map((b) => b.backend));
      continue;
    }
    const exact = set.loaded.find((b) => b.id === spec);
    if (exact) {
      out.push(exact.backend);
      continue;
    }
    const colon = spec.indexOf(':');
    const base = colon > 0 ? set.loaded.find((b) => b.id === spec.slice(0, colon)) : undefined;
    if (base) {
      out.push(base.build(spec.slice(colon + 1)));
      continue;
    }
    const ids = set.loaded.flatMap((b) => [b.id, ...b.variants.map((v) => `${b.id}:${v}`)]);
    const hint = nearest(spec, ids);
    throw new BackendError(`--arch: unknown architecture '${spec}'${hint ? ` (did you mean ${hint}?)` : ''}; known: ${ids.join(', ')}, all`);
  }
  const seen = new Set<string>();
  return out.filter((b) => (seen.has(b.id) ? false : (seen.add(b.id), true)));
}
