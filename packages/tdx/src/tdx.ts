/**
 * Intel TDX as an ArchBackend. The TDX module (SEAM) owns the Secure EPT and the private HKIDs; MKTME adds a
 * 28-bit MAC and a TD-owner bit per line [X-a, X-b, X-f]. Nothing checks *who* touches a private page: a host
 * write or a device's DMA lands, breaks integrity, and the poison is consumed later as a machine check. So the
 * model keeps devices away from private pages entirely: shared IOPTEs go before a page turns private [T1g],
 * no IOPTE is ever made over a private page, and any that exists is an 'unsafe-iopte' violation (I2).
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7).
 */
import type {
  AccessVerdict,
  ArchBackend,
  ConversionContext,
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
  PUD_SIZE,
  ruleTable,
  variantId,
  whenHardwarePrivate,
} from '@gmemlab/core';

export type TdxVariant = 'connect';

export interface TdxOptions {
  /**
   * 'connect': TDX Connect (TDISP). The trusted IOMMU table of an assigned device reuses the Secure EPT, so its
   * private DMA follows S-EPT changes inside the TDX module with no notification [T1e, T1g, X-i]; the IOPTEs the
   * host manages (the ones this model has) stay shared-only and follow the same rules as plain TDX.
   */
  variant?: TdxVariant;
  /**
   * What a device write that reaches a TD-private page does. The sources differ, so both readings are here:
   * - 'machine-check' (default): Xu Yilun's statement, the only one about DMA — it "will cause host machine
   *   check and host restart", "not contained" [T1e, T1f]. The host crashes at the write.
   * - 'poison': the CPU path of [X-d] applied to DMA — the write breaks the line's integrity silently and the
   *   TD's next read consumes the poison (#MC, the TD is killed, [X-a]). Whether a DMA write behaves so is [U].
   */
  dmaToPrivate?: 'machine-check' | 'poison';
  /**
   * Whether the CPU has the partial-write machine-check erratum (X86_BUG_TDX_PW_MCE: Sapphire Rapids and Emerald
   * Rapids, the first TDX parts [X-b, X-c]). Newer kernels clear a reclaimed page only on such parts
   * (tdx_quirk_reset_paddr, arch-behaviour 6b; [X-c2]); the tree cited for the pipeline clears always [X-a].
   * Default true (false with 'connect', which refuses to run on erratum parts [X-i2]): the page is cleared with
   * MOVDIR64B, and a kernel read of TD memory may machine-check [X-c, I]. false: no clear step, the bytes are left
   * as they were, and kernel reads are allowed [X-c].
   */
  pwMceErratum?: boolean;
  /**
   * What a host-kernel *read* of a page the TD holds does. No source says a read alone machine-checks: the
   * erratum's #MC is "a subsequent read" of a line a partial write poisoned first ([X-c], Documentation/arch/x86
   * tdx.rst [X-b]; the core models that read of a poisoned line), and on parts without the erratum "Kernel
   * read/write to TDX private memory doesn't cause machine check" [X-c]. So:
   * - 'no-fault' (default): the read completes; what it returns (ciphertext or zeros) is [U], the model returns
   *   the stored bytes.
   * - 'machine-check': this package's earlier inference that a kernel read is fatal on erratum parts [I], kept
   *   as a named reading.
   */
  hostRead?: 'no-fault' | 'machine-check';
  /**
   * What a device *read* of a page the TD holds does. The only statement about DMA, Xu Yilun's [T1e], speaks of
   * "accessing" without separating reads from writes, and likens it to "host CPU accessing encrypted memory",
   * whose reads do not machine-check by themselves [X-c]. The sources differ, so both readings are here:
   * - 'machine-check' (default): [T1e] taken literally, a read like a write; the only DMA statement there is.
   * - 'no-fault': the CPU rule of [X-c] applied to DMA [I]; the read returns the stored bytes [U].
   */
  dmaRead?: 'machine-check' | 'no-fault';
}

