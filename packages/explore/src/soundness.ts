/**
 * A check of the canonical form's soundness, for tests: two traces whose states the search merged (equal
 * canonical forms) must agree on everything a property can see — the state predicates, whether the host is
 * down, which actions are enabled, and for every action one step further: its outcome, the properties it
 * violates and witnesses, and the canonical form of the state it leads to. One step of lookahead from states
 * that agree is the induction step of a bisimulation: applied to every merge the search makes, it shows the
 * merged states cannot be told apart by any property on any trace.
 */
import type { ArchBackend, Contract } from '@gmemlab/core';
import { alphabet, perform, type Outcome } from './actions.js';
import { canonicalState } from './canonical.js';
import { before, checkState, checkTransition, ownerKinds } from './properties.js';
import { deepEqual, replay, snapshotOf, withoutStackTraces } from './search.js';
import { worldConfig, type WorldConfig } from './world.js';

export interface MergeCheckOptions {
  backend: ArchBackend;
  contract: Contract;
  world?: Partial<WorldConfig>;
}

/** What an outcome shows a property: its kind, errno or fault, fatality, and whose frames it reached. */
function outcomeSummary(outcome: Outcome): string {
  switch (outcome.kind) {
    case 'errno':
      return `errno ${outcome.error.errno}${outcome.error.errorOffset !== undefined ? `@${outcome.error.errorOffset}` : ''}`;
    case 'fault':
      return `fault ${outcome.access.fault}${outcome.access.fatal ? ' fatal' : ''} reached ${ownerKinds(outcome.access).sort().join(',')}`;
    case 'ok':
      return `ok reached ${ownerKinds(outcome.access).sort().join(',')}`;
  }
}

/**
 * The differences between the states two traces (action ids) reach, as a property can see them, looking one
 * action ahead; [] when they agree.
 */
export function mergeDifferences(
  options: MergeCheckOptions,
  first: readonly string[],
  other: readonly string[],
): string[] {
  const config = worldConfig(options.world);
  const actions = alphabet(config);
  const index = new Map(actions.map((a, i) => [a.id, i]));
  const indices = (trace: readonly string[]) => trace.map((id) => index.get(id)!);
  const [ta, tb] = [indices(first), indices(other)];
  const at = () => replay(config, options.backend, options.contract, actions, ta);
  const bt = () => replay(config, options.backend, options.contract, actions, tb);
  const differences: string[] = [];
  return withoutStackTraces(() => {
    const wa = at();
    const wb = bt();
    const ca = canonicalState(wa, snapshotOf(wa));
    const cb = canonicalState(wb, snapshotOf(wb));
    if (ca !== cb) differences.push('the canonical forms differ');
    const sa = checkState(wa)
      .violated.map(([p]) => p)
      .join(',');
    const sb = checkState(wb)
      .violated.map(([p]) => p)
      .join(',');
    if (sa !== sb) differences.push(`state predicates: ${sa || 'none'} vs ${sb || 'none'}`);
    if (Boolean(wa.host.crashed) !== Boolean(wb.host.crashed)) differences.push('one host is down');
    if (wa.host.crashed || wb.host.crashed) return differences;
    for (let x = 0; x < actions.length; x++) {
      const action = actions[x]!;
      const ea = action.enabled(wa);
      if (ea !== action.enabled(wb)) {
        differences.push(`${action.id}: enabled in one only`);
        continue;
      }
      if (!ea) continue;
      const step = (make: () => ReturnType<typeof at>) => {
        const world = make();
        const snapshot = snapshotOf(world);
        const facts = before(world, action, snapshot);
        const outcome = perform(world, action);
        const after = snapshotOf(world);
        const findings = checkTransition(
          world,
          options.backend,
          options.contract,
          action,
          outcome,
          facts,
          after,
          deepEqual(after, snapshot),
        );
        return {
          outcome: outcomeSummary(outcome),
          violated: findings.violated
            .map(([p]) => p)
            .sort()
            .join(','),
          witnessed: findings.witnessed
            .map(([p]) => p)
            .sort()
            .join(','),
          state: canonicalState(world, after),
          predicates: checkState(world)
            .violated.map(([p]) => p)
            .join(','),
        };
      };
      const ra = step(at);
      const rb = step(bt);
      for (const key of ['outcome', 'violated', 'witnessed', 'predicates'] as const) {
        if (ra[key] !== rb[key]) differences.push(`${action.id}: ${key} ${ra[key] || 'none'} vs ${rb[key] || 'none'}`);
      }
      if (ra.state !== rb.state) differences.push(`${action.id}: the successors' canonical forms differ`);
    }
    return differences;
  });
}
