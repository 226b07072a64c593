/**
 * Arm CCA (RME + RMM) as an ArchBackend. The Granule Protection Table, kept by EL3, gives every 4K granule a
 * physical address space; the granule protection check runs in the PE *and in the SMMU* [C-c, C-d]. A host or
 * device access to a Realm granule is blocked: a fault for the CPU, an external abort for the device. So DMA over
 * converting pages is tolerated ("ARM is also supposed to be safe as GPT faults are contained" [T1d]).
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7).
 */
import type {
  AccessVerdict,
  ArchBackend,
  ConsumerResponse,
  OptionSpecsOf,
  PipelineStep,
  PrivateEntryContext,
  RemovalContext,
} from '@gmemlab/core';
import {
  archBackend,
  defineOptions,
  oneOf,
  PAGE_SIZE,
  PMD_SIZE,
  PUD_SIZE,
  ruleTable,
  variantId,
  whenHardwarePrivate,
} from '@gmemlab/core';

export type ArmCcaVariant = 'da';

export interface ArmCcaOptions {
  /**
   * 'da': CCA device assignment. The RMM points the assigned device's SMMU stream at the Realm's own stage-2
   * (RTT) and enables it only after the Realm's RSI call [C-f]; private DMA never goes through host IOPTEs, so
   * the host's IOMMU_IOAS_MAP_FILE maps shared pages only.
   */
  variant?: ArmCcaVariant;
  /**
   * What IOMMU_IOAS_MAP_FILE maps in the registry design. 'shared-only' (the default): shared pages only, as
   * [T1d] says for Arm: "on Linux the iommu should be programed with the shared pages mapped into the shared
   * address range". 'rely-on-gpt': every page, private ones too, leaving it to the SMMU's granule protection
   * check [C-c] — the reading Jason floated in the same message ("rely entirely on the GPT to arbitrate access")
   * and doubted at once ("I don't think that is implemented in Linux though?"). Not with 'da', whose private
   * side is the RMM's [C-f].
   */
  mapFile?: ArmCcaMapFile;
}

export type ArmCcaMapFile = 'shared-only' | 'rely-on-gpt';

/** The options' values and the combination the sources rule out. */
const readOptions = defineOptions(
  '@gmemlab/arm-cca',
  {
    variant: oneOf(['da']),
    mapFile: oneOf(['shared-only', 'rely-on-gpt'], 'shared-only'),
  } satisfies OptionSpecsOf<ArmCcaOptions>,
  [
    {
      when: { variant: 'da', mapFile: 'rely-on-gpt' },
      message:
        "mapFile 'rely-on-gpt' does not combine with variant 'da': with device assignment the private side is the RMM's [C-f]",
    },
  ],
);

/** What the hooks and the rules decide by. */
interface Settings {
  readonly da: boolean;
  readonly relyOnGpt: boolean;
}

/** The pipeline step names [C-a, C-d, C-e2], per 4K granule leaving the Realm. */
export const ARM_CCA_STEPS = {
  delegate: 'RMI_GRANULE_DELEGATE',
  dataCreate: 'RMI_DATA_CREATE_UNKNOWN',
  dataDestroy: 'RMI_DATA_DESTROY',
  undelegate: 'RMI_GRANULE_UNDELEGATE',
  gptUpdate: 'EL3 GPT update + TLBI RPALOS',
  scrub: 'RMM granule scrub',
} as const;

// Only a delegated granule is in the Realm PAS (whenHardwarePrivate); a page private in KVM's view but never faulted
// in is still Non-secure [C-a: delegation happens at the realm's fault].
// [T1d] Not needed for safety: the SMMU's granule protection check contains any stale DMA.
const tolerate = (): ConsumerResponse => 'tolerate';

const deviceAccess = whenHardwarePrivate((): AccessVerdict => {
  // [C-c] SMMUv3 §3.25.1: a GPC fault "is signaled to the client device in the same manner as an External abort"
  // and "is not reported in the Event queue". The write never lands [I].
  return {
    allow: false,
    fault: 'contained',
    fatal: false,
    logged: false,
    mechanism: 'SMMU granule protection check: external abort to the device, not in the event queue',
  };
});

