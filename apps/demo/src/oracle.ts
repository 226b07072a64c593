/**
 * `gmemlab run --oracle linux`: the scenario's steps on the model and on the running kernel side by side,
 * through @gmemlab/linux's differential runner (/dev/kvm and a small C helper). Only steps the running kernel
 * can take are translated: a default VM, guest_memfd, memfd, memslots, mmaps, fallocate, reads and writes, and
 * guest accesses. iommufd, conversions (this kernel kind reports no KVM_CAP_MEMORY_ATTRIBUTES) and coco VMs
 * (they need TDX or SNP hardware) are refused before anything runs, naming the first such step.
 */
import type { DocumentedDifference, SequenceReport, Step as DiffStep } from '@gmemlab/linux/differential';
import { evaluate, namesIn, type Expr } from './scenario/expr.js';
import type { CallStep, Scenario, Step } from './scenario/load.js';
import { iterate } from './scenario/repeat.js';
import { InputError } from './errors.js';

/** A scenario the oracle cannot run, or an oracle that is not available here: one line, exit 2. */
export class OracleError extends InputError {}

const MAX_STEPS = 10_000;

/** The scenario as @gmemlab/linux differential steps, with the scenario path of each. */
export function toDifferentialSteps(scenario: Scenario): Array<{ path: string; call: string; step: DiffStep }> {
  const lets = new Map<string, bigint>();
  const counters = new Map<string, bigint>();
  const lookup = (name: string) => counters.get(name) ?? lets.get(name);
  for (const [name, expr] of scenario.lets) lets.set(name, evaluate(expr, lookup));
  const out: Array<{ path: string; call: string; step: DiffStep }> = [];
  const num = (e: unknown) => {
    const v = evaluate(e as Expr, lookup);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const flags = (e: unknown) => num((e as Expr[]).reduce<Expr>((acc, x) => ({ kind: 'bin', op: '|', left: acc, right: x }), { kind: 'num', value: 0n }));
  const mappings = new Set<string>();
  /** A user address: a number, or a mapping handle plus an offset (the helper knows where it mapped it). */
  const address = (e: Expr, s: CallStep): number | bigint | { map: string; offset: number } => {
    const names = namesIn(e).filter((n) => mappings.has(n));
    if (names.length === 0) return num(e);
    const map = names[0]!;
    if (names.length > 1 || !(e.kind === 'name' || (e.kind === 'bin' && e.op === '+' && e.left.kind === 'name' && e.left.name === map && namesIn(e.right).every((n) => !mappings.has(n))))) {
      return refuse(s, `userspaceAddr must be a mapping or a mapping + an offset`);
    }
    return { map, offset: e.kind === 'name' ? 0 : Number(num(e.right)) };
  };
  const refuse = (s: CallStep, why: string): never => {
    throw new OracleError(`${scenario.file || scenario.id}: step ${s.path} (${s.call}): the kernel oracle cannot run it: ${why}`);
  };

  const translate = (s: CallStep): DiffStep => {
    const a = s.args;
    const on = s.on!;
    switch (s.call) {
      case 'host.createVm':
        if (a.type !== 'default') refuse(s, "only a default VM ('type: default'): coco VM types need TDX or SEV-SNP hardware");
        return { op: 'createVm', as: s.as ?? `vm@${s.path}` };
      case 'vm.createGuestMemfd':
        return { op: 'createGuestMemfd', vm: on, size: num(a.size), ...(a.flags !== undefined ? { flags: flags(a.flags) } : {}), as: s.as ?? `gmem@${s.path}` };
      case 'host.memfdCreate':
        return { op: 'memfdCreate', size: Number(num(a.size)), as: s.as ?? `memfd@${s.path}` };
      case 'vm.setUserMemoryRegion2':
        return {
          op: 'setUserMemoryRegion2',
          vm: on,
          slot: num(a.slot),
          flags: flags(a.flags),
          guestPhysAddr: num(a.guestPhysAddr),
          memorySize: num(a.memorySize),
          ...(a.userspaceAddr !== undefined ? { userspaceAddr: address(a.userspaceAddr as Expr, s) } : {}),
          ...(a.guestMemfd !== undefined ? { guestMemfd: a.guestMemfd as string } : {}),
          ...(a.guestMemfdOffset !== undefined ? { guestMemfdOffset: num(a.guestMemfdOffset) } : {}),
        };
      case 'gmem.mmap':
      case 'memfd.mmap':
        mappings.add(s.as ?? `map@${s.path}`);
        return { op: 'mmap', fd: on, length: num(a.length), ...(a.offset !== undefined ? { offset: num(a.offset) } : {}), shared: (a.shared as boolean | undefined) ?? true, as: s.as ?? `map@${s.path}` };
      case 'gmem.fallocate':
      case 'memfd.fallocate':
        return { op: 'fallocate', fd: on, mode: Number(flags(a.mode)), offset: num(a.offset), length: num(a.length) };
      case 'mapping.read':
        return { op: 'mapRead', map: on, offset: num(a.offset), length: num(a.length) };
      case 'mapping.write':
        return { op: 'mapWrite', map: on, offset: num(a.offset), data: { fill: a.data === undefined ? 0 : Number(num(a.data)), length: Number(num(a.length)) } };
      case 'mapping.madvise':
        return { op: 'madvise', map: on, offset: num(a.offset), length: num(a.length), advice: Number(num(a.advice)) };
      case 'mapping.munmap':
        return { op: 'munmap', map: on };
      case 'vm.guestRead':
        if (a.intent !== undefined) refuse(s, 'a guest intent needs a VM with private memory');
        return { op: 'guestRead', vm: on, gpa: num(a.gpa), length: num(a.length) };
      case 'vm.guestWrite':
        if (a.intent !== undefined) refuse(s, 'a guest intent needs a VM with private memory');
        return { op: 'guestWrite', vm: on, gpa: num(a.gpa), data: { fill: a.data === undefined ? 0 : Number(num(a.data)), length: Number(num(a.length)) } };
      case 'gmem.close':
      case 'memfd.close':
      case 'vm.close':
        return { op: 'close', fd: on };
      default:
        return refuse(s, s.call.startsWith('ioas.') || s.call.startsWith('iommufd.') || s.call.startsWith('device.') || s.call === 'host.openIommufd' ? 'the helper has no iommufd' : s.call === 'gmem.setMemoryAttributes2' ? 'this kernel reports no KVM_CAP_MEMORY_ATTRIBUTES (no in-place conversion)' : 'the helper has no such call');
    }
  };

  const walk = (steps: readonly Step[]) => {
    for (const s of steps) {
      if (s.kind === 'call') {
        out.push({ path: s.path, call: s.call, step: translate(s) });
        if (out.length > MAX_STEPS) throw new OracleError(`${scenario.file || scenario.id}: more than ${MAX_STEPS} steps once repeats are expanded; the oracle runs at most that many`);
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
  steps: Array<{ path: string; call: string; model: string; kernel: string; verdict: 'same' | 'documented' | 'divergent'; difference?: string }>;
  divergent: boolean;
  stoppedAfter?: string;
}

/** Run the scenario on the model and on /dev/kvm; throws OracleError when either cannot be done here. */
export async function runOracle(scenario: Scenario): Promise<OracleReport> {
  const steps = toDifferentialSteps(scenario);
  let linux: typeof import('@gmemlab/linux');
  let diff: typeof import('@gmemlab/linux/differential');
  try {
    linux = await import('@gmemlab/linux');
    diff = await import('@gmemlab/linux/differential');
  } catch (error) {
    throw new OracleError(`the kernel oracle needs @gmemlab/linux: ${(error as Error).message.split('\n')[0]}`);
  }
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
      ...(r.difference ? { difference: `${r.difference}: ${diff.DOCUMENTED_DIFFERENCES[r.difference as DocumentedDifference]}` } : {}),
    })),
    divergent: report.divergent,
    ...(report.stoppedAfter !== undefined ? { stoppedAfter: steps[report.stoppedAfter]!.path } : {}),
  };
}

export function renderOracleText(report: OracleReport): string {
  const out = [`== ${report.scenario.id}: the model beside ${report.kernel} (/dev/kvm)`, `   ${report.scenario.title}`];
  const cells = [['', 'step', 'model', 'kernel'], ...report.steps.map((s) => [s.verdict === 'same' ? ' ' : s.verdict === 'documented' ? '~' : '!', `${s.path} ${s.call}`, s.model, s.kernel])];
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  for (const row of cells) out.push(`  ${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`);
  for (const s of report.steps.filter((x) => x.difference)) out.push(`  ~ step ${s.path}: documented difference ${s.difference}`);
  if (report.stoppedAfter) out.push(`  (stopped after step ${report.stoppedAfter}: the sides' states parted for a documented reason)`);
  out.push(report.divergent ? "  '!' marks steps where the model and the kernel differ without a documented reason" : '  the model and the kernel agree on every step (~ marks documented differences)');
  return out.join('\n');
}
