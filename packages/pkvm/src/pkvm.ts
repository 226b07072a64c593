/**
 * pKVM (arm64 protected KVM) as an ArchBackend. The EL2 hypervisor owns the host's stage-2 and tracks the owner
 * of every page; a page donated to a protected VM is unmapped from the host [P-b, P-d]. Android's kernel also has
 * a hypervisor-owned IOMMU whose host identity domain mirrors the host stage-2: every owner change (donation at
 * the guest's fault, the guest's share and unshare, reclaim) updates it (kvm_iommu_host_stage2_idmap with prot 0
 * for a non-host owner) [P-c, 6b]. So the hypervisor keeps the IOMMU in step with page ownership by itself, and
 * nothing needs the kernel to unmap IOPTEs on conversion — what Will Deacon is reported to prefer ("would rather
 * not unmap from the IOMMU on conversions", the seed [T1a]; the LPC notes' point that where the IOMMU follows the
 * CPU's stage-2 no separate unmap is needed [L-a]). That is the default. The hypervisor also refuses to donate a page
 * the host has IOMMU-mapped (its DMA refcount [P-d, P-e]): the guest's private fault on such a page fails, KVM_RUN
 * returns EINVAL, and the guest proceeds once the VMM unmaps it [P-h]. Upstream pKVM has no DMA isolation
 * ("Unimplemented" [P-a]): the 'upstream' variant.
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7); prior-art.md §7 for Fuad Tabba and pKVM-IA.
 */
import type {
  AccessVerdict,
  ArchBackend,
  ConsumerResponse,
  HypervisorConversionContext,
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
  ruleTable,
  variantId,
  whenHardwarePrivate,
} from '@gmemlab/core';

export type PkvmVariant = 'upstream';

export interface PkvmOptions {
  /** 'upstream': pKVM as in torvalds/linux, without a hypervisor-owned IOMMU ("DMA isolation ... Unimplemented" [P-a]). */
  variant?: PkvmVariant;
  /**
   * What the hypervisor does when the guest unshares (shared -> private) a page that is still DMA-mapped for
   * the host. Two readings:
   * - 'in-step' (default): the Android common kernel's unshare checks no DMA refcount; the identity-domain update
   *   takes the page out of the host's IOMMU view (mem_protect.c @2c9224d3, arch-behaviour 6b).
   * - 'refuse-dma-mapped': the pKVM-IA discussion, "forbid unshare (i.e. return an error to the pVM) if the page
   *   is still DMA-mapped for the host" (intel-staging/pKVM-IA#92, prior-art §7) — a proposal, per page, in
   *   both contract modes. (Android's DMA refcount [P-d, P-e] is checked at donation, i.e. at the guest's private
   *   fault, not at the unshare: see `privateEntryRefusal`.)
   */
  unshare?: 'in-step' | 'refuse-dma-mapped';
  /**
   * What a host-kernel access to a page the guest owns does (an abort injected at EL1 [P-a, P-g]):
   * 'oops' (default, newer trees: a kernel access with no fixup oopses; user accesses get SIGSEGV or a forced
   * reclaim, not modelled) or 'hyp-bug' (older upstream handle_host_mem_abort: BUG_ON, a hypervisor panic [P-b]).
   * Both are fatal to the host.
   */
  hostAbort?: 'oops' | 'hyp-bug';
}

/** The options' values. */
/** Every variant's conversionPolicy (see its comment where the backend is made). */
const tolerate = (): ConsumerResponse => 'tolerate';

const readOptions = defineOptions('@gmemlab/pkvm', {
  variant: oneOf(['upstream']),
  unshare: oneOf(['in-step', 'refuse-dma-mapped'], 'in-step'),
  hostAbort: oneOf(['oops', 'hyp-bug'], 'oops'),
} satisfies OptionSpecsOf<PkvmOptions>);

