/**
 * Arm CCA (RME + RMM) as an ArchBackend. The Granule Protection Table, kept by EL3, gives every 4K granule a
 * physical address space; the granule protection check runs in the PE *and in the SMMU* [C-c, C-d]. A host or
 * device access to a Realm granule is blocked: a fault for the CPU, an external abort for the device. So DMA over
 * converting pages is tolerated ("ARM is also supposed to be safe as GPT faults are contained" [T1d]).
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7).
 */
import type { AccessVerdict, ArchBackend, BackendRule, PageAccessContext, PipelineStep, PrivateEntryContext, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE, PUD_SIZE } from '@gmemlab/core';


/**
 * The hardware state of the page reached. A core older than 0.2 does not pass it; then the attribute is the best
 * that is known, so this backend still works there, as it did.
 */
function hardwareOf(context: PageAccessContext): 'shared' | 'private' {
  return (context as Partial<PageAccessContext>).hardware ?? context.attribute;
}

export type ArmCcaVariant = 'da';

export interface ArmCcaOptions {
  /**
   * 'da': CCA device assignment. The RMM points the assigned device's SMMU stream at the Realm's own stage-2
   * (RTT) and enables it only after the Realm's RSI call [C-f]; private DMA never goes through host IOPTEs, so
   * the host's IOMMU_IOAS_MAP_FILE maps shared pages only.
   */
  variant?: ArmCcaVariant;
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

function deviceAccess(context: PageAccessContext): AccessVerdict {
  // Only a delegated granule is in the Realm PAS; a page private in KVM's view but never faulted in is still
  // Non-secure [C-a: delegation happens at the realm's fault].
  if (context.vmType !== 'coco' || hardwareOf(context) !== 'private') return { allow: true };
  // [C-c] SMMUv3 §3.25.1: a GPC fault "is signaled to the client device in the same manner as an External abort"
  // and "is not reported in the Event queue". The write never lands [I].
  return { allow: false, fault: 'contained', fatal: false, logged: false, mechanism: 'SMMU granule protection check: external abort to the device, not in the event queue' };
}

function hostKernelAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || hardwareOf(context) !== 'private') return { allow: true };
  // [C-b] A kernel access to a delegated granule is a Granule Protection Fault: oops, except a fixup for benign
  // over-reads such as load_unaligned_zeropad (not modelled).
  return { allow: false, fault: 'contained', fatal: true, logged: true, mechanism: 'Granule Protection Fault on a kernel access: oops' };
}

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

/**
 * The rules of one instance in words, with the tags the code above cites: `backend.rules`, what the README's
 * tables say for these options. Where the sources disagree or are silent, the rule says so.
 */