const hostKernelAccess = whenHardwarePrivate((): AccessVerdict => {
  // [C-b] A kernel access to a delegated granule is a Granule Protection Fault: oops, except a fixup for benign
  // over-reads such as load_unaligned_zeropad (not modelled).
  return {
    allow: false,
    fault: 'contained',
    fatal: true,
    logged: true,
    mechanism: 'Granule Protection Fault on a kernel access: oops',
  };
});

function privateEntry(context: PrivateEntryContext): readonly PipelineStep[] {
  // [C-a, 6b] A realm fault on a protected IPA delegates the granule (an EL3 GPT write [C-d]) and then
  // RMI_DATA_CREATE_UNKNOWN maps it, per 4K granule (the RMM 1.0 host series; an RMM 2.0 revision uses range
  // operations instead, not modelled).
  return [
    { step: ARM_CCA_STEPS.delegate, count: context.pages },
    { step: ARM_CCA_STEPS.gptUpdate, count: context.pages },
    { step: ARM_CCA_STEPS.dataCreate, count: context.pages },
    // [C-e2] TF-RMM scrubs a granule when it leaves DELEGATED, and DATA_CREATE_UNKNOWN takes it from DELEGATED to
    // DATA (to a Realm object): one scrub per granule here too.
    { step: ARM_CCA_STEPS.scrub, count: context.pages },
  ];
}

function removalPipeline(context: RemovalContext): readonly PipelineStep[] {
  if (context.cause === 'to-private') return [];
  // [C-a] realm_destroy_protected: RMI_DATA_DESTROY then RMI_GRANULE_UNDELEGATE, per 4K granule ([C-e]: "only the
  // 4 KiB RMI Granule size"). [C-d] each undelegate is an EL3 GPT write with TLBI RPALOS. [C-e2] the RMM scrubs a
  // granule when it leaves DELEGATED.
  const granules = context.pages;
  return [
    { step: ARM_CCA_STEPS.dataDestroy, count: granules },
    { step: ARM_CCA_STEPS.undelegate, count: granules },
    { step: ARM_CCA_STEPS.gptUpdate, count: granules },
    { step: ARM_CCA_STEPS.scrub, count: granules },
  ];
}

/** Where a source is code: the file, the function and the tree read (docs/sources.md). */
const RME_C = 'arch/arm64/kvm/rme.c (intel-lab-lkp/linux @ 0ba450613d04)';

