/**
 * Many runs at once: one run (an architecture under a contract) per job, spread over worker threads, one run per
 * worker at a time. A backend crosses into a worker as a reference (a module to import, the export, the variant)
 * since functions cannot be sent; a job whose backend is an object runs on the calling thread. Results come back
 * in job order, whatever finished first: the same jobs give the same results.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ArchBackend } from '@gmemlab/core';
import { isRef, loadBackendRef, workerFile, type BackendRef } from './backend-ref.js';
import { explore, type ExploreOptions, type ExploreRun } from './explore.js';
import type { SearchOptions } from './search.js';
import { exploreThreaded } from './threads.js';

export { loadBackendRef, type BackendRef } from './backend-ref.js';

/** A run for exploreMany: its options, the backend by reference (or an object, run on this thread); progress callbacks are exploreMany's. */
export type ExploreJob = Omit<ExploreOptions, 'backend' | 'onLevel'> & { backend: ArchBackend | BackendRef };

export interface ExploreManyOptions {
  /**
   * Worker threads (default: the machine's available parallelism, at most one per job). 0 or 1: none. Given
   * explicitly (2 or more) with a single job (a backend by reference, a breadth-first search), that job's search is
   * spread over them (exploreThreaded): worth it on large worlds, not on the default one.
   */
  workers?: number;
  /** Called as each run ends, with the number of runs done. */
  onRun?: (done: number, total: number, run: ExploreRun) => void;
  /** A single job's search spread over the workers: called after each of its levels (`SearchOptions.onLevel`). */
  onLevel?: SearchOptions['onLevel'];
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
  // One search and workers asked for: the search itself is spread over them (the same result). Only when asked:
  // a worker rebuilds each state it expands, which costs more than threads give on small worlds (the default
  // world: about 2.6 times the serial search's CPU), and gains on large ones (levels of 100,000 states and more).
  const threads = options.workers;
  const only = jobs[0];
  if (
    jobs.length === 1 &&
    file &&
    threads !== undefined &&
    threads > 1 &&
    isRef(only!.backend) &&
    only!.randomWalks === undefined
  ) {
    const { randomWalks: _walks, seed: _seed, ...job } = only!;
    const onLevel = options.onLevel;
    finish(0, await exploreThreaded({ ...job, backend: only!.backend, threads, ...(onLevel ? { onLevel } : {}) }));
    return results;
  }
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
