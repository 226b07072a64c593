/**
 * Intel TDX as an ArchBackend. The TDX module (SEAM) owns the Secure EPT and the private HKIDs; MKTME adds a
 * 28-bit MAC and a TD-owner bit per line [X-a, X-b, X-f]. Nothing checks *who* touches a private page: a host
 * write or a device's DMA lands, breaks integrity, and the poison is consumed later as a machine check. So the
 * model keeps devices away from private pages entirely: shared IOPTEs go before a page turns private [T1g],
 * no IOPTE is ever made over a private page, and any that exists is an 'unsafe-iopte' violation (I2).
 *
 * Source tags are those of shared/reference/arch-behaviour.md §7.
 */
import type { AccessVerdict, ArchBackend, ConversionContext, PageAccessContext, PipelineStep, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE, PUD_SIZE } from '@gmemlab/core';

export type TdxVariant = 'connect';

export interface TdxOptions {
  /**
   * 'connect': TDX Connect (TDISP). The trusted IOMMU table of an assigned device reuses the Secure EPT, so its
   * private DMA follows S-EPT changes inside the TDX module with no notification [T1e, T1g, X-i]; the IOPTEs the
   * host manages (the ones this model has) stay shared-only and follow the same rules as plain TDX.
   */
  variant?: TdxVariant;
}

/** The pipeline step names, in the order KVM runs them for each 4K private page that leaves [X-a]. */
export const TDX_STEPS = {
  block: 'SEAMCALL TDH.MEM.RANGE.BLOCK',
  track: 'SEAMCALL TDH.MEM.TRACK',
  ipi: 'IPI (KVM_REQ_OUTSIDE_GUEST_MODE, per vCPU)',
  remove: 'SEAMCALL TDH.MEM.PAGE.REMOVE',
  wbinvd: 'SEAMCALL TDH.PHYMEM.PAGE.WBINVD',
  clear: 'MOVDIR64B page clear (tdx_clear_page)',
} as const;

// [T1e, T1f] Xu Yilun: a device write through a stale IOPTE "will cause host machine check and host restart",
// "not contained". The write lands (there is no ownership check in legacy VT-d) and the result is fatal.
const DMA_TO_PRIVATE: AccessVerdict = {
  allow: false,
  fault: 'machine-check',
  fatal: true,
  logged: true,
  lands: true,
  mechanism: 'TDX: no ownership check on DMA; the write breaks MKTME integrity and the host takes a machine check (not contained)',
};

function deviceAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || context.attribute === 'shared') return { allow: true };
  // [T1e] The statement does not separate reads from writes; the model treats both as fatal (see README).
  return DMA_TO_PRIVATE;
}

function hostKernelAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || context.attribute === 'shared') return { allow: true };
  // [X-d] No access-check fault: "host kernel must not allow any writes to TD-private memory"; the write poisons
  // the line and the TD's next read consumes it (#MC, TD killed). [X-c] Reads do not machine-check on parts
  // without X86_BUG_TDX_PW_MCE; what they return (ciphertext or zeros) is [U].
  return context.write ? { allow: true, poisons: true } : { allow: true };
}

function conversionPolicy(context: ConversionContext) {
  // [T1g] "unmap [shared IOPTE] before conversion to private"; "the only concern to ensure kernel safety".
  if (context.to === 'private') return 'revoke' as const;
  // [T1g] "map after conversion to shared" is optional and left to userspace: nothing to unmap.
  return 'tolerate' as const;
}

function removalPipeline(context: RemovalContext): readonly PipelineStep[] {
  // Entering the private state costs nothing here: TDH.MEM.PAGE.AUG runs at the guest's fault [X-a].
  if (context.cause === 'to-private') return [];
  // [X-a] tdx_sept_remove_private_spte, per 4K page (KVM maps private memory at 4K only: KVM_BUG_ON(level !=
  // PG_LEVEL_4K)): BLOCK -> TRACK + kick every vCPU -> PAGE.REMOVE -> PHYMEM.PAGE.WBINVD -> MOVDIR64B clear.
  const pages = context.pages;
  return [
    { step: TDX_STEPS.block, count: pages },
    { step: TDX_STEPS.track, count: pages },
    { step: TDX_STEPS.ipi, count: pages * context.vcpus },
    { step: TDX_STEPS.remove, count: pages },
    { step: TDX_STEPS.wbinvd, count: pages },
    // [X-a] "MOVDIR64B also clears the poison bit". [X-c2] would skip it without the erratum (merge status U).
    { step: TDX_STEPS.clear, count: pages },
  ];
}

/** Build a TDX backend description; `variant: 'connect'` gives 'tdx:connect'. */
export function createTdxBackend(options: TdxOptions = {}): ArchBackend {
  const variant = options.variant;
  if (variant !== undefined && variant !== 'connect') throw new TypeError(`@gmemlab/tdx: unknown variant ${String(variant)}; the only variant is 'connect'`);
  return Object.freeze({
    specificationVersion: 'v1',
    id: variant ? `tdx:${variant}` : 'tdx',
    name: variant ? 'Intel TDX Connect' : 'Intel TDX',
    // [X-h] TDX_PS_4K/2M/1G in the ABI; [X-a] KVM maps private memory at 4K only in the version cited.
    pageSizes: [PAGE_SIZE, PMD_SIZE, PUD_SIZE],
    conversionPolicy,
    deviceAccess,
    hostKernelAccess,
    // [T1e] "Intel TDX has no lower level privilege protection table": a device must never reach a private page
    // through a host IOPTE, so such an IOPTE is an invariant violation (kernel-contract §9.5 I2).
    deviceMayReach: ({ attribute, vmType }) => vmType !== 'coco' || attribute === 'shared',
    // [T1g] The host-managed (T=0) IOMMU table only ever maps shared pages; with Connect, private DMA goes
    // through the S-EPT-backed T=1 table, which the host does not write [T1e].
    mapsPrivatePages: false,
    // [X-a] Private -> shared removes the page from the S-EPT and clears it with MOVDIR64B. Shared -> private:
    // the sources say nothing about contents (PAGE.AUG/ACCEPT happen at the guest's fault); the model keeps them.
    contentsOnConversion: ({ to }) => (to === 'shared' ? 'zero' : 'keep'),
    removalPipeline,
  } satisfies ArchBackend);
}