/** The options' values and the combination the sources rule out. */
const readOptions = defineOptions(
  '@gmemlab/tdx',
  {
    variant: oneOf(['connect']),
    dmaToPrivate: oneOf(['machine-check', 'poison'], 'machine-check'),
    // No default here: it depends on the variant (true, false with 'connect').
    pwMceErratum: flag(),
    hostRead: oneOf(['no-fault', 'machine-check'], 'no-fault'),
    dmaRead: oneOf(['machine-check', 'no-fault'], 'machine-check'),
  } satisfies OptionSpecsOf<TdxOptions>,
  [
    {
      when: { variant: 'connect', pwMceErratum: true },
      message:
        'TDX Connect does not initialise on parts with X86_BUG_TDX_PW_MCE [X-i2]; pwMceErratum must be false with it',
    },
  ],
);

/** What the hooks and the rules decide by. */
interface Settings {
  readonly connect: boolean;
  readonly dmaToPrivate: 'machine-check' | 'poison';
  readonly pwMceErratum: boolean;
  readonly hostRead: 'no-fault' | 'machine-check';
  readonly dmaRead: 'machine-check' | 'no-fault';
}

/** The step names, in the order KVM runs them for each 4K page [X-a]. */
export const TDX_STEPS = {
  aug: 'SEAMCALL TDH.MEM.PAGE.AUG',
  accept: 'TDCALL TDG.MEM.PAGE.ACCEPT (guest)',
  block: 'SEAMCALL TDH.MEM.RANGE.BLOCK',
  track: 'SEAMCALL TDH.MEM.TRACK',
  ipi: 'IPI (KVM_REQ_OUTSIDE_GUEST_MODE, per vCPU in guest mode)',
  remove: 'SEAMCALL TDH.MEM.PAGE.REMOVE',
  wbinvd: 'SEAMCALL TDH.PHYMEM.PAGE.WBINVD',
  clear: 'MOVDIR64B page clear (tdx_clear_page)',
} as const;

// [T1e, T1f] Xu Yilun: a device write through a stale IOPTE "will cause host machine check and host restart",
// "not contained". The write lands (legacy VT-d checks no ownership) and breaks the line's integrity.
const DMA_MACHINE_CHECK: AccessVerdict = {
  allow: false,
  fault: 'machine-check',
  fatal: true,
  logged: true,
  lands: true,
  poisons: true,
  mechanism:
    'TDX: no ownership check on DMA; the access breaks MKTME integrity and the host takes a machine check (not contained)',
};

function deviceAccess(reading: 'machine-check' | 'poison', readReading: 'machine-check' | 'no-fault') {
  // Only a page the TDX module holds (AUG'd into the S-EPT, under the TD's private KeyID) is TD memory
  // (whenHardwarePrivate). A page that is private in KVM's view but not yet accepted is still an ordinary host page
  // to the IOMMU.
  return whenHardwarePrivate((context: PageAccessContext): AccessVerdict => {
    if (!context.write) {
      // [T1e] does not separate reads from writes ('machine-check', the default reading); 'no-fault' applies the
      // CPU rule of [X-c] to DMA [I]. The read returns the stored bytes [U].
      if (readReading === 'no-fault') return { allow: true };
      return {
        allow: false,
        fault: 'machine-check',
        fatal: true,
        logged: true,
        mechanism:
          'TDX: no ownership check on DMA; a device read of TD memory is a host machine check ([T1e] read literally: the reading dmaRead "machine-check")',
      };
    }
    // [T1e, T1f] and the erratum text ("Devices can also do partial writes via DMA" [X-b]): the write lands.
    if (reading === 'machine-check') return DMA_MACHINE_CHECK;
    // 'poison' reading: [X-d]'s integrity rule; the TD's next read consumes it.
    return { allow: true, poisons: true };
  });
}

function hostKernelAccess(hostRead: 'no-fault' | 'machine-check') {
  return whenHardwarePrivate((context: PageAccessContext): AccessVerdict => {
    // [X-d] No access-check fault: "host kernel must not allow any writes to TD-private memory"; the write poisons
    // the line and the TD's next read consumes it (#MC, TD killed [X-a]). [X-b, X-c]: a partial write on an
    // erratum part poisons it the same way, and a later read takes the #MC.
    if (context.write) return { allow: true, poisons: true };
    // [X-c] A read alone does not machine-check: the erratum's #MC is a read of a line a write poisoned first
    // (the core models that read), and parts without it say so outright. What the read returns is [U].
    if (hostRead === 'machine-check')
      return {
        allow: false,
        fault: 'machine-check',
        fatal: true,
        logged: true,
        mechanism:
          'TDX: a kernel read of TD memory is a machine check in kernel context (the reading hostRead "machine-check" [I])',
      };
    return { allow: true };
  });
}

