/**
 * A worker thread of exploreMany and of the threaded search. For exploreMany it receives jobs (the backend as a
 * reference), runs each with explore(), and posts the run back, one job at a time. For the threaded search it
 * receives the search's settings once, then chunks of a level to expand (threads.ts). Messages are answered in the
 * order they came: a chunk never overtakes the settings, whose backend is imported asynchronously.
 */
import { parentPort } from 'node:worker_threads';
import { explore } from './explore.js';
import { loadBackendRef, type BackendRef } from './backend-ref.js';
import type { ExploreJob } from './parallel.js';
import { answerSearchMessage, type SearchMessage } from './threads.js';

type Message = { id: number; job: ExploreJob; search?: undefined } | { id: number; search: SearchMessage };

const describe = (error: unknown) => (error instanceof Error ? (error.stack ?? error.message) : String(error));

let queue: Promise<void> = Promise.resolve();
parentPort?.on('message', (message: Message) => {
  queue = queue.then(async () => {
    const { id } = message;
    try {
      if (message.search) {
        const result = await answerSearchMessage(message.search);
        parentPort!.postMessage(result ? { id, result } : { id });
      } else {
        const backend = await loadBackendRef(message.job.backend as BackendRef);
        parentPort!.postMessage({ id, run: explore({ ...message.job, backend }) });
      }
    } catch (error) {
      parentPort!.postMessage({ id, error: describe(error) });
    }
  });
});
