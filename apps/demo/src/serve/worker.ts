/**
 * One comparison of `gmemlab serve`, off the request thread (built as dist/serve-worker.js). The server starts one
 * worker per POST /api/compare and terminates it when the client goes away, so a long comparison neither blocks
 * the other routes nor outlives its request. The worker loads the backends as the server did (the same config
 * file, the same working directory: backends are code, not data, and do not cross a thread), runs the scenarios
 * it is given and answers the Comparison as JSON text (serialised here, not on the request thread).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Design } from '../run/designs.js';
import { loadBackends, selectArchs } from '../backends.js';
import { compare } from '../run/compare.js';
import type { Scenario } from '../scenario/load.js';

export interface CompareJob {
  config?: string;
  cwd: string;
  scenarios: Scenario[];
  archs: string[];
  contracts: Design[];
}

export type CompareAnswer = { ok: true; json: string } | { ok: false; message: string };

const job = workerData as CompareJob;
try {
  const set = await loadBackends({ cwd: job.cwd, ...(job.config !== undefined ? { config: job.config } : {}) });
  const comparison = compare(job.scenarios, selectArchs(set, job.archs.join(',')), job.contracts, { pageMaps: true });
  parentPort!.postMessage({ ok: true, json: JSON.stringify(comparison) } satisfies CompareAnswer);
} catch (error) {
  parentPort!.postMessage({
    ok: false,
    message: error instanceof Error ? error.message : String(error),
  } satisfies CompareAnswer);
}
