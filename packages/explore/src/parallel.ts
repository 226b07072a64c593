/**
 * Many runs at once: one run (an architecture under a contract) per job, spread over worker threads, one run per
 * worker at a time. A backend crosses into a worker as a reference (a module to import, the export, the variant)
 * since functions cannot be sent; a job whose backend is an object runs on the calling thread. Results come back
 * in job order, whatever finished first: the same jobs give the same results.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describeBackendProblems, type ArchBackend } from '@gmemlab/core';
import { explore, type ExploreOptions, type ExploreRun } from './explore.js';

/** Where a worker finds a backend: `(await import(module))[export ?? 'default']`, then `factory(factory.variants[variant])`. */
export interface BackendRef {
  /** A module specifier the worker can import: a file URL or an absolute path is safest. */
  module: string;
  /** The export holding the backend or its factory (default: the default export). */
  export?: string;
  /** A published variant key: the export is a factory and `variants[variant]` its options. */
  variant?: string;
}

export type ExploreJob = Omit<ExploreOptions, 'backend'> & { backend: ArchBackend | BackendRef };

export interface ExploreManyOptions {
  /** Worker threads (default: the machine's available parallelism, at most one per job). 0 or 1: none. */
  workers?: number;
  /** Called as each run ends, with the number of runs done. */
  onRun?: (done: number, total: number, run: ExploreRun) => void;
}

const isRef = (backend: ArchBackend | BackendRef): backend is BackendRef =>
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

/** The built worker (dist/worker.js), or undefined when running from source, where runs stay on this thread. */
function workerFile(): URL | undefined {
  const url = new URL('./worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : undefined;
}

interface Reply {
  id: number;
  run?: ExploreRun;
  error?: string;
}

export async function exploreMany(
  jobs: readonly ExploreJob[],
  options: ExploreManyOptions = {},
): Promise<ExploreRun[]> {
  const results = new Array<ExploreRun>(jobs.length);
  let done = 0;
  const finish = (index: number, run: ExploreRun) => {
    results[index] = run;
    done++;
    options.onRun?.(done, jobs.length, run);
  };
  const file = workerFile();
  const remote = file ? jobs.map((job, index) => ({ job, index })).filter(({ job }) => isRef(job.backend)) : [];
  const local = jobs
    .map((job, index) => ({ job, index }))
    .filter(({ index }) => !remote.some((r) => r.index === index));
  const count = Math.min(options.workers ?? availableParallelism(), remote.length);

  let pool: Promise<void> = Promise.resolve();
  if (count > 1 || (count === 1 && local.length > 0)) {
    const queue = [...remote];
    pool = Promise.all(
      Array.from(
        { length: count },
        () =>
          new Promise<void>((resolve, reject) => {
            const worker = new Worker(file!);
            let current: (typeof queue)[number] | undefined;
            const next = () => {
              current = queue.shift();
              if (!current) {
                void worker.terminate();
                resolve();
                return;
              }
              worker.postMessage({ id: current.index, job: current.job });
            };
            worker.on('message', (reply: Reply) => {
              if (reply.error !== undefined || !reply.run) {
                void worker.terminate();
                reject(new Error(`exploring ${describeJob(jobs[reply.id]!)} failed: ${reply.error ?? 'no result'}`));
                return;
              }
              finish(reply.id, reply.run);
              next();
            });
            worker.on('error', (error) => reject(error));
            next();
          }),
      ),
    ).then(() => undefined);
  } else {
    local.push(...remote);
    local.sort((a, b) => a.index - b.index);
  }
  let failure: unknown;
  try {
    for (const { job, index } of local) {
      const backend = isRef(job.backend) ? await loadBackendRef(job.backend) : job.backend;
      finish(index, explore({ ...job, backend }));
    }
  } catch (error) {
    failure = error;
  }
  await pool;
  if (failure !== undefined) throw failure;
  return results;
}

function describeJob(job: ExploreJob): string {
  const backend = job.backend;
  const name = isRef(backend) ? `${backend.module}${backend.variant ? `:${backend.variant}` : ''}` : backend.id;
  return `${name} under ${job.contract}`;
}
