/**
 * `pnpm fuzz [--budget <seconds>] [--seed <n>]`: the property tests of calls.ts for a time budget instead of a
 * fixed count. Not part of `pnpm test` (CI runs random-calls.test.ts, ~100k calls): this file matches only
 * vitest.fuzz.config.ts, which scripts/fuzz.mjs runs.
 *
 * The budget is spent in rounds of ROUND_RUNS sequences, going round-robin over every configuration (the round's
 * seed picks it, so that `--seed` replays a round): both
 * contract modes, with the neutral backend and every backend package's variants and optional readings, each sequence with or without
 * event listeners that throw at random points. A failing sequence (an escape: a non-GmemError exception; a
 * failed call that changed the model; an invariant break; an invalidation left open) is shrunk by fast-check
 * (with no time limit on shrinking) and reported step by step with the seed that replays it; the fuzz then goes
 * on until the budget is spent, and reports each distinct failure once (with how many rounds hit it).
 */
import { CONTRACTS, type ArchBackend, type Contract } from '@gmemlab/core';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import {
  BACKEND_READINGS,
  BACKENDS,
  runSequence,
  SequenceOverBudget,
  sequences,
  stats,
  throwingListeners,
  withoutNoops,
  type Step,
  type ThrowingListeners,
} from './calls.js';

const BUDGET_S = Number(process.env.GMEMLAB_FUZZ_BUDGET ?? 60);
const SEED = process.env.GMEMLAB_FUZZ_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.GMEMLAB_FUZZ_SEED);
const ROUND_RUNS = 25;

interface Config {
  contract: Contract;
  backend: ArchBackend | undefined;
}

const CONFIGS: Config[] = CONTRACTS.flatMap((contract) =>
  [undefined, ...BACKENDS, ...BACKEND_READINGS].map((backend) => ({ contract, backend })),
);

const label = (c: Config) => `${c.backend?.id ?? 'sw-protected'}/${c.contract}`;
/** Half the sequences run with listeners that throw at random points. */
const listeners = fc.option(throwingListeners, { freq: 2 });

function describePlan(plan: ThrowingListeners | null): string {
  return plan
    ? `a listener throwing on one in ${plan.every} of the [${plan.types.join(', ')}] events after the first ${plan.skip}`
    : 'no throwing listener';
}

/** What a failure is, without its arguments and numbers: the same bug found twice reads the same. */
function failureKey(config: Config, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return `${config.contract}|${message
    .split('\n')[0]!
    .replace(/\(\{.*?\}\)|\([^)]*\)/g, '()')
    .replace(/\d+/g, '#')
    .slice(0, 160)}`;
}

