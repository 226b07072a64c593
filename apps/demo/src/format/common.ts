/**
 * What every human format shares: which rows a comparison shows, what each cell says, the effect lines of a
 * timeline step. The formats differ only in layout (text, table, markdown, html).
 */
import { formatSize } from '../util/size.js';
import type { Comparison, RunResult, StepRecord } from '../run/types.js';

export const FORMATS = ['table', 'text', 'markdown', 'json', 'html'] as const;
export type Format = (typeof FORMATS)[number];

/**
 * One line per effect a step had on the kernel's state; empty for a step that changed nothing but its object.
 * `bounds` (RunResult.bounds) marks the firmware/hypervisor counts that are upper bounds: "(at most)".
 */
export function effectLines(step: StepRecord, bounds?: RunResult['bounds']): string[] {
  const e = step.effects;
  const lines: string[] = [];
  const inv = new Map<string, number>();
  for (const i of e.invalidations)
    inv.set(`${i.cause} ino ${i.ino}`, (inv.get(`${i.cause} ino ${i.ino}`) ?? 0) + i.length);
  for (const [what, bytes] of inv)
    lines.push(`invalidate ${what}: ${formatSize(bytes)}${e.invalidations.length >= 64 ? ' (first 64 ranges)' : ''}`);
  const zaps = [
    e.zapped.stage2 && `stage-2 ${e.zapped.stage2} pages`,
    e.zapped.hostPte && `host PTEs ${e.zapped.hostPte} pages`,
    e.zapped.iopte && `IOPTEs ${e.zapped.iopte} pages`,
  ].filter(Boolean);
  if (zaps.length > 0) lines.push(`zap ranges: ${zaps.join(', ')}`);
  if (e.revoked.length > 0) {
    const areas = [...new Set(e.revoked.map((r) => r.area))];
    const bytes = e.revoked.reduce((n, r) => n + r.length, 0);
    lines.push(`revoked: ${areas.join(', ')} (${formatSize(bytes)}, ${e.revoked[0]!.cause})`);
  }
  if (e.hardware.enter > 0 || e.hardware.leave > 0)
    lines.push(
      `hardware-private: ${e.hardware.enter > 0 ? `+${e.hardware.enter}` : ''}${e.hardware.enter > 0 && e.hardware.leave > 0 ? ' ' : ''}${e.hardware.leave > 0 ? `-${e.hardware.leave}` : ''} pages`,
    );
  const steps = Object.entries(e.pipeline);
  if (steps.length > 0)
    lines.push(
      `firmware/hypervisor steps: ${steps.map(([name, n]) => `${name} x${bounds?.[name] === 'upper' ? `${n} (at most)` : n}`).join(', ')}`,
    );
  const access = step.result.kind === 'ok' || step.result.kind === 'fault' ? step.result.access : undefined;
  if (access?.exit)
    lines.push(
      `KVM_EXIT_MEMORY_FAULT gpa 0x${access.exit.gpa.toString(16)} size ${access.exit.size} flags 0x${access.exit.flags.toString(16)}`,
    );
  if (step.result.kind === 'fault' && access?.mechanism)
    lines.push(
      `fault: ${access.fault} at 0x${(access.address ?? 0).toString(16)} by ${access.mechanism}${access.logged ? ' (logged)' : ''}${access.fatal ? ', FATAL' : ''}`,
    );
  for (const r of access?.reached?.slice(0, 3) ?? [])
    lines.push(`stale access reached pfn 0x${r.pfn.toString(16)}: ${r.owner}`);
  if (access?.bytes && step.result.kind === 'ok')
    lines.push(`read: ${access.bytes.map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(' ')}`);
  if (step.result.kind === 'errno') lines.push(step.result.message);
  if (step.result.kind === 'host-down' || step.result.kind === 'error') lines.push(step.result.message);
  return lines;
}

/** The outcome cell of a comparison: the label, with a mark when an expectation failed. */
export function cellOf(step: StepRecord | undefined): string {
  if (!step) return '-';
  const times =
    step.times !== undefined && step.outcomes
      ? Object.entries(step.outcomes)
          .map(([label, n]) => `${label} x${n}`)
          .join(', ')
      : step.label;
  return `${times}${step.verdict === 'fail' ? ' !' : ''}`;
}