function conversionPolicy(context: ConversionContext) {
  // [T1g] "unmap [shared IOPTE] before conversion to private"; "the only concern to ensure kernel safety".
  if (context.to === 'private') return 'revoke' as const;
  // [T1g] "map after conversion to shared" is optional and left to userspace: nothing to unmap.
  return 'tolerate' as const;
}

function privateEntry(context: PrivateEntryContext): readonly PipelineStep[] {
  // [X-a, 6b] At the guest's private fault KVM adds the page to the S-EPT with TDH.MEM.PAGE.AUG (4K: KVM maps
  // private memory at 4K only), and the guest accepts it with TDG.MEM.PAGE.ACCEPT.
  return [
    { step: TDX_STEPS.aug, count: context.pages },
    { step: TDX_STEPS.accept, count: context.pages },
  ];
}

function removalPipeline(clear: boolean) {
  return (context: RemovalContext): readonly PipelineStep[] => {
    if (context.cause === 'to-private') return [];
    // [X-a] tdx_sept_remove_private_spte, per 4K page the TDX module held (KVM_BUG_ON(level != PG_LEVEL_4K)):
    // BLOCK -> TRACK + kick every vCPU -> PAGE.REMOVE -> PHYMEM.PAGE.WBINVD -> MOVDIR64B clear.
    const pages = context.pages;
    return [
      { step: TDX_STEPS.block, count: pages },
      { step: TDX_STEPS.track, count: pages },
      // [X-a] tdx_track: kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE), which IPIs only the vCPUs in
      // guest mode (kvm_request_needs_ipi [KVMREQ]): one per vCPU per page is an upper bound.
      { step: TDX_STEPS.ipi, count: pages * context.vcpus, bound: 'upper' as const },
      { step: TDX_STEPS.remove, count: pages },
      { step: TDX_STEPS.wbinvd, count: pages },
      // [X-a] "MOVDIR64B also clears the poison bit"; newer trees only with the erratum ([X-c2], 6b).
      ...(clear ? [{ step: TDX_STEPS.clear, count: pages }] : []),
    ];
  };
}

