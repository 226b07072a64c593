/**
 * What a run produces, as plain JSON: the documented `--format json` output and what the web view draws. Field
 * names are stable within a major version of @gmemlab/demo (see the README's "JSON output").
 */
import type { CrashRecord, PageMap } from '@gmemlab/core';

export type { PageMap };

export interface AccessSummary {
  ok: boolean;
  fault?: string;
  fatal?: boolean;
  logged?: boolean;
  mechanism?: string;
  /** Faulting address in the accessor's space (mapping offset, GPA or IOVA). */
  address?: number;
  /** Bytes completed before the fault. */
  done?: number;
  /** KVM_EXIT_MEMORY_FAULT fields. */
  exit?: { gpa: number; size: number; flags: number };
  /** Frames reached through stale entries, with who owns them now (e.g. 'guest_memfd ino 3 of vm:7 (private)'). */
  reached?: Array<{ address: number; pfn: number; owner: string; ownerKind: string }>;
  /** For reads: the distinct byte values read (up to 4), e.g. [0x5a]. */
  bytes?: number[];
}

export type StepResult =
  | { kind: 'ok'; value?: string; access?: AccessSummary }
  | { kind: 'errno'; errno: string; errorOffset?: number; message: string }
  | { kind: 'fault'; access: AccessSummary }
  | { kind: 'host-down'; message: string }
  /** An exception that is not the kernel's answer (a backend or model bug): always a failure. */
  | { kind: 'error'; message: string };

export interface StepEffects {
  /** invalidate_begin .. end ranges of guest_memfd, by cause. */
  invalidations: Array<{ cause: string; ino: number; offset: number; length: number }>;
  /** Pages whose entries were zapped, by kind of entry. */
  zapped: { stage2: number; hostPte: number; iopte: number };
  /** iommufd areas (or parts) guest_memfd revoked. */
  revoked: Array<{ area: string; iova: number; length: number; cause: string }>;
  /** Firmware or hypervisor steps counted (TDH.MEM.PAGE.REMOVE, RMPUPDATE, ...). */
  pipeline: Record<string, number>;
  /** Pages entering and leaving the hardware-private state. */
  hardware: { enter: number; leave: number };
}

export interface ViolationSummary {
  kind: string;
  message: string;
  /** The area, mapping or VM whose entries are wrong, e.g. 'ioas:1/area:2'. */
  owner?: string;
  /** The guest_memfd inode and the range of it, in bytes. */
  ino?: number;
  offset?: number;
  length?: number;
}

export interface StepRecord {
  /** '3', or '5.2' inside a repeat. */
  path: string;
  call: string;
  /** The kernel interface the call stands for. */
  kernel: string;
  on?: string;
  as?: string;
  note?: string;
  /** The arguments as written in the scenario. */
  args: string;
  /** Inside a repeat: the step ran `times` times; `outcomes` counts each label. */
  times?: number;
  outcomes?: Record<string, number>;
  /** The result (inside a repeat: of the last iteration). */
  result: StepResult;
  /** A compact outcome for tables: 'ok', 'EAGAIN @2 MiB', 'iommu-fault', 'machine-check FATAL', 'host down'. */
  label: string;
  /** The step's place in the verdict's vocabulary (inside a repeat: the worst iteration); see run/verdict.ts. */
  outcome?: Verdict;
  effects: StepEffects;
  /** Invariant violations that appeared at this step. */
  violations: ViolationSummary[];
  /** The fatal fault, at the step that caused it. */
  crash?: CrashRecord;
  /** What the scenario expected here for this arch and contract, as a label; absent: no expectation. */
  expected?: string;
  verdict: 'pass' | 'fail' | 'none';
  /** Why the step failed (the first failing iteration inside a repeat). */
  failure?: string;
  /** Every guest_memfd inode after the step (runs, file pages). */
  pages?: PageMap[];
}

export interface RunResult {
  scenario: { id: string; title: string; file: string };
  arch: string;
  archName: string;
  contract: string;
  /** Set when the scenario is not meant for this contract: nothing ran. */
  skipped?: string;
  steps: StepRecord[];
  /** Every expectation held and no violation appeared that the scenario did not expect. */
  ok: boolean;
  failures: number;
  violationKinds: string[];
  crashed?: CrashRecord;
  /** Pipeline step totals over the run. */
  counters: Record<string, number>;
  /**
   * The counters that are upper bounds, not exact counts (Host.pipelineBounds(): e.g. TDX's one IPI per vCPU per
   * page, where KVM IPIs only the vCPUs in guest mode): counter name -> 'upper'. Absent when every count is exact.
   */
  bounds?: Record<string, 'upper'>;
  /** Milliseconds the run took. */
  elapsedMs: number;
}

export interface ScenarioInfo {
  id: string;
  title: string;
  situation: string;
  source: string[];
  file: string;
  contracts?: string[];
}

export interface Comparison {
  /** The @gmemlab/demo version that produced it. */
  tool: string;
  scenarios: ScenarioInfo[];
  archs: Array<{ id: string; name: string }>;
  contracts: string[];
  runs: RunResult[];
  /** Rows architectures, columns designs: each cell the worst outcome over the scenarios run (run/verdict.ts). */
  verdict?: VerdictMatrix;
  /** 0 when every run held its expectations, else 1. */
  exitCode: 0 | 1;
}

/** The verdict's vocabulary, worst last (verdict.ts computes it: per step, run and (architecture, design) cell). */
export const OUTCOMES = ['safe', 'contained', 'iommu-fault', 'stale-reach', 'host-crash'] as const;
export type Outcome = (typeof OUTCOMES)[number];
type Verdict = Outcome;

/** A cell's cost: firmware/hypervisor steps, IOPTE pages zapped or revoked, and I/O faults (IOMMU or contained). */
export interface Cost {
  steps: number;
  iopte: number;
  faults: number;
}

export interface VerdictCell {
  outcome: Outcome;
  /** The scenario and step that decided it (the first to reach the worst outcome); absent when safe throughout. */
  scenario?: string;
  path?: string;
  call?: string;
  cost: Cost;
  /** Runs in the cell, and how many had a failed expectation. */
  runs: number;
  failed: number;
}

export interface VerdictMatrix {
  contracts: string[];
  rows: Array<{ arch: string; name: string; cells: Array<VerdictCell | undefined> }>;
}