/** What the hooks and the rules decide by: Android pKVM (a hypervisor-owned IOMMU) or upstream, and the readings. */
interface Settings {
  readonly android: boolean;
  readonly unshare: 'in-step' | 'refuse-dma-mapped';
  readonly hostAbort: 'oops' | 'hyp-bug';
}

/** The step names [P-b, P-c, P-d]. */
export const PKVM_STEPS = {
  donate: 'hypercall: __pkvm_host_donate_guest',
  unmap: 'hypercall: guest stage-2 unmap',
  tlbi: 'TLBI (guest stage-2)',
  poison: 'hyp_poison_page (zero + clean to PoC)',
  reclaim: 'hypercall: __pkvm_host_reclaim_page',
  share: 'hypercall: __pkvm_guest_share_host',
  idmap: 'host IOMMU identity-domain update (kvm_iommu_host_stage2_idmap)',
  iotlb: 'IOTLB invalidation',
} as const;

function hostKernelAccess(reading: 'oops' | 'hyp-bug') {
  // Only a page the guest owns (donated at its private fault) is guarded (whenHardwarePrivate).
  return whenHardwarePrivate((): AccessVerdict => {
    if (reading === 'hyp-bug') {
      // [P-b] Older upstream handle_host_mem_abort: BUG_ON(ret && ret != -EAGAIN) — the hypervisor panics.
      return {
        allow: false,
        fault: 'contained',
        fatal: true,
        logged: true,
        mechanism: 'pKVM: host stage-2 abort; handle_host_mem_abort BUG_ON (hypervisor panic)',
      };
    }
    // [P-a, P-g] The hypervisor injects an abort at EL1 (host_inject_abort; is_pkvm_stage2_abort): a kernel access
    // without an exception-table fixup oopses.
    return {
      allow: false,
      fault: 'contained',
      fatal: true,
      logged: true,
      mechanism: 'pKVM: stage-2 abort injected into the host kernel (host_inject_abort): oops',
    };
  });
}

/** Android's donation check at the guest's private fault (see createPkvmBackend). */
function refuseDmaMappedDonation({
  dmaMapped,
}: {
  dmaMapped: boolean;
}): Extract<AccessVerdict, { allow: false }> | undefined {
  return dmaMapped
    ? {
        allow: false,
        fault: 'einval',
        fatal: false,
        logged: false,
        mechanism:
          'pKVM: __pkvm_host_donate_guest refuses a page with a DMA refcount (a live IOPTE maps it); KVM_RUN returns EINVAL until the VMM unmaps it',
      }
    : undefined;
}

/** The lowest byte offset of the range that some IOPTE maps, per page. */
function firstDmaMapped(context: HypervisorConversionContext): number | undefined {
  let lowest: number | undefined;
  for (const mapped of context.dmaMapped) {
    const from = Math.max(mapped.offset, context.offset);
    if (
      from < Math.min(mapped.offset + mapped.length, context.offset + context.length) &&
      (lowest === undefined || from < lowest)
    )
      lowest = from;
  }
  return lowest;
}

function iommuSteps(android: boolean, pages: number, batched = false): PipelineStep[] {
  // [P-c, 6b] Android: every owner change calls kvm_iommu_host_stage2_idmap over the page, then syncs the IOTLB
  // (kvm_iommu_host_stage2_idmap_complete). At donation the sglist path batches several pages under one sync.
  return android
    ? [
        { step: PKVM_STEPS.idmap, count: pages },
        batched
          ? { step: PKVM_STEPS.iotlb, count: pages, bound: 'upper' as const }
          : { step: PKVM_STEPS.iotlb, count: pages },
      ]
    : [];
}

function privateEntry(android: boolean) {
  return (context: PrivateEntryContext): readonly PipelineStep[] => [
    // [P-d, 6b] donation at the protected guest's stage-2 fault (pkvm_pgtable_stage2_map -> __pkvm_host_donate_guest).
    // [P-d, P-h] Android's fault path may donate several pages in one hypercall (__pkvm_host_donate_guest_sglist,
    // "a single call to kvm_iommu_host_stage2_idmap_complete()"): one hypercall and one IOTLB sync per page are at most.
    android
      ? { step: PKVM_STEPS.donate, count: context.pages, bound: 'upper' as const }
      : { step: PKVM_STEPS.donate, count: context.pages },
    ...iommuSteps(android, context.pages, true),
  ];
}