export interface MatrixRow {
  path: string;
  call: string;
  note?: string;
  cells: string[];
  /** Architectures disagree under at least one contract. */
  differs: boolean;
  /** The contracts under which architectures disagree at this step. */
  differsIn: string[];
}

export interface Matrix {
  scenario: Comparison['scenarios'][number];
  columns: Array<{ arch: string; contract: string; run: RunResult }>;
  rows: MatrixRow[];
  /** Steps left out: ok everywhere, with no expectation and no effect worth a row. */
  hidden: number;
  failures: Array<{ column: string; path: string; call: string; failure: string }>;
  violations: Array<{ column: string; path: string; kind: string; message: string }>;
  /** Violations, one per distinct (kind, area, range), with the runs and steps they appeared in. */
  violationGroups: ViolationGroup[];
  /** Failed expectations, one per distinct (step, reason), with the runs they failed in. */
  failureGroups: FailureGroup[];
  crashes: Array<{ column: string; path: string; text: string }>;
  skipped: Array<{ column: string; reason: string }>;
}

const interesting = (s: StepRecord | undefined) =>
  s !== undefined &&
  (s.expected !== undefined ||
    s.label !== 'ok' ||
    s.violations.length > 0 ||
    s.verdict === 'fail' ||
    s.effects.revoked.length > 0);

/** A comparison's rows for one scenario: columns are arch x contract, in contract-major order. */
export function matrixOf(comparison: Comparison, scenarioId: string): Matrix {
  const scenario = comparison.scenarios.find((s) => s.id === scenarioId)!;
  const all = comparison.contracts.flatMap((contract) =>
    comparison.archs.map((arch) => ({
      arch: arch.id,
      contract,
      run: comparison.runs.find((r) => r.scenario.id === scenarioId && r.arch === arch.id && r.contract === contract)!,
    })),
  );
  // A contract the scenario is not written for gets one line, not a column of 'n/a'.
  const applicable = new Set(all.filter((c) => !c.run.skipped).map((c) => c.contract));
  const columns = all.filter((c) => applicable.has(c.contract));
  const skippedContracts = [...new Set(all.filter((c) => !applicable.has(c.contract)).map((c) => c.contract))];
  const live = columns.filter((c) => !c.run.skipped);
  const paths: Array<{ path: string; call: string; note?: string }> = [];
  const seen = new Set<string>();
  for (const c of live) {
    for (const s of c.run.steps) {
      if (seen.has(s.path)) continue;
      seen.add(s.path);
      paths.push({
        path: s.path,
        call: s.times !== undefined ? `${s.call} (repeated)` : s.call,
        ...(s.note ? { note: s.note } : {}),
      });
    }
  }
  const byPath = (run: RunResult, path: string) => run.steps.find((s) => s.path === path);
  const rows: MatrixRow[] = [];
  let hidden = 0;
  for (const p of paths) {
    const steps = columns.map((c) => (c.run.skipped ? undefined : byPath(c.run, p.path)));
    if (!steps.some(interesting)) {
      hidden++;
      continue;
    }
    const cells = steps.map((s, i) => (columns[i]!.run.skipped ? 'n/a' : cellOf(s)));
    const differsIn = [...applicable].filter((contract) => {
      const values = new Set(
        cells
          .filter((_, i) => columns[i]!.contract === contract && !columns[i]!.run.skipped)
          .map((c) => c.replace(/ !$/, '')),
      );
      return values.size > 1;
    });
    rows.push({ ...p, cells, differs: differsIn.length > 0, differsIn });
  }
  const name = (c: (typeof columns)[number]) => `${c.arch}/${c.contract}`;
  const named = columns.filter((c) => !c.run.skipped).map((c) => ({ name: name(c), run: c.run }));
  return {
    violationGroups: groupViolations(named),
    failureGroups: groupFailures(named),
    scenario,
    columns,
    rows,
    hidden,
    failures: columns.flatMap((c) =>
      c.run.steps
        .filter((s) => s.verdict === 'fail')
        .map((s) => ({ column: name(c), path: s.path, call: s.call, failure: s.failure ?? '' })),
    ),
    violations: columns.flatMap((c) =>
      c.run.steps.flatMap((s) =>
        s.violations.map((v) => ({ column: name(c), path: s.path, kind: v.kind, message: v.message })),
      ),
    ),
    crashes: columns.flatMap((c) =>
      c.run.steps
        .filter((s) => s.crash)
        .map((s) => ({
          column: name(c),
          path: s.path,
          text: `${s.crash!.fault} (${s.crash!.mechanism}) by ${s.crash!.by} via ${s.crash!.via}`,
        })),
    ),
    skipped: [
      ...skippedContracts.map((contract) => ({
        column: `contract ${contract}`,
        reason: all.find((c) => c.contract === contract)!.run.skipped!,
      })),
      ...columns.filter((c) => c.run.skipped).map((c) => ({ column: name(c), reason: c.run.skipped! })),
    ],
  };
}

