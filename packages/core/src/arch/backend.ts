/**
 * ArchBackend: the specification an architecture package implements (specificationVersion 'v1').
 *
 * The core enforces what every architecture shares: truncation revokes every registered mapping and frees the
 * pages (kernel-contract §3.5, §9.3), and a conversion first passes the kernel's own checks (§4.2). What an
 * architecture decides is listed here: what happens to DMA mappings over pages that change between shared and
 * private, what a device or the host kernel touching a page does, what a conversion does to the bytes, and which
 * named firmware/hypervisor steps a removal takes. A backend is a stateless description: per-host state (the
 * pipeline counters, each page's hardware state) lives in the host, so one backend instance can serve many hosts.
 *
 * Two states per page, kept apart: the *attribute* (shared or private: what KVM believes, set by
 * KVM_SET_MEMORY_ATTRIBUTES2) and the *hardware state* (what firmware enforces: a TDX page AUG'd into the S-EPT,
 * an RMP-assigned SNP page, a delegated CCA granule, a page donated to a pKVM guest). A page enters the hardware
 * state when the guest faults it in as private, and leaves it when it is converted to shared or freed. Costs and
 * content rules apply only to pages that were in it.
 *
 * Growth since 0.1 is additive: every new member is optional and every new context field is extra, so a backend
 * written against 0.1's spec keeps working (see the core README, "Writing a backend").
 */
import type { AccessVerdict } from '../access.js';
import type { Contract } from '../contract.js';

/** What one registry consumer does about pages that are about to change attribute. */
export type ConsumerResponse =
  /** Unmap those pages' entries before the attribute changes. */
  | 'revoke'
  /** Fail the conversion with EAGAIN and errorOffset; nothing changes. */
  | 'refuse'
  /** Leave the entries; the hardware decides what an access does. */
  | 'tolerate'
  /**
   * Keep the entries but restructure huge IOPTEs that the converting range cuts into the smallest page size
   * around it, so no IOPTE is larger than the hardware's tracking entry under it (SEV-TIO: IOPTEs follow the
   * RMP). Each split is counted as a pipeline step; an area without IOPTEs yet only remembers the layout.
   */
  | 'split';

/** Whether firmware currently enforces a page as the guest's private memory. */
export type HardwareState = 'private' | 'shared';

export type PageAttribute = 'shared' | 'private';
export type ConversionTarget = PageAttribute;

/** An iommufd area (IOMMU_IOAS_MAP_FILE or IOMMU_IOAS_MAP) over guest_memfd pages, as a backend sees it. */
export interface DmaAreaInfo {
  ioas: number;
  area: number;
  iova: number;
  length: number;
  /** Byte offset in the guest_memfd of the area's first page. */
  fileOffset: number;
  /** Page size of the area's IOPTEs. */
  iopteSize: number;
  /** Whether a domain is attached, i.e. IOPTEs exist (pinning is lazy). */
  hasIoptes: boolean;
  /** 'file' for IOMMU_IOAS_MAP_FILE, 'user' for IOMMU_IOAS_MAP of a user address range. */
  source: 'file' | 'user';
}

export interface ConversionContext {
  to: ConversionTarget;
  /** Converting byte range of the guest_memfd. */
  offset: number;
  length: number;
  contract: Contract;
  /**
   * The area whose pages are converting; its overlap with the range is [overlapOffset, overlapOffset+overlapLength).
   * Frozen: the same object is handed out again for the same area.
   */
  area: Readonly<DmaAreaInfo>;
  overlapOffset: number;
  overlapLength: number;
}

/**
 * A field of ConversionContext that a backend's conversionPolicy answer may depend on: a field of the context
 * itself, or one field of its area ('area.iopteSize'). See ArchBackend.conversionPolicyInputs.
 */
export type ConversionPolicyInput = Exclude<keyof ConversionContext, 'area'> | `area.${keyof DmaAreaInfo}`;

/**
 * @internal Every ConversionPolicyInput, and whether every area of one conversion shares its value ('to',
 * 'offset', 'length' and 'contract' describe the conversion; the rest describe one area or its overlap). Tied to
 * the type: an input added there and not here, or a stray one here, fails the typecheck.
 */
