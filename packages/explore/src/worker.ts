/**
 * A worker thread of exploreMany: it receives jobs (the backend as a reference), runs each with explore(), and
 * posts the run back. One job at a time.
 */
import { parentPort } from 'node:worker_threads';
import { explore } from './explore.js';
import { loadBackendRef, type BackendRef, type ExploreJob } from './parallel.js';

parentPort?.on('message', async ({ id, job }: { id: number; job: ExploreJob }) => {
  try {
    const backend = await loadBackendRef(job.backend as BackendRef);
    parentPort!.postMessage({ id, run: explore({ ...job, backend }) });
  } catch (error) {
    parentPort!.postMessage({ id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
});
