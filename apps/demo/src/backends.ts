/**
 * Backends by name. The demo knows architectures only through this loader: the four @gmemlab packages and the
 * core's neutral backend by default, and any other package or module listed in gmemlab.config.json. Every
 * entry is resolved (the user's project first, then gmemlab's own copy), checked to run on the same
 * @gmemlab/core as gmemlab, loaded with a dynamic import, and its default export must be a ready ArchBackend (the
 * @gmemlab packages export a factory that is also the ready backend, with a `variants` record naming the options
 * of each variant).
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describeBackendProblems, factoryCore, swProtected, type ArchBackend } from '@gmemlab/core';
import semver from 'semver';
import { z } from 'zod';
import { nearest } from './util/nearest.js';
import { InputError } from './errors.js';

export const BUILTIN_PACKAGES = ['@gmemlab/tdx', '@gmemlab/sev-snp', '@gmemlab/arm-cca', '@gmemlab/pkvm'] as const;
/** The architectures `--arch` means when it is not given. */
export const DEFAULT_ARCHS = ['tdx', 'sev-snp', 'arm-cca', 'pkvm'] as const;
export const CONFIG_FILE = 'gmemlab.config.json';

/** A user-facing problem with a backend, a config file or an --arch value: one line, exit code 2. */
export class BackendError extends InputError {
  override readonly name = 'BackendError';
}

/** Which copy of a package was loaded: the user's (resolved from the config's folder or the current folder), gmemlab's own, or the running core. */
export type BackendCopy = 'project' | 'gmemlab' | 'core';

/** The @gmemlab/core a backend runs on: its version and the file its imports resolve to. */
export interface CoreInfo {
  version: string;
  path: string;
}

export interface LoadedBackend {
  id: string;
  name: string;
  /** Where it came from: a package name, a path, or '@gmemlab/core' for the neutral backend. */
  package: string;
  version: string;
  /** Which copy: the user's install wins over gmemlab's own (see loadBackends). */
  copy: BackendCopy;
  /** The module file that was imported. */
  entry: string;
  /** The package's folder (the module's folder for a path without a package.json). */
  path: string;
  /** The core its `@gmemlab/core` imports resolve to: always the running core (a different one fails the load). */
  core: CoreInfo;
  /** Variant keys: `${id}:${key}` builds that variant. */
  variants: string[];
  backend: ArchBackend;
  /** The rules the backend lists, each with its source (ArchBackend.rules, when the backend has them). */
  build(variant: string): ArchBackend;
}

const ConfigSchema = z.strictObject({
  $schema: z.string().optional(),
  backends: z.array(z.string().min(1)).meta({
    description: "package names (resolved from this file's folder, then the current folder) or paths to modules",
  }),
});

const here = dirname(fileURLToPath(import.meta.url));

interface PackageJson {
  name?: string;
  version?: string;
  peerDependencies?: Record<string, string>;
  dependencies?: Record<string, string>;
}

/** The nearest package.json above a file that names a package, and its folder. */
function packageJsonOf(entryFile: string): { json: PackageJson; dir: string } {
  for (let dir = dirname(entryFile); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const json = JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
        if (json.name || json.version) return { json, dir };
      } catch {
        return { json: {}, dir: dirname(entryFile) };
      }
    }
  }
  return { json: {}, dir: dirname(entryFile) };
}

/** The file `@gmemlab/core` resolves to from a folder (the real path: a symlinked copy is the same copy), or undefined. */
function coreFileFrom(file: string): string | undefined {
  try {
    return realpathSync(createRequire(file).resolve('@gmemlab/core'));
  } catch {
    return undefined;
  }
}

function coreInfoOf(coreFile: string): CoreInfo {
  const { json, dir } = packageJsonOf(coreFile);
  return { version: json.version ?? '-', path: dir };
}

let runningCoreCache: (CoreInfo & { file: string }) | undefined;
/** The core this process runs: the one gmemlab itself imports. */
export function runningCore(): CoreInfo & { file: string } {
  if (runningCoreCache) return runningCoreCache;
  const file = coreFileFrom(join(here, 'noop.js'));
  if (file === undefined)
    throw new BackendError("@gmemlab/core: not found from gmemlab's own folder (reinstall @gmemlab/demo)");
  runningCoreCache = { ...coreInfoOf(file), file };
  return runningCoreCache;
}

/** Resolve a package name from each folder in turn (then gmemlab's own folder); a path relative to the first. */
function resolveEntry(spec: string, folders: readonly string[]): { file: string; copy: BackendCopy } {
  if (spec.startsWith('.') || isAbsolute(spec)) {
    const file = resolve(folders[0]!, spec);
    if (!existsSync(file)) throw new BackendError(`${spec}: no such file (looked for ${file})`);
    return { file: realpathSync(file), copy: 'project' };
  }
  for (const [i, folder] of [...folders, here].entries()) {
    try {
      return {
        file: realpathSync(createRequire(join(folder, 'noop.js')).resolve(spec)),
        copy: i < folders.length ? 'project' : 'gmemlab',
      };
    } catch {
      // try the next folder
    }
  }
  throw new BackendError(
    `${spec}: package not found (looked from ${[...new Set(folders)].join(', ')}, then gmemlab's own install ${here}; install it in your project or give a path)`,
  );
}

