/**
 * `gmemlab run --oracle linux`: the scenario's steps on the model and on the running kernel side by side,
 * through @gmemlab/linux's differential runner (/dev/kvm and a small C helper). Each step's kernel step is derived
 * from core's call table by @gmemlab/linux/differential (`stepOfCall`); only steps the running kernel can take
 * have one: a default VM, guest_memfd, memfd, memslots, mmaps, fallocate, reads and writes, guest accesses, and
 * KVM_SET_MEMORY_ATTRIBUTES on the VM fd (today's path). iommufd, in-place conversions (this kernel kind reports no
 * KVM_CAP_MEMORY_ATTRIBUTES on a guest_memfd) and coco VMs (they need TDX or SNP hardware) are refused before
 * anything runs, naming the first such step and the reason (`unsupportedReason`).
 */
import type { CallArgs, DocumentedDifference, SequenceReport, Step as DiffStep } from '@gmemlab/linux/differential';
import { CALLS } from './scenario/calls.js';
import { evaluate, namesIn, type Expr } from './scenario/expr.js';
import type { CallStep, Scenario, Step } from './scenario/load.js';
import { iterate } from './scenario/repeat.js';
import { InputError } from './errors.js';

/** A scenario the oracle cannot run, or an oracle that is not available here: one line, exit 2. */
export class OracleError extends InputError {}

const MAX_STEPS = 10_000;

/** The kernel-step derivation of @gmemlab/linux/differential (from core's call table), loaded with the oracle. */
type Derivation = Pick<typeof import('@gmemlab/linux/differential'), 'stepOfCall' | 'unsupportedReason'>;

/**
 * The scenario as @gmemlab/linux differential steps, with the scenario path of each. The scenario's expressions
 * are evaluated here (repeats expanded); each call's step is derived from core's call table by the linux package.
 */
