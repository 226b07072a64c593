/**
 * ArchBackend: the specification an architecture package implements (specificationVersion 'v1').
 *
 * The core enforces what every architecture shares: truncation revokes every registered mapping and frees the
 * pages (kernel-contract §3.5, §9.3), and a conversion first passes the kernel's own checks (§4.2). What an
 * architecture decides is listed here: what happens to DMA mappings over pages that change between shared and
 * private, what a device or the host kernel touching a page does, what a conversion does to the bytes, and which
 * named firmware/hypervisor steps a removal takes. A backend is a stateless description: per-host state (the
 * pipeline counters) lives in the host, so one backend instance can serve many hosts.
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
  | 'tolerate';

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
  /** The area whose pages are converting; its overlap with the range is [overlapOffset, overlapOffset+overlapLength). */
  area: DmaAreaInfo;
  overlapOffset: number;
  overlapLength: number;
}

export interface HypervisorConversionContext {
  to: ConversionTarget;
  offset: number;
  length: number;
  contract: Contract;
  /** Byte ranges of the guest_memfd that some IOPTE maps right now, in any IOAS and either contract mode. */
  dmaMapped: ReadonlyArray<{ offset: number; length: number; area: DmaAreaInfo }>;
}

export interface PageAccessContext {
  /** The page's attribute at the time of the access. */
  attribute: PageAttribute;
  write: boolean;
  /** The VM type owning the guest_memfd. */
  vmType: 'default' | 'coco';
}

export interface RemovalContext {
  /** Why pages leave: truncation/release free them; 'to-shared' takes them out of the private state. */
  cause: 'truncate' | 'release' | 'to-shared' | 'to-private';
  /** Number of 4K pages leaving (or entering, for 'to-private') the private state. */
  pages: number;
  /** Byte ranges concerned. */
  ranges: ReadonlyArray<{ offset: number; length: number }>;
  /** Number of vCPUs of the VM (for IPI counts). */
  vcpus: number;
  /** Number of IOMMU domains that may cache translations of these pages (for IOTLB invalidation counts). */
  iommuDomains: number;
  /**
   * Byte ranges of the whole guest_memfd that were private and present before this change, so a backend can
   * tell whether a removal splits a larger tracking entry (an SNP 2M RMP entry needs PSMASH). Optional: a host
   * that does not supply it means "unknown", and the backend should assume 4K entries.
   */
  privateBefore?: ReadonlyArray<{ offset: number; length: number }>;
}

/** A named step of a removal pipeline, and how many times it ran. Counts are facts of the model. */
export interface PipelineStep {
  step: string;
  count: number;
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
   * What the guest_memfd registry does to an iommufd area covering pages about to convert ('gmem-registry'
   * mode only; in 'vmm-driven' mode the areas are not registered and nothing asks). Called after the kernel's
   * refcount check and before the point of no return.
   */
  conversionPolicy(context: ConversionContext): ConsumerResponse;

  /**
   * A rule the hypervisor or firmware enforces whatever the kernel's registry does (so in both contract modes):
   * return the lowest byte offset it refuses to convert, or undefined. pKVM refuses to donate a page that is
   * still DMA-mapped. Optional: most architectures have no such rule.
   */
  hypervisorRefusal?(context: HypervisorConversionContext): number | undefined;

  /** What a device access through a live IOPTE to a guest_memfd page does. */
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

  /** Whether IOMMU_IOAS_MAP_FILE creates IOPTEs for pages that are private when the area is filled. */
  readonly mapsPrivatePages: boolean;

  /** What a conversion does to a page's bytes: keep them, or the firmware clears them. */
  contentsOnConversion(context: { to: ConversionTarget }): 'keep' | 'zero';

  /** The named steps a private page takes when it leaves (or enters) the private state. Optional. */
  removalPipeline?(context: RemovalContext): readonly PipelineStep[];
}

/** Brand-free runtime check of a backend's shape, for loaders; returns what is wrong, or []. */
export function describeBackendProblems(value: unknown): string[] {
  const problems: string[] = [];
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return ['is not an object'];
  const backend = value as Record<string, unknown>;
  if (backend.specificationVersion !== 'v1') problems.push(`specificationVersion is ${String(backend.specificationVersion)}, expected 'v1'`);
  if (typeof backend.id !== 'string' || backend.id === '') problems.push('id is not a non-empty string');
  if (typeof backend.name !== 'string') problems.push('name is not a string');
  if (!Array.isArray(backend.pageSizes)) problems.push('pageSizes is not an array');
  for (const fn of ['conversionPolicy', 'deviceAccess', 'hostKernelAccess', 'deviceMayReach', 'contentsOnConversion']) {
    if (typeof backend[fn] !== 'function') problems.push(`${fn} is not a function`);
  }
  if (typeof backend.mapsPrivatePages !== 'boolean') problems.push('mapsPrivatePages is not a boolean');
  return problems;
}