export const CONVERSION_POLICY_INPUTS = {
  to: 'conversion',
  offset: 'conversion',
  length: 'conversion',
  contract: 'conversion',
  overlapOffset: 'area',
  overlapLength: 'area',
  'area.ioas': 'area',
  'area.area': 'area',
  'area.iova': 'area',
  'area.length': 'area',
  'area.fileOffset': 'area',
  'area.iopteSize': 'area',
  'area.hasIoptes': 'area',
  'area.source': 'area',
} as const satisfies { readonly [K in ConversionPolicyInput]-?: 'conversion' | 'area' };

/** What a conversionPolicy reads (ArchBackend.conversionPolicyInputs): the function, and the fields its answer depends on. */
export interface ConversionPolicyDeclaration {
  /** The conversionPolicy this declaration describes: the same function object as the backend's. */
  readonly policy: (context: ConversionContext) => ConsumerResponse;
  readonly inputs: readonly ConversionPolicyInput[];
}

/**
 * @internal The inputs `backend` declares for its own conversionPolicy, or undefined: when it declares nothing, or
 * its declaration describes another function (a spread backend whose conversionPolicy was replaced).
 */
export function declaredPolicyInputs(backend: ArchBackend): readonly ConversionPolicyInput[] | undefined {
  const declaration = backend.conversionPolicyInputs;
  return declaration !== undefined && declaration.policy === backend.conversionPolicy ? declaration.inputs : undefined;
}

export interface HypervisorConversionContext {
  to: ConversionTarget;
  offset: number;
  length: number;
  contract: Contract;
  /** Byte ranges of the guest_memfd that some IOPTE maps right now, in any IOAS and either contract mode. */
  dmaMapped: ReadonlyArray<{ offset: number; length: number; area: Readonly<DmaAreaInfo> }>;
}

export interface PageAccessContext {
  /** The attribute (KVM's view) of the page whose frame the access reached. */
  attribute: PageAttribute;
  /**
   * The hardware state of the frame reached: 'private' once the guest faulted the page in as private and until
   * it left. What the hardware does depends on this, not on the attribute. Added in core 0.2; a 0.1 backend
   * that reads only `attribute` keeps its old behaviour.
   */
  hardware: HardwareState;
  write: boolean;
  /** The VM type owning the guest_memfd. */
  vmType: 'default' | 'coco';
  /** The access went through a stale entry: the frame now belongs to another page, file or VM. */
  stale: boolean;
}

export interface RemovalContext {
  /**
   * Why pages leave: truncation/release free them; 'to-shared' takes them out of the private state (in place: at
   * the conversion; on today's path: at the zap of the private stage-2 entries, for a backend whose
   * `privateRemovalAt` is 'zap', and then the pages are not counted as shared back).
   * 'to-private' is never passed since core 0.2 (entry is `privateEntry`, at the guest's fault); it stays in the
   * type so 0.1 backends that test for it still compile.
   * 'memslot-delete' (a newer cause, passed only to a backend whose `privateRemovalAt` is 'zap'): for a backend whose `privateRemovalAt` is 'zap', deleting a memslot zaps
   * the private stage-2 entries of its range (kvm_arch_flush_shadow_memslot), so the hardware-private pages bound
   * there leave that state; guest_memfd still holds them, private by attribute, and a later private fault makes
   * them hardware-private again (`privateEntry`). Not counted as shared back.
   */
  cause: 'truncate' | 'release' | 'to-shared' | 'to-private' | 'memslot-delete';
  /** Number of 4K pages leaving the hardware-private state (pages never made hardware-private are not counted). */
  pages: number;
  /**
   * On truncate or release only: the number of 4K pages freed that the guest had shared back — pages that left
   * the hardware-private state by a conversion to shared and were not made private again since. Not counted in
   * `pages`. Where the hypervisor keeps such a page in the guest's stage-2 as shared (pKVM's
   * PKVM_PAGE_SHARED_OWNED), freeing it still takes a reclaim; elsewhere (TDX, SEV-SNP, CCA) the conversion to
   * shared already gave the page back and this is ignored. Added in core 0.2; absent or 0 when there are none.
   */
  sharedBack?: number;
  /** The byte ranges of the `sharedBack` pages. Added in core 0.2. */
  sharedBackRanges?: ReadonlyArray<{ offset: number; length: number }>;
  /** Byte ranges concerned. */
  ranges: ReadonlyArray<{ offset: number; length: number }>;
  /** Number of vCPUs of the VM (for IPI counts). */
  vcpus: number;
  /** Number of IOMMU domains that may cache translations of these pages (for IOTLB invalidation counts). */
  iommuDomains: number;
  /**
   * Byte ranges of the guest_memfd that were private and present before this change. Core 0.2 no longer
   * supplies it: guest_memfd allocates order-0 folios only (kernel-contract §3.9, max_order 0), so every
   * tracking entry is 4K and no removal splits a larger one.
   * @deprecated
   */
  privateBefore?: ReadonlyArray<{ offset: number; length: number }>;
}