/**
 * One core per process. A backend whose `@gmemlab/core` resolves to another copy than the running one would build
 * its objects against a second module instance: its hooks would run, but anything it reads from its own core
 * (constants, defineBackendFactory's variants) would not be the core that runs the host. Also, a published
 * backend states in its peer range the lowest core it needs; the running one must be in it. Either failure is one
 * line naming the backend, both cores and the fix.
 */
function checkCore(label: string, file: string, pkg: PackageJson): CoreInfo {
  const running = runningCore();
  const coreFile = coreFileFrom(file);
  // A module that cannot resolve @gmemlab/core imports none, or bundled a copy (loadEntry checks its factory's brand).
  if (coreFile === undefined) return { version: running.version, path: running.path };
  const own = coreInfoOf(coreFile);
  const range = pkg.peerDependencies?.['@gmemlab/core'] ?? pkg.dependencies?.['@gmemlab/core'];
  // 'workspace:' ranges are a source checkout's (pnpm rewrites them on publish): versions there lag until `changeset version`.
  const published = range !== undefined && !range.startsWith('workspace:') && semver.validRange(range) !== null;
  const accepts = (version: string) => !published || semver.satisfies(version, range!, { includePrerelease: true });
  const who = `${label}${pkg.version ? ` ${pkg.version}` : ''}`;
  if (coreFile !== running.file) {
    const fix =
      own.version === running.version
        ? "run 'npm dedupe' so both resolve one copy"
        : accepts(running.version)
          ? `run 'npm install @gmemlab/core@${running.version}' (the core gmemlab runs on), then 'npm dedupe'`
          : `install a ${pkg.name ?? label} whose peer range accepts @gmemlab/core ${running.version} (this one asks for '${range}'), or a @gmemlab/demo that runs on such a core`;
    throw new BackendError(
      `${who} runs on @gmemlab/core ${own.version} (${own.path}), not on gmemlab's @gmemlab/core ${running.version} (${running.path}): two cores in one process; ${fix}`,
    );
  }
  if (!accepts(running.version)) {
    throw new BackendError(
      `${who} needs @gmemlab/core '${range}' but gmemlab runs on @gmemlab/core ${running.version} (${running.path}); install a ${pkg.name ?? label} whose peer range accepts ${running.version}, or a @gmemlab/demo that runs on such a core`,
    );
  }
  return { version: running.version, path: running.path };
}

/** Load one config entry (or built-in package) and check its default export and its core. */
export async function loadEntry(spec: string, folders: readonly string[]): Promise<LoadedBackend> {
  const { file, copy } = resolveEntry(spec, folders);
  const pkg = packageJsonOf(file);
  const isPath = spec.startsWith('.') || isAbsolute(spec);
  const core = checkCore(isPath ? spec : (pkg.json.name ?? spec), file, pkg.json);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw new BackendError(`${spec}: cannot be loaded: ${String((error as Error).message).split('\n')[0]}`);
  }
  if (!('default' in module) || module.default === undefined)
    throw new BackendError(`${spec}: not a backend: no default export`);
  const value = module.default;
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null)
    throw new BackendError(`${spec}: not a backend: the default export is ${value === null ? 'null' : typeof value}`);
  if (!('conversionPolicy' in value))
    throw new BackendError(`${spec}: not a backend: the default export has no conversionPolicy`);
  const problems = describeBackendProblems(value);
  if (problems.length > 0) throw new BackendError(`${spec}: not an ArchBackend v1: ${problems.join('; ')}`);
  // A backend that bundled its own copy of the core resolves no @gmemlab/core from its folder, so checkCore saw
  // nothing: its factory's brand says which core made it.
  if (factoryCore(value) === 'another') {
    const running = runningCore();
    const label = isPath ? spec : (pkg.json.name ?? spec);
    throw new BackendError(
      `${label}${pkg.json.version ? ` ${pkg.json.version}` : ''} was built by its own copy of @gmemlab/core, not by gmemlab's @gmemlab/core ${running.version} (${running.path}): two cores in one process; build it with @gmemlab/core external (a peer dependency, as the new-backend template's tsup config does)`,
    );
  }
  const backend = value as ArchBackend;
  return described(backend, {
    package: isPath ? spec : (pkg.json.name ?? spec),
    version: pkg.json.version ?? '-',
    copy,
    entry: file,
    path: isPath && pkg.json.name === undefined ? dirname(file) : pkg.dir,
    core,
  });
}

