/**
 * A trace, written as a scenario of the demo's format (`gmemlab run` replays it): the world's setup steps, then
 * one step per action, each with the `expect:` its replay on the same architecture and design must meet — the outcome it had (ok, the errno, the
 * fault, the frames a stale access reached) and the invariant kinds it newly broke, computed here exactly as the
 * demo's runner computes them — so a replay shows the same run step for step, and the last step shows the
 * violation (or the witnessed situation) in its note.
 */
import { violationKey, type ArchBackend, type Contract } from '@gmemlab/core';
import { alphabet, perform, type Outcome } from './actions.js';
import { ownerKinds, PROPERTIES, type PropertyName } from './properties.js';
import { createWorld, setupSteps, type ScenarioStep, type WorldConfig } from './world.js';

/** A scenario object: what a scenario file holds, as plain data. */
export interface ScenarioObject {
  title: string;
  situation: string;
  source: string[];
  contracts: Contract[];
  steps: ScenarioStep[];
}

/** The demo runner's key for a violation: a step's violations are those whose key the previous step lacked. */

/**
 * What a step must do, in the scenario format: 'ok', an errno, a fault, with reached frames and new violations,
 * qualified by the architecture and design the trace was found on (issue 17): replayed with another `--arch`, a
 * step has no expectation there and is reported as what happened, not as a failed expectation.
 */
function expectation(outcome: Outcome, fresh: readonly string[], arch: string, contract: Contract): unknown {
  const violations = [...new Set(fresh)];
  const access = outcome.kind === 'ok' ? outcome.access : outcome.kind === 'fault' ? outcome.access : undefined;
  const reaches = ownerKinds(access);
  const extra = { ...(reaches.length > 0 ? { reaches } : {}), ...(violations.length > 0 ? { violations } : {}) };
  const on = { arch, contract };
  switch (outcome.kind) {
    case 'ok':
      return [{ ...on, ok: true, ...extra }];
    case 'errno':
      return [
        {
          ...on,
          errno: outcome.error.errno,
          ...(outcome.error.errorOffset !== undefined ? { errorOffset: outcome.error.errorOffset } : {}),
          ...extra,
        },
      ];
    case 'fault':
      return [{ ...on, fault: outcome.access.fault, ...(outcome.access.fatal ? { fatal: true } : {}), ...extra }];
  }
}

export interface ScenarioOptions {
  backend: ArchBackend;
  contract: Contract;
  world: WorldConfig;
  /** Action ids, as a search result gives them. */
  trace: readonly string[];
  property: PropertyName;
  /** A counterexample (the property is violated at the last step) or a witness (the situation arises there). */
  kind: 'counterexample' | 'witness';
  /** What the last step shows, in words (the search result's note). */
  note?: string;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Describe a world configuration in words. */
export function describeWorld(world: WorldConfig): string {
  return `one confidential VM with a guest_memfd of ${plural(world.pages, 'page')} (INIT_SHARED, MMAP) bound at GPA 0, one IOAS with at most ${plural(world.maxAreas, 'area')} (${world.pages > 1 ? 'one page each, or the whole file' : 'one page each'}) and one device, and a second VM whose guest_memfd of ${plural(world.vm2Pages, 'page')} takes freed frames`;
}

/** Write a trace as a scenario, replaying it to record each step's outcome. */
export function scenarioOf(options: ScenarioOptions): ScenarioObject {
  const { backend, contract, world: config, trace, property, kind } = options;
  const actions = alphabet(config);
  const byId = new Map(actions.map((a) => [a.id, a]));
  const world = createWorld(config, backend, contract);
  let known = new Set(world.host.checkInvariants().map(violationKey));
  const steps: ScenarioStep[] = setupSteps(config);
  trace.forEach((id, i) => {
    const action = byId.get(id);
    if (!action) throw new RangeError(`unknown action '${id}' for this world`);
    if (!action.enabled(world))
      throw new RangeError(
        `action '${id}' (step ${i + 1}) is not enabled there: the trace does not belong to this world`,
      );
    const step = { ...action.step(world) };
    const outcome = perform(world, action);
    const current = world.host.checkInvariants();
    const fresh = current.filter((v) => !known.has(violationKey(v))).map((v) => v.kind);
    known = new Set(current.map(violationKey));
    step.expect = expectation(outcome, fresh, backend.id, contract);
    if (i === trace.length - 1)
      step.note = `${property} ${kind === 'counterexample' ? 'violated' : 'witness'}: ${options.note ?? ''}`
        .trim()
        .replace(/:$/, '');
    steps.push(step);
  });
  const definition = PROPERTIES.find((p) => p.name === property)!;
  const words = plural(trace.length, 'step');
  const situation =
    kind === 'counterexample'
      ? `Found by gmemlab explore (breadth-first, so no shorter trace exists): ${words} after the setup break ${property}, which requires that ${definition.always}. ${options.note ? `At the last step ${options.note}.` : ''} The world: ${describeWorld(config)}; ${backend.name} (${backend.id}), contract ${contract}.`
      : `Found by gmemlab explore (breadth-first, so no shorter trace exists): ${words} after the setup reach the situation ${property} guards, ${definition.sometimes}, so the property is not vacuous. The world: ${describeWorld(config)}; ${backend.name} (${backend.id}), contract ${contract}.`;
  return {
    title: `${property} ${kind === 'counterexample' ? 'violated' : 'witnessed'} on ${backend.id} under ${contract} (${words})`,
    situation: situation.replace(/\s+/g, ' ').trim(),
    source: [`gmemlab explore: ${property}`, definition.source],
    contracts: [contract],
    steps,
  };
}
