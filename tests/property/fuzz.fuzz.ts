/**
 * `pnpm fuzz [--budget <seconds>] [--seed <n>]`: the property tests of calls.ts for a time budget instead of a
 * fixed count. Not part of `pnpm test` (CI runs random-calls.test.ts, ~100k calls): this file matches only
 * vitest.fuzz.config.ts, which scripts/fuzz.mjs runs.
 *
 * The budget is spent in rounds of ROUND_RUNS sequences, going round-robin over every configuration (the round's
 * seed picks it, so that `--seed` replays a round): both
 * contract modes, with the neutral backend and every backend package's variants, each sequence with or without
 * event listeners that throw at random points. A failing sequence (an escape: a non-GmemError exception; a
 * failed call that changed the model; an invariant break; an invalidation left open) is shrunk by fast-check
 * (with no time limit on shrinking) and reported step by step with the seed that replays it.
 */
import type { ArchBackend, Contract } from '@gmemlab/core';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { BACKENDS, runSequence, sequences, stats, throwingListeners, withoutNoops, type Step, type ThrowingListeners } from './calls.js';

const BUDGET_S = Number(process.env.GMEMLAB_FUZZ_BUDGET ?? 60);
const SEED = process.env.GMEMLAB_FUZZ_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.GMEMLAB_FUZZ_SEED);
const ROUND_RUNS = 25;

interface Config {
  contract: Contract;
  backend: ArchBackend | undefined;
}

const CONFIGS: Config[] = (['gmem-registry', 'vmm-driven'] as const).flatMap((contract) =>
  [undefined, ...BACKENDS].map((backend) => ({ contract, backend })),
);

const label = (c: Config) => `${c.backend?.id ?? 'sw-protected'}/${c.contract}`;
/** Half the sequences run with listeners that throw at random points. */
const listeners = fc.option(throwingListeners, { freq: 2 });

function describePlan(plan: ThrowingListeners | null): string {
  return plan ? `a listener throwing on one in ${plan.every} of the [${plan.types.join(', ')}] events after the first ${plan.skip}` : 'no throwing listener';
}

it(`fuzz for ${BUDGET_S} s`, () => {
  expect(Number.isFinite(BUDGET_S) && BUDGET_S > 0, 'GMEMLAB_FUZZ_BUDGET must be a positive number of seconds').toBe(true);
  const started = Date.now();
  const deadline = started + BUDGET_S * 1000;
  const perConfig = new Map<string, { calls: number; sequences: number }>();
  let round = 0;
  let sequencesRun = 0;
  let failure: string | undefined;
  while (Date.now() < deadline) {
    // The round's seed picks its configuration too, so that `--seed` alone replays a round.
    const seed = (SEED + round) % 2 ** 31;
    const config = CONFIGS[seed % CONFIGS.length]!;
    const callsBefore = stats.calls;
    const result = fc.check(
      fc.property(sequences, listeners, (sequence: Step[], plan) => runSequence(config.contract, withoutNoops(sequence), { backend: config.backend, listeners: plan })),
      { numRuns: ROUND_RUNS, seed },
    );
    const entry = perConfig.get(label(config)) ?? { calls: 0, sequences: 0 };
    entry.calls += stats.calls - callsBefore;
    entry.sequences += result.numRuns;
    perConfig.set(label(config), entry);
    sequencesRun += result.numRuns;
    round++;
    if (result.failed) {
      const [sequence, plan] = result.counterexample as [Step[], ThrowingListeners | null];
      const shown = withoutNoops(sequence);
      const error = result.errorInstance;
      failure = [
        `FOUND in ${label(config)} (seed ${seed}, path ${result.counterexamplePath}; ${result.numShrinks} shrinks), ${describePlan(plan)}:`,
        ...shown.map((s, i) => `  ${String(i + 1).padStart(3)}. ${s.name}`),
        `  -> ${error instanceof Error ? error.message : String(error)}`,
        `replay: pnpm fuzz --seed ${seed} --budget 1 (the first round replays this one, before shrinking)`,
      ].join('\n');
      break;
    }
  }
  const seconds = (Date.now() - started) / 1000;
  const lines = [
    `fuzz: ${stats.calls} calls in ${sequencesRun} sequences (${round} rounds, seed ${SEED}) in ${seconds.toFixed(1)} s: ${Math.round(stats.calls / seconds)} calls/s; ${stats.listenerThrows} listener exceptions absorbed`,
    ...[...perConfig].map(([name, e]) => `  ${name.padEnd(34)} ${String(e.calls).padStart(9)} calls in ${e.sequences} sequences`),
    failure ?? 'found: nothing (no escape, no failed call that changed the model, no invariant break, no invalidation left open)',
  ];
  console.log(lines.join('\n'));
  expect(failure, failure).toBeUndefined();
});