/** What each cited source says, verbatim or as a code location: BackendRule.evidence. */
const EVIDENCE = {
  dmaMce: {
    tag: 'T1e',
    quote: 'will cause host machine check and host restart, same as host CPU accessing encrypted memory',
  },
  noTable: {
    tag: 'T1f',
    quote:
      'Intel TDX has no lower level privilege protection table so the wrong accessing will actually impact the memory encryption engine',
  },
  unmapFirst: { tag: 'T1g', quote: 'unmap before conversion to private ... the only concern to ensure kernel safety' },
  mapAfter: { tag: 'T1g', quote: 'map after conversion to shared' },
  sept: {
    tag: 'T1g',
    quote:
      'For Intel, T=1 private IOPTE reuses S-EPT ... the correctness is managed by KVM & firmware, no notification needed',
  },
  connect: { tag: 'X-i', quote: 'x86/virt/tdx: Add SEAMCALL wrappers for trusted IOMMU setup and clear' },
  connectErratum: {
    tag: 'X-i2',
    quote: 'tdx_connect_init(): refuses to enable when boot_cpu_has_bug(X86_BUG_TDX_PW_MCE)',
  },
  erratum: {
    tag: 'X-c',
    quote:
      'A partial write to a TDX private memory cacheline will silently "poison" the line. Subsequent reads will consume the poison and generate a machine check.',
  },
  erratumDma: {
    tag: 'X-c',
    quote: 'The issue can also be triggered away from the CPU by devices doing partial writes via DMA.',
  },
  noErratum: {
    tag: 'X-c',
    quote: "Kernel read/write to TDX private memory doesn't cause machine check on hardware w/o this erratum.",
  },
  doc: {
    tag: 'X-b',
    quote:
      'A partial write to a TDX private memory cacheline will silently "poison" the line.  Subsequent reads will consume the poison and generate a machine check. ... Devices can also do partial writes via DMA.',
  },
  skipClear: { tag: 'X-c2', quote: 'x86/tdx: Skip clearing reclaimed pages unless X86_BUG_TDX_PW_MCE is present' },
  integrity: {
    tag: 'X-d',
    quote:
      'Checking of memory integrity is performed during memory reads. If integrity check fails, CPU poisones [sic] cache line. ... host kernel must not allow any writes to TD-private memory',
  },
  dead: {
    tag: 'X-a',
    quote: 'tdx.c @ 3829d81b, EXIT_REASON_OTHER_SMI comment: the TDX module marks the guest as dead',
  },
  zapAtConversion: {
    tag: 'X-a',
    quote:
      'tdx.c @ 3829d81b, tdx_sept_free_private_spt() comment: "private guest page can be zapped during TD is active. shared <-> private conversion and slot move/deletion." The zap calls tdx_sept_remove_private_spte() (kvm_x86_ops.remove_external_spte)',
  },
  remove: {
    tag: 'X-a',
    quote:
      'tdx.c @ 3829d81b: tdx_sept_remove_private_spte() -> tdx_sept_zap_private_spte() (TDH.MEM.RANGE.BLOCK), tdx_track() (TDH.MEM.TRACK, kvm_make_all_cpus_request(kvm, KVM_REQ_OUTSIDE_GUEST_MODE)), tdx_sept_drop_private_spte() (TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD, tdx_clear_page()); KVM_BUG_ON(level != PG_LEVEL_4K)',
  },
  clear: { tag: 'X-a', quote: 'tdx.c @ 3829d81b tdx_clear_page(): "MOVDIR64B also clears the poison bit"' },
  aug: {
    tag: 'X-a',
    quote:
      'tdx.c @ 3829d81b: tdx_sept_set_private_spte() -> TDH.MEM.PAGE.AUG for a runnable TD; private memory is mapped at 4K only (KVM_BUG_ON(level != PG_LEVEL_4K))',
  },
  ipi: {
    tag: 'KVMREQ',
    quote:
      'kvm_main.c kvm_request_needs_ipi(): "if (req & KVM_REQUEST_WAIT) return mode != OUTSIDE_GUEST_MODE;" ... "return mode == IN_GUEST_MODE;" — a vCPU outside guest mode gets no IPI',
  },
  accept: {
    tag: 'X-j',
    quote:
      'This function accept a pending private page, and initialize the page to all-0 using the TD ephemeral private key.',
  },
  sizes: { tag: 'X-h', quote: 'arch/x86/include/asm/shared/tdx.h: TDX_PS_4K, TDX_PS_2M, TDX_PS_1G' },
  sixB: {
    tag: 'arch-behaviour 6b',
    quote:
      'PAGE.AUG at the private fault (PAGE.ADD before finalization), ACCEPT by the guest; removal per 4K page; newer trees clear a reclaimed page only on parts with X86_BUG_TDX_PW_MCE (tdx_quirk_reset_paddr)',
  },
  invariant: { tag: 'kernel-contract §9.5', quote: 'I2 | on TDX, no IOPTE points at a private page | `unsafe-iopte`' },
} as const;

/**
 * The rules in words, with the tags the code above cites and, for each tag, the passage that supports the rule:
 * `backend.rules` is the rows whose settings (`when`) match the instance's, in this order; what the README's tables
 * say. Where the sources disagree or are silent, the rule says so.
 */