/** Pages entering the hardware-private state at a private guest fault. */
export interface PrivateEntryContext {
  /** Number of 4K pages entering (one per fault: guest_memfd folios are order-0, kernel-contract §3.9). */
  pages: number;
  /** Byte ranges of the guest_memfd concerned. */
  ranges: ReadonlyArray<{ offset: number; length: number }>;
  /** Number of vCPUs of the VM. */
  vcpus: number;
  /** Which step of the guest fault ran it (see `ArchBackend.privateEntryAt`). */
  at: 'resolve' | 'install';
}

/**
 * One rule a backend instance follows, in words, with the sources it rests on: what a backend's README tables say,
 * for this instance and its options, and what a tool such as `gmemlab explain <arch>` prints.
 */
export interface BackendRule {
  /**
   * A short key that groups rules across backends. The backends shipped with gmemlab use 'conversion policy',
   * 'hypervisor refusal', 'device access to private', 'host access to private', 'IOPTEs over private',
   * 'private entry', 'removal pipeline', 'contents', 'page sizes' and 'variant' (what the instance's variant or
   * options stand for); a third-party backend may add its own.
   */
  topic: string;
  /**
   * One or two plain sentences saying what this instance does (not what the architecture might do with other
   * options). Where the sources disagree or say nothing, the rule says so, with the markers of docs/sources.md:
   * [I] an inference, [U] a working assumption.
   */
  rule: string;
  /**
   * The source tags the rule rests on, written as the code comments cite them (docs/sources.md):
   * '[T1g]', '[X-a], arch-behaviour 6b', 'kernel-contract §4.2', 'pKVM-IA#92 (prior-art §7)'.
   */
  source: string;
  /**
   * What each cited source says that supports this rule: one entry per tag of `source` (written as it appears
   * there, without brackets: 'T1g', 'P-d', 'kernel-contract §4.2', 'pKVM-IA#92'), with the short passage that
   * carries the claim, verbatim, or a code location ('file.c: function()' at a commit) when the source is code.
   * `gmemlab explain` prints it beside the rule; docs/sources.md lists the same passages under each tag. Optional
   * in the spec; every rule of the backends shipped with gmemlab has it (tests/architecture checks).
   */
  evidence?: readonly RuleEvidence[];
}

/** One source's support for a rule: the tag as cited, and the passage (or code location) that says it. */
export interface RuleEvidence {
  tag: string;
  quote: string;
}

/**
 * A named step of a removal pipeline, and how many times it ran. A count is a fact of the model unless `bound`
 * says otherwise.
 */
export interface PipelineStep {
  step: string;
  count: number;
  /**
   * 'upper' when the count is an upper bound, not the exact number the kernel performs: e.g. one IPI per vCPU
   * per page, where kvm_make_all_cpus_request only IPIs the vCPUs that are in guest mode at the time. Absent:
   * exact. Counters that sum a bound stay a bound (Host.pipelineBounds()). Added in core 0.2.
   */
  bound?: 'upper';
}

