/**
 * What the web view draws, derived from a `Comparison` without touching the DOM: per scenario, one lane per
 * architecture x contract with a cell per step, the steps where architectures differ, each lane's counters, and
 * the page maps in force at a step. Kept pure so it is tested without a browser.
 */
import { cellOf, matrixOf } from '../format/common.js';
import type { Comparison, PageMap, RunResult, ScenarioInfo, StepRecord } from '../run/types.js';

/** What a step cell shows, most severe first: the kind decides the cell's colour and glyph. */
export type StepKind = 'crash' | 'host-down' | 'error' | 'stale' | 'fault' | 'exit' | 'errno' | 'ok';

export interface StepColumn {
  path: string;
  call: string;
  kernel?: string;
  args?: string;
  note?: string;
  /** Architectures answer differently here under at least one contract. */
  differs: boolean;
}

export interface LaneCounters {
  /** Firmware and hypervisor steps over the run (TDH.MEM.PAGE.AUG, RMPUPDATE, ...). */
  pipeline: number;
  violations: number;
  /** IOPTE pages guest_memfd revoked or zapped over the run. */
  ioptesRevoked: number;
  failures: number;
}

export interface Lane {
  /** 'tdx/vmm-driven': the lane's stable name (data-lane). */
  key: string;
  arch: string;
  archName: string;
  contract: string;
  run: RunResult;
  /** One per column; undefined where the run has no such step. */
  steps: Array<StepRecord | undefined>;
  counters: LaneCounters;
  /** The column of the step that crashed the host, if one did. */
  crashAt?: number;
}

export interface ScenarioView {
  info: ScenarioInfo;
  /** The comparison it belongs to (for the scenario's verdict matrix). */
  comparison: Comparison;
  columns: StepColumn[];
  /** Contract-major, then architecture, as the text matrix orders its columns. */
  lanes: Lane[];
  /** Lanes not run (a contract the scenario is not written for), one line each. */
  skipped: Array<{ column: string; reason: string }>;
  /** The column to show first: where the story turns (the first violation, crash or difference). */
  firstInteresting: number;
}

export function kindOf(step: StepRecord | undefined): StepKind | undefined {
  if (!step) return undefined;
  const r = step.result;
  if (step.crash || (r.kind === 'fault' && r.access.fatal)) return 'crash';
  if (r.kind === 'host-down') return 'host-down';
  if (r.kind === 'error') return 'error';
  const access = r.kind === 'ok' || r.kind === 'fault' ? r.access : undefined;
  if (access?.reached && access.reached.length > 0) return 'stale';
  if (r.kind === 'fault') return r.access.fault === 'memory-fault' ? 'exit' : 'fault';
  if (r.kind === 'errno') return 'errno';
  return 'ok';
}

export function countersOf(run: RunResult): LaneCounters {
  let violations = 0;
  let ioptesRevoked = 0;
  for (const s of run.steps) {
    violations += s.violations.length;
    ioptesRevoked += s.effects.zapped.iopte;
  }
  const pipeline = Object.values(run.counters).reduce((n, v) => n + v, 0);
  return { pipeline, violations, ioptesRevoked, failures: run.failures };
}

export function scenarioView(comparison: Comparison, info: ScenarioInfo): ScenarioView {
  const matrix = matrixOf(comparison, info.id);
  const live = matrix.columns.filter((c) => !c.run.skipped);
  const columns: StepColumn[] = [];
  const seen = new Set<string>();
  for (const c of live) {
    for (const s of c.run.steps) {
      if (seen.has(s.path)) continue;
      seen.add(s.path);
      columns.push({
        path: s.path,
        call: s.times !== undefined ? `${s.call} (repeated)` : s.call,
        kernel: s.kernel,
        args: s.args,
        ...(s.note ? { note: s.note } : {}),
        differs: false,
      });
    }
  }
  const differing = new Set(matrix.rows.filter((r) => r.differs).map((r) => r.path));
  for (const col of columns) col.differs = differing.has(col.path);

  const lanes: Lane[] = live.map((c) => {
    const byPath = new Map(c.run.steps.map((s) => [s.path, s]));
    const steps = columns.map((col) => byPath.get(col.path));
    const crashAt = steps.findIndex((s) => s?.crash !== undefined);
    return {
      key: `${c.arch}/${c.contract}`,
      arch: c.arch,
      archName: c.run.archName,
      contract: c.contract,
      run: c.run,
      steps,
      counters: countersOf(c.run),
      ...(crashAt >= 0 ? { crashAt } : {}),
    };
  });

  const notable = (i: number) =>
    columns[i]!.differs ||
    lanes.some((l) => (l.steps[i]?.violations.length ?? 0) > 0 || l.steps[i]?.crash || l.steps[i]?.verdict === 'fail');
  const firstInteresting = Math.max(
    0,
    columns.findIndex((_, i) => notable(i)),
  );
  return { info, comparison, columns, lanes, skipped: matrix.skipped, firstInteresting };
}

