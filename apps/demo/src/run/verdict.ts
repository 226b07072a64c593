/**
 * The verdict: one outcome per step, per run, and per (architecture, design) cell of a comparison, in one
 * vocabulary ordered from harmless to worst. Dependency-free (types only), so the web view's browser bundle shares
 * it with the text, markdown and JSON outputs: every output says the same words.
 *
 * How a step's outcome is read from what the model returned (docs/reading-the-output.md, "The verdict"):
 * - host crash: the step took the host down (a fatal fault: a machine check the host does not survive);
 * - stale DMA reached another owner: an access reached a frame through a stale entry (the frame belongs to someone
 *   else now: another VM, a free frame, a page pinned elsewhere), or a device's DMA completed while the model
 *   reports a live IOPTE over a page no device may reach (unsafe-iopte: the page is the guest's private memory);
 * - IOMMU fault: the IOMMU refused the translation (no IOPTE, a revoked area) and logged a fault event;
 * - contained fault: hardware blocked the access and contained it (RMP check, GPC, hypervisor stage-2), or the
 *   guest consumed poison and only the guest is affected;
 * - safe: everything else — ok, an errno, the exits KVM returns to the VMM by design (KVM_EXIT_MEMORY_FAULT,
 *   MMIO, a retry), a SIGBUS to the process.
 */
import {
  OUTCOMES,
  type Comparison,
  type Cost,
  type Outcome,
  type RunResult,
  type StepRecord,
  type VerdictCell,
  type VerdictMatrix,
} from './types.js';

// The verdict's shapes are part of the documented JSON (types.ts); re-exported here, where they are computed.
export { OUTCOMES, type Cost, type Outcome, type VerdictCell, type VerdictMatrix };

/**
 * The words of each outcome: short for a matrix cell, long for a legend; one ASCII symbol each for text, one
 * glyph each for markdown and the web view (distinct shapes, so no outcome is told by its colour alone).
 */
export const OUTCOME_TEXT: Record<Outcome, { short: string; long: string; symbol: string; glyph: string }> = {
  safe: { short: 'safe', long: 'safe', symbol: '.', glyph: '✓' },
  contained: { short: 'contained', long: 'contained fault', symbol: '~', glyph: '◐' },
  'iommu-fault': { short: 'IOMMU fault', long: 'IOMMU fault', symbol: '#', glyph: '■' },
  'stale-reach': { short: 'stale DMA', long: 'stale DMA reached another owner', symbol: '!', glyph: '▲' },
  'host-crash': { short: 'host crash', long: 'host crash', symbol: 'X', glyph: '✖' },
};

export const worse = (a: Outcome, b: Outcome): boolean => OUTCOMES.indexOf(a) > OUTCOMES.indexOf(b);

/**
 * The outcome of one result of a step (a repeated step's result is its last iteration's). `throughUnsafeIopte`:
 * the runner found, page by page, that this DMA went through an IOPTE the model reports as 'unsafe-iopte' (a live
 * IOPTE over a page no device may reach); an unsafe IOPTE elsewhere in the run does not count.
 * A stale IOPTE left open by a step is a violation of that step, not an outcome: the outcome is what an access
 * through it reached (`reached`: free, reused or pinned frames), at the step that makes the access.
 */
export function stepOutcome(step: Pick<StepRecord, 'result' | 'crash' | 'call'>, throughUnsafeIopte = false): Outcome {
  if (step.crash) return 'host-crash';
  const r = step.result;
  const access = r.kind === 'ok' || r.kind === 'fault' ? r.access : undefined;
  if (r.kind === 'fault' && r.access.fatal) return 'host-crash';
  if (access?.reached && access.reached.length > 0) return 'stale-reach';
  if (r.kind === 'ok' && throughUnsafeIopte && /^device\.dma/.test(step.call)) return 'stale-reach';
  if (r.kind === 'fault') {
    if (r.access.fault === 'iommu-fault') return 'iommu-fault';
    if (r.access.fault === 'contained' || r.access.fault === 'poison' || r.access.fault === 'machine-check')
      return 'contained';
  }
  return 'safe';
}

export function runCost(run: RunResult): Cost {
  let iopte = 0;
  let faults = 0;
  for (const s of run.steps) {
    iopte += s.effects.zapped.iopte;
    if (s.outcomes) {
      for (const [label, n] of Object.entries(s.outcomes)) if (/^(iommu-fault|contained)/.test(label)) faults += n;
    } else if (
      s.result.kind === 'fault' &&
      (s.result.access.fault === 'iommu-fault' || s.result.access.fault === 'contained')
    )
      faults += 1;
  }
  return { steps: Object.values(run.counters).reduce((n, v) => n + v, 0), iopte, faults };
}

/** The verdict of one run: its worst step. */
export function runVerdict(run: RunResult): VerdictCell {
  const cell: VerdictCell = { outcome: 'safe', cost: runCost(run), runs: 1, failed: run.ok ? 0 : 1 };
  for (const s of run.steps) {
    const o = s.outcome ?? stepOutcome(s);
    if (worse(o, cell.outcome))
      Object.assign(cell, { outcome: o, scenario: run.scenario.id, path: s.path, call: s.call });
  }
  return cell;
}

/** Rows: architectures (with variants) in the comparison's order; columns: its designs; cells over `scenarioId` or all. */
export function verdictMatrix(comparison: Comparison, scenarioId?: string): VerdictMatrix {
  const rows = comparison.archs.map((arch) => ({
    arch: arch.id,
    name: arch.name,
    cells: comparison.contracts.map((contract) => {
      const runs = comparison.runs.filter(
        (r) =>
          r.arch === arch.id &&
          r.contract === contract &&
          !r.skipped &&
          (scenarioId === undefined || r.scenario.id === scenarioId),
      );
      if (runs.length === 0) return undefined;
      const cell: VerdictCell = { outcome: 'safe', cost: { steps: 0, iopte: 0, faults: 0 }, runs: 0, failed: 0 };
      for (const run of runs) {
        const v = runVerdict(run);
        if (worse(v.outcome, cell.outcome))
          Object.assign(cell, { outcome: v.outcome, scenario: v.scenario, path: v.path, call: v.call });
        cell.cost.steps += v.cost.steps;
        cell.cost.iopte += v.cost.iopte;
        cell.cost.faults += v.cost.faults;
        cell.runs += 1;
        cell.failed += v.failed;
      }
      return cell;
    }),
  }));
  return { contracts: [...comparison.contracts], rows };
}

/** A count for a narrow cell: 950, 1.2k, 34k, 1.5M. */
export function compactCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 10_000) return `${(n / 1000).toFixed(1).replace(/\.0$/, '')}k`;
  if (n < 1_000_000) return `${Math.round(n / 1000)}k`;
  return `${(n / 1_000_000).toFixed(1).replace(/\.0$/, '')}M`;
}

/** The cost figure of a cell: 'fw 12 io 512 f 1' (firmware steps, IOPTE pages zapped, I/O faults). */
export const costText = (c: Cost): string =>
  `fw ${compactCount(c.steps)} io ${compactCount(c.iopte)} f ${compactCount(c.faults)}`;

export const COST_LEGEND =
  'fw: firmware/hypervisor steps; io: IOPTE pages zapped; f: I/O faults (IOMMU or contained), summed over the runs';
