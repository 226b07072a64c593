/**
 * pKVM (arm64 protected KVM) as an ArchBackend. The EL2 hypervisor owns the host's stage-2 and tracks the owner
 * of every page; a page donated to a protected VM is unmapped from the host [P-b, P-d]. Android's kernel also has
 * a hypervisor-owned IOMMU: the host identity domain mirrors the host stage-2, and the hypervisor refuses to
 * donate a page that is still DMA-mapped [P-c, P-d, P-e]. Upstream pKVM has no DMA isolation ("Unimplemented"
 * [P-a]); that is the 'upstream' variant.
 *
 * Source tags are those of shared/reference/arch-behaviour.md §7; prior-art.md §7 for Fuad Tabba and pKVM-IA.
 */
import type { AccessVerdict, ArchBackend, ConversionContext, HypervisorConversionContext, PageAccessContext, PipelineStep, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE } from '@gmemlab/core';

export type PkvmVariant = 'upstream';

export interface PkvmOptions {
  /** 'upstream': pKVM as in torvalds/linux, without a hypervisor-owned IOMMU ("DMA isolation ... Unimplemented" [P-a]). */
  variant?: PkvmVariant;
}

/** The pipeline step names [P-b, P-c, P-d]. */
export const PKVM_STEPS = {
  unmap: 'hypercall: guest stage-2 unmap',
  tlbi: 'TLBI (guest stage-2)',
  poison: 'hyp_poison_page (zero + clean to PoC)',
  reclaim: 'hypercall: __pkvm_host_reclaim_page',
  share: 'hypercall: __pkvm_guest_share_host',
  idmap: 'host IOMMU identity-domain update (kvm_iommu_host_stage2_idmap)',
  iotlb: 'IOTLB invalidation',
} as const;

function hostKernelAccess(context: PageAccessContext): AccessVerdict {
  if (context.vmType !== 'coco' || context.attribute === 'shared') return { allow: true };
  // [P-a, P-g] The hypervisor injects an abort at EL1 (host_inject_abort, is_pkvm_stage2_abort). Newer trees
  // then return -EFAULT or force-reclaim the page; the older upstream hyp did BUG_ON (not modelled, see README).
  return { allow: false, fault: 'contained', fatal: false, logged: true, mechanism: 'pKVM: stage-2 abort injected into the host (host_inject_abort)' };
}

function overlapsDma(context: HypervisorConversionContext): number | undefined {
  let lowest: number | undefined;
  for (const mapped of context.dmaMapped) {
    const from = Math.max(mapped.offset, context.offset);
    if (from < Math.min(mapped.offset + mapped.length, context.offset + context.length) && (lowest === undefined || from < lowest)) lowest = from;
  }
  return lowest;
}

function removalPipeline(android: boolean) {
  return (context: RemovalContext): readonly PipelineStep[] => {
    // Donation happens at the guest's fault (__pkvm_host_donate_guest), which the model does not count.
    if (context.cause === 'to-private') return [];
    const pages = context.pages;
    const iommu = android
      ? [
          // [P-c] every owner change calls kvm_iommu_host_stage2_idmap over the range.
          { step: PKVM_STEPS.idmap, count: context.ranges.length },
          { step: PKVM_STEPS.iotlb, count: context.ranges.length },
        ]
      : [];
    if (context.cause === 'to-shared') {
      // [P-b] __pkvm_guest_share_host: the page stays the guest's, shared with the host; contents preserved.
      return [{ step: PKVM_STEPS.share, count: pages }, ...iommu];
    }
    // [P-d] teardown: unmap from the guest stage-2 (+ TLBI), __pkvm_host_reclaim_page -> hyp_poison_page (memset
    // 0 + kvm_flush_dcache_to_poc, since FWB cannot be trusted) -> owner back to host.
    return [
      { step: PKVM_STEPS.unmap, count: pages },
      { step: PKVM_STEPS.tlbi, count: pages },
      { step: PKVM_STEPS.poison, count: pages },
      { step: PKVM_STEPS.reclaim, count: pages },
      ...iommu,
    ];
  };
}

/** Build a pKVM backend description: Android pKVM by default, `variant: 'upstream'` gives 'pkvm:upstream'. */
export function createPkvmBackend(options: PkvmOptions = {}): ArchBackend {
  const variant = options.variant;
  if (variant !== undefined && variant !== 'upstream') throw new TypeError(`@gmemlab/pkvm: unknown variant ${String(variant)}; the only variant is 'upstream'`);
  const android = variant === undefined;
  const backend: ArchBackend = {
    specificationVersion: 'v1',
    id: android ? 'pkvm' : 'pkvm:upstream',
    name: android ? 'Android pKVM (hypervisor-owned IOMMU)' : 'pKVM (upstream, no IOMMU isolation)',
    // [P-d] guest transitions use PAGE_SIZE or PMD-size blocks.
    pageSizes: [PAGE_SIZE, PMD_SIZE],
    conversionPolicy: (context: ConversionContext) =>
      // Android [P-d, P-e]: the host must unmap a page from the IOMMU before donating it. Upstream has no
      // hypervisor IOMMU, so the registry enforces the same rule: pKVM-IA#92, "forbid unshare ... if the page is
      // still DMA-mapped for the host" (prior-art §7). Areas without IOPTEs map nothing and cannot block.
      context.to === 'private' && context.area.hasIoptes ? 'refuse' : 'tolerate',
    deviceAccess: (context: PageAccessContext): AccessVerdict => {
      if (context.vmType !== 'coco' || context.attribute === 'shared') return { allow: true };
      // [P-a] Upstream: no IOMMU isolation; the access reaches the protected VM's page.
      if (!android) return { allow: true };
      // [P-c] A donated page is removed from the host identity IOMMU domain (prot 0): an IOMMU fault.
      return { allow: false, fault: 'iommu-fault', fatal: false, logged: true, mechanism: 'pKVM hypervisor-owned IOMMU: the page is not in the host identity domain' };
    },
    hostKernelAccess,
    // Android [P-c]: the hypervisor's IOMMU blocks devices. Upstream [P-a]: nothing does, so an IOPTE over a
    // protected page breaks the VM's confidentiality and is an 'unsafe-iopte' violation.
    deviceMayReach: ({ attribute, vmType }) => android || vmType !== 'coco' || attribute === 'shared',
    // [P-d] "The hypervisor refuses to IOMMU-map pages the host does not own"; upstream: not host-accessible.
    mapsPrivatePages: false,
    // prior-art §7 (Fuad Tabba): conversion preserves contents; only teardown scrubs (hyp_poison_page [P-d]).
    contentsOnConversion: () => 'keep',
    removalPipeline: removalPipeline(android),
  };
  if (android) {
    // [P-d, P-e] "We must not allow the host to donate pages that are mapped in the IOMMU for DMA. So we refcount
    // it": the hypervisor's own rule, so it holds in both contract modes.
    backend.hypervisorRefusal = (context) => (context.to === 'private' ? overlapsDma(context) : undefined);
  }
  return Object.freeze(backend);
}
