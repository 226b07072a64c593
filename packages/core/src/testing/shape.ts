import { describeBackendProblems } from '../arch/backend.js';

/** Throw with every problem found if `backend` does not implement ArchBackend v1. */
export function checkBackendShape(backend: unknown): void {
  const problems = describeBackendProblems(backend);
  if (problems.length > 0) throw new Error(`not an ArchBackend v1: ${problems.join('; ')}`);
}
