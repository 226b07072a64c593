/**
 * AMD SEV-SNP as an ArchBackend. The RMP (one entry per 4K page, 4K or 2M entries) is checked by the CPU *and by
 * the IOMMU* [S-b, S-c, S-d]: a device or host write to a guest-assigned page is blocked. So DMA over converting
 * pages is tolerated: a stale IOPTE to a private page faults harmlessly ("noisy but harmless" [T1d]), and the
 * only cost of a conversion is keeping the RMP and, with SEV-TIO, the IOPTE layout in step.
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7).
 */
import type {
  AccessVerdict,
  ArchBackend,
  ConversionContext,
  ConsumerResponse,
  OptionSpecsOf,
  PageAccessContext,
  PipelineStep,
  PrivateEntryContext,
  RemovalContext,
} from '@gmemlab/core';
import {
  archBackend,
  defineOptions,
  flag,
  oneOf,
  PAGE_SIZE,
  PMD_SIZE,
  ruleTable,
  variantId,
  whenHardwarePrivate,
} from '@gmemlab/core';

export type SevSnpVariant = 'tio';

export interface SevSnpOptions {
  /**
   * 'tio': SEV-TIO (TDISP). Private DMA goes through the host-managed IOMMU with RMP checks, so an IOPTE may not
   * be larger than the RMP entry under it [S-g, S-j, T2]: a conversion of part of a huge IOPTE splits it.
   */
  variant?: SevSnpVariant;
  /**
   * Whether the host's AMD IOMMU uses huge IOPTEs. false (the default): amd_iommu=nohugepages, 4K IOPTEs only, the
   * configuration [T2] says SEV needs today ("use the kernel command line parameter to force 4k IOMMU pages");
   * the driver itself does not restrict page sizes when SNP is enabled, it only forces the v1 page table [S-d].
   * true: the driver's default page sizes (2M and 1G IOPTEs where an area allows), 'sev-snp:iommu-hugepages'.
   * SEV-TIO implies it: its IOPTEs follow the RMP at 2M [T2].
   */
  iommuHugePages?: boolean;
}

/** The options' values and the combination the sources rule out. */
const readOptions = defineOptions(
  '@gmemlab/sev-snp',
  { variant: oneOf(['tio']), iommuHugePages: flag() } satisfies OptionSpecsOf<SevSnpOptions>,
  [
    {
      when: { variant: 'tio', iommuHugePages: false },
      message:
        "variant 'tio' needs huge IOPTEs (they follow the RMP [T2]); iommuHugePages: false does not combine with it",
    },
  ],
);

/** What the hooks and the rules decide by. */
interface Settings {
  readonly tio: boolean;
  readonly hugeIoptes: boolean;
}

/** The step names [S-a] (sev_gmem_prepare at the private fault; sev_gmem_invalidate on free and to-shared). */
export const SEV_SNP_STEPS = {
  makePrivate: 'RMPUPDATE 4K -> guest-owned (rmp_make_private)',
  pvalidate: 'PVALIDATE (guest)',
  rmpupdate4K: 'RMPUPDATE 4K -> shared (rmp_make_shared)',
  clflush: 'clflush_cache_range (4K)',
} as const;

// Only an RMP-assigned page is checked (whenHardwarePrivate); a page private in KVM's view but never faulted in is
// still hypervisor-owned in the RMP [S-a: assignment happens in sev_gmem_prepare].
const deviceAccess = whenHardwarePrivate((): AccessVerdict => {
  // [S-c] The IOMMU's RMP check blocks the access and reports EVENT_TYPE_RMP_FAULT; the driver only logs it
  // (rate-limited). [T1d] "IOMMU fault events - noisy but harmless".
  return {
    allow: false,
    fault: 'contained',
    fatal: false,
    logged: true,
    mechanism: 'AMD IOMMU RMP check: access blocked, RMP_PAGE_FAULT event logged',
  };
});

