/**
 * pKVM (arm64 protected KVM) as an ArchBackend. The EL2 hypervisor owns the host's stage-2 and tracks the owner
 * of every page; a page donated to a protected VM is unmapped from the host [P-b, P-d]. Android's kernel also has
 * a hypervisor-owned IOMMU whose host identity domain mirrors the host stage-2: every owner change (donation at
 * the guest's fault, the guest's share and unshare, reclaim) updates it (kvm_iommu_host_stage2_idmap with prot 0
 * for a non-host owner) [P-c, 6b]. So the hypervisor keeps the IOMMU in step with page ownership by itself, and
 * nothing needs the kernel to unmap IOPTEs on conversion — what Will Deacon is reported to prefer ("would rather
 * not unmap from the IOMMU on conversions", the seed [T1a]; the LPC notes' point that where the IOMMU follows the
 * CPU's stage-2 no separate unmap is needed [L-a]). That is the default. Upstream pKVM has no DMA isolation
 * ("Unimplemented" [P-a]): the 'upstream' variant.
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7); prior-art.md §7 for Fuad Tabba and pKVM-IA.
 */
import type { AccessVerdict, ArchBackend, BackendRule, HypervisorConversionContext, PageAccessContext, PipelineStep, PrivateEntryContext, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE } from '@gmemlab/core';



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
   *   both contract modes. (Android's refcount rule [P-e] is about the host *donating* a page, not this path.)
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
  return (context: PageAccessContext): AccessVerdict => {
    if (context.vmType !== 'coco' || context.hardware !== 'private') return { allow: true };
    if (reading === 'hyp-bug') {
      // [P-b] Older upstream handle_host_mem_abort: BUG_ON(ret && ret != -EAGAIN) — the hypervisor panics.
      return { allow: false, fault: 'contained', fatal: true, logged: true, mechanism: 'pKVM: host stage-2 abort; handle_host_mem_abort BUG_ON (hypervisor panic)' };
    }
    // [P-a, P-g] The hypervisor injects an abort at EL1 (host_inject_abort; is_pkvm_stage2_abort): a kernel access
    // without an exception-table fixup oopses.
    return { allow: false, fault: 'contained', fatal: true, logged: true, mechanism: 'pKVM: stage-2 abort injected into the host kernel (host_inject_abort): oops' };
  };
}

/** The lowest byte offset of the range that some IOPTE maps, per page. */
function firstDmaMapped(context: HypervisorConversionContext): number | undefined {
  let lowest: number | undefined;
  for (const mapped of context.dmaMapped) {
    const from = Math.max(mapped.offset, context.offset);
    if (from < Math.min(mapped.offset + mapped.length, context.offset + context.length) && (lowest === undefined || from < lowest)) lowest = from;
  }
  return lowest;
}

function iommuSteps(android: boolean, pages: number): PipelineStep[] {
  // [P-c, 6b] Android: every owner change calls kvm_iommu_host_stage2_idmap over the page, then syncs the IOTLB.
  return android
    ? [
        { step: PKVM_STEPS.idmap, count: pages },
        { step: PKVM_STEPS.iotlb, count: pages },
      ]
    : [];
}

function privateEntry(android: boolean) {
  return (context: PrivateEntryContext): readonly PipelineStep[] => [
    // [P-d, 6b] donation at the protected guest's stage-2 fault (pkvm_pgtable_stage2_map -> __pkvm_host_donate_guest).
    { step: PKVM_STEPS.donate, count: context.pages },
    ...iommuSteps(android, context.pages),
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
    // 0 + kvm_flush_dcache_to_poc, since FWB cannot be trusted) -> owner back to host.
    return [
      { step: PKVM_STEPS.unmap, count: pages },
      { step: PKVM_STEPS.tlbi, count: pages },
      { step: PKVM_STEPS.poison, count: pages },
      { step: PKVM_STEPS.reclaim, count: pages },
      ...iommuSteps(android, pages),
    ];
  };
}

/**
 * The rules of one instance in words, with the tags the code above cites: `backend.rules`, what the README's
 * tables say for these options. Where the sources disagree or are silent, the rule says so.
 */