function described(
  backend: ArchBackend,
  origin: Pick<LoadedBackend, 'package' | 'version' | 'copy' | 'entry' | 'path' | 'core'>,
): LoadedBackend {
  const raw = (backend as unknown as { variants?: unknown }).variants;
  const variants = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  return {
    id: backend.id,
    name: backend.name,
    ...origin,
    variants: Object.keys(variants),
    backend,
    build(variant) {
      const id = backend.id;
      if (!(variant in variants) || typeof backend !== 'function') {
        const hint = nearest(variant, Object.keys(variants));
        throw new BackendError(
          `${backend.id}:${variant}: unknown variant${hint ? ` (did you mean ${backend.id}:${hint}?)` : ''}; ${backend.id} has ${
            Object.keys(variants).length > 0
              ? Object.keys(variants)
                  .map((v) => `${backend.id}:${v}`)
                  .join(', ')
              : 'no variants'
          }`,
        );
      }
      let built: unknown;
      try {
        built = (backend as unknown as (options: unknown) => unknown)(variants[variant]);
      } catch (error) {
        throw new BackendError(`${id}:${variant}: the factory refused its own variant: ${(error as Error).message}`);
      }
      const problems = describeBackendProblems(built);
      if (problems.length > 0)
        throw new BackendError(`${id}:${variant}: not an ArchBackend v1: ${problems.join('; ')}`);
      return built as ArchBackend;
    },
  };
}

const isPathSpec = (spec: string) => spec.startsWith('.') || isAbsolute(spec);

/** Where to point a user at: a path entry's own module file (its package root may be the whole project), else the package's folder. */
const shownPath = (b: LoadedBackend) => (isPathSpec(b.package) ? b.entry : b.path);

/**
 * One package, however it was listed: the same module file, or the same real package root (a folder with a named
 * package.json; `path` is a real path, so a symlinked install is the same package). Two modules of one folder
 * without a package name are not one package.
 */
function samePackage(a: LoadedBackend, b: LoadedBackend): boolean {
  if (a.entry === b.entry) return true;
  if (a.path !== b.path) return false;
  return packageJsonOf(a.entry).json.name !== undefined;
}

export interface BackendSet {
  loaded: LoadedBackend[];
  /** The config file read, if any. */
  config?: string;
}

function readConfig(configFile: string, shown: string): string[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(configFile, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BackendError(
      `${shown}: ${code === 'ENOENT' ? 'no such file' : `not valid JSON: ${(error as Error).message}`}`,
    );
  }
  const parsed = ConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BackendError(
      `${shown}: ${issue.path.length > 0 ? `field '${issue.path.join('.')}': ` : ''}${issue.message}`,
    );
  }
  return parsed.data.backends;
}

/**
 * The core's neutral backend, the four built-in packages, then the other entries of the config file (`--config`,
 * or gmemlab.config.json in `cwd`). The user's install wins: a built-in package resolves first from the config's
 * folder and the current folder, and only then to gmemlab's own copy, so `npm update @gmemlab/tdx` in a project
 * reaches the CLI. A config entry naming a built-in package replaces it in place; two different packages (or
 * modules) with one id clash, and the message names both with their paths.
 */
export async function loadBackends(options: { config?: string; cwd?: string } = {}): Promise<BackendSet> {
  const cwd = options.cwd ?? process.cwd();
  const configFile = options.config
    ? resolve(cwd, options.config)
    : existsSync(join(cwd, CONFIG_FILE))
      ? join(cwd, CONFIG_FILE)
      : undefined;
  const specs = configFile === undefined ? [] : readConfig(configFile, options.config ?? CONFIG_FILE);
  const folders = configFile === undefined ? [cwd] : [dirname(configFile), cwd];
  const core = runningCore();
  const loaded: LoadedBackend[] = [
    described(swProtected, {
      package: '@gmemlab/core',
      version: core.version,
      copy: 'core',
      entry: core.file,
      path: core.path,
      core: { version: core.version, path: core.path },
    }),
  ];
  const fromConfig: LoadedBackend[] = [];
  for (const spec of specs) {
    const entry = await loadEntry(spec, folders);
    if (fromConfig.some((b) => samePackage(b, entry))) continue; // listed twice (by name, by path, or both)
    fromConfig.push(entry);
  }
  for (const name of BUILTIN_PACKAGES) {
    // By name, or by a path into the same package (one real package root): either replaces the built-in in place.
    let replacement = fromConfig.find((b) => b.package === name);
    if (replacement === undefined) {
      const builtin = await loadEntry(name, folders);
      replacement = fromConfig.find((b) => samePackage(b, builtin));
      loaded.push(replacement ?? builtin);
    } else loaded.push(replacement);
  }
  for (const entry of fromConfig) {
    if (loaded.includes(entry)) continue;
    const clash = loaded.find((b) => b.id === entry.id);
    if (clash)
      throw new BackendError(
        `${entry.package} (${shownPath(entry)}): its id '${entry.id}' is already taken by ${clash.package} (${shownPath(clash)}); list only one of them`,
      );
    loaded.push(entry);
  }
  return configFile === undefined ? { loaded } : { loaded, config: configFile };
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
    throw new BackendError(
      `--arch: unknown architecture '${spec}'${hint ? ` (did you mean ${hint}?)` : ''}; known: ${ids.join(', ')}, all`,
    );
  }
  const seen = new Set<string>();
  return out.filter((b) => (seen.has(b.id) ? false : (seen.add(b.id), true)));
}