const E = EVIDENCE;
const RULES = ruleTable<Settings>([
  {
    when: { connect: true },
    topic: 'variant',
    rule: "TDX Connect (TDISP): an assigned device's private DMA goes through the trusted IOMMU table that reuses the Secure EPT and follows S-EPT changes inside the TDX module. The host-managed IOPTEs, the only ones modelled, stay shared-only, so every other rule is plain TDX's.",
    source: '[T1g, X-i]',
    evidence: [E.sept, E.connect],
  },
  {
    when: { pwMceErratum: true },
    topic: 'variant',
    rule: 'A part with the partial-write machine-check erratum (X86_BUG_TDX_PW_MCE: the first TDX generations), the default; the page clear on reclaim follows from it.',
    source: '[X-c], [X-c2]',
    evidence: [E.erratum, E.skipClear],
  },
  {
    when: { pwMceErratum: false, connect: true },
    topic: 'variant',
    rule: 'A part without the partial-write machine-check erratum: TDX Connect refuses to initialise on X86_BUG_TDX_PW_MCE parts, so this variant implies no erratum (no page clear).',
    source: '[X-i2]',
    evidence: [E.connectErratum],
  },
  {
    when: { pwMceErratum: false, connect: false },
    topic: 'variant',
    rule: 'A part without the partial-write machine-check erratum (X86_BUG_TDX_PW_MCE): no page clear on reclaim.',
    source: '[X-c2]',
    evidence: [E.skipClear],
  },
  {
    topic: 'conversion policy',
    rule: "To private: 'revoke', the registry unmaps the shared IOPTEs over the converting pages after the kernel's refcount check and before the attribute changes, the only thing kernel safety needs.",
    source: '[T1g]',
    evidence: [E.unmapFirst],
  },
  {
    topic: 'conversion policy',
    rule: "To shared: 'tolerate', nothing to unmap; mapping the pages again after the conversion is optional and left to the VMM.",
    source: '[T1g]',
    evidence: [E.mapAfter],
  },
  {
    when: { dmaToPrivate: 'machine-check' },
    topic: 'device access to private',
    rule: "A device write to a page the TD holds is a host machine check, fatal and not contained: the write lands and breaks the line's integrity (a partial DMA write poisons it on erratum parts).",
    source: '[T1e, T1f]; [X-c]',
    evidence: [E.dmaMce, E.noTable, E.erratumDma],
  },
  {
    when: { dmaToPrivate: 'poison' },
    topic: 'device access to private',
    rule: "A device write to a page the TD holds poisons the line silently, and the TD's next read consumes the poison (machine check, the TD is killed, the host survives). This applies the CPU path of [X-d] to DMA, which no source confirms [U]; the only statement about DMA [T1e] says host machine check instead.",
    source: '[X-d], [X-a]; [T1e]; [U]',
    evidence: [E.integrity, E.dead, E.dmaMce],
  },
  {
    when: { dmaRead: 'machine-check' },
    topic: 'device access to private',
    rule: 'A device read of a page the TD holds is a host machine check, fatal: a reading. [T1e] speaks of device access without separating reads from writes, and this takes it literally; the same message likens it to host CPU access, whose reads alone do not machine-check [X-c].',
    source: '[T1e]; [X-c]',
    evidence: [E.dmaMce, E.noErratum],
  },
  {
    when: { dmaRead: 'no-fault' },
    topic: 'device access to private',
    rule: 'A device read of a page the TD holds does not fault: the CPU rule (a read alone does not machine-check) applied to DMA [I]; what it returns is unconfirmed [U], the model returns the stored bytes.',
    source: '[X-c]; [I]',
    evidence: [E.noErratum, E.erratum],
  },
  {
    topic: 'device access to private',
    rule: "A page private in KVM's view that the TD never accepted is still an ordinary host page: a device access to it is allowed.",
    source: '[X-a], arch-behaviour 6b',
    evidence: [E.aug, E.sixB],
  },
  {
    topic: 'host access to private',
    rule: "A host-kernel write to a page the TD holds does not fault: it breaks the line's integrity (a partial write poisons it outright on erratum parts), and the TD's next read takes the machine check (the TD is killed, the host survives).",
    source: '[X-d], [X-c], [X-a]',
    evidence: [E.integrity, E.erratum, E.dead],
  },
  {
    when: { hostRead: 'no-fault' },
    topic: 'host access to private',
    rule: 'A host-kernel read of a page the TD holds does not fault, with or without the erratum: the erratum ties the machine check to a read of a line a partial write poisoned first (the model faults such a read), and parts without it say reads are harmless. What the read returns is unconfirmed [U]; the model returns the stored bytes.',
    source: '[X-c], [X-b]; [U]',
    evidence: [E.erratum, E.noErratum, E.doc],
  },
  {
    when: { hostRead: 'machine-check' },
    topic: 'host access to private',
    rule: 'A host-kernel read of a page the TD holds is a fatal machine check in kernel context: a reading no source states [I]; the erratum text needs a partial write first.',
    source: '[X-c]; [I]',
    evidence: [E.erratum],
  },
  {
    topic: 'IOPTEs over private',
    rule: "No device may reach a page of a coco VM whose attribute is private: any IOPTE over one is an 'unsafe-iopte' violation (I2), already before the TD accepts the page [I].",
    source: '[T1e]; kernel-contract §9.5',
    evidence: [E.dmaMce, E.invariant],
  },
  {
    when: { connect: true },
    topic: 'IOPTEs over private',
    rule: 'In the registry design IOMMU_IOAS_MAP_FILE fills IOPTEs only for pages shared at fill time: the host-managed (T=0) table maps shared pages only, and private DMA goes through the S-EPT-backed T=1 table the host does not write.',
    source: '[T1g]',
    evidence: [E.unmapFirst, E.sept],
  },
  {
    when: { connect: false },
    topic: 'IOPTEs over private',
    rule: 'In the registry design IOMMU_IOAS_MAP_FILE fills IOPTEs only for pages shared at fill time: the host-managed (T=0) IOMMU table maps shared pages only.',
    source: '[T1g]',
    evidence: [E.unmapFirst],
  },
  {
    topic: 'private entry',
    rule: "At the guest's private fault, when the stage-2 entry is installed, KVM adds each 4K page to the S-EPT with TDH.MEM.PAGE.AUG and the guest accepts it with TDG.MEM.PAGE.ACCEPT; one ACCEPT per 4K page is an inference [I].",
    source: '[X-a], arch-behaviour 6b',
    evidence: [E.aug, E.sixB],
  },
  {
    when: { pwMceErratum: true },
    topic: 'removal pipeline',
    rule: 'Per 4K page the TD held, leaving by truncate, release or to-shared: TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK, an IPI to each vCPU in guest mode (counted as one per vCPU: an upper bound), TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD, then a MOVDIR64B clear. Pages the TD never held cost nothing.',
    source: '[X-a]; [KVMREQ]',
    evidence: [E.remove, E.ipi],
  },
  {
    when: { pwMceErratum: false },
    topic: 'removal pipeline',
    rule: 'Per 4K page the TD held, leaving by truncate, release or to-shared: TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK, an IPI to each vCPU in guest mode (counted as one per vCPU: an upper bound), TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD, and no clear (newer trees clear only on erratum parts; a posted patch, merge status unknown). Pages the TD never held cost nothing.',
    source: '[X-a]; [KVMREQ]; [X-c2], arch-behaviour 6b',
    evidence: [E.remove, E.ipi, E.skipClear, E.sixB],
  },
  {
    topic: 'removal pipeline',
    rule: "Today's path (conversion 'separate'): a conversion to shared on the VM fd zaps the private SPTE, and that zap removes the page from the S-EPT (tdx_sept_remove_private_spte), so the page stops being TD-owned and the removal steps run at KVM_SET_MEMORY_ATTRIBUTES (privateRemovalAt 'zap'). guest_memfd still holds the folio; the VMM's later punch frees a page the TD no longer holds and costs no firmware step. Deleting a memslot zaps its private SPTEs the same way (kernel-contract §3.7: every VM type but the default one zaps the slot's private and shared leaves), so the pages bound there leave the S-EPT at the deletion and stay in guest_memfd, private by attribute.",
    source: '[X-a]',
    evidence: [E.zapAtConversion, E.remove],
  },
  {
    when: { pwMceErratum: true },
    topic: 'contents',
    rule: "A page the TD held is cleared with MOVDIR64B when it leaves ('zero' on conversion to shared and on truncate or release), which also clears any poison.",
    source: '[X-a]',
    evidence: [E.clear],
  },
  {
    when: { pwMceErratum: false },
    topic: 'contents',
    rule: "'keep': nothing clears a page the TD held when it leaves (conversion to shared, truncate, release), so its bytes stay, and so does any poison the host left in a line, which a later read consumes [I].",
    source: '[X-c2], arch-behaviour 6b; [X-a]',
    evidence: [E.skipClear, E.sixB, E.clear],
  },
  {
    topic: 'contents',
    rule: "The TD's first access to a page after ACCEPT finds zeros: TDG.MEM.PAGE.ACCEPT initialises the page with the TD's private key, so what a device or the host wrote while the page was shared is gone.",
    source: '[X-j]',
    evidence: [E.accept],
  },
  {
    topic: 'page sizes',
    rule: 'The ABI has 4K, 2M and 1G pages, but KVM maps private memory at 4K only, so every step counts 4K pages; huge-page support is in progress and not modelled.',
    source: '[X-h], [X-a]',
    evidence: [E.sizes, E.aug],
  },
]);

