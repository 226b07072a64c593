/**
 * Runs a scenario on one backend and contract: each step's result (ok, errno with errorOffset, the access fault or
 * guest exit, host down), what the kernel did meanwhile (invalidations and their cause, entries zapped, areas
 * revoked, firmware steps, hardware-state changes), the invariant violations that appeared at that step, the
 * fatal fault if one took the host down, and whether the scenario's expectation held. Steps inside a repeat are
 * folded into one record each, with counts per outcome.
 *
 * One job per module: `bindings.ts` evaluates names and arguments, `result.ts` classifies what a call gave back,
 * `effects.ts` collects the events, `violations.ts` diffs the invariant checks, `expect.ts` judges expectations,
 * `verdict.ts` names the outcome; the words for people come from `../format/labels.ts`. This module runs the steps
 * in order and folds each into its record.
 */
import { createHost, type ArchBackend, type CrashRecord, type Device, type GmemEvent, type Host } from '@gmemlab/core';
import { argsText, labelOf, outcomeLabel, rawSteps } from '../format/labels.js';
import { hostOptionsFor, skipReason, type Design } from './designs.js';
import { CALLS } from '../scenario/calls.js';
import { evaluate } from '../scenario/expr.js';
import type { CallStep, ExpectCase, Scenario, Step } from '../scenario/load.js';
import { iterate } from '../scenario/repeat.js';
import { Bindings } from './bindings.js';
import { addEvents, emptyEffects, mergeEffects } from './effects.js';
import { caseMatches, judge } from './expect.js';
import { resultOfError, resultOfValue } from './result.js';
import type { RunResult, StepEffects, StepRecord, StepResult, ViolationSummary } from './types.js';
import { stepOutcome, worse, type Outcome as Verdict } from './verdict.js';
import { throughUnsafeIopte, ViolationDiff } from './violations.js';

export interface RunOptions {
  /** Attach page maps after each top-level step (default true). */
  pageMaps?: boolean;
}

/** One call, once: what it gave back, what the kernel did, what broke, and how it stands against `expect:`. */
interface CallOutcome {
  result: StepResult;
  effects: StepEffects;
  fresh: ViolationSummary[];
  crash: CrashRecord | undefined;
  chosen: ExpectCase | undefined;
  failure: string | undefined;
  outcome: Verdict;
}

/** A scenario's run on one host: the names it binds, the events of the current call, the violations seen. */
class Run {
  readonly host: Host;
  readonly bindings: Bindings;
  private readonly events: GmemEvent[] = [];
  private readonly unsubscribe: () => void;
  private readonly violations = new ViolationDiff();
  readonly violationKinds = new Set<string>();

  constructor(
    scenario: Scenario,
    private readonly backend: ArchBackend,
    private readonly contract: Design,
  ) {
    // A scenario describes what the VMM, guest and devices do; the design is the kernel's, so every scenario runs
    // under every design asked for (its `contracts:` only picks `run`'s default); today's path is a host option
    // of its own world (run/designs.ts).
    this.host = createHost({ backend, ...hostOptionsFor(contract, scenario.host) });
    this.bindings = new Bindings(scenario);
    this.unsubscribe = this.host.events.subscribe((event) => {
      if (event.type !== 'call' && event.type !== 'access') this.events.push(event);
    });
  }

  /** Make the step's call once and account for it. */
  call(step: CallStep): CallOutcome {
    const spec = CALLS[step.call]!;
    this.events.length = 0;
    const wasDown = this.host.crashed !== undefined;
    let result: StepResult;
    let dma: { device: Device; iova: number; length: number } | undefined;
    try {
      const receiver = this.bindings.receiver(spec, step, this.host);
      const args = this.bindings.arguments(spec, step);
      if (/^device\.dma/.test(step.call))
        dma = { device: receiver as Device, iova: Number(args.iova), length: Number(args.length) };
      const value = spec.run(receiver, args);
      result = resultOfValue(value);
      this.bindings.bind(step.as, value, result.kind !== 'fault');
    } catch (error) {
      this.bindings.bind(step.as, undefined, false);
      result = resultOfError(error);
    }
    const effects = emptyEffects();
    addEvents(effects, this.events);
    const current = this.host.checkInvariants();
    const fresh = this.violations.next(current);
    for (const v of fresh) this.violationKinds.add(v.kind);
    const crash = !wasDown && this.host.crashed ? this.host.crashed : undefined;
    const outcome = stepOutcome(
      { result, call: step.call, ...(crash ? { crash } : {}) },
      dma !== undefined && result.kind === 'ok' && throughUnsafeIopte(dma, current),
    );
    const chosen = step.expect?.find((c) => caseMatches(c, this.backend.id, this.contract));
    const failure = judge(chosen, result, fresh, this.bindings.lookup);
    return { result, effects, fresh, crash, chosen, failure, outcome };
  }

  end(): void {
    this.unsubscribe();
  }
}