/** The passages each tag is cited for (BackendRule.evidence), shared by the rules that cite them. */
const QUOTE = {
  Ci: 'TF-RMM runtime/rmi/rtt.c: data_create(): "Map, zero initialize and unmap the data granule" (buffer_granule_mecid_map_zeroed), for RMI_DATA_CREATE_UNKNOWN',
  T1dContained: 'ARM is also supposed to be safe as GPT faults are contained, IIRC.',
  T1dShared: 'Thus on Linux the iommu should be programed with the shared pages mapped into the shared address range.',
  T1dGpt:
    "program the entire shared address range to point to the memory pool (eg with 1G huge pages) and rely entirely on the GPT to arbitrate access. I don't think that is implemented in Linux though?",
  CcAbort:
    'A client-originated access that experiences a GPC fault is signaled to the client device in the same manner as an External abort.',
  CcEventQueue:
    'A client-originated access that experiences a GPC fault on the output address of the access is not reported in the Event queue.',
  CaFault: `${RME_C}: a Realm fault on a protected IPA delegates the granule (RMI_GRANULE_DELEGATE) and maps it with RMI_DATA_CREATE_UNKNOWN; a granule never faulted in is not delegated and stays Non-secure`,
  CaZap: `${RME_C}: realm_set_ipa_state(..., RMI_EMPTY) and a KVM unmap with unmap_private call kvm_realm_unmap_range(kvm, start, size, true) -> realm_unmap_range_private() -> realm_destroy_protected() (RMI_DATA_DESTROY, rmi_granule_undelegate) at the conversion; the RMM 2.0 revision of the series does the same in realm_unmap_private_range() (RMI_RTT_DATA_UNMAP, then undelegate_range_desc) from kvm_realm_unmap_range_filter(KVM_FILTER_PRIVATE)`,
  CaDestroy: `${RME_C}: realm_destroy_protected() runs RMI_DATA_DESTROY then RMI_GRANULE_UNDELEGATE per granule`,
  Cb: 'arch/arm64/mm/fault.c, "arm64: mm: Handle Granule Protection Faults (GPFs)" (Steven Price; commit 27fececa00df as mirrored): a GPF on a kernel access is fatal (oops) unless an exception fixup applies, as for load_unaligned_zeropad; a user access gets SIGBUS',
  Cd: 'ARM-software/arm-trusted-firmware lib/gpt_rme/gpt_rme.c: delegating or undelegating a granule cleans it by PA (DC CIPAPA), writes its GPT entry, then TLBI RPALOS (gpt_tlbi_by_pa_ll) and DSB',
  Ce2: 'tf-rmm mailing list, July 2025 (Soby Mathew): TF-RMM scrubs a granule when it leaves the DELEGATED state (to a Realm object, or back to Non-secure at UNDELEGATE) instead of on entry to it. Paraphrase: the message text is not kept in gmemlab',
  Ch: 'undelegation: the granule\'s contents are "wiped" before it returns to Non-secure (Arm\'s RME guide, CSDN translation; secondary)',
  Ce: 'The implementation currently supports only the 4 KiB RMI Granule size',
  Cg: 'DEN0137 1.0-rel0-rc1 release notes: RMI_DATA_DESTROY accepts an RTT block mapping at level 1 (1 GB) or level 2 (2 MB)',
  Cf: 'TF-RMM/tf-rmm runtime/rmi/vdev.c: smc_vdev_create() programs the device\'s SMMU stream with s2_cfg.s2ttb = the Realm\'s plane-0 RTT; the stream is disabled at VDEV_UNLOCK "to stop device from DMAing to realm memory"',
  SixbCca: "delegate + DATA_CREATE_UNKNOWN per granule at the realm's fault; DATA_DESTROY + UNDELEGATE at teardown",
} as const;

/**
 * The rules in words, with the tags the code above cites and, for each tag, the passage that says it (`evidence`):
 * `backend.rules` is the rows whose settings (`when`) match the instance's, in this order; what the README's tables
 * say. Where the sources disagree or are silent, the rule says so.
 */