export function toDifferentialSteps(
  scenario: Scenario,
  derive: Derivation,
): Array<{ path: string; call: string; step: DiffStep }> {
  const lets = new Map<string, bigint>();
  const counters = new Map<string, bigint>();
  const lookup = (name: string) => counters.get(name) ?? lets.get(name);
  for (const [name, expr] of scenario.lets) lets.set(name, evaluate(expr, lookup));
  const out: Array<{ path: string; call: string; step: DiffStep }> = [];
  const num = (e: unknown) => {
    const v = evaluate(e as Expr, lookup);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const flags = (e: unknown) =>
    num(
      (e as Expr[]).reduce<Expr>((acc, x) => ({ kind: 'bin', op: '|', left: acc, right: x }), {
        kind: 'num',
        value: 0n,
      }),
    );
  const mappings = new Set<string>();
  /** A user address: a number, or a mapping handle plus an offset (the helper knows where it mapped it). */
  const address = (e: Expr, s: CallStep): number | bigint | { map: string; offset: number } => {
    const names = namesIn(e).filter((n) => mappings.has(n));
    if (names.length === 0) return num(e);
    const map = names[0]!;
    if (
      names.length > 1 ||
      !(
        e.kind === 'name' ||
        (e.kind === 'bin' &&
          e.op === '+' &&
          e.left.kind === 'name' &&
          e.left.name === map &&
          namesIn(e.right).every((n) => !mappings.has(n)))
      )
    ) {
      return refuse(s, `userspaceAddr must be a mapping or a mapping + an offset`);
    }
    return { map, offset: e.kind === 'name' ? 0 : Number(num(e.right)) };
  };
  const refuse = (s: CallStep, why: string): never => {
    throw new OracleError(
      `${scenario.file || scenario.id}: step ${s.path} (${s.call}): the kernel oracle cannot run it: ${why}`,
    );
  };

  /** The step's arguments evaluated by their kind in the call table; handles stay names (the sides bind them). */
  const argumentsOf = (s: CallStep): CallArgs => {
    const spec = CALLS[s.call]!;
    const args: CallArgs = {};
    for (const [name, value] of Object.entries(s.args)) {
      const kind = spec.args[name]!.type;
      if (name === 'userspaceAddr') args[name] = address(value as Expr, s);
      else if (kind === 'num' || kind === 'byte') args[name] = num(value);
      else if (kind === 'flags') args[name] = flags(value);
      else args[name] = value as string | boolean;
    }
    return args;
  };

  const translate = (s: CallStep): DiffStep => {
    const args = argumentsOf(s);
    const why = derive.unsupportedReason(s.call, args);
    if (why !== undefined) refuse(s, why);
    const step = derive.stepOfCall(s.call, s.on, args, { ...(s.as !== undefined ? { as: s.as } : {}), where: s.path });
    if (step.op === 'mmap') mappings.add(step.as);
    return step;
  };

  const walk = (steps: readonly Step[]) => {
    for (const s of steps) {
      if (s.kind === 'call') {
        out.push({ path: s.path, call: s.call, step: translate(s) });
        if (out.length > MAX_STEPS)
          throw new OracleError(
            `${scenario.file || scenario.id}: more than ${MAX_STEPS} steps once repeats are expanded; the oracle runs at most that many`,
          );
      } else {
        iterate(counters, s.counter, Number(evaluate(s.times, lookup)), () => walk(s.steps));
      }
    }
  };
  walk(scenario.steps);
  return out;
}

export interface OracleReport {
  scenario: { id: string; title: string; file: string };
  kernel: string;
  steps: Array<{
    path: string;
    call: string;
    model: string;
    kernel: string;
    verdict: 'same' | 'documented' | 'divergent';
    difference?: string;
  }>;
  divergent: boolean;
  stoppedAfter?: string;
}

/** Run the scenario on the model and on /dev/kvm; throws OracleError when either cannot be done here. */
export async function runOracle(scenario: Scenario): Promise<OracleReport> {
  let linux: typeof import('@gmemlab/linux');
  let diff: typeof import('@gmemlab/linux/differential');
  try {
    linux = await import('@gmemlab/linux');
    diff = await import('@gmemlab/linux/differential');
  } catch (error) {
    throw new OracleError(`the kernel oracle needs @gmemlab/linux: ${(error as Error).message.split('\n')[0]}`);
  }
  const steps = toDifferentialSteps(scenario, diff);
  const availability = await linux.isAvailable();
  if (!availability.available) throw new OracleError(`the kernel oracle is not available here: ${availability.reason}`);
  const report: SequenceReport = await diff.runOnBoth(steps.map((s) => s.step));
  const { release } = await import('node:os');
  return {
    scenario: { id: scenario.id, title: scenario.title, file: scenario.file },
    kernel: `Linux ${release()}`,
    steps: report.steps.map((r, i) => ({
      path: steps[i]!.path,
      call: steps[i]!.call,
      model: diff.describeOutcome(r.model),
      kernel: diff.describeOutcome(r.kernel),
      verdict: r.verdict,
      ...(r.difference
        ? { difference: `${r.difference}: ${diff.DOCUMENTED_DIFFERENCES[r.difference as DocumentedDifference]}` }
        : {}),
    })),
    divergent: report.divergent,
    ...(report.stoppedAfter !== undefined ? { stoppedAfter: steps[report.stoppedAfter]!.path } : {}),
  };
}

export function renderOracleText(report: OracleReport): string {
  const out = [`== ${report.scenario.id}: the model beside ${report.kernel} (/dev/kvm)`, `   ${report.scenario.title}`];
  const cells = [
    ['', 'step', 'model', 'kernel'],
    ...report.steps.map((s) => [
      s.verdict === 'same' ? ' ' : s.verdict === 'documented' ? '~' : '!',
      `${s.path} ${s.call}`,
      s.model,
      s.kernel,
    ]),
  ];
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  for (const row of cells)
    out.push(
      `  ${row
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()}`,
    );
  for (const s of report.steps.filter((x) => x.difference))
    out.push(`  ~ step ${s.path}: documented difference ${s.difference}`);
  if (report.stoppedAfter)
    out.push(`  (stopped after step ${report.stoppedAfter}: the sides' states parted for a documented reason)`);
  out.push(
    report.divergent
      ? "  '!' marks steps where the model and the kernel differ without a documented reason"
      : '  the model and the kernel agree on every step (~ marks documented differences)',
  );
  return out.join('\n');
}