/** Why the hypervisor or firmware refuses to make a page hardware-private at the guest's fault. */
export interface PrivateEntryRefusalContext {
  /** Byte offset in the guest_memfd of the page entering. */
  offset: number;
  /** PAGE_SIZE: guest_memfd folios are order-0 (kernel-contract §3.9). */
  length: number;
  /** Whether some IOPTE maps the page right now, in any IOAS and either contract mode. */
  dmaMapped: boolean;
  contract: Contract;
}

export interface ArchBackend {
  /** The version of this specification the backend implements. */
  readonly specificationVersion: 'v1';
  /** Stable id: 'sw-protected', 'tdx', 'tdx:connect', 'sev-snp', 'sev-snp:tio', 'arm-cca', 'pkvm', ... */
  readonly id: string;
  /** Human name, e.g. 'Intel TDX'. */
  readonly name: string;
  /** The page sizes the architecture tracks (stage-2 / RMP / GPT granules), smallest first. */
  readonly pageSizes: readonly number[];

  /**
   * The IOPTE sizes the host's IOMMU driver uses for iommufd areas on this architecture's hosts (its
   * pgsize_bitmap), smallest first; an area's IOPTEs are the largest of these that its IOVA, file offset and
   * length allow. Optional: absent means 4K, 2M and 1G. SEV-SNP hosts today run with 4K only
   * (amd_iommu=nohugepages, [T2]). Added in core 0.2.
   */
  readonly iommuPageSizes?: readonly number[];

  /**
   * What the guest_memfd registry does to an iommufd area covering pages about to convert: asked in the modes
   * where areas register with guest_memfd, 'gmem-registry' and 'mirror' (in 'mirror' a 'revoke' to private unmaps
   * only the pages it covers, and they are mapped again after the conversion back to shared); in 'vmm-driven'
   * mode the areas are not registered and nothing asks. Called after the kernel's refcount check and before the
   * point of no return.
   */
  conversionPolicy(context: ConversionContext): ConsumerResponse;

  /**
   * The fields of ConversionContext that the answer of `policy`, this backend's `conversionPolicy`, depends on, and
   * no other: a promise that two contexts equal in these fields get the same answer. With it, one conversion asks
   * `conversionPolicy` once for each distinct value of these fields among the areas it overlaps, and gives every
   * other such area the answer already asked (and checked): the fields of the conversion itself ('to', 'offset',
   * 'length', 'contract') are the same for all of them, so `inputs: []` or `['to']` is one question per
   * conversion; area fields such as 'area.iopteSize', 'area.hasIoptes' or 'area.source' make one question per kind
   * of area; 'overlapOffset', 'overlapLength' or a field that names the area ('area.area', 'area.iova', ...) one
   * per area, as without it. The core may still ask more often than that (never less), and which area of a kind is
   * asked is not part of the promise.
   *
   * The declaration names the function it describes, and holds only while that function is the backend's
   * `conversionPolicy`: a backend made by spreading another one and replacing its `conversionPolicy`
   * (`{ ...tdx, conversionPolicy: mine }`) carries a declaration about a function it no longer has, and is asked
   * once per area, as before. Optional: absent (or not about this `conversionPolicy`) means the answer may depend
   * on anything, and every area is asked (the behaviour before core 0.3). Read once, at createHost, like every
   * field: a value that is not `{ policy: a function, inputs: an array of these names }` is createHost's EINVAL.
   * The conformance kit (`@gmemlab/core/testing`) checks the promise: contexts that differ only in fields not
   * listed must get the same answer. Added in core 0.3.
   */
  readonly conversionPolicyInputs?: ConversionPolicyDeclaration;

  /**
   * A rule the hypervisor or firmware enforces whatever the kernel's registry does (so in both contract modes):
   * return the lowest byte offset it refuses to convert, or undefined. pKVM refuses to donate a page that is
   * still DMA-mapped. Optional: most architectures have no such rule.
   */
  hypervisorRefusal?(context: HypervisorConversionContext): number | undefined;

