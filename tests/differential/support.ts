/**
 * Shared by the differential tests: whether the running kernel can be used, one kernel host per file, and the
 * assertion that a report has no undocumented divergence (printing the side-by-side listing when it has).
 */
import { isAvailable, LinuxHost } from '@gmemlab/linux';
import { formatReport, runOnBoth, type SequenceReport, type Step } from '@gmemlab/linux/differential';

export const availability = await isAvailable({ flags: 0 });
/** Why the differential tests skip, in one line; undefined when they run. */
export const skipReason = availability.available ? undefined : availability.reason;
if (skipReason) console.log(`differential tests skipped: ${skipReason}`);

export const P = 4096;
export const T = 4 * P;
export const KEEP = 0x01;
export const PUNCH = 0x03;
export const MMAP = 1;
export const INIT_SHARED = 2;
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
export const KVM_MEM_GUEST_MEMFD = 4;

let host: LinuxHost | undefined;

export async function kernelHost(): Promise<LinuxHost> {
  host ??= await LinuxHost.open({ timeoutMs: 20_000 });
  return host;
}

export async function closeKernelHost(): Promise<void> {
  await host?.dispose();
  host = undefined;
}

export async function compare(steps: Step[]): Promise<SequenceReport> {
  return runOnBoth(steps, { kernel: await kernelHost() });
}

export function divergenceMessage(report: SequenceReport): string | undefined {
  return report.divergent ? `model and kernel diverge ('!' marks the step):\n${formatReport(report)}` : undefined;
}
