/**
 * `pnpm bench`'s property-test row: the sequences of calls.ts for a time budget (GMEMLAB_BENCH_BUDGET seconds),
 * round-robin over both contract modes with the neutral backend and every backend package, one sequence in five
 * with listeners that throw, as random-calls.test.ts runs them. Counts calls per second with everything a call
 * costs there: generating its arguments, the snapshot before it, the checks after it. Writes the result to
 * GMEMLAB_BENCH_OUT. Matches only vitest.throughput.config.ts.
 */
import { writeFileSync } from 'node:fs';
import { CONTRACTS, type ArchBackend, type Contract } from '@gmemlab/core';
import fc from 'fast-check';
import { it } from 'vitest';
import { BACKENDS, runSequence, sequences, stats, throwingListeners, withoutNoops } from './calls.js';

const BUDGET_S = Number(process.env.GMEMLAB_BENCH_BUDGET ?? 5);
const ROUND_RUNS = 25;
const listeners = fc.option(throwingListeners, { freq: 4 });
const CONFIGS: Array<{ contract: Contract; backend: ArchBackend | undefined }> = CONTRACTS.flatMap((contract) =>
  [undefined, ...BACKENDS].map((backend) => ({ contract, backend })),
);

it(`property-test calls per second for ${BUDGET_S} s`, () => {
  const started = performance.now();
  // CPU time of this process (vitest's worker), garbage collection threads included: the rate per CPU-second
  // is what stays comparable when other processes load the machine.
  const cpuBefore = process.cpuUsage();
  const deadline = started + BUDGET_S * 1000;
  const calls = stats.calls;
  const failures: string[] = [];
  let sequencesRun = 0;
  for (let round = 0; performance.now() < deadline; round++) {
    const config = CONFIGS[round % CONFIGS.length]!;
    const result = fc.check(
      fc.property(sequences, listeners, (sequence, plan) =>
        runSequence(config.contract, withoutNoops(sequence), { backend: config.backend, listeners: plan }),
      ),
      { numRuns: ROUND_RUNS, seed: round, endOnFailure: true },
    );
    sequencesRun += result.numRuns;
    if (result.failed) {
      const message =
        result.errorInstance instanceof Error
          ? result.errorInstance.message.split('\n')[0]
          : String(result.errorInstance);
      failures.push(`${config.backend?.id ?? 'sw-protected'}/${config.contract}, seed ${round}: ${message}`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const result = {
    calls: stats.calls - calls,
    seconds,
    cpuSeconds,
    sequences: sequencesRun,
    configurations: CONFIGS.length,
    failures,
  };
  if (process.env.GMEMLAB_BENCH_OUT) writeFileSync(process.env.GMEMLAB_BENCH_OUT, JSON.stringify(result));
  console.log(
    `${result.calls} calls in ${seconds.toFixed(1)} s: ${Math.round(result.calls / seconds)} calls/s; ` +
      `${cpuSeconds.toFixed(1)} CPU-s: ${Math.round(result.calls / cpuSeconds)} calls per CPU-second`,
  );
});