  /**
   * What a device access to a guest_memfd frame does, through a live IOPTE or a stale one that now reaches
   * another VM's page. Asked whenever the frame's attribute or hardware state is private on a 'coco' VM.
   */
  deviceAccess(context: PageAccessContext): AccessVerdict;

  /**
   * What the host kernel touching a guest_memfd page through the direct map does (a stale kernel pointer, a
   * copy_to_user of a page that went private). User mappings never reach private pages: the core zaps them
   * before a conversion to private and the fault handler refuses private pages.
   */
  hostKernelAccess(context: PageAccessContext): AccessVerdict;

  /**
   * Whether any device may reach a page in this state. An IOPTE to a page no device may reach is an
   * 'unsafe-iopte' invariant violation. A backend whose hardware blocks such DMA returns true.
   */
  deviceMayReach(context: { attribute: PageAttribute; vmType: 'default' | 'coco' }): boolean;

  /**
   * In the registry design ('gmem-registry'), whether IOMMU_IOAS_MAP_FILE creates IOPTEs for pages that are
   * private when the area is filled. The RFC as posted ('vmm-driven') maps every page in range whatever its
   * attribute (kernel-contract §6: kvm_gmemfd_get_pfn has no attribute check), so it is not asked there.
   */
  readonly mapsPrivatePages: boolean;

  /**
   * In the registry design, whether IOMMU_IOAS_MAP_FILE creates IOPTEs for pages the guest owned and shared back
   * (attribute shared, the guest still their owner: pKVM's PKVM_PAGE_SHARED_OWNED). Optional: absent means true,
   * as for any shared page. Android pKVM says false: its hypervisor IOMMU maps only pages the host owns
   * (`__pkvm_use_dma` returns -EPERM otherwise), and a page shared back is only borrowed by the host.
   */
  readonly mapsSharedBackPages?: boolean;

  /**
   * What a conversion does to the bytes of a page whose hardware state changes: keep them, or the firmware
   * clears them. Applied to pages leaving the hardware-private state on 'to-shared' only; 'to-private' changes
   * no hardware state (entry happens at the guest's fault).
   */
  contentsOnConversion(context: { to: ConversionTarget }): 'keep' | 'zero';

  /**
   * What happens to the bytes of a hardware-private page freed by truncation or release, before the frame goes
   * back to the allocator: 'zero' where the hardware or hypervisor clears it (so a stale reader finds zeros).
   * Also asked, with cause 'memslot-delete' (a newer cause), when a memslot's deletion takes pages out of the
   * hardware-private state of a backend whose `privateRemovalAt` is 'zap' (the pages stay in guest_memfd).
   * Optional: absent means 'keep' (the freed frame holds what the guest left).
   */
  contentsOnRemoval?(context: { cause: 'truncate' | 'release' | 'memslot-delete' }): 'keep' | 'zero';

  /** The named steps hardware-private pages take when they leave that state. Optional. */
  removalPipeline?(context: RemovalContext): readonly PipelineStep[];

  /**
   * A rule of the hypervisor or firmware at the guest's private fault: return the fault KVM_RUN reports when it
   * refuses to make the page hardware-private (Android pKVM's donation fails for a page a live IOPTE maps), or
   * undefined to let the entry go on. On a refusal nothing changes: no stage-2 entry, no entry steps, the page
   * stays as it was, and the guest's access re-faults when the VMM runs the vCPU again. Asked once per page that
   * would enter, at the step `privateEntryAt` names. Optional: most architectures refuse nothing here. Added in
   * core 0.2.
   */
  privateEntryRefusal?(context: PrivateEntryRefusalContext): Extract<AccessVerdict, { allow: false }> | undefined;

  /**
   * What the guest finds in a page on its first private access after the page enters the hardware-private state:
   * 'keep' (the bytes the page held while shared, e.g. what a device wrote) or 'zero' (the hardware or firmware
   * initialises the page, as TDX's TDG.MEM.PAGE.ACCEPT does). Optional: absent means 'keep'. Added in core 0.2.
   */
  contentsOnPrivateEntry?(): 'keep' | 'zero';

  /** The named steps a page takes when the guest faults it in as private (TDH.MEM.PAGE.AUG, RMPUPDATE, ...). Optional. */
  privateEntry?(context: PrivateEntryContext): readonly PipelineStep[];

