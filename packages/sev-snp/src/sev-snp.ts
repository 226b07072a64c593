/**
 * AMD SEV-SNP as an ArchBackend. The RMP (one entry per 4K page, 4K or 2M entries) is checked by the CPU *and by
 * the IOMMU* [S-b, S-c, S-d]: a device or host write to a guest-assigned page is blocked. So DMA over converting
 * pages is tolerated: a stale IOPTE to a private page faults harmlessly ("noisy but harmless" [T1d]), and the
 * only cost of a conversion is keeping the RMP and, with SEV-TIO, the IOPTE layout in step.
 *
 * Source tags are those of shared/reference/arch-behaviour.md §7.
 */
import type { AccessVerdict, ArchBackend, ConversionContext, ConsumerResponse, PageAccessContext, PipelineStep, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE } from '@gmemlab/core';

export type SevSnpVariant = 'tio';

export interface SevSnpOptions {
  /**
   * 'tio': SEV-TIO (TDISP). Private DMA goes through the host-managed IOMMU with RMP checks, so an IOPTE may not
   * be larger than the RMP entry under it [S-g, S-j, T2]: a conversion of part of a huge IOPTE is refused.
   */
  variant?: SevSnpVariant;
}

/** The pipeline step names [S-a] (`sev_gmem_invalidate`, also the to-shared path of in-place conversion). */
export const SEV_SNP_STEPS = {
  psmash: 'PSMASH (split a 2M RMP entry into 4K)',
  rmpupdate2M: 'RMPUPDATE 2M -> shared',
  rmpupdate4K: 'RMPUPDATE 4K -> shared',
  clflush: 'clflush_cache_range',
} as const;

function deviceAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || context.attribute === 'shared') return { allow: true };
  // [S-c] The IOMMU's RMP check blocks the access and reports EVENT_TYPE_RMP_FAULT; the driver only logs it
  // (rate-limited). [T1d] "IOMMU fault events - noisy but harmless".
  return { allow: false, fault: 'contained', fatal: false, logged: true, mechanism: 'AMD IOMMU RMP check: access blocked, RMP_PAGE_FAULT event logged' };
}

function hostKernelAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || context.attribute === 'shared') return { allow: true };
  // [S-e, S-b] A host write to an assigned page is an RMP #PF; for the kernel, show_fault_oops prints "RMP
  // violation" — "an RMP #PF will trigger and cause a host crash".
  if (context.write) return { allow: false, fault: 'contained', fatal: true, logged: true, mechanism: 'RMP #PF on a kernel write: oops ("RMP violation")' };
  // [S-b, U] Host reads of assigned pages are believed allowed by the APM (the host sees ciphertext).
  return { allow: true };
}

/** Whether [offset, offset + length) of the file starts and ends on IOPTE boundaries of `area`. */
function splitsAnIopte(context: ConversionContext): boolean {
  const { area } = context;
  if (area.iopteSize <= PAGE_SIZE) return false;
  const first = area.iova + (context.overlapOffset - area.fileOffset);
  const end = first + context.overlapLength;
  return first % area.iopteSize !== 0 || end % area.iopteSize !== 0;
}

function conversionPolicy(tio: boolean) {
  return (context: ConversionContext): ConsumerResponse => {
    // [S-g, S-j, T2] SEV-TIO: "IOMMU PDEs have to use the same granularity as NPT and RMP"; a partial conversion
    // inside a huge IOPTE would leave an IOPTE larger than the RMP entry under it. Refused (see README: the
    // kernel has no in-place IOPTE split today; the remedy is 4K IOPTEs, as amd_iommu=nohugepages does [S-d]).
    if (tio && splitsAnIopte(context)) return 'refuse';
    // [T1a, T1d, S-c] Not needed for safety: the RMP check in the IOMMU blocks DMA to private pages.
    return 'tolerate';
  };
}

/** Whether block [start, start + PMD_SIZE) lies inside one run of `runs` (then it had a 2M RMP entry). */
function wasWhole(runs: ReadonlyArray<{ offset: number; length: number }>, start: number): boolean {
  return runs.some((run) => run.offset <= start && run.offset + run.length >= start + PMD_SIZE);
}

function removalPipeline(context: RemovalContext): readonly PipelineStep[] {
  // Entering the private state costs nothing here: rmp_make_private runs in sev_gmem_prepare at the guest's fault.
  if (context.cause === 'to-private') return [];
  // [S-a] sev_gmem_prepare uses a 2M RMP entry only for a large folio whose whole 2M range was in one state; the
  // model assumes one wherever a whole aligned 2M block was private and present (privateBefore).
  const before = context.privateBefore ?? [];
  let psmash = 0;
  let rmp2M = 0;
  let rmp4K = 0;
  for (const range of context.ranges) {
    const end = range.offset + range.length;
    for (let block = Math.floor(range.offset / PMD_SIZE) * PMD_SIZE; block < end; block += PMD_SIZE) {
      const from = Math.max(block, range.offset);
      const to = Math.min(block + PMD_SIZE, end);
      const pages = (to - from) / PAGE_SIZE;
      if (!wasWhole(before, block)) {
        rmp4K += pages;
      } else if (from === block && to === block + PMD_SIZE) {
        // [S-a] "a 2M rmp_make_shared if aligned and fully covered".
        rmp2M += 1;
      } else {
        // [S-a, S-b] "otherwise PSMASH then 4K": PSMASH splits the 2M entry, keeping the Validated bit.
        psmash += 1;
        rmp4K += pages;
      }
    }
  }
  return [
    { step: SEV_SNP_STEPS.psmash, count: psmash },
    { step: SEV_SNP_STEPS.rmpupdate2M, count: rmp2M },
    { step: SEV_SNP_STEPS.rmpupdate4K, count: rmp4K },
    // [S-a] "Then clflush_cache_range, because MMU-notifier WBINVD hooks do not cover guest_memfd": once per range.
    { step: SEV_SNP_STEPS.clflush, count: context.ranges.length },
  ];
}

/** Build an SEV-SNP backend description; `variant: 'tio'` gives 'sev-snp:tio'. */
export function createSevSnpBackend(options: SevSnpOptions = {}): ArchBackend {
  const variant = options.variant;
  if (variant !== undefined && variant !== 'tio') throw new TypeError(`@gmemlab/sev-snp: unknown variant ${String(variant)}; the only variant is 'tio'`);
  const tio = variant === 'tio';
  return Object.freeze({
    specificationVersion: 'v1',
    id: tio ? 'sev-snp:tio' : 'sev-snp',
    name: tio ? 'AMD SEV-SNP with SEV-TIO' : 'AMD SEV-SNP',
    // [S-b] "The RMP supports only 4 KB and 2 MB entries"; 1G mappings are checked as 2M.
    pageSizes: [PAGE_SIZE, PMD_SIZE],
    conversionPolicy: conversionPolicy(tio),
    deviceAccess,
    hostKernelAccess,
    // [S-c] The IOMMU blocks DMA to private pages itself: an IOPTE over one is not a safety violation.
    deviceMayReach: () => true,
    // [T1d] Jason: the IOMMU "should be programed with both the shared and private pages"; the RMP guards them.
    mapsPrivatePages: true,
    // [S-a, S-b] RMPUPDATE changes only the RMP entry and KVM "does not directly manipulate the memory contents"
    // (kernel-contract §4.2): the bytes stay (as ciphertext under the guest's key; the model has no encryption).
    contentsOnConversion: () => 'keep',
    removalPipeline,
  } satisfies ArchBackend);
}