const RULES = ruleTable<Settings>([
  {
    when: { relyOnGpt: true },
    topic: 'variant',
    rule: "'rely-on-gpt': IOMMU_IOAS_MAP_FILE maps every page, private ones too, and the SMMU's granule protection check arbitrates each access. A reading, not what Linux does: Jason raised it and doubted it is implemented.",
    source: '[T1d], [C-c]',
    evidence: [
      { tag: 'T1d', quote: QUOTE.T1dGpt },
      { tag: 'C-c', quote: QUOTE.CcAbort },
    ],
  },
  {
    when: { da: true },
    topic: 'variant',
    rule: "CCA device assignment: the RMM points the assigned device's SMMU stream at the Realm's own stage-2 (RTT) and enables it only after the Realm's RSI call, so private DMA never goes through host IOPTEs. The trusted device's own DMA path is not modelled.",
    source: '[C-f]',
    evidence: [{ tag: 'C-f', quote: QUOTE.Cf }],
  },
  {
    topic: 'conversion policy',
    rule: "'tolerate' both ways: the SMMU's granule protection check contains any stale DMA, so nothing needs unmapping for safety.",
    source: '[T1d], [C-c]',
    evidence: [
      { tag: 'T1d', quote: QUOTE.T1dContained },
      { tag: 'C-c', quote: QUOTE.CcAbort },
    ],
  },
  {
    topic: 'device access to private',
    rule: "A device access to a delegated Realm granule, read or write, is blocked by the SMMU's granule protection check: an external abort to the device, not fatal and not reported in the event queue. That the write never lands is an inference [I].",
    source: '[C-c] (SMMUv3 §3.25.1)',
    evidence: [{ tag: 'C-c', quote: `${QUOTE.CcAbort} ${QUOTE.CcEventQueue}` }],
  },
  {
    topic: 'device access to private',
    rule: "A page private in KVM's view that the Realm never faulted in is still Non-secure: a device access to it is allowed.",
    source: '[C-a]',
    evidence: [{ tag: 'C-a', quote: QUOTE.CaFault }],
  },
  {
    topic: 'host access to private',
    rule: 'A host-kernel access to a delegated granule, read or write, is a Granule Protection Fault: the kernel oopses, fatal. The fixup for benign over-reads (load_unaligned_zeropad) is not modelled.',
    source: '[C-b]',
    evidence: [{ tag: 'C-b', quote: QUOTE.Cb }],
  },
  {
    topic: 'IOPTEs over private',
    rule: 'A device may reach any page: the SMMU blocks the access to a Realm granule itself, so an IOPTE over a private page is no safety violation.',
    source: '[C-c]',
    evidence: [{ tag: 'C-c', quote: QUOTE.CcAbort }],
  },
  {
    when: { da: true },
    topic: 'IOPTEs over private',
    rule: "In the registry design IOMMU_IOAS_MAP_FILE maps shared pages only: private DMA is the RMM's business, through the Realm's own stage-2. No source says what MAP_FILE should do with device assignment; this is an inference [I].",
    source: '[C-f]; [I]',
    evidence: [{ tag: 'C-f', quote: QUOTE.Cf }],
  },
  {
    when: { da: false, relyOnGpt: true },
    topic: 'IOPTEs over private',
    rule: "In the registry design IOMMU_IOAS_MAP_FILE maps private pages too, relying on the SMMU's granule protection check. Jason raised this for full in-place conversion and doubted Linux implements it: a reading, not the default.",
    source: '[T1d], [C-c]',
    evidence: [
      { tag: 'T1d', quote: QUOTE.T1dGpt },
      { tag: 'C-c', quote: QUOTE.CcAbort },
    ],
  },
  {
    when: { da: false, relyOnGpt: false },
    topic: 'IOPTEs over private',
    rule: 'In the registry design IOMMU_IOAS_MAP_FILE maps shared pages only: on Arm the IOMMU is programmed with the shared pages, and IOPTEs to pages known to be private would be wasted.',
    source: '[T1d]',
    evidence: [{ tag: 'T1d', quote: QUOTE.T1dShared }],
  },
  {
    topic: 'private entry',
    rule: "At the Realm's fault, when the stage-2 entry is installed, each 4K granule is delegated (an EL3 GPT update with TLBI RPALOS) and mapped with RMI_DATA_CREATE_UNKNOWN, and the RMM scrubs it as it leaves DELEGATED (one scrub per granule, an inference [I]). The RMM 2.0 range operations are not modelled.",
    source: '[C-a, C-d, C-e2], arch-behaviour 6b',
    evidence: [
      { tag: 'C-a', quote: QUOTE.CaFault },
      { tag: 'C-d', quote: QUOTE.Cd },
      { tag: 'C-e2', quote: QUOTE.Ce2 },
      { tag: 'arch-behaviour 6b', quote: QUOTE.SixbCca },
    ],
  },
  {
    topic: 'removal pipeline',
    rule: "Today's path (conversion 'separate'): a conversion to shared unmaps the protected IPA range, and that unmap destroys the data granule and undelegates it back to Non-secure, so the removal steps run at the conversion (privateRemovalAt 'zap'). guest_memfd still holds the folio; the VMM's later punch frees a Non-secure page and costs no RMI step. Deleting a memslot unmaps its range with only_shared false (kvm_stage2_unmap_range, kernel-contract §3.7), so the granules bound there are destroyed and undelegated at the deletion and stay in guest_memfd, private by attribute.",
    source: '[C-a]',
    evidence: [{ tag: 'C-a', quote: QUOTE.CaZap }],
  },
  {
    topic: 'removal pipeline',
    rule: 'Per 4K granule that was delegated and leaves by truncate, release or to-shared (realm_destroy_protected): RMI_DATA_DESTROY, RMI_GRANULE_UNDELEGATE with its EL3 GPT update and TLBI RPALOS, and the RMM scrub. Granules never delegated cost nothing.',
    source: '[C-a, C-d, C-e2], arch-behaviour 6b',
    evidence: [
      { tag: 'C-a', quote: QUOTE.CaDestroy },
      { tag: 'C-d', quote: QUOTE.Cd },
      { tag: 'C-e2', quote: QUOTE.Ce2 },
      { tag: 'arch-behaviour 6b', quote: QUOTE.SixbCca },
    ],
  },
  {
    topic: 'contents',
    rule: "A delegated granule is scrubbed when it is undelegated: 'zero' on conversion to shared and on truncate or release. The Realm's first access after RMI_DATA_CREATE_UNKNOWN finds zeros: TF-RMM scrubs a granule when it leaves DELEGATED, which DATA_CREATE_UNKNOWN does, and its data_create() zero-initialises a granule created without source data (the RMM specification only calls the contents unknown; the model follows TF-RMM).",
    source: '[C-e2, C-h, C-i]',
    evidence: [
      { tag: 'C-e2', quote: QUOTE.Ce2 },
      { tag: 'C-h', quote: QUOTE.Ch },
      { tag: 'C-i', quote: QUOTE.Ci },
    ],
  },
  {
    topic: 'page sizes',
    rule: 'Granules are 4K (TF-RMM supports only 4 KiB RMI granules), with 2M and 1G RTT blocks; every step counts 4K granules and no RTT splits.',
    source: '[C-e, C-g]',
    evidence: [
      { tag: 'C-e', quote: QUOTE.Ce },
      { tag: 'C-g', quote: QUOTE.Cg },
    ],
  },
]);

