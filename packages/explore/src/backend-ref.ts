/**
 * A backend by reference, for worker threads (functions cannot be sent to one): where a worker imports it from,
 * and the built worker file. Used by exploreMany and the threaded search.
 */
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describeBackendProblems, type ArchBackend } from '@gmemlab/core';

/** Where a worker finds a backend: `(await import(module))[export ?? 'default']`, then `factory(factory.variants[variant])`. */
export interface BackendRef {
  /** A module specifier the worker can import: a file URL or an absolute path is safest. */
  module: string;
  /** The export holding the backend or its factory (default: the default export). */
  export?: string;
  /** A published variant key: the export is a factory and `variants[variant]` its options. */
  variant?: string;
}

export const isRef = (backend: ArchBackend | BackendRef): backend is BackendRef =>
  typeof (backend as BackendRef).module === 'string' && !('conversionPolicy' in backend);

/** Import a backend by reference (what a worker does). */
export async function loadBackendRef(ref: BackendRef): Promise<ArchBackend> {
  const specifier = isAbsolute(ref.module) ? pathToFileURL(ref.module).href : ref.module;
  const module = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
  let value = module[ref.export ?? 'default'] as unknown;
  if (ref.variant !== undefined) {
    const variants = (value as { variants?: Record<string, unknown> } | undefined)?.variants;
    if (typeof value !== 'function' || !variants || !(ref.variant in variants))
      throw new Error(`${ref.module}: no variant '${ref.variant}'`);
    value = (value as (options: unknown) => unknown)(variants[ref.variant]);
  }
  const problems = describeBackendProblems(value);
  if (problems.length > 0)
    throw new Error(
      `${ref.module}${ref.export ? ` (${ref.export})` : ''}: not an ArchBackend v1: ${problems.join('; ')}`,
    );
  return value as ArchBackend;
}

/** @internal The built worker (dist/worker.js), or undefined when running from source, where runs stay on this thread. */
export function workerFile(): URL | undefined {
  const url = new URL('./worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : undefined;
}
