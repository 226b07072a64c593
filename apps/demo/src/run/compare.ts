/**
 * The matrix: every scenario on every architecture under every contract, each run independent (a fresh host).
 */
import type { ArchBackend } from '@gmemlab/core';
import { DESIGNS, skipReason, type Design } from './designs.js';
import type { Scenario } from '../scenario/load.js';
import { runScenario, type RunOptions } from './runner.js';
import type { Comparison, ScenarioInfo } from './types.js';
import { VERSION } from '../version.js';
import { verdictMatrix } from './verdict.js';

export function scenarioInfo(s: Scenario): ScenarioInfo {
  return {
    id: s.id,
    title: s.title,
    situation: s.situation,
    source: s.source,
    file: s.file,
    ...(s.contracts ? { contracts: s.contracts } : {}),
  };
}

export function compare(
  scenarios: readonly Scenario[],
  backends: readonly ArchBackend[],
  contracts: readonly Design[] = DESIGNS,
  options: RunOptions & { onRun?: (done: number, total: number) => void } = {},
): Comparison {
  // A column no scenario of this comparison runs in (the 'today' column of in-place scenarios, the designs of
  // today's-path ones) is left out, unless that would leave none: then every run says why it did not run.
  const live = contracts.filter((design) => scenarios.some((s) => skipReason(design, s.host) === undefined));
  if (live.length > 0) contracts = live;
  const runs = [];
  const total = scenarios.length * backends.length * contracts.length;
  for (const scenario of scenarios) {
    for (const contract of contracts) {
      for (const backend of backends) {
        runs.push(runScenario(scenario, backend, contract, options));
        options.onRun?.(runs.length, total);
      }
    }
  }
  const comparison: Comparison = {
    tool: `@gmemlab/demo ${VERSION}`,
    scenarios: scenarios.map(scenarioInfo),
    archs: backends.map((b) => ({ id: b.id, name: b.name })),
    contracts: [...contracts],
    runs,
    exitCode: runs.every((r) => r.ok) ? 0 : 1,
  };
  // The verdict first in the JSON too (scripts read it without walking the runs).
  const { runs: all, exitCode, ...head } = comparison;
  return { ...head, verdict: verdictMatrix(comparison), runs: all, exitCode };
}