  /**
   * Which step of the two-step guest fault makes a page hardware-private: 'resolve' where it happens in
   * kvm_gmem_get_pfn (SEV-SNP's prepare), 'install' where it happens when the stage-2 entry is written under the
   * retry check (TDX PAGE.AUG, CCA DATA_CREATE, pKVM donation). Optional: absent means 'install'.
   */
  readonly privateEntryAt?: 'resolve' | 'install';

  /**
   * On today's path (`conversion: 'separate'`, kernel-contract §4.4), where a conversion to shared zaps the private
   * stage-2 entries of the range (kvm_vm_set_mem_attributes -> kvm_mmu_unmap_gfn_range, private side) while
   * guest_memfd keeps the page until the VMM punches it: which of the two ends the page's hardware-private state
   * and runs `removalPipeline`. 'zap': the hardware gives the page up when KVM zaps its private mapping (TDX's
   * S-EPT removal, tdx_sept_remove_private_spte; Arm CCA's RMI_RTT_DATA_UNMAP + undelegate); 'free': only when
   * guest_memfd frees the folio (SEV-SNP's sev_gmem_invalidate at .free_folio). Optional: absent means 'free',
   * the model's behaviour before core 0.3. Not used by in-place conversion, where the conversion itself ends it.
   */
  readonly privateRemovalAt?: 'zap' | 'free';

  /** A short name of the hardware-private state, e.g. 'S-EPT mapped (PAGE.AUG)'. Optional, for display. */
  readonly hardwarePrivateName?: string;

  /**
   * The rules this instance follows, each in words with its source tags: what the hooks above decide, said for
   * people (what a tool such as `gmemlab explain <arch>` prints). They describe this instance, so a variant's
   * rules differ from the ready backend's where its behaviour does. Optional, for display: the core never reads
   * them to decide anything, but `describeBackendProblems` checks their shape when present. Added in core 0.2.
   */
  readonly rules?: readonly BackendRule[];
}

/** The name of every function member of ArchBackend: the hooks the core may call (door.ts asks each). */
export type BackendHook = {
  [K in keyof ArchBackend]-?: NonNullable<ArchBackend[K]> extends (...args: never[]) => unknown ? K : never;
}[keyof ArchBackend];

/**
 * @internal Every hook, and whether the spec requires it. The flag is computed from ArchBackend, so a hook added there
 * without an entry here, a stray entry, or a wrong flag fails the typecheck. (door.ts's HOOKS is the same list
 * with each hook's kind; this module cannot import it, because door.ts imports this one.)
 */
export const HOOK_REQUIRED = {
  conversionPolicy: true,
  deviceAccess: true,
  hostKernelAccess: true,
  deviceMayReach: true,
  contentsOnConversion: true,
  hypervisorRefusal: false,
  removalPipeline: false,
  privateEntry: false,
  contentsOnRemoval: false,
  privateEntryRefusal: false,
  contentsOnPrivateEntry: false,
} as const satisfies { readonly [K in BackendHook]-?: undefined extends ArchBackend[K] ? false : true };

