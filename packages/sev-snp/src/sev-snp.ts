/**
 * AMD SEV-SNP as an ArchBackend. The RMP (one entry per 4K page, 4K or 2M entries) is checked by the CPU *and by
 * the IOMMU* [S-b, S-c, S-d]: a device or host write to a guest-assigned page is blocked. So DMA over converting
 * pages is tolerated: a stale IOPTE to a private page faults harmlessly ("noisy but harmless" [T1d]), and the
 * only cost of a conversion is keeping the RMP and, with SEV-TIO, the IOPTE layout in step.
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7).
 */
import type { AccessVerdict, ArchBackend, BackendRule, ConversionContext, ConsumerResponse, PageAccessContext, PipelineStep, PrivateEntryContext, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE } from '@gmemlab/core';


/**
 * The hardware state of the page reached. A core older than 0.2 does not pass it; then the attribute is the best
 * that is known, so this backend still works there, as it did.
 */
function hardwareOf(context: PageAccessContext): 'shared' | 'private' {
  return (context as Partial<PageAccessContext>).hardware ?? context.attribute;
}

export type SevSnpVariant = 'tio';

export interface SevSnpOptions {
  /**
   * 'tio': SEV-TIO (TDISP). Private DMA goes through the host-managed IOMMU with RMP checks, so an IOPTE may not
   * be larger than the RMP entry under it [S-g, S-j, T2]: a conversion of part of a huge IOPTE splits it.
   */
  variant?: SevSnpVariant;
}

/** The step names [S-a] (sev_gmem_prepare at the private fault; sev_gmem_invalidate on free and to-shared). */
export const SEV_SNP_STEPS = {
  makePrivate: 'RMPUPDATE 4K -> guest-owned (rmp_make_private)',
  pvalidate: 'PVALIDATE (guest)',
  rmpupdate4K: 'RMPUPDATE 4K -> shared (rmp_make_shared)',
  clflush: 'clflush_cache_range (4K)',
} as const;

function deviceAccess(context: PageAccessContext): AccessVerdict {
  // Only an RMP-assigned page is checked; a page private in KVM's view but never faulted in is still
  // hypervisor-owned in the RMP [S-a: assignment happens in sev_gmem_prepare].
  if (context.vmType !== 'coco' || hardwareOf(context) !== 'private') return { allow: true };
  // [S-c] The IOMMU's RMP check blocks the access and reports EVENT_TYPE_RMP_FAULT; the driver only logs it
  // (rate-limited). [T1d] "IOMMU fault events - noisy but harmless".
  return { allow: false, fault: 'contained', fatal: false, logged: true, mechanism: 'AMD IOMMU RMP check: access blocked, RMP_PAGE_FAULT event logged' };
}

function hostKernelAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || hardwareOf(context) !== 'private') return { allow: true };
  // [S-e, S-b] A host write to an assigned page is an RMP #PF; for the kernel, show_fault_oops prints "RMP
  // violation" — "an RMP #PF will trigger and cause a host crash".
  if (context.write) return { allow: false, fault: 'contained', fatal: true, logged: true, mechanism: 'RMP #PF on a kernel write: oops ("RMP violation")' };
  // [S-b, U] Host reads of assigned pages are believed allowed by the APM (the host sees ciphertext).
  return { allow: true };
}

/** Whether [offset, offset + length) of the file starts or ends inside a huge IOPTE of `area`. */
function splitsAnIopte(context: ConversionContext): boolean {
  const { area } = context;
  if (area.iopteSize <= PAGE_SIZE) return false;
  const first = area.iova + (context.overlapOffset - area.fileOffset);
  const end = first + context.overlapLength;
  return first % area.iopteSize !== 0 || end % area.iopteSize !== 0;
}

function conversionPolicy(tio: boolean) {
  return (context: ConversionContext): ConsumerResponse => {
    // [S-g, S-j, T2] SEV-TIO: "IOMMU PDEs have to use the same granularity as NPT and RMP"; a conversion that
    // cuts a huge IOPTE would leave it larger than the RMP entries under it, so the IOPTEs are restructured to
    // follow the RMP (Jason in [T2]: IOPTE boundaries wherever the C-bit changes) — not refused.
    if (tio && splitsAnIopte(context)) return 'split';
    // [T1a, T1d, S-c] Not needed for safety: the RMP check in the IOMMU blocks DMA to private pages.
    return 'tolerate';
  };
}

function privateEntry(context: PrivateEntryContext): readonly PipelineStep[] {
  // [S-a, 6b] sev_gmem_prepare (in kvm_gmem_get_pfn, before the retry check) makes the page guest-owned with a
  // 4K RMPUPDATE: guest_memfd folios are order-0 (kernel-contract §3.9), so never a 2M entry. The guest then
  // validates it with PVALIDATE.
  return [
    { step: SEV_SNP_STEPS.makePrivate, count: context.pages },
    { step: SEV_SNP_STEPS.pvalidate, count: context.pages },
  ];
}

function removalPipeline(context: RemovalContext): readonly PipelineStep[] {
  if (context.cause === 'to-private') return [];
  // [S-a, 6b] sev_gmem_invalidate: a 2M RMPUPDATE only for a 2M RMP entry, PSMASH for a 2M entry cut in part,
  // otherwise one 4K RMPUPDATE + a 4K cache flush per page; pages never assigned are skipped. With order-0
  // folios every entry is 4K: 2 MiB of private pages is 512 RMPUPDATEs, and PSMASH never runs.
  return [
    { step: SEV_SNP_STEPS.rmpupdate4K, count: context.pages },
    { step: SEV_SNP_STEPS.clflush, count: context.pages },
  ];
}