it(`fuzz for ${BUDGET_S} s`, () => {
  expect(Number.isFinite(BUDGET_S) && BUDGET_S > 0, 'GMEMLAB_FUZZ_BUDGET must be a positive number of seconds').toBe(
    true,
  );
  const started = Date.now();
  const deadline = started + BUDGET_S * 1000;
  const perConfig = new Map<string, { calls: number; sequences: number }>();
  /** Distinct failures, in the order found: the first one shrunk, and how many rounds hit it again. */
  const found = new Map<string, { report: string; rounds: number }>();
  /** Sequences that ran past their time budget (SequenceOverBudget): reported with their seed, not shrunk. */
  const slow: string[] = [];
  let round = 0;
  let sequencesRun = 0;
  let searchCalls = 0;
  let shrinkCalls = 0;
  let shrinkMs = 0;
  while (Date.now() < deadline) {
    // The round's seed picks its configuration too, so that `--seed` alone replays a round.
    const seed = (SEED + round) % 2 ** 31;
    const config = CONFIGS[seed % CONFIGS.length]!;
    let failedAt: number | undefined;
    const result = fc.check(
      fc.property(sequences, listeners, (sequence: Step[], plan) => {
        const before = stats.calls;
        // Calls made while fast-check shrinks a failure (every run after the first failing one) are not search.
        const shrinking = failedAt !== undefined;
        try {
          runSequence(config.contract, withoutNoops(sequence), { backend: config.backend, listeners: plan });
        } catch (error) {
          if (error instanceof SequenceOverBudget) {
            // Not a failure for fast-check to shrink: recorded, and the round goes on.
            slow.push(
              `  ${label(config)} (seed ${seed}): ${error.message}\n    replay: pnpm fuzz --seed ${seed} --budget 1`,
            );
            return;
          }
          failedAt ??= Date.now();
          throw error;
        } finally {
          if (shrinking) shrinkCalls += stats.calls - before;
          else searchCalls += stats.calls - before;
        }
      }),
      { numRuns: ROUND_RUNS, seed },
    );
    if (failedAt !== undefined) shrinkMs += Date.now() - failedAt;
    const entry = perConfig.get(label(config)) ?? { calls: 0, sequences: 0 };
    entry.sequences += result.numRuns;
    perConfig.set(label(config), entry);
    sequencesRun += result.numRuns;
    round++;
    if (result.failed) {
      const key = failureKey(config, result.errorInstance);
      const seen = found.get(key);
      if (seen) {
        seen.rounds++;
        continue;
      }
      const [sequence, plan] = result.counterexample as [Step[], ThrowingListeners | null];
      const error = result.errorInstance;
      found.set(key, {
        rounds: 1,
        report: [
          `FOUND in ${label(config)} (seed ${seed}; ${result.numShrinks} shrinks), ${describePlan(plan)}:`,
          ...withoutNoops(sequence).map((s, i) => `  ${String(i + 1).padStart(3)}. ${s.name}`),
          `  -> ${error instanceof Error ? error.message.split('\n').slice(0, 6).join('\n     ') : String(error)}`,
          `  replay: pnpm fuzz --seed ${seed} --budget 1 (its first round is this one)`,
        ].join('\n'),
      });
    }
  }
  const seconds = (Date.now() - started) / 1000;
  const searchSeconds = seconds - shrinkMs / 1000;
  const lines = [
    `fuzz: ${searchCalls} calls in ${sequencesRun} sequences (${round} rounds of ${ROUND_RUNS}, seed ${SEED}) in ${seconds.toFixed(1)} s` +
      ` (${searchSeconds.toFixed(1)} s searching: ${Math.round(searchCalls / searchSeconds)} calls/s; ${(shrinkMs / 1000).toFixed(1)} s and ${shrinkCalls} calls shrinking)`,
    `  ${stats.listenerThrows} listener exceptions absorbed; ${stats.crashes} sequences ended by a host crash`,
    ...[...perConfig].map(([name, e]) => `  ${name.padEnd(38)} ${String(e.sequences).padStart(6)} sequences`),
  ];
  if (slow.length > 0)
    lines.push(
      `slow: ${slow.length} sequence${slow.length > 1 ? 's' : ''} ran past the time budget (a spin, or a machine too busy; GMEMLAB_SEQUENCE_BUDGET_MS sets it):`,
      ...slow.slice(0, 10),
      ...(slow.length > 10 ? [`  and ${slow.length - 10} more`] : []),
    );
  if (found.size === 0)
    lines.push(
      'found: nothing (no escape, no failed call that changed the model, no invariant break, no invalidation left open)',
    );
  else {
    lines.push(`found: ${found.size} distinct failure${found.size > 1 ? 's' : ''}`);
    for (const f of found.values())
      lines.push(f.report + (f.rounds > 1 ? `\n  (${f.rounds} rounds failed this way)` : ''));
  }
  console.log(lines.join('\n'));
  expect(found.size, `pnpm fuzz found ${found.size} failure(s): see the report above`).toBe(0);
  expect(slow.length, `pnpm fuzz: ${slow.length} sequence(s) ran past the time budget: see the report above`).toBe(0);
});