const hostKernelAccess = whenHardwarePrivate((context: PageAccessContext): AccessVerdict => {
  // [S-e, S-b] A host write to an assigned page is an RMP #PF; for the kernel, show_fault_oops dumps the RMP entry
  // — "an RMP #PF will trigger and cause a host crash".
  if (context.write)
    return {
      allow: false,
      fault: 'contained',
      fatal: true,
      logged: true,
      mechanism: 'RMP #PF on a kernel write: oops ("RMP violation")',
    };
  // [U] Host reads of assigned pages are believed allowed by the APM (the host sees ciphertext); [S-b] describes
  // the RMP #PF for writes only.
  return { allow: true };
});

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

/** Where a source is code: the file, the function and the commit read (docs/sources.md). */
const SEV_C = 'arch/x86/kvm/svm/sev.c @ 0097f9df996f';

/** The passages each tag is cited for (BackendRule.evidence), shared by the rules that cite them. */
const QUOTE = {
  T1a: "It seems like on SNP and ARM, the faults generated due to the host accessing guest private memory can be caught and handled, so it's not super terrible if there's no unmapping during conversions.",
  T1dNoisy: 'the AMD host will observe IOMMU fault events - noisy but harmless',
  T1dBoth: 'the iommu should be programed with both the shared and private pages in the respective GPA locations',
  T1dRestructure: 'due to the RMP matching insanity you have to keep restructuring the IOPTEs',
  T2Granularity: 'since the IOMMU performs RMP checks - IOMMU PDEs have to use the same granularity as NPT and RMP',
  T2Force4K:
    'if you want to use SEV today you also have to use the kernel command line parameter to force 4k IOMMU pages',
  Sg: 'It is not until we get to Trusted I/O / TDISP where devices will be able to DMA directly to guest encrypted memory',
  Sj: 'still expects the host to manage the IOMMU page table',
  ScReport:
    'drivers/iommu/amd/iommu.c: amd_iommu_report_rmp_fault() logs (rate-limited) the IOMMU\'s EVENT_TYPE_RMP_FAULT events (commit 2818de6e87de, "iommu/amd: Add support for RMP_PAGE_FAULT and RMP_HW_ERR")',
  Sd: 'drivers/iommu/amd/init.c @ 00a7dd64888d: iommu_snp_enable() forces the v1 page table when SNP is enabled; parse_amd_iommu_options(): "nohugepages" sets amd_iommu_pgsize_bitmap = AMD_IOMMU_PGSIZES_4K, otherwise AMD_IOMMU_PGSIZES',
  SaPrepare: `${SEV_C}: sev_gmem_prepare(), called from kvm_gmem_get_pfn() before KVM's mmu_invalidate retry check, makes the page guest-owned (rmp_make_private) at its first private fault, a 4K entry for an order-0 folio`,
  SaInvalidate: `${SEV_C}: sev_gmem_invalidate() (kvm_arch_gmem_invalidate, from .free_folio) walks the pfns: pages not assigned are skipped; rmp_make_shared() per 4K entry (PSMASH only for a 2M entry cut in part), then clflush_cache_range()`,
  SaBytes: `${SEV_C}: sev_gmem_prepare() and sev_gmem_invalidate() change RMP entries (rmp_make_private, rmp_make_shared) and flush caches; neither writes the page's bytes`,
  SbWrite:
    'If the kernel uses a 2MB or larger directmap mapping to write to an address, and that mapping contains any 4KB pages that are set to private in the RMP table, an RMP #PF will trigger and cause a host crash.',
  Sb1G: 'even accesses from 1GB mappings will be treated as 2MB accesses as far as RMP table checks are concerned',
  Se: 'arch/x86/mm/fault.c: show_fault_oops(): on a fault with X86_PF_RMP set, the kernel oops dumps the RMP entry (snp_dump_hva_rmpentry)',
  SixbPrepare:
    '`sev_gmem_prepare` (from `kvm_gmem_get_pfn`, before the retry check) assigns a page at its first private fault, 2M only for a large folio',
  SixbInvalidate:
    '`sev_gmem_invalidate` does one 4K RMPUPDATE + a 4K flush per assigned page and skips pages never assigned',
  KcContents: 'KVM "does not directly manipulate the memory contents" of pages when attributes change',
  KcOrder0: 'the page is returned with a reference and `max_order` 0.',
} as const;