/**
 * The rules of one instance in words, with the tags the code above cites: `backend.rules`, what the README's
 * tables say for these options. Where the sources disagree or are silent, the rule says so.
 */
function sevSnpRules(tio: boolean): readonly BackendRule[] {
  const rules: BackendRule[] = [];
  if (tio) {
    rules.push({
      topic: 'variant',
      rule: "SEV-TIO (TDISP): a device's private DMA goes through the host-managed IOMMU with RMP checks, so IOMMU page table entries have to use the same granularity as the RMP.",
      source: '[S-g, S-j, T2]',
    });
  }
  rules.push(
    tio
      ? {
          topic: 'conversion policy',
          rule: "'split' when the converting range starts or ends inside one of the area's huge IOPTEs (each cut IOPTE becomes 4K IOPTEs over the same frames, DMA keeps working), never refused; otherwise 'tolerate'. A huge IOPTE over a wholly private range stays larger than the 4K RMP entries under it, which is tolerated [I].",
          source: '[S-g, S-j, T2]; [T1d]',
        }
      : {
          topic: 'conversion policy',
          rule: "'tolerate' both ways: the IOMMU's RMP check blocks DMA to assigned pages, so nothing needs unmapping for safety. A 2M IOPTE over a partly assigned block is tolerated too, though SNP today needs 4K IOMMU pages [T2]; the DMA that would then fault is not modelled.",
          source: '[T1a, T1d, S-c]; [T2]',
        },
    {
      topic: 'device access to private',
      rule: "A device access to an RMP-assigned page is blocked by the IOMMU's RMP check and logged as an RMP_PAGE_FAULT event, not fatal ('noisy but harmless'). No AMD text on RMP checks for device reads is known; blocking reads like writes is an assumption [U].",
      source: '[S-c, T1d]; [U]',
    },
    {
      topic: 'device access to private',
      rule: 'A page private in KVM\'s view that the guest never faulted in is still hypervisor-owned in the RMP: a device access to it is allowed.',
      source: '[S-a]',
    },
    {
      topic: 'host access to private',
      rule: "A host-kernel write to an RMP-assigned page is an RMP #PF: the kernel oopses ('RMP violation'), fatal.",
      source: '[S-e, S-b]',
    },
    {
      topic: 'host access to private',
      rule: "A host-kernel read of an RMP-assigned page is allowed (in hardware the host sees ciphertext; the model shows the stored bytes). The APM is believed to allow it, but no primary source is known [U]; the cross-architecture table's 'RMP #PF: kernel oops' does not separate reads from writes.",
      source: '[S-b]; [U]',
    },
    {
      topic: 'IOPTEs over private',
      rule: 'A device may reach any page: the IOMMU blocks DMA to assigned pages itself, so an IOPTE over a private page is no safety violation.',
      source: '[S-c]',
    },
    {
      topic: 'IOPTEs over private',
      rule: 'In the registry design IOMMU_IOAS_MAP_FILE maps shared and private pages alike, and the RMP guards them.',
      source: '[T1d] (Jason: program both the shared and private pages)',
    },
    {
      topic: 'private entry',
      rule: "At the guest's private fault, in kvm_gmem_get_pfn before KVM's retry check ('resolve'), sev_gmem_prepare makes each 4K page guest-owned with RMPUPDATE, and the guest validates it with PVALIDATE. A fault that then retries leaves the page guest-owned.",
      source: '[S-a], arch-behaviour 6b',
    },
    {
      topic: 'removal pipeline',
      rule: 'Per 4K page that was assigned and leaves by truncate, release or to-shared (sev_gmem_invalidate): one 4K RMPUPDATE to shared and one 4K cache flush. Pages never assigned are skipped, and PSMASH or a 2M RMPUPDATE never runs, since every entry is 4K.',
      source: '[S-a], arch-behaviour 6b',
    },
    {
      topic: 'contents',
      rule: "'keep' on conversion both ways, on truncate or release, and at the guest's first private access: RMPUPDATE changes only the RMP entry, sev_gmem_prepare clears nothing (guest_memfd clears a folio only when it first allocates it), and KVM does not touch the bytes. In hardware the guest reads the earlier bytes through its own key, so not the plaintext a device wrote while the page was shared [I]; the model has no encryption and shows the stored bytes ('keep' means not cleared).",
      source: '[S-a, S-b], kernel-contract §4.2',
    },
    {
      topic: 'page sizes',
      rule: "The RMP has 4K and 2M entries (1G mappings are checked as 2M); guest_memfd's order-0 folios make every RMP entry the model creates 4K.",
      source: '[S-b]; kernel-contract §3.9',
    },
  );
  return Object.freeze(rules.map((rule) => Object.freeze(rule)));
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
    contentsOnRemoval: () => 'keep',
    // [S-a] sev_gmem_prepare makes the page RMP-assigned (rmp_make_private) and clears nothing: not cleared.
    contentsOnPrivateEntry: () => 'keep',
    removalPipeline,
    privateEntry,
    privateEntryAt: 'resolve',
    hardwarePrivateName: 'RMP-assigned to the guest (4K entry), validated',
    rules: sevSnpRules(tio),
  } satisfies ArchBackend);
}