function pkvmRules(android: boolean, unshare: 'in-step' | 'refuse-dma-mapped', hostAbort: 'oops' | 'hyp-bug'): readonly BackendRule[] {
  const iommu = android ? ', then the host identity-domain update and an IOTLB invalidation' : '';
  const rules: BackendRule[] = [
    android
      ? {
          topic: 'variant',
          rule: "Android pKVM: the EL2 hypervisor owns an IOMMU whose host identity domain mirrors the host stage-2, updated on every owner change (donation, share, unshare, reclaim), so it keeps DMA in step with page ownership by itself.",
          source: '[P-c], arch-behaviour 6b',
        }
      : {
          topic: 'variant',
          rule: "Upstream pKVM: no hypervisor-owned IOMMU; 'DMA isolation using an IOMMU' is documented as unimplemented.",
          source: '[P-a]',
        },
    {
      topic: 'conversion policy',
      rule: android
        ? "'tolerate' both ways: nothing is unmapped on conversion, as Will Deacon is reported to prefer (his reason is unknown [U]); the hypervisor's IOMMU follows page ownership itself."
        : "'tolerate' both ways: nothing is unmapped on conversion, as Will Deacon is reported to prefer (his reason is unknown [U]); upstream has no IOMMU isolation to keep in step.",
      source: android ? '[T1a]; [P-c], arch-behaviour 6b' : '[T1a]; [P-a]',
    },
    unshare === 'refuse-dma-mapped'
      ? {
          topic: 'hypervisor refusal',
          rule: "For a conversion to private, the hypervisor refuses any page some IOPTE maps (any IOAS, both contract modes): EAGAIN with errorOffset at the lowest such page, and nothing changes. A proposal of Intel's pKVM-IA project, not arm64 pKVM code; it is checked on every conversion to private, not only on the unshare of a page shared back [I].",
          source: 'pKVM-IA#92 (prior-art §7)',
        }
      : android
        ? {
            topic: 'hypervisor refusal',
            rule: "None: the guest's unshare of a page still DMA-mapped for the host checks no DMA refcount, and the identity-domain update takes the page out of the host's IOMMU view. (The DMA refcount guards the host's donation, another path.)",
            source: 'arch-behaviour 6b; [P-e]',
          }
        : {
            topic: 'hypervisor refusal',
            rule: 'None: upstream has no hypervisor IOMMU, so the hypervisor has no DMA mapping to check a conversion against; no source describes such a check [I].',
            source: '[P-a], arch-behaviour 6b; [I]',
          },
    android
      ? {
          topic: 'device access to private',
          rule: "A device access to a page the guest owns faults in the hypervisor's IOMMU, since the page is not in the host's identity domain: not fatal, and logged, though whether the hypervisor logs it is not stated [U].",
          source: '[P-c], arch-behaviour 6b; [U]',
        }
      : {
          topic: 'device access to private',
          rule: "A device access to a page the protected VM owns is allowed: nothing isolates DMA, so the device reads and writes the guest's memory.",
          source: '[P-a]',
        },
    hostAbort === 'oops'
      ? {
          topic: 'host access to private',
          rule: 'A host-kernel access to a page the guest owns is an abort the hypervisor injects at EL1 (host_inject_abort): with no fixup the kernel oopses, fatal. The -EFAULT and forced reclaim of newer trees are not modelled.',
          source: '[P-a, P-g]',
        }
      : {
          topic: 'host access to private',
          rule: 'A host-kernel access to a page the guest owns hits BUG_ON in the older handle_host_mem_abort: the hypervisor panics, fatal.',
          source: '[P-b]',
        },
    android
      ? {
          topic: 'IOPTEs over private',
          rule: "A device may reach any page: the hypervisor's IOMMU blocks access to a page the guest owns, so an IOPTE over a private page is no safety violation.",
          source: '[P-c]',
        }
      : {
          topic: 'IOPTEs over private',
          rule: "No device may safely reach a page of a coco VM whose attribute is private, and nothing stops one: any IOPTE over such a page is an 'unsafe-iopte' violation, a confidentiality breach.",
          source: '[P-a]; kernel-contract §9.5',
        },
    android
      ? {
          topic: 'IOPTEs over private',
          rule: 'The hypervisor refuses to IOMMU-map pages the host does not own, so in the registry design IOMMU_IOAS_MAP_FILE fills IOPTEs for shared pages only.',
          source: '[P-d]',
        }
      : {
          topic: 'IOPTEs over private',
          rule: 'Nothing stops the host mapping private pages: IOMMU_IOAS_MAP_FILE maps them in both designs, and the invariants report it.',
          source: '[P-a]',
        },
    {
      topic: 'private entry',
      rule: `At the protected guest's stage-2 fault, when the entry is installed, the hypervisor takes the page with __pkvm_host_donate_guest${iommu}.`,
      source: android ? '[P-d], [P-c], arch-behaviour 6b' : '[P-d], arch-behaviour 6b',
    },
    {
      topic: 'removal pipeline',
      rule: `To shared, per page the guest owned: __pkvm_guest_share_host${iommu}. In pKVM the page stays the guest's and the host only borrows it; treating it as leaving the private state is an inference [I].`,
      source: android ? '[P-b], [P-c]' : '[P-b]',
    },
    {
      topic: 'removal pipeline',
      rule: `Truncate or release, per page the guest owned: guest stage-2 unmap, TLBI, hyp_poison_page (zero and clean to PoC, since FWB cannot be trusted), __pkvm_host_reclaim_page${iommu}.`,
      source: android ? '[P-d], [P-c]' : '[P-d]',
    },
    {
      topic: 'contents',
      rule: "'keep' on conversion both ways; only teardown scrubs ('zero' on truncate or release, hyp_poison_page).",
      source: 'prior-art §7 (Fuad Tabba); [P-d]',
    },
    {
      topic: 'page sizes',
      rule: "Guest transitions use PAGE_SIZE or 2M (PMD) blocks; guest_memfd's order-0 folios make every step count 4K pages.",
      source: '[P-d]; kernel-contract §3.9',
    },
  ];
  return Object.freeze(rules.map((rule) => Object.freeze(rule)));
}