function removalPipeline(android: boolean) {
  return (context: RemovalContext): readonly PipelineStep[] => {
    if (context.cause === 'to-private') return [];
    const pages = context.pages;
    if (context.cause === 'to-shared') {
      // [P-b] __pkvm_guest_share_host: the page stays the guest's, shared with the host; contents preserved.
      return [{ step: PKVM_STEPS.share, count: pages }, ...iommuSteps(android, pages)];
    }
    // [P-d] teardown: unmap from the guest stage-2 (+ TLBI), __pkvm_host_reclaim_page -> hyp_poison_page (memset
    // 0 + kvm_flush_dcache_to_poc, since FWB cannot be trusted) -> owner back to host. A page the guest shared back
    // is PKVM_PAGE_SHARED_OWNED in its stage-2: __pkvm_host_reclaim_page unmaps it and gives it back to the host,
    // without hyp_poison_page (that is only for PKVM_PAGE_OWNED).
    const back = (context as Partial<RemovalContext>).sharedBack ?? 0;
    const all = pages + back;
    return [
      { step: PKVM_STEPS.unmap, count: all },
      { step: PKVM_STEPS.tlbi, count: all },
      { step: PKVM_STEPS.poison, count: pages },
      { step: PKVM_STEPS.reclaim, count: all },
      ...iommuSteps(android, all),
    ];
  };
}

/**
 * What each cited source says, verbatim or as a code location: BackendRule.evidence. ACK is the Android common
 * kernel 6.12 mirror abidhasansojib/android_kernel_common-6.12.30-android16 @ 2c9224d389b0 ([P-d], [P-h]).
 */