/** Brand-free runtime check of a backend's shape, for loaders; returns what is wrong, or []. */
export function describeBackendProblems(value: unknown): string[] {
  const problems: string[] = [];
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return ['is not an object'];
  const backend = value as Record<string, unknown>;
  if (backend.specificationVersion !== 'v1')
    problems.push(`specificationVersion is ${String(backend.specificationVersion)}, expected 'v1'`);
  if (typeof backend.id !== 'string' || backend.id === '') problems.push('id is not a non-empty string');
  if (typeof backend.name !== 'string') problems.push('name is not a string');
  if (!Array.isArray(backend.pageSizes)) problems.push('pageSizes is not an array');
  for (const [fn, required] of Object.entries(HOOK_REQUIRED)) {
    if (required && typeof backend[fn] !== 'function') problems.push(`${fn} is not a function`);
  }
  if (typeof backend.mapsPrivatePages !== 'boolean') problems.push('mapsPrivatePages is not a boolean');
  if (backend.mapsSharedBackPages !== undefined && typeof backend.mapsSharedBackPages !== 'boolean')
    problems.push('mapsSharedBackPages is present but not a boolean');
  for (const [fn, required] of Object.entries(HOOK_REQUIRED)) {
    if (!required && backend[fn] !== undefined && typeof backend[fn] !== 'function')
      problems.push(`${fn} is present but not a function`);
  }
  if (
    backend.iommuPageSizes !== undefined &&
    (!Array.isArray(backend.iommuPageSizes) || !backend.iommuPageSizes.includes(4096))
  )
    problems.push('iommuPageSizes is present but not an array holding 4096');
  if (
    backend.privateEntryAt !== undefined &&
    backend.privateEntryAt !== 'resolve' &&
    backend.privateEntryAt !== 'install'
  )
    problems.push(`privateEntryAt is ${String(backend.privateEntryAt)}, expected 'resolve' or 'install'`);
  if (
    backend.privateRemovalAt !== undefined &&
    backend.privateRemovalAt !== 'zap' &&
    backend.privateRemovalAt !== 'free'
  )
    problems.push(`privateRemovalAt is ${String(backend.privateRemovalAt)}, expected 'zap' or 'free'`);
  if (backend.conversionPolicyInputs !== undefined)
    problems.push(...describePolicyInputsProblems(backend.conversionPolicyInputs));
  if (backend.rules !== undefined) problems.push(...describeRulesProblems(backend.rules));
  return problems;
}

function describePolicyInputsProblems(declaration: unknown): string[] {
  if (typeof declaration !== 'object' || declaration === null)
    return ['conversionPolicyInputs is present but not an object { policy, inputs }'];
  const { policy, inputs } = declaration as Record<string, unknown>;
  const problems =
    typeof policy === 'function'
      ? []
      : ['conversionPolicyInputs.policy is not a function (the conversionPolicy it describes)'];
  const expected = `expected an array of ${Object.keys(CONVERSION_POLICY_INPUTS).join(', ')}`;
  if (!Array.isArray(inputs)) return [...problems, `conversionPolicyInputs.inputs is not an array, ${expected}`];
  // A list of the fields of one context: longer than there are fields is no such list (and is not read further).
  if (inputs.length > Object.keys(CONVERSION_POLICY_INPUTS).length)
    return [...problems, `conversionPolicyInputs.inputs has ${inputs.length} entries, more than there are fields`];
  for (let i = 0; i < inputs.length; i++) {
    const input: unknown = inputs[i];
    if (typeof input !== 'string' || !Object.hasOwn(CONVERSION_POLICY_INPUTS, input))
      problems.push(
        `conversionPolicyInputs.inputs[${i}] is ${typeof input === 'string' ? `'${input.slice(0, 40)}'` : typeof input}, not a field of ConversionContext`,
      );
  }
  return problems;
}

function describeRulesProblems(rules: unknown): string[] {
  if (!Array.isArray(rules)) return ['rules is present but not an array'];
  const problems: string[] = [];
  rules.forEach((rule: unknown, i) => {
    if (typeof rule !== 'object' || rule === null) {
      problems.push(`rules[${i}] is not an object`);
      return;
    }
    for (const field of ['topic', 'rule', 'source'] as const) {
      const value = (rule as Record<string, unknown>)[field];
      if (typeof value !== 'string' || value.trim() === '')
        problems.push(`rules[${i}].${field} is not a non-empty string`);
    }
    const evidence = (rule as Record<string, unknown>).evidence;
    if (evidence === undefined) return;
    if (!Array.isArray(evidence)) {
      problems.push(`rules[${i}].evidence is present but not an array`);
      return;
    }
    evidence.forEach((entry: unknown, j) => {
      const fields = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>) : {};
      for (const field of ['tag', 'quote'] as const) {
        if (typeof fields[field] !== 'string' || (fields[field] as string).trim() === '')
          problems.push(`rules[${i}].evidence[${j}].${field} is not a non-empty string`);
      }
    });
  });
  return problems;
}