/** Build a pKVM backend description: Android pKVM by default, `variant: 'upstream'` gives 'pkvm:upstream'. */
export function createPkvmBackend(options: PkvmOptions = {}): ArchBackend {
  const { variant, unshare = 'in-step', hostAbort = 'oops' } = options;
  if (variant !== undefined && variant !== 'upstream') throw new TypeError(`@gmemlab/pkvm: unknown variant ${String(variant)}; the only variant is 'upstream'`);
  if (unshare !== 'in-step' && unshare !== 'refuse-dma-mapped') throw new TypeError(`@gmemlab/pkvm: unshare must be 'in-step' or 'refuse-dma-mapped', not ${String(unshare)}`);
  if (hostAbort !== 'oops' && hostAbort !== 'hyp-bug') throw new TypeError(`@gmemlab/pkvm: hostAbort must be 'oops' or 'hyp-bug', not ${String(hostAbort)}`);
  const android = variant === undefined;
  const parts = [variant, unshare === 'refuse-dma-mapped' ? 'refuse-dma-mapped' : undefined, hostAbort === 'hyp-bug' ? 'hyp-bug' : undefined].filter(Boolean);
  const backend: ArchBackend = {
    specificationVersion: 'v1',
    id: parts.length > 0 ? `pkvm:${parts.join('-')}` : 'pkvm',
    name: `${android ? 'Android pKVM (hypervisor-owned IOMMU)' : 'pKVM (upstream, no IOMMU isolation)'}${unshare === 'refuse-dma-mapped' ? ', unshare refused while DMA-mapped' : ''}${hostAbort === 'hyp-bug' ? ', hyp BUG_ON on host aborts' : ''}`,
    // [P-d] guest transitions use PAGE_SIZE or PMD-size blocks.
    pageSizes: [PAGE_SIZE, PMD_SIZE],
    // The seed [T1a]: Will "would rather not unmap from the IOMMU on conversions". On Android the hypervisor keeps
    // its IOMMU in step with ownership [P-c]; upstream has no IOMMU isolation to keep in step [P-a].
    conversionPolicy: () => 'tolerate',
    deviceAccess: (context: PageAccessContext): AccessVerdict => {
      if (context.vmType !== 'coco' || context.hardware !== 'private') return { allow: true };
      // [P-a] Upstream: no IOMMU isolation; the access reaches the protected VM's page.
      if (!android) return { allow: true };
      // [P-c, 6b] A page the guest owns is not in the host identity domain (prot 0): the hypervisor's IOMMU
      // blocks the access and reports the fault. (Whether the hypervisor logs it is unstated; the model says
      // logged.)
      return { allow: false, fault: 'iommu-fault', fatal: false, logged: true, mechanism: "pKVM hypervisor-owned IOMMU: the page is not in the host's identity domain" };
    },
    hostKernelAccess: hostKernelAccess(hostAbort),
    // Android [P-c]: the hypervisor's IOMMU blocks devices. Upstream [P-a]: nothing does, so an IOPTE over a
    // protected page breaks the VM's confidentiality and is an 'unsafe-iopte' violation.
    deviceMayReach: ({ attribute, vmType }) => android || vmType !== 'coco' || attribute === 'shared',
    // Android [P-d]: "The hypervisor refuses to IOMMU-map pages the host does not own". Upstream: nothing stops
    // the host mapping them, and a device then reaches them [P-a].
    mapsPrivatePages: !android,
    // prior-art §7 (Fuad Tabba): conversion preserves contents; only teardown scrubs (hyp_poison_page [P-d]).
    contentsOnConversion: () => 'keep',
    contentsOnRemoval: () => 'zero',
    removalPipeline: removalPipeline(android),
    privateEntry: privateEntry(android),
    privateEntryAt: 'install',
    hardwarePrivateName: 'owned by the protected VM (donated)',
    rules: pkvmRules(android, unshare, hostAbort),
  };
  if (unshare === 'refuse-dma-mapped') {
    // pKVM-IA#92 (prior-art §7): the hypervisor refuses to take back, per page, a page some IOPTE still maps.
    backend.hypervisorRefusal = (context) => (context.to === 'private' ? firstDmaMapped(context) : undefined);
  }
  return Object.freeze(backend);
}
