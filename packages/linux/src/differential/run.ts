/**
 * runOnBoth(): one step list on the model and on the kernel, step by step, with a verdict per step. This is the
 * programmatic entry point a CLI can print side by side (formatReport does a plain-text version).
 */
import { createHost, type HostOptions } from '@gmemlab/core';
import { LinuxHost } from '../host.js';
import { KernelSide, ModelSide } from './sides.js';
import { describeOutcome, describeStep, type Outcome, type Step } from './steps.js';

export type Verdict = 'same' | 'documented' | 'divergent';

export interface StepReport {
  step: Step;
  model: Outcome;
  kernel: Outcome;
  verdict: Verdict;
  /** For 'documented': which documented difference (see DOCUMENTED_DIFFERENCES). */
  difference?: DocumentedDifference;
}

export interface SequenceReport {
  steps: StepReport[];
  /** Whether any step diverged without a documented reason. */
  divergent: boolean;
  /** Set when the sides' states parted for a documented reason and the remaining steps were not run. */
  stoppedAfter?: number;
}

/** The differences between model and kernel that kernel-contract or the model documents, with their reasons. */
export const DOCUMENTED_DIFFERENCES = {
  'model-limit-2^53':
    'The model holds offsets and sizes as JavaScript numbers and refuses values above 2^53-1 with EINVAL, where the kernel may accept them (@gmemlab/core util/args.ts; issue 3).',
  'model-memfd-fixed-size':
    "The model's memfd keeps the size memfd_create gave it and refuses with EFBIG a write(2), pwrite(2) or fallocate(2) without KEEP_SIZE that would grow it; the kernel grows the file (shmem has no such limit without seals). The sides' states part there, so the run stops (@gmemlab/core mm/memfd.ts).",
  'guest-fault-kind':
    "A guest access the kernel cannot complete ends, on this machine, in KVM_EXIT_MMIO even where the model says EFAULT (a memslot whose userspace address has no VMA, or whose page refuses the fault): KVM's x86 emulator retries the access and treats an unreadable GPA as MMIO. Both sides agree that the access faults, where and after how many bytes; only the fault's name differs.",
} as const;

export type DocumentedDifference = keyof typeof DOCUMENTED_DIFFERENCES;

export interface RunOptions {
  /** A kernel host to reuse; it is released (every fd closed, every mapping unmapped) after the run. */
  kernel?: LinuxHost;
  /**
   * Options for the model's host. The default matches the kernel this package was checked against: no in-place
   * conversion (KVM_CAP_MEMORY_ATTRIBUTES is 0) and guest faults through userspace_addr.
   */
  model?: HostOptions;
}

export const KERNEL_MATCHING_MODEL_OPTIONS: HostOptions = { inPlaceConversion: false, gmemOnlyMemslots: false };

function same(a: Outcome, b: Outcome): boolean {
  if (a.status !== b.status) return false;
  switch (a.status) {
    case 'ok':
      return JSON.stringify(a.value) === JSON.stringify((b as typeof a).value);
    case 'error':
      return a.errno === (b as typeof a).errno;
    case 'fault': {
      const f = b as typeof a;
      return a.fault === f.fault && a.address === f.address && a.done === f.done;
    }
    case 'skipped':
      return true;
  }
}

function documented(step: Step, model: Outcome, kernel: Outcome): DocumentedDifference | undefined {
  if (model.status === 'error' && model.errno === 'EINVAL' && /2\^53/.test(model.message ?? ''))
    return 'model-limit-2^53';
  if (
    model.status === 'error' &&
    model.errno === 'EFBIG' &&
    /does not grow memfds/.test(model.message ?? '') &&
    kernel.status === 'ok'
  )
    return 'model-memfd-fixed-size';
  if (
    (step.op === 'guestRead' || step.op === 'guestWrite') &&
    model.status === 'fault' &&
    kernel.status === 'fault' &&
    model.address === kernel.address &&
    model.done === kernel.done
  ) {
    return 'guest-fault-kind';
  }
  return undefined;
}

/**
 * Steps after which one side failing and the other succeeding leaves the states comparable (no object made or
 * lost, no data changed). Not write(2)/pwrite(2): on a memfd the side that wrote holds other bytes and perhaps
 * another size.
 */
const STATELESS_WHEN_REFUSED = new Set<Step['op']>([
  'checkExtension',
  'stat',
  'read',
  'pread',
  'mapRead',
  'mapWrite',
  'guestRead',
  'guestWrite',
  'madvise',
]);

/** Run `steps` on a fresh model host and on the kernel; compare every outcome. */
export async function runOnBoth(steps: readonly Step[], options: RunOptions = {}): Promise<SequenceReport> {
  const model = new ModelSide(createHost(options.model ?? KERNEL_MATCHING_MODEL_OPTIONS));
  const linux = options.kernel ?? (await LinuxHost.open());
  const kernel = new KernelSide(linux);
  const report: SequenceReport = { steps: [], divergent: false };
  try {
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      const m = await model.run(step);
      const k = await kernel.run(step);
      let verdict: Verdict = 'same';
      let difference: DocumentedDifference | undefined;
      if (!same(m, k)) {
        difference = documented(step, m, k);
        verdict = difference ? 'documented' : 'divergent';
      }
      report.steps.push({ step, model: m, kernel: k, verdict, ...(difference ? { difference } : {}) });
      if (verdict === 'divergent') report.divergent = true;
      // A documented difference where one side changed its state and the other did not: the states have parted.
      if (
        verdict === 'documented' &&
        m.status !== k.status &&
        (m.status === 'ok' || k.status === 'ok') &&
        !STATELESS_WHEN_REFUSED.has(step.op)
      ) {
        report.stoppedAfter = i;
        break;
      }
    }
  } finally {
    if (options.kernel) await linux.release();
    else await linux.dispose();
  }
  return report;
}

/** A plain-text side-by-side listing of a report. */
export function formatReport(report: SequenceReport): string {
  const rows = report.steps.map((r, i) => {
    const mark = r.verdict === 'same' ? ' ' : r.verdict === 'documented' ? '~' : '!';
    return `${mark} ${String(i + 1).padStart(2)}. ${describeStep(r.step)}\n      model:  ${describeOutcome(r.model)}\n      kernel: ${describeOutcome(r.kernel)}${r.difference ? `\n      (documented: ${r.difference})` : ''}`;
  });
  if (report.stoppedAfter !== undefined)
    rows.push(`  (stopped: the sides' states parted after step ${report.stoppedAfter + 1} for a documented reason)`);
  return rows.join('\n');
}