const EVIDENCE = {
  seed: { tag: 'T1a', quote: 'Will said pKVM actually would rather not unmap from the IOMMU on conversions.' },
  noIommu: { tag: 'P-a', quote: 'DMA isolation using an IOMMU ... Status: **Unimplemented.**' },
  hostSyscall: {
    tag: 'P-a',
    quote:
      'If a system call accesses pVM memory that has not been shared back then it will either return -EFAULT or forcefully reclaim the memory pages.',
  },
  idmap: {
    tag: 'P-c',
    quote:
      "iommu/iommu.c: kvm_iommu_host_stage2_idmap() @ 21f52823776, called by ACK mem_protect.c __host_stage2_set_owner_locked(): 'prot = owner_id == PKVM_ID_HOST ? PKVM_HOST_MEM_PROT : 0; kvm_iommu_host_stage2_idmap(addr, addr + size, prot);'",
  },
  useDma: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_use_dma(): "When a page is mapped in an IOMMU page table for DMA, it must not be donated to a guest or the hypervisor we ensure this with: - Host can only map pages that are OWNED"',
  },
  useDmaHostOwned: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_use_dma_locked() (called from iommu/iommu.c kvm_iommu_map_pages()), for the host\'s pages: "if (state != PKVM_PAGE_OWNED) { ret = -EPERM; break; }"',
  },
  donate: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_host_donate_guest(): ___host_check_page_state_range(phys, size, PKVM_PAGE_OWNED, HOST_CHECK_NULL_REFCNT | HOST_CHECK_IS_MEMORY), which returns -EINVAL "if ((flags & HOST_CHECK_NULL_REFCNT) && hyp_refcount_get(p->refcount))"',
  },
  share: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_guest_share_host(): __guest_initiate_page_transition(ipa, pte, nr_pages, vcpu, PKVM_PAGE_SHARED_OWNED); __host_set_page_state_range(phys, size, PKVM_PAGE_SHARED_BORROWED)',
  },
  unshare: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_guest_unshare_host(): checks only __host_check_page_state_range(phys, size, PKVM_PAGE_SHARED_BORROWED) (no refcount flag), then host_stage2_set_owner_locked(phys, size, PKVM_ID_GUEST)',
  },
  reclaimOwned: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_host_reclaim_page(): "case PKVM_PAGE_OWNED: ... hyp_poison_page(phys, page_size);" then kvm_pgtable_stage2_unmap(&vm->pgt, ipa, page_size) and host_stage2_set_owner_locked(phys, page_size, PKVM_ID_HOST)',
  },
  reclaimShared: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __pkvm_host_reclaim_page(): "case PKVM_PAGE_SHARED_OWNED:" checks the host borrows the page and breaks (no hyp_poison_page), then kvm_pgtable_stage2_unmap(&vm->pgt, ipa, page_size) and host_stage2_set_owner_locked(phys, page_size, PKVM_ID_HOST)',
  },
  poison: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c hyp_poison_page(): memset(addr, 0, __size) then kvm_flush_dcache_to_poc(), "as the latter may elide the CMO under the assumption that FWB will be enabled"',
  },
  sizes: {
    tag: 'P-d',
    quote:
      'ACK mem_protect.c __check_host_shared_guest(): "if (size != PAGE_SIZE && size != PMD_SIZE) return -EINVAL;"',
  },
  abort: {
    tag: 'P-d',
    quote: 'ACK mem_protect.c handle_host_mem_abort(): "if (ret == -EPERM) host_inject_abort(host_ctxt);"',
  },
  hostFault: {
    tag: 'P-g',
    quote:
      'arch/arm64/mm/fault.c: is_pkvm_stage2_abort() (patch mail): the host fault handler recognises the abort the hypervisor injected',
  },
  bug: { tag: 'P-b', quote: 'mem_protect.c handle_host_mem_abort(): "BUG_ON(ret && ret != -EAGAIN);"' },
  patch: { tag: 'P-e', quote: 'We must not allow the host to donate pages that are mapped in the IOMMU for DMA' },
  sglist: {
    tag: 'P-h',
    quote:
      'ACK mmu.c __pkvm_host_donate_guest(): "if (ppages->next != ppages->prev && kvm->arch.pkvm.enabled) { ret = __pkvm_host_donate_guest_sglist(vcpu, ppages);" — one hypercall for a list of pages, which __pkvm_host_donate_sglist_guest() syncs "with a single call to kvm_iommu_host_stage2_idmap_complete()"',
  },
  exit: {
    tag: 'P-h',
    quote:
      'ACK mmu.c __pkvm_host_donate_guest(): "if (ret == -EPERM) { ret = 0; continue; } else if (ret) { break; }"; pkvm_mem_abort() returns it; kvm_handle_guest_abort(): "ret = pkvm_mem_abort_prefault(vcpu, fault_ipa, memslot); if (ret == 0) ret = 1;" — a negative value is KVM_RUN\'s error',
  },
  sixB: {
    tag: 'arch-behaviour 6b',
    quote:
      "donation refuses a page with a DMA refcount; the guest's unshare does not check it; every owner change updates the host identity IOMMU domain",
  },
  sixBUpstream: {
    tag: 'arch-behaviour 6b',
    quote:
      "pKVM (upstream): donation at the guest's stage-2 fault; MEM_SHARE/MEM_UNSHARE hypercalls in kvmarm/next (Mar 2026); no hypervisor IOMMU",
  },
  proposal: {
    tag: 'pKVM-IA#92',
    quote: 'forbid unshare (i.e. return an error to the pVM) if the page is still DMA-mapped for the host',
  },
  tabba: { tag: 'prior-art §7', quote: 'Conversion preserves content (no hook); teardown scrubs.' },
  order0: { tag: 'kernel-contract §3.9', quote: 'the page is returned with a reference and `max_order` 0.' },
  invariant: {
    tag: 'kernel-contract §9.5',
    quote: "I2 ... `unsafe-iopte` (generalised: any page the backend's `deviceMayReach` says no device may reach)",
  },
} as const;