/**
 * The rules in words, with the tags the code above cites and, for each tag, the passage that says it (`evidence`):
 * `backend.rules` is the rows whose settings (`when`) match the instance's, in this order; what the README's tables
 * say. Where the sources disagree or are silent, the rule says so.
 */
const RULES = ruleTable<Settings>([
  {
    when: { tio: true },
    topic: 'variant',
    rule: "SEV-TIO (TDISP): a device's private DMA goes through the host-managed IOMMU with RMP checks, so IOMMU page table entries have to use the same granularity as the RMP.",
    source: '[S-g, S-j, T2]',
    evidence: [
      { tag: 'S-g', quote: QUOTE.Sg },
      { tag: 'S-j', quote: QUOTE.Sj },
      { tag: 'T2', quote: QUOTE.T2Granularity },
    ],
  },
  {
    when: { tio: false, hugeIoptes: true },
    topic: 'variant',
    rule: "'iommu-hugepages': the host runs without amd_iommu=nohugepages, so the v1 IOMMU page table that SNP forces uses 2M and 1G IOPTEs where an area allows. [T2] says SEV needs 4K IOMMU pages today: this is the configuration it warns against.",
    source: '[S-d, T2]',
    evidence: [
      { tag: 'S-d', quote: QUOTE.Sd },
      { tag: 'T2', quote: QUOTE.T2Force4K },
    ],
  },
  {
    when: { tio: true },
    topic: 'conversion policy',
    rule: "'split' when the converting range starts or ends inside one of the area's huge IOPTEs (each cut IOPTE becomes 4K IOPTEs over the same frames, DMA keeps working), never refused; otherwise 'tolerate'. A huge IOPTE over a wholly private range stays larger than the 4K RMP entries under it, which is tolerated [I].",
    source: '[S-g, S-j, T2]; [T1d]',
    evidence: [
      { tag: 'S-g', quote: QUOTE.Sg },
      { tag: 'S-j', quote: QUOTE.Sj },
      { tag: 'T2', quote: QUOTE.T2Granularity },
      { tag: 'T1d', quote: QUOTE.T1dRestructure },
    ],
  },
  {
    when: { tio: false, hugeIoptes: true },
    topic: 'conversion policy',
    rule: "'tolerate' both ways: the IOMMU's RMP check blocks DMA to assigned pages, so nothing needs unmapping for safety. A 2M IOPTE over a partly assigned block is tolerated too, though SNP today needs 4K IOMMU pages; the DMA that would then fault is not modelled [I].",
    source: '[T1a, T1d, S-c]; [T2]',
    evidence: [
      { tag: 'T1a', quote: QUOTE.T1a },
      { tag: 'T1d', quote: QUOTE.T1dNoisy },
      { tag: 'S-c', quote: QUOTE.ScReport },
      { tag: 'T2', quote: QUOTE.T2Force4K },
    ],
  },
  {
    when: { hugeIoptes: false },
    topic: 'conversion policy',
    rule: "'tolerate' both ways: the IOMMU's RMP check blocks DMA to assigned pages, so nothing needs unmapping for safety; with 4K IOPTEs no IOPTE spans RMP entries in different states.",
    source: '[T1a, T1d, S-c]',
    evidence: [
      { tag: 'T1a', quote: QUOTE.T1a },
      { tag: 'T1d', quote: QUOTE.T1dNoisy },
      { tag: 'S-c', quote: QUOTE.ScReport },
    ],
  },
  {
    topic: 'device access to private',
    rule: "A device access to an RMP-assigned page is blocked by the IOMMU's RMP check and logged as an RMP_PAGE_FAULT event, not fatal ('noisy but harmless'). No AMD text on RMP checks for device reads is known; blocking reads like writes is an assumption [U].",
    source: '[S-c, T1d]; [U]',
    evidence: [
      { tag: 'S-c', quote: QUOTE.ScReport },
      { tag: 'T1d', quote: QUOTE.T1dNoisy },
    ],
  },
  {
    topic: 'device access to private',
    rule: "A page private in KVM's view that the guest never faulted in is still hypervisor-owned in the RMP: a device access to it is allowed.",
    source: '[S-a]',
    evidence: [{ tag: 'S-a', quote: QUOTE.SaPrepare }],
  },
  {
    topic: 'host access to private',
    rule: 'A host-kernel write to an RMP-assigned page is an RMP #PF: the kernel oopses and dumps the RMP entry, fatal.',
    source: '[S-e, S-b]',
    evidence: [
      { tag: 'S-e', quote: QUOTE.Se },
      { tag: 'S-b', quote: QUOTE.SbWrite },
    ],
  },
  {
    topic: 'host access to private',
    rule: "A host-kernel read of an RMP-assigned page is allowed (in hardware the host sees ciphertext; the model shows the stored bytes). The kernel's RMP code describes the #PF for writes only; that reads are allowed is believed of the APM, but no primary source is known [U].",
    source: '[S-b]; [U]',
    evidence: [{ tag: 'S-b', quote: QUOTE.SbWrite }],
  },
  {
    topic: 'IOPTEs over private',
    rule: 'A device may reach any page: the IOMMU blocks DMA to assigned pages itself, so an IOPTE over a private page is no safety violation.',
    source: '[S-c]',
    evidence: [{ tag: 'S-c', quote: QUOTE.ScReport }],
  },
  {
    topic: 'IOPTEs over private',
    rule: 'In the registry design IOMMU_IOAS_MAP_FILE maps shared and private pages alike, and the RMP guards them.',
    source: '[T1d]',
    evidence: [{ tag: 'T1d', quote: QUOTE.T1dBoth }],
  },
  {
    topic: 'private entry',
    rule: "At the guest's private fault, in kvm_gmem_get_pfn before KVM's retry check ('resolve'), sev_gmem_prepare makes each 4K page guest-owned with RMPUPDATE, and the guest validates it with PVALIDATE. A fault that then retries leaves the page guest-owned.",
    source: '[S-a], arch-behaviour 6b',
    evidence: [
      { tag: 'S-a', quote: QUOTE.SaPrepare },
      { tag: 'arch-behaviour 6b', quote: QUOTE.SixbPrepare },
    ],
  },
  {
    topic: 'removal pipeline',
    rule: "Today's path (conversion 'separate'): a conversion to shared on the VM fd zaps only the NPT entry; the page stays guest-assigned in the RMP until guest_memfd frees the folio, so the removal steps run at the VMM's punch hole, not at KVM_SET_MEMORY_ATTRIBUTES (privateRemovalAt 'free').",
    source: '[S-a]',
    evidence: [{ tag: 'S-a', quote: QUOTE.SaInvalidate }],
  },
  {
    topic: 'removal pipeline',
    rule: 'Per 4K page that was assigned and leaves by truncate, release or to-shared (sev_gmem_invalidate): one 4K RMPUPDATE to shared and one 4K cache flush. Pages never assigned are skipped, and PSMASH or a 2M RMPUPDATE never runs, since every entry is 4K.',
    source: '[S-a], arch-behaviour 6b',
    evidence: [
      { tag: 'S-a', quote: QUOTE.SaInvalidate },
      { tag: 'arch-behaviour 6b', quote: QUOTE.SixbInvalidate },
    ],
  },
  {
    topic: 'contents',
    rule: "'keep' on conversion both ways, on truncate or release, and at the guest's first private access: RMPUPDATE changes only the RMP entry, sev_gmem_prepare clears nothing (guest_memfd clears a folio only when it first allocates it), and KVM does not touch the bytes. In hardware the guest reads the earlier bytes through its own key, so not the plaintext a device wrote while the page was shared [I]; the model has no encryption and shows the stored bytes ('keep' means not cleared).",
    source: '[S-a, S-b], kernel-contract §4.2',
    evidence: [
      { tag: 'S-a', quote: QUOTE.SaBytes },
      {
        tag: 'S-b',
        quote:
          'arch/x86/virt/svm/sev.c @ 0cbc02584158: rmpupdate() executes RMPUPDATE on the RMP entry of the pfn (rmp_make_private, rmp_make_shared); the page itself is not written',
      },
      { tag: 'kernel-contract §4.2', quote: QUOTE.KcContents },
    ],
  },
  {
    topic: 'page sizes',
    rule: "The RMP has 4K and 2M entries (1G mappings are checked as 2M); guest_memfd's order-0 folios make every RMP entry the model creates 4K.",
    source: '[S-b]; kernel-contract §3.9',
    evidence: [
      { tag: 'S-b', quote: QUOTE.Sb1G },
      { tag: 'kernel-contract §3.9', quote: QUOTE.KcOrder0 },
    ],
  },
  {
    when: { hugeIoptes: true },
    topic: 'page sizes',
    rule: "IOPTEs are the largest of 4K, 2M and 1G that an area's IOVA, offset and length allow: the AMD v1 page-size bitmap without amd_iommu=nohugepages.",
    source: '[S-d]',
    evidence: [{ tag: 'S-d', quote: QUOTE.Sd }],
  },
  {
    when: { hugeIoptes: false },
    topic: 'page sizes',
    rule: 'IOPTEs are 4K: SNP forces the AMD v1 IOMMU page table, and SEV hosts today run it with amd_iommu=nohugepages, which limits it to 4 KiB pages. The driver does not restrict page sizes by itself when SNP is enabled; the command line does.',
    source: '[T2, S-d]',
    evidence: [
      { tag: 'T2', quote: QUOTE.T2Force4K },
      { tag: 'S-d', quote: QUOTE.Sd },
    ],
  },
]);