/** A step's record before its first call. */
function emptyRecord(step: CallStep, raw: Record<string, unknown>): StepRecord {
  return {
    path: step.path,
    call: step.call,
    kernel: CALLS[step.call]!.kernel,
    ...(step.on !== undefined ? { on: step.on } : {}),
    ...(step.as !== undefined ? { as: step.as } : {}),
    ...(step.note !== undefined ? { note: step.note } : {}),
    args: argsText(step, raw),
    result: { kind: 'ok' },
    label: '',
    effects: emptyEffects(),
    violations: [],
    verdict: 'none',
  };
}

/** Fold one call into its step's record: a repeated step keeps the worst outcome, the first failure, every count. */
function fold(rec: StepRecord, r: CallOutcome, lookup: (name: string) => bigint | undefined, iteration?: number): void {
  rec.result = r.result;
  rec.label = labelOf(r.result);
  if (rec.outcome === undefined || worse(r.outcome, rec.outcome)) rec.outcome = r.outcome;
  mergeEffects(rec.effects, r.effects);
  for (const v of r.fresh) if (rec.violations.length < 32) rec.violations.push(v);
  if (r.crash) rec.crash = r.crash;
  if (r.chosen) rec.expected = outcomeLabel(r.chosen.outcome, lookup);
  if (r.failure !== undefined) {
    if (rec.verdict !== 'fail')
      rec.failure = iteration === undefined ? r.failure : `iteration ${iteration}: ${r.failure}`;
    rec.verdict = 'fail';
  } else if (rec.verdict === 'none' && r.chosen) rec.verdict = 'pass';
  if (rec.outcomes) rec.outcomes[rec.label] = (rec.outcomes[rec.label] ?? 0) + 1;
}

export function runScenario(
  scenario: Scenario,
  backend: ArchBackend,
  contract: Design,
  options: RunOptions = {},
): RunResult {
  const started = performance.now();
  // A scenario belongs to one world: in-place conversion (the three designs) or today's path (run/designs.ts).
  const skipped = skipReason(contract, scenario.host);
  if (skipped !== undefined)
    return {
      scenario: { id: scenario.id, title: scenario.title, file: scenario.file },
      arch: backend.id,
      archName: backend.name,
      contract,
      skipped,
      steps: [],
      ok: true,
      failures: 0,
      violationKinds: [],
      counters: {},
      elapsedMs: 0,
    };
  const run = new Run(scenario, backend, contract);
  const { host, bindings } = run;
  const raws = rawSteps(scenario.raw);
  const steps: StepRecord[] = [];

  /** The steps of a repeat, each folded into one record per path across iterations. */
  const runRepeated = (list: readonly Step[], records: Map<string, StepRecord>, iteration: number) => {
    for (const step of list) {
      if (step.kind === 'call') {
        let rec = records.get(step.path);
        if (!rec) {
          rec = { ...emptyRecord(step, raws.get(step.path) ?? {}), times: 0, outcomes: {} };
          records.set(step.path, rec);
        }
        rec.times! += 1;
        fold(rec, run.call(step), bindings.lookup, iteration);
      } else {
        iterate(bindings.counters, step.counter, Number(evaluate(step.times, bindings.lookup)), (i) =>
          runRepeated(step.steps, records, i),
        );
      }
    }
  };

  for (const step of scenario.steps) {
    if (step.kind === 'call') {
      const rec = emptyRecord(step, raws.get(step.path) ?? {});
      fold(rec, run.call(step), bindings.lookup);
      steps.push(rec);
    } else {
      const records = new Map<string, StepRecord>();
      iterate(bindings.counters, step.counter, Number(evaluate(step.times, bindings.lookup)), (i) =>
        runRepeated(step.steps, records, i),
      );
      const ordered = [...records.values()].sort((a, b) => comparePaths(a.path, b.path));
      if (step.note && ordered[0]) ordered[0].note = ordered[0].note ? `${step.note}; ${ordered[0].note}` : step.note;
      steps.push(...ordered);
    }
    if (options.pageMaps !== false && steps.length > 0) steps[steps.length - 1]!.pages = host.pageMaps();
  }
  run.end();
  const failures = steps.filter((s) => s.verdict === 'fail').length;
  return {
    scenario: { id: scenario.id, title: scenario.title, file: scenario.file },
    arch: backend.id,
    archName: backend.name,
    contract,
    steps,
    ok: failures === 0,
    failures,
    violationKinds: [...run.violationKinds],
    ...(host.crashed ? { crashed: host.crashed } : {}),
    counters: host.pipelineCounters(),
    ...(Object.keys(host.pipelineBounds()).length > 0 ? { bounds: host.pipelineBounds() } : {}),
    elapsedMs: Math.round(performance.now() - started),
  };
}

/** Step paths in document order: '2' < '3.1' < '3.2' < '10'. */
function comparePaths(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