/**
 * The rules in words, with the tags the code above cites and, for each tag, the passage that supports the rule:
 * `backend.rules` is the rows whose settings (`when`) match the instance's, in this order; what the README's tables
 * say. Where the sources disagree or are silent, the rule says so.
 */
const E = EVIDENCE;
const RULES = ruleTable<Settings>([
  {
    when: { android: true },
    topic: 'variant',
    rule: 'Android pKVM: the EL2 hypervisor owns an IOMMU whose host identity domain follows the host stage-2; every owner change (donation, share, unshare, reclaim) updates it, so the hypervisor keeps DMA in step with page ownership by itself.',
    source: '[P-c], arch-behaviour 6b',
    evidence: [E.idmap, E.sixB],
  },
  {
    when: { android: false },
    topic: 'variant',
    rule: "Upstream pKVM: no hypervisor-owned IOMMU; 'DMA isolation using an IOMMU' is documented as unimplemented.",
    source: '[P-a]',
    evidence: [E.noIommu],
  },
  {
    when: { android: true },
    topic: 'conversion policy',
    rule: "'tolerate' both ways: the registry unmaps nothing on conversion, as Will Deacon is reported to prefer (his reason is unknown [U]). The hypervisor needs no help: its IOMMU follows page ownership, and it refuses to donate a page a device can still reach (see private entry).",
    source: '[T1a]; [P-c], [P-d]',
    evidence: [E.seed, E.idmap, E.useDma],
  },
  {
    when: { android: false },
    topic: 'conversion policy',
    rule: "'tolerate' both ways: nothing is unmapped on conversion, as Will Deacon is reported to prefer (his reason is unknown [U]); upstream has no IOMMU isolation to keep in step.",
    source: '[T1a]; [P-a]',
    evidence: [E.seed, E.noIommu],
  },
  {
    when: { unshare: 'refuse-dma-mapped' },
    topic: 'hypervisor refusal',
    rule: "For a conversion to private, the hypervisor refuses any page some IOPTE maps (any IOAS, both contract modes): EAGAIN with errorOffset at the lowest such page, and nothing changes. A proposal of Intel's pKVM-IA project, not arm64 pKVM code; it is checked on every conversion to private, not only on the unshare of a page shared back [I].",
    source: 'pKVM-IA#92 (prior-art §7)',
    evidence: [E.proposal],
  },
  {
    when: { unshare: 'in-step', android: true },
    topic: 'hypervisor refusal',
    rule: "None at conversion: the guest's unshare of a page shared back checks that the host borrows it, not a DMA refcount. The DMA refcount is checked at donation, which is the guest's private fault (see private entry).",
    source: '[P-d], arch-behaviour 6b',
    evidence: [E.unshare, E.sixB],
  },
  {
    when: { unshare: 'in-step', android: false },
    topic: 'hypervisor refusal',
    rule: 'None: upstream has no hypervisor IOMMU, so the hypervisor has no DMA mapping to check a conversion or a donation against; no source describes such a check [I].',
    source: '[P-a], arch-behaviour 6b; [I]',
    evidence: [E.noIommu, E.sixBUpstream],
  },
  {
    when: { android: true },
    topic: 'device access to private',
    rule: "A device access to a page the guest owns faults in the hypervisor's IOMMU, since the owner change took the page out of the host's identity domain (prot 0): not fatal; whether the hypervisor logs it is not stated and the model says logged [U].",
    source: '[P-c], arch-behaviour 6b; [U]',
    evidence: [E.idmap, E.sixB],
  },
  {
    when: { android: false },
    topic: 'device access to private',
    rule: "A device access to a page the protected VM owns is allowed: nothing isolates DMA, so the device reads and writes the guest's memory.",
    source: '[P-a]',
    evidence: [E.noIommu],
  },
  {
    when: { hostAbort: 'oops' },
    topic: 'host access to private',
    rule: 'A host-kernel access to a page the guest owns is an abort the hypervisor injects at EL1 (host_inject_abort): with no fixup the kernel oopses, fatal. The -EFAULT and forced reclaim of newer trees are not modelled.',
    source: '[P-d], [P-a, P-g]',
    evidence: [E.abort, E.hostSyscall, E.hostFault],
  },
  {
    when: { hostAbort: 'hyp-bug' },
    topic: 'host access to private',
    rule: 'A host-kernel access to a page the guest owns hits BUG_ON in the older handle_host_mem_abort: the hypervisor panics, fatal.',
    source: '[P-b]',
    evidence: [E.bug],
  },
  {
    when: { android: true },
    topic: 'IOPTEs over private',
    rule: "A device may reach any page: the hypervisor's IOMMU blocks access to a page the guest owns, so an IOPTE over a private page is no safety violation.",
    source: '[P-c]',
    evidence: [E.idmap],
  },
  {
    when: { android: false },
    topic: 'IOPTEs over private',
    rule: "No device may safely reach a page of a coco VM whose attribute is private, and nothing stops one: any IOPTE over such a page is an 'unsafe-iopte' violation, a confidentiality breach.",
    source: '[P-a]; kernel-contract §9.5',
    evidence: [E.noIommu, E.invariant],
  },
  {
    when: { android: true },
    topic: 'IOPTEs over private',
    rule: "The hypervisor lets the host IOMMU-map only pages the host owns, so in the registry design IOMMU_IOAS_MAP_FILE fills IOPTEs for shared pages only. A page the guest shared back is only borrowed by the host (PKVM_PAGE_SHARED_BORROWED), so __pkvm_use_dma refuses to map it (-EPERM): MAP_FILE fills no IOPTE for it either (mapsSharedBackPages false). The model leaves such pages out of the area, as it does private ones, where the kernel's map would fail with EPERM [I].",
    source: '[P-d]',
    evidence: [E.useDma, E.useDmaHostOwned],
  },
  {
    when: { android: false },
    topic: 'IOPTEs over private',
    rule: 'Nothing stops the host mapping private pages: IOMMU_IOAS_MAP_FILE maps them in both designs, and the invariants report it.',
    source: '[P-a]',
    evidence: [E.noIommu],
  },
  {
    when: { android: true },
    topic: 'private entry',
    rule: "At the protected guest's stage-2 fault, when the entry is installed, the hypervisor takes the page with __pkvm_host_donate_guest, then the host identity-domain update and an IOTLB invalidation. Counted per page; the fault path may donate several pages in one hypercall under one IOTLB sync (__pkvm_host_donate_guest_sglist), so those two counts are upper bounds.",
    source: '[P-d], [P-c], [P-h], arch-behaviour 6b',
    evidence: [E.donate, E.idmap, E.sglist, E.sixB],
  },
  {
    when: { android: false },
    topic: 'private entry',
    rule: "At the protected guest's stage-2 fault, when the entry is installed, the hypervisor takes the page with __pkvm_host_donate_guest.",
    source: 'arch-behaviour 6b',
    evidence: [E.sixBUpstream],
  },
  {
    when: { android: true },
    topic: 'private entry',
    rule: "The donation fails for a page a live IOPTE maps (its DMA refcount is held while it is IOMMU-mapped): __pkvm_host_donate_guest returns -EINVAL, the host's fault handler passes it up, and KVM_RUN fails with EINVAL, no exit reason, nothing installed. The guest proceeds once the VMM unmaps the IOPTE (IOMMU_IOAS_UNMAP drops the refcount) and runs the vCPU again, which retries the access. The policy stays 'tolerate': the hypervisor itself refuses to hand the guest a page a device can reach.",
    source: '[P-d], [P-e], [P-h]',
    evidence: [E.donate, E.useDma, E.patch, E.exit],
  },
  {
    topic: 'removal pipeline',
    rule: "Today's path (conversion 'separate'), model's reading: the sources describe no per-VM-attribute conversion on pKVM. A page donated to a protected guest returns to the host only by __pkvm_host_reclaim_page, so a host zap at the conversion leaves it guest-owned and the removal steps run when guest_memfd frees it at the VMM's punch (privateRemovalAt 'free').",
    source: '[P-d]',
    evidence: [E.reclaimOwned],
  },
  {
    when: { android: true },
    topic: 'removal pipeline',
    rule: "To shared, per page the guest owned: __pkvm_guest_share_host, then the host identity-domain update and an IOTLB invalidation. The page stays in the guest's stage-2 as PKVM_PAGE_SHARED_OWNED and the host borrows it; the model counts it as leaving the private state and keeps it as shared back until it is freed or faulted in as private again.",
    source: '[P-d], [P-c]',
    evidence: [E.share, E.idmap],
  },
  {
    when: { android: false },
    topic: 'removal pipeline',
    rule: "To shared, per page the guest owned: __pkvm_guest_share_host. The page stays in the guest's stage-2 as PKVM_PAGE_SHARED_OWNED and the host borrows it; the model counts it as leaving the private state and keeps it as shared back until it is freed or faulted in as private again.",
    source: 'arch-behaviour 6b',
    evidence: [E.sixBUpstream],
  },
  {
    when: { android: true },
    topic: 'removal pipeline',
    rule: 'Truncate or release, per page the guest owned: guest stage-2 unmap, TLBI, hyp_poison_page (zero and clean to PoC, since FWB cannot be trusted), __pkvm_host_reclaim_page, then the host identity-domain update and an IOTLB invalidation. Per page the guest had shared back (PKVM_PAGE_SHARED_OWNED): the same without hyp_poison_page.',
    source: '[P-d], [P-c]',
    evidence: [E.reclaimOwned, E.reclaimShared, E.poison, E.idmap],
  },
  {
    when: { android: false },
    topic: 'removal pipeline',
    rule: 'Truncate or release, per page the guest owned: guest stage-2 unmap, TLBI, hyp_poison_page (zero and clean to PoC, since FWB cannot be trusted), __pkvm_host_reclaim_page. Per page the guest had shared back (PKVM_PAGE_SHARED_OWNED): the same without hyp_poison_page.',
    source: '[P-d]',
    evidence: [E.reclaimOwned, E.reclaimShared, E.poison],
  },
  {
    topic: 'contents',
    rule: "'keep' on conversion both ways and at donation (the guest's first private access finds the bytes the page held while shared: the donation path copies or clears nothing); only teardown of a page the guest owned scrubs ('zero' on truncate or release, hyp_poison_page).",
    source: 'prior-art §7 (the pKVM row); [P-d]',
    evidence: [E.tabba, E.donate, E.poison],
  },
  {
    topic: 'page sizes',
    rule: "Guest transitions use PAGE_SIZE or 2M (PMD) blocks; guest_memfd's order-0 folios make every step count 4K pages.",
    source: '[P-d]; kernel-contract §3.9',
    evidence: [E.sizes, E.order0],
  },
]);