function armCcaRules(da: boolean): readonly BackendRule[] {
  const rules: BackendRule[] = [];
  if (da) {
    rules.push({
      topic: 'variant',
      rule: "CCA device assignment: the RMM points the assigned device's SMMU stream at the Realm's own stage-2 (RTT) and enables it only after the Realm's RSI call, so private DMA never goes through host IOPTEs. The trusted device's own DMA path is not modelled.",
      source: '[C-f]',
    });
  }
  rules.push(
    {
      topic: 'conversion policy',
      rule: "'tolerate' both ways: the SMMU's granule protection check contains any stale DMA, so nothing needs unmapping for safety.",
      source: '[T1d], [C-c]',
    },
    {
      topic: 'device access to private',
      rule: "A device access to a delegated Realm granule, read or write, is blocked by the SMMU's granule protection check: an external abort to the device, not fatal and not reported in the event queue. That the write never lands is an inference [I].",
      source: '[C-c] (SMMUv3 §3.25.1)',
    },
    {
      topic: 'device access to private',
      rule: "A page private in KVM's view that the Realm never faulted in is still Non-secure: a device access to it is allowed.",
      source: '[C-a]',
    },
    {
      topic: 'host access to private',
      rule: 'A host-kernel access to a delegated granule, read or write, is a Granule Protection Fault: the kernel oopses, fatal. The fixup for benign over-reads (load_unaligned_zeropad) is not modelled.',
      source: '[C-b]',
    },
    {
      topic: 'IOPTEs over private',
      rule: 'A device may reach any page: the SMMU blocks the access to a Realm granule itself, so an IOPTE over a private page is no safety violation.',
      source: '[C-c]',
    },
    da
      ? {
          topic: 'IOPTEs over private',
          rule: "In the registry design IOMMU_IOAS_MAP_FILE maps shared pages only: private DMA is the RMM's business, through the Realm's own stage-2. No source says what MAP_FILE should do on CCA; this is an inference [I].",
          source: '[C-f]; [I]',
        }
      : {
          topic: 'IOPTEs over private',
          rule: "In the registry design IOMMU_IOAS_MAP_FILE maps private pages too, relying on the GPT. No source says what MAP_FILE should do on CCA: Jason suggested relying entirely on the GPT and doubted Linux implements it, so this is an inference [I].",
          source: '[T1d], [C-c]; [I]',
        },
    {
      topic: 'private entry',
      rule: "At the Realm's fault, when the stage-2 entry is installed, each 4K granule is delegated (an EL3 GPT update with TLBI RPALOS) and mapped with RMI_DATA_CREATE_UNKNOWN, and the RMM scrubs it as it leaves DELEGATED (one scrub per granule, an inference [I]). The RMM 2.0 range operations are not modelled.",
      source: '[C-a, C-d, C-e2], arch-behaviour 6b',
    },
    {
      topic: 'removal pipeline',
      rule: 'Per 4K granule that was delegated and leaves by truncate, release or to-shared (realm_destroy_protected): RMI_DATA_DESTROY, RMI_GRANULE_UNDELEGATE with its EL3 GPT update and TLBI RPALOS, and the RMM scrub. Granules never delegated cost nothing.',
      source: '[C-a, C-d, C-e2], arch-behaviour 6b',
    },
    {
      topic: 'contents',
      rule: "A delegated granule is scrubbed when it is undelegated: 'zero' on conversion to shared and on truncate or release. The Realm's first access after RMI_DATA_CREATE_UNKNOWN finds zeros: TF-RMM scrubs a granule when it leaves DELEGATED, which DATA_CREATE_UNKNOWN does, and its data_create() zero-initialises a granule created without source data (the RMM specification only calls the contents unknown; the model follows TF-RMM).",
      source: '[C-e2, C-h, C-i]',
    },
    {
      topic: 'page sizes',
      rule: 'Granules are 4K (TF-RMM supports only 4 KiB RMI granules), with 2M and 1G RTT blocks; every step counts 4K granules and no RTT splits.',
      source: '[C-e, C-g]',
    },
  );
  return Object.freeze(rules.map((rule) => Object.freeze(rule)));
}

/** Build an Arm CCA backend description; `variant: 'da'` gives 'arm-cca:da'. */
export function createArmCcaBackend(options: ArmCcaOptions = {}): ArchBackend {
  const variant = options.variant;
  if (variant !== undefined && variant !== 'da') throw new TypeError(`@gmemlab/arm-cca: unknown variant ${String(variant)}; the only variant is 'da'`);
  const da = variant === 'da';
  return Object.freeze({
    specificationVersion: 'v1',
    id: da ? 'arm-cca:da' : 'arm-cca',
    name: da ? 'Arm CCA with device assignment' : 'Arm CCA',
    // [C-e, C-g] 4K granules; RTT blocks at 2M and 1G.
    pageSizes: [PAGE_SIZE, PMD_SIZE, PUD_SIZE],
    // [T1d] Not needed for safety: the SMMU's granule protection check contains any stale DMA.
    conversionPolicy: () => 'tolerate',
    deviceAccess,
    hostKernelAccess,
    // [C-c] The SMMU blocks DMA to Realm granules itself.
    deviceMayReach: () => true,
    // An inference [I], not a source: Jason suggested one could map the whole range and "rely entirely on the
    // GPT", and qualified it at once: "I don't think that is implemented in Linux though?" [T1d]. The SMMU's GPC
    // [C-c] is what would make it safe. With 'da' the private side is the RMM's business [C-f], so host IOPTEs
    // cover shared pages only [I].
    mapsPrivatePages: !da,
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
    hardwarePrivateName: 'Realm granule (delegated, DATA_CREATE_UNKNOWN)',
    rules: armCcaRules(da),
  } satisfies ArchBackend);
}