export function scenarioViews(comparison: Comparison): ScenarioView[] {
  return comparison.scenarios.map((info) => scenarioView(comparison, info));
}

/** The cell text of a comparison (with repeat counts, and ' !' on a failed expectation), as the text formats. */
export const cellText = cellOf;

/**
 * The page maps in force at a column: the runner records them after each top-level step (inside a repeat, on its
 * last step), so a column without its own shows the latest earlier one.
 */
export function pagesAt(lane: Lane, column: number): { pages: PageMap[]; from: string } | undefined {
  for (let i = Math.min(column, lane.steps.length - 1); i >= 0; i--) {
    const step = lane.steps[i];
    if (step?.pages) return { pages: step.pages, from: step.path };
  }
  return undefined;
}

/** Counters up to and including a column: what has happened so far in this lane. */
export function countersUpTo(
  lane: Lane,
  column: number,
): { violations: number; ioptesRevoked: number; pipeline: number } {
  let violations = 0;
  let ioptesRevoked = 0;
  let pipeline = 0;
  for (let i = 0; i <= column && i < lane.steps.length; i++) {
    const s = lane.steps[i];
    if (!s) continue;
    violations += s.violations.length;
    ioptesRevoked += s.effects.zapped.iopte;
    for (const n of Object.values(s.effects.pipeline)) pipeline += n;
  }
  return { violations, ioptesRevoked, pipeline };
}

type Span = readonly [start: number, end: number, ...rest: unknown[]];

/** Runs sorted and merged where they overlap or touch (layers of several owners may overlap). */
export function merge(runs: ReadonlyArray<Span>): Array<[number, number]> {
  const sorted = runs.map(([start, end]) => [start, end] as [number, number]).sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const [start, end] of sorted) {
    const last = out[out.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else out.push([start, end]);
  }
  return out;
}

/** Where runs of `a` overlap runs of `b`. */
export function intersect(runsA: ReadonlyArray<Span>, runsB: ReadonlyArray<Span>): Array<[number, number]> {
  const a = merge(runsA);
  const b = merge(runsB);
  const out: Array<[number, number]> = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const start = Math.max(a[i]![0], b[j]![0]);
    const end = Math.min(a[i]![1], b[j]![1]);
    if (start < end) out.push([start, end]);
    if (a[i]![1] < b[j]![1]) i++;
    else j++;
  }
  return out;
}

/** Runs of `total` pages not covered by `runs`: the holes of a file. */
export function complement(runs: ReadonlyArray<Span>, total: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let at = 0;
  for (const [start, end] of merge(runs)) {
    if (start > at) out.push([at, start]);
    at = Math.max(at, end);
  }
  if (at < total) out.push([at, total]);
  return out;
}

/** A compact text of runs, for data attributes and tooltips: '0-512:private,512-16384:shared'. */
export function runsText(runs: ReadonlyArray<Span>): string {
  return runs
    .map(
      ([start, end, value]) =>
        `${start}-${end}${value === undefined || value === true ? '' : `:${typeof value === 'object' && value !== null ? Object.values(value as Record<string, unknown>).join('|') : String(value)}`}`,
    )
    .join(',');
}

/** Per guest_memfd (by ino): the page window [start, end) the page maps zoom to. */
export type Focus = Map<number, [number, number]>;

/**
 * Where things happen: per guest_memfd, the hull of the pages a scenario's lanes touched at any step (populated,
 * private, hardware-private, pinned, poisoned, or reached by stage-2, host PTEs or IOPTEs, live, stale or revoked),
 * padded by an eighth on each side. A file whose touched hull is most of it (three quarters or more) gets no
 * window: it is drawn whole.
 */
export function focusOf(view: Pick<ScenarioView, 'lanes'>): Focus {
  const hull = new Map<number, { lo: number; hi: number; npages: number }>();
  for (const lane of view.lanes) {
    for (const step of lane.steps) {
      for (const map of step?.pages ?? []) {
        const runs: Span[] = [
          ...map.populated,
          ...map.attribute.filter(([, , v]) => v === 'private'),
          ...map.hardware,
          ...map.pinned,
          ...map.poisoned,
          ...map.stage2,
          ...map.hostPte,
          ...map.iopte,
        ];
        const h = hull.get(map.ino) ?? { lo: Infinity, hi: -Infinity, npages: map.npages };
        h.npages = Math.max(h.npages, map.npages);
        for (const [start, end] of runs) {
          h.lo = Math.min(h.lo, start);
          h.hi = Math.max(h.hi, end);
        }
        hull.set(map.ino, h);
      }
    }
  }
  const focus: Focus = new Map();
  for (const [ino, { lo, hi, npages }] of hull) {
    if (!(hi > lo)) continue;
    const pad = Math.max(1, Math.ceil((hi - lo) / 8));
    const start = Math.max(0, lo - pad);
    const end = Math.min(npages, hi + pad);
    if (end - start >= npages * 0.75) continue;
    focus.set(ino, [start, end]);
  }
  return focus;
}