/** Build a pKVM backend description: Android pKVM by default, `variant: 'upstream'` gives 'pkvm:upstream'. */
export function createPkvmBackend(options: PkvmOptions = {}): ArchBackend {
  const { variant, unshare, hostAbort } = readOptions(options);
  const android = variant === undefined;
  return archBackend({
    id: variantId('pkvm', [
      variant,
      unshare === 'refuse-dma-mapped' && 'refuse-dma-mapped',
      hostAbort === 'hyp-bug' && 'hyp-bug',
    ]),
    name: `${android ? 'Android pKVM (hypervisor-owned IOMMU)' : 'pKVM (upstream, no IOMMU isolation)'}${unshare === 'refuse-dma-mapped' ? ', unshare refused while DMA-mapped' : ''}${hostAbort === 'hyp-bug' ? ', hyp BUG_ON on host aborts' : ''}`,
    // [P-d] guest transitions use PAGE_SIZE or PMD-size blocks.
    pageSizes: [PAGE_SIZE, PMD_SIZE],
    // The seed [T1a]: Will "would rather not unmap from the IOMMU on conversions". On Android the hypervisor keeps
    // its IOMMU in step with ownership [P-c]; upstream has no IOMMU isolation to keep in step [P-a].
    conversionPolicy: tolerate,
    // The answer reads nothing of the context, in every variant: one question per conversion answers for every
    // area (a refusal while DMA-mapped is hypervisorRefusal's, asked once per conversion anyway).
    conversionPolicyInputs: { policy: tolerate, inputs: [] },
    deviceAccess: whenHardwarePrivate((): AccessVerdict => {
      // [P-a] Upstream: no IOMMU isolation; the access reaches the protected VM's page.
      if (!android) return { allow: true };
      // [P-c, 6b] A page the guest owns is not in the host identity domain (prot 0): the hypervisor's IOMMU
      // blocks the access and reports the fault. (Whether the hypervisor logs it is unstated; the model says
      // logged.)
      return {
        allow: false,
        fault: 'iommu-fault',
        fatal: false,
        logged: true,
        mechanism: "pKVM hypervisor-owned IOMMU: the page is not in the host's identity domain",
      };
    }),
    hostKernelAccess: hostKernelAccess(hostAbort),
    // Android [P-c]: the hypervisor's IOMMU blocks devices. Upstream [P-a]: nothing does, so an IOPTE over a
    // protected page breaks the VM's confidentiality and is an 'unsafe-iopte' violation. A default VM's pages are
    // asked about as 'shared' (core's invariants pass the attribute only for a coco VM).
    deviceMayReach: ({ attribute }) => android || attribute === 'shared',
    // Android [P-d]: "The hypervisor refuses to IOMMU-map pages the host does not own". Upstream: nothing stops
    // the host mapping them, and a device then reaches them [P-a].
    mapsPrivatePages: !android,
    // Android [P-d]: __pkvm_use_dma maps only host-OWNED pages; a page the guest shared back is only borrowed.
    mapsSharedBackPages: !android,
    // prior-art §7 (Fuad Tabba): conversion preserves contents; only teardown scrubs (hyp_poison_page [P-d]).
    contentsOnConversion: () => 'keep',
    contentsOnRemoval: () => 'zero',
    removalPipeline: removalPipeline(android),
    privateEntry: privateEntry(android),
    privateEntryAt: 'install',
    // [P-d] (model's reading: no source covers a per-VM-attribute conversion on pKVM) a page donated to a protected
    // guest goes back to the host only through __pkvm_host_reclaim_page, when the host frees it; a host-side
    // stage-2 zap does not change the hypervisor's owner, so the page stays guest-owned until the punch.
    privateRemovalAt: 'free',
    hardwarePrivateName: 'owned by the protected VM (donated)',
    // [P-d] ACK __pkvm_host_donate_guest: the page is mapped into the guest as it is; nothing clears it.
    contentsOnPrivateEntry: () => 'keep',
    rules: RULES.select({ android, unshare, hostAbort }),
    // [P-d] ACK __pkvm_host_donate_guest checks the range with HOST_CHECK_NULL_REFCNT: a page with a DMA refcount
    // (held from __pkvm_use_dma until __pkvm_unuse_dma, i.e. while an IOPTE maps it) is not donated, -EINVAL [P-e].
    // [P-h] The host's fault path breaks out on it, kvm_handle_guest_abort returns it, and KVM_RUN fails with
    // EINVAL: no exit reason, no stage-2 entry; the vCPU re-faults when run again.
    ...(android ? { privateEntryRefusal: refuseDmaMappedDonation } : {}),
    // pKVM-IA#92 (prior-art §7): the hypervisor refuses to take back, per page, a page some IOPTE still maps.
    ...(unshare === 'refuse-dma-mapped'
      ? {
          hypervisorRefusal: (context: HypervisorConversionContext) =>
            context.to === 'private' ? firstDmaMapped(context) : undefined,
        }
      : {}),
  });
}