export interface ViolationGroup {
  kind: string;
  owner?: string;
  range?: string;
  message: string;
  count: number;
  columns: string[];
  paths: string[];
}

export interface FailureGroup {
  path: string;
  call: string;
  failure: string;
  columns: string[];
}

/** 'ino 3 [0, 2 MiB)' for a violation's range, in bytes. */
export function rangeText(v: { ino?: number; offset?: number; length?: number }): string | undefined {
  if (v.ino === undefined) return undefined;
  if (v.offset === undefined) return `ino ${v.ino}`;
  return `ino ${v.ino} [${formatSize(v.offset)}, ${v.length === undefined ? '...' : formatSize(v.offset + v.length)})`;
}

/** Up to `max` names, then '+N more'. */
export function listOf(names: readonly string[], max = 4): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} +${names.length - max} more`;
}

function groupViolations(columns: Array<{ name: string; run: RunResult }>): ViolationGroup[] {
  const groups = new Map<string, ViolationGroup>();
  for (const c of columns) {
    for (const s of c.run.steps) {
      for (const v of s.violations) {
        const range = rangeText(v);
        const key = `${v.kind}|${v.owner ?? ''}|${range ?? v.message}`;
        let g = groups.get(key);
        if (!g) {
          g = {
            kind: v.kind,
            ...(v.owner ? { owner: v.owner } : {}),
            ...(range ? { range } : {}),
            message: v.message,
            count: 0,
            columns: [],
            paths: [],
          };
          groups.set(key, g);
        }
        g.count++;
        if (!g.columns.includes(c.name)) g.columns.push(c.name);
        if (!g.paths.includes(s.path)) g.paths.push(s.path);
      }
    }
  }
  return [...groups.values()];
}

function groupFailures(columns: Array<{ name: string; run: RunResult }>): FailureGroup[] {
  const groups = new Map<string, FailureGroup>();
  for (const c of columns) {
    for (const s of c.run.steps.filter((x) => x.verdict === 'fail')) {
      const key = `${s.path}|${s.failure ?? ''}`;
      let g = groups.get(key);
      if (!g) {
        g = { path: s.path, call: s.call, failure: s.failure ?? '', columns: [] };
        groups.set(key, g);
      }
      g.columns.push(c.name);
    }
  }
  return [...groups.values()];
}

/** A violation group in one line: kind, area, range, message, how often and where. */
export function violationLine(g: ViolationGroup): string {
  return `${g.kind}${g.range ? ` ${g.range}` : ''}: ${g.message} (${g.count}x: ${listOf(g.columns)}; step ${listOf(g.paths, 3)})`;
}

export function failureLine(g: FailureGroup): string {
  return `step ${g.path} ${g.call}: ${g.failure} (${g.columns.length}x: ${listOf(g.columns)})`;
}

/** A one-line summary of a whole comparison. */
export function summaryLine(comparison: Comparison): string {
  const runs = comparison.runs.filter((r) => !r.skipped);
  const failed = runs.filter((r) => !r.ok);
  const groups = comparison.scenarios.reduce((n, s) => n + matrixOf(comparison, s.id).violationGroups.length, 0);
  return `${comparison.scenarios.length} scenario(s) x ${comparison.archs.length} architecture(s) x ${comparison.contracts.length} design(s): ${runs.length} runs, ${failed.length === 0 ? 'every expectation held' : `${failed.length} with a failed expectation`}; ${groups} distinct invariant violation(s)`;
}