/** Build a TDX backend description; `variant: 'connect'` gives 'tdx:connect'. */
export function createTdxBackend(options: TdxOptions = {}): ArchBackend {
  const { variant, dmaToPrivate, hostRead, dmaRead, ...given } = readOptions(options);
  const connect = variant === 'connect';
  // [X-i2] tdx_connect_init refuses on X86_BUG_TDX_PW_MCE parts: TDX Connect implies a part without the erratum.
  const pwMceErratum = given.pwMceErratum ?? !connect;
  return archBackend({
    // Connect implies no erratum, so its id does not repeat it.
    id: variantId('tdx', [
      variant,
      dmaToPrivate === 'poison' && 'dma-poison',
      !pwMceErratum && !connect && 'no-erratum',
      hostRead === 'machine-check' && 'host-read-mce',
      dmaRead === 'no-fault' && 'dma-read-ok',
    ]),
    name: `${variant ? 'Intel TDX Connect' : 'Intel TDX'}${dmaToPrivate === 'poison' ? ' (DMA poisons)' : ''}${pwMceErratum || variant === 'connect' ? '' : ' (no PW_MCE erratum)'}${hostRead === 'machine-check' ? ' (host reads machine-check)' : ''}${dmaRead === 'no-fault' ? ' (DMA reads do not fault)' : ''}`,
    // [X-h] TDX_PS_4K/2M/1G in the ABI; [X-a] KVM maps private memory at 4K only in the version cited.
    pageSizes: [PAGE_SIZE, PMD_SIZE, PUD_SIZE],
    conversionPolicy,
    // conversionPolicy reads context.to and nothing else (revoke to private, tolerate to shared, [T1g]), in every
    // variant: one question per conversion answers for every area it overlaps.
    conversionPolicyInputs: { policy: conversionPolicy, inputs: ['to'] },
    deviceAccess: deviceAccess(dmaToPrivate, dmaRead),
    hostKernelAccess: hostKernelAccess(hostRead),
    // [T1e] "Intel TDX has no lower level privilege protection table": a device must never reach a private page
    // through a host IOPTE, so such an IOPTE is an invariant violation (kernel-contract §9.5 I2). A default VM's
    // pages are asked about as 'shared' (core's invariants pass the attribute only for a coco VM).
    deviceMayReach: ({ attribute }) => attribute === 'shared',
    // [T1g] The host-managed (T=0) IOMMU table only ever maps shared pages; with Connect, private DMA goes
    // through the S-EPT-backed T=1 table, which the host does not write [T1e].
    mapsPrivatePages: false,
    // [X-a] A page leaving the TD is removed from the S-EPT and cleared with MOVDIR64B (when the clear runs).
    // Shared -> private changes no hardware state: PAGE.AUG happens at the guest's fault.
    contentsOnConversion: ({ to }) => (to === 'shared' && pwMceErratum ? 'zero' : 'keep'),
    contentsOnRemoval: () => (pwMceErratum ? 'zero' : 'keep'),
    removalPipeline: removalPipeline(pwMceErratum),
    privateEntry,
    privateEntryAt: 'install',
    // [X-a] On today's path the conversion's zap of the private SPTE runs tdx_sept_remove_private_spte: the page
    // leaves the S-EPT (BLOCK, TRACK, PAGE.REMOVE, WBINVD) there, not when guest_memfd frees it at the punch.
    privateRemovalAt: 'zap',
    // [X-j] TDG.MEM.PAGE.ACCEPT "initialize[s] the page to all-0 using the TD ephemeral private key": what a device
    // or the host wrote while the page was shared is gone when the TD first reads it.
    contentsOnPrivateEntry: () => 'zero',
    hardwarePrivateName: 'TD private page (PAGE.AUG into the S-EPT, accepted)',
    rules: RULES.select({ connect, dmaToPrivate, pwMceErratum, hostRead, dmaRead }),
  });
}