/** Build an Arm CCA backend description; `variant: 'da'` gives 'arm-cca:da'. */
export function createArmCcaBackend(options: ArmCcaOptions = {}): ArchBackend {
  const { variant, mapFile } = readOptions(options);
  const da = variant === 'da';
  const relyOnGpt = mapFile === 'rely-on-gpt';
  return archBackend({
    id: variantId('arm-cca', [variant, relyOnGpt && 'rely-on-gpt']),
    name: da ? 'Arm CCA with device assignment' : relyOnGpt ? 'Arm CCA, MAP_FILE relying on the GPT' : 'Arm CCA',
    // [C-e, C-g] 4K granules; RTT blocks at 2M and 1G.
    pageSizes: [PAGE_SIZE, PMD_SIZE, PUD_SIZE],
    // [T1d] Not needed for safety: the SMMU's granule protection check contains any stale DMA.
    conversionPolicy: tolerate,
    // The answer reads nothing of the context: one question per conversion answers for every area.
    conversionPolicyInputs: { policy: tolerate, inputs: [] },
    deviceAccess,
    hostKernelAccess,
    // [C-c] The SMMU blocks DMA to Realm granules itself.
    deviceMayReach: () => true,
    // [T1d] "on Linux the iommu should be programed with the shared pages mapped into the shared address range":
    // shared pages only, by default. 'rely-on-gpt' is the reading Jason floated and doubted in the same message
    // ("I don't think that is implemented in Linux though?"); the SMMU's GPC [C-c] is what would make it safe.
    // With 'da' the private side is the RMM's business [C-f], so host IOPTEs cover shared pages only [I].
    mapsPrivatePages: relyOnGpt,
    // [C-e2, C-h] Undelegation scrubs the granule before it returns to Non-secure. [C-e2] TF-RMM no longer scrubs
    // on entry to DELEGATED, so to-private keeps the bytes.
    contentsOnConversion: ({ to }) => (to === 'shared' ? 'zero' : 'keep'),
    contentsOnRemoval: () => 'zero',
    // [C-e2, C-i] DATA_CREATE_UNKNOWN takes the granule out of DELEGATED, where TF-RMM scrubs it, and data_create()
    // zero-initialises a granule created without source data: the Realm never reads what the host left there.
    contentsOnPrivateEntry: () => 'zero',
    removalPipeline,
    privateEntry,
    privateEntryAt: 'install',
    // [C-a] The conversion's unmap of the protected range destroys and undelegates the granule there (both the
    // RMM 1.0 host series and its RMM 2.0 revision), not when guest_memfd frees the folio.
    privateRemovalAt: 'zap',
    hardwarePrivateName: 'Realm granule (delegated, DATA_CREATE_UNKNOWN)',
    rules: RULES.select({ da, relyOnGpt }),
  });
}