/** Build an SEV-SNP backend description; `variant: 'tio'` gives 'sev-snp:tio'. */
export function createSevSnpBackend(options: SevSnpOptions = {}): ArchBackend {
  const { variant, iommuHugePages } = readOptions(options);
  const tio = variant === 'tio';
  // SEV-TIO implies huge IOPTEs [T2].
  const hugeIoptes = tio || iommuHugePages === true;
  const policy = conversionPolicy(tio);
  return archBackend({
    id: variantId('sev-snp', [variant, !tio && hugeIoptes && 'iommu-hugepages']),
    name: tio ? 'AMD SEV-SNP with SEV-TIO' : hugeIoptes ? 'AMD SEV-SNP, huge IOMMU pages' : 'AMD SEV-SNP',
    // [S-b] Only 4K and 2M RMP entries; "even accesses from 1GB mappings will be treated as 2MB accesses".
    pageSizes: [PAGE_SIZE, PMD_SIZE],
    // [T2, S-d] SEV hosts run the v1 IOMMU page table with amd_iommu=nohugepages: 4K IOPTEs. Absent (the
    // driver's own 4K/2M/1G) for 'iommu-hugepages' and SEV-TIO.
    ...(hugeIoptes ? {} : { iommuPageSizes: [PAGE_SIZE] }),
    conversionPolicy: policy,
    // What conversionPolicy reads: with SEV-TIO, splitsAnIopte's fields (the area's IOPTE size, IOVA and file
    // offset, and the overlap), so each area is still asked; without it the answer is always 'tolerate' and reads
    // nothing, so one question per conversion answers for every area.
    conversionPolicyInputs: {
      policy,
      inputs: tio ? ['area.iopteSize', 'area.iova', 'area.fileOffset', 'overlapOffset', 'overlapLength'] : [],
    },
    deviceAccess,
    hostKernelAccess,
    // [S-c] The IOMMU blocks DMA to private pages itself: an IOPTE over one is not a safety violation.
    deviceMayReach: () => true,
    // [T1d] Jason: on AMD "the iommu should be programed with both the shared and private pages in the respective
    // GPA locations"; the RMP guards them.
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
    // [S-a] The conversion's zap drops only the NPT entry; the RMP entry stays guest-assigned until guest_memfd
    // frees the folio (kvm_arch_gmem_invalidate -> sev_gmem_invalidate from .free_folio), i.e. at the VMM's punch.
    privateRemovalAt: 'free',
    hardwarePrivateName: 'RMP-assigned to the guest (4K entry), validated',
    rules: RULES.select({ tio, hugeIoptes }),
  });
}
