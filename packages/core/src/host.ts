/**
 * The host: /dev/kvm, the VMM process (its fd table and address space), physical memory, and the architecture
 * backend and contract mode every object on it follows. createHost() is the model's entry point.
 */
import { declaredPolicyInputs, describeBackendProblems, type ArchBackend, type PipelineStep } from './arch/backend.js';
import { swProtected } from './arch/sw-protected.js';
import { isFrozenData, ownBackend, readAsOwnData, refuseInsideHook } from './arch/own.js';
import { ConversionPolicyMemo } from './arch/policy-memo.js';
import { KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES } from './constants.js';
import { CONTRACTS, type Contract } from './contract.js';
import { describeFrame } from './arch/hardware.js';
import { fail, HostCrashedError } from './errors.js';
import { EventStream, type ObserverError } from './events.js';
import type { FrameOwner } from './access.js';
import { FdTable, KernelFile, type CloseObserver } from './files.js';
import { checkInvariants, type HostObjects, type Violation } from './invariants.js';
import { pageMapOf, type PageMap } from './page-map.js';
import { Iommufd } from './iommufd/iommufd.js';
import type { Ioas } from './iommufd/ioas.js';
import type { CrashRecord, HugeIopteCut, Kernel } from './kernel.js';
import type { HostMapping } from './mm/host-mapping.js';
import type { GmemInode } from './kvm/gmem-inode.js';
import { Vm, type VmType } from './kvm/vm.js';
import { AddressSpace } from './mm/address-space.js';
import { Memfd } from './mm/memfd.js';
import { PhysicalMemory } from './mm/physical.js';
import { SnapshotParts } from './snapshot.js';
import { describeValue, fieldsOf, parseLong, parseSafe, parseStruct } from './util/args.js';
import { messageOf } from './util/message.js';
import { Cloner } from './util/clone.js';
import { constantCodec, linearCodec } from './util/range-map.js';

const HUGE_IOPTE_CUTS: readonly HugeIopteCut[] = ['unmap-whole', 'split', 'refuse'];
const CONVERSIONS: readonly Conversion[] = ['in-place', 'separate'];
const HOST_OPTIONS = fieldsOf<HostOptions>({
  backend: true,
  contract: true,
  conversion: true,
  inPlaceConversion: true,
  gmemOnlyMemslots: true,
  registerUserRanges: true,
  hugeIopteCut: true,
});
const CREATE_VM_OPTIONS = fieldsOf<CreateVmOptions>({ type: true, vcpus: true });

/** An options object may only hold the fields its type names (EINVAL naming the field and the nearest name). */
function checkFields(op: string, options: object, fields: readonly string[]): void {
  parseStruct(op, options, fields);
}

/**
 * Where shared and private guest memory live, and how a conversion is made (kernel-contract §4.4).
 * - 'in-place' (the default): one guest_memfd holds both; a conversion is KVM_SET_MEMORY_ATTRIBUTES2 on the
 *   guest_memfd (the in-place conversion series, §4; kvm.gmem_in_place_conversion on).
 * - 'separate': today's production path. guest_memfd holds the private side only; the shared side is the VMM's
 *   own memory (a memfd) at the memslot's userspace address; a conversion is KVM_SET_MEMORY_ATTRIBUTES on the VM
 *   fd (per-VM attributes, KVM_CAP_MEMORY_ATTRIBUTES), and the VMM discards the side it no longer uses
 *   (fallocate PUNCH_HOLE, madvise MADV_DONTNEED / MADV_REMOVE). kvm.gmem_in_place_conversion off.
 */
export type Conversion = 'in-place' | 'separate';

export interface HostOptions {
  /** The architecture; defaults to the neutral software-protected backend. */
  backend?: ArchBackend;
  /** Which design invalidates DMA mappings; defaults to 'gmem-registry'. */
  contract?: Contract;
  /** Where shared and private memory live and how a conversion is made (Conversion); defaults to 'in-place'. */
  conversion?: Conversion;
  /**
   * kvm.gmem_in_place_conversion (kernel-contract §4.1); defaults to on. The same switch as `conversion`
   * (false is 'separate'); given both, they must agree.
   */
  inPlaceConversion?: boolean;
  /**
   * Whether binding an MMAP guest_memfd makes a memslot KVM_MEMSLOT_GMEM_ONLY, so that shared guest faults are
   * served from guest_memfd (GMEM, §3.7; defaults to on). Off: shared guest faults of a VM without private memory
   * go through userspace_addr, as observed on Linux 6.18.44 by the @gmemlab/linux differential tests. That
   * host runs KVM as kvm_pvm with kvm.tdp_mmu=N (shadow paging), which is the likely cause: the A20 selftest
   * (userspace_addr NULL) expects GMEM_ONLY faults to work upstream. So the default follows upstream.
   */
  gmemOnlyMemslots?: boolean;
  /**
   * Whether an IOMMU_IOAS_MAP of a user address range inside a guest_memfd mmap registers with the guest_memfd
   * (found from the user address, as Ackerley Tng proposes in the seed thread, RFC-AT) so that truncation and
   * conversion invalidate it; or is only GUP-pinned, guest_memfd learning of IOMMU mappings by fd alone
   * (IOMMU_IOAS_MAP_FILE: kernel-contract §9.1, Jason Gunthorpe's "Please no" to a VMA lookup, RFC-J1).
   * Defaults to true, the seed's proposal. Only 'gmem-registry' mode registers anything.
   */
  registerUserRanges?: boolean;
  /**
   * What the IOMMU driver does when the registry unmaps part of a huge IOPTE (a conversion of a range that
   * starts or ends inside one). 'unmap-whole' (the default): the whole IOPTE goes and its length is reported, so
   * the rest of its pages lose their IOPTEs too and a device touching them takes an IOMMU fault; this is what
   * the AMD v1/v2 and VT-d page tables do ("All other drivers will unmap the large IOPTE and return it's length",
   * commit 33729a5fc0ca, "iommu/io-pgtable-arm: Remove split on unmap behavior", v6.13). 'refuse': the unmap
   * removes nothing (io-pgtable-arm, SMMUv3, since that commit: WARN_ON, return 0); the registry cannot revoke,
   * so the conversion fails with EAGAIN at the cut and nothing changes [I]. 'split': the IOPTE is replaced by 4K
   * IOPTEs first and only the range goes, one counted step per IOPTE cut; no upstream driver does this today
   * (io-pgtable-arm did until v6.13, "illegal/non-hitless" on SMMUv3), the thread calls it an open problem
   * (RFC-J6).
   */
  hugeIopteCut?: HugeIopteCut;
}

export interface CreateVmOptions {
  /** 'coco' is a VM with private memory (kvm_arch_has_private_mem). */
  type?: VmType;
  /** Number of vCPUs (used for IPI counts in removal pipelines); defaults to 1. */
  vcpus?: number;
}

class KvmDevice extends KernelFile {
  readonly kind = 'kvm' as const;
  protected release(): void {}
}

/**
 * The checked copies of backends that are frozen data (arch/own.ts isFrozenData), by backend, where the copy holds
 * only what the backend owns (readAsOwnData: nothing a prototype or a Proxy trap answered): such a backend reads the
 * same every time, so it is copied and checked once per process, not once per host (the explorer makes a host per
 * replayed state). Any other backend is read afresh by each createHost.
 */
const checkedFrozenBackends = new WeakMap<object, ArchBackend>();
/** Backends found not to be frozen data (not walked again: one frozen later is still read afresh, as before). */
const readEachTime = new WeakSet<object>();

/**
 * The host-wide state every object reaches (kernel.ts), as fields, with its behaviour on the prototype: no
 * closure holds host state, so that Host.fork() copies all of it (util/clone.ts).
 */
class HostKernel implements Kernel, CloseObserver {
  readonly phys = new PhysicalMemory();
  readonly files: FdTable = new FdTable(this);
  readonly addressSpace = new AddressSpace<HostMapping>();
  readonly gmemInodes = new Set<GmemInode>();
  readonly vms = new Set<Vm>();
  readonly ioases = new Set<Ioas>();
  private ino = 1000;
  private invalidation = 0;
  private crashRecord: CrashRecord | undefined;
  readonly policyMemo: ConversionPolicyMemo;

  constructor(
    readonly events: EventStream,
    /** Host.pipelineCounters()'s map. */
    private readonly counters: Map<string, number>,
    readonly backend: ArchBackend,
    readonly contract: Contract,
    readonly inPlaceConversion: boolean,
    readonly gmemOnlyMemslots: boolean,
    readonly registerUserRanges: boolean,
    readonly hugeIopteCut: HugeIopteCut,
  ) {
    this.policyMemo = new ConversionPolicyMemo(declaredPolicyInputs(backend));
  }

  fileClosed(fd: number, file: KernelFile): void {
    const events = this.events;
    if (events.active)
      events.emit({
        type: 'call',
        op: 'close',
        detail: `fd ${fd} (${file.kind})${file.refCount > 1 ? `; ${file.refCount - 1} other references keep the file open` : ''}`,
      });
  }

  nextIno(): number {
    return ++this.ino;
  }

  nextInvalidationId(): number {
    return ++this.invalidation;
  }

  readonly boundSteps = new Set<string>();

  recordPipeline(steps: readonly PipelineStep[]): void {
    const { counters, events, backend } = this;
    for (const { step, count, bound } of steps) {
      if (count <= 0) continue;
      counters.set(step, (counters.get(step) ?? 0) + count);
      // A sum with one bound in it is a bound.
      if (bound === 'upper') this.boundSteps.add(step);
      if (events.active)
        events.emit({ type: 'pipeline', backend: backend.id, step, count, ...(bound === 'upper' ? { bound } : {}) });
    }
  }

  /** The live objects, typed, for the checks that walk the whole host. */
  objects(): HostObjects {
    return { gmemInodes: this.gmemInodes, vms: this.vms, ioases: this.ioases, mappings: this.addressSpace.live() };
  }

  reportObserverError({ source, hook, error }: { source: string; hook: string; error: unknown }): void {
    const events = this.events;
    // A hostile backend or consumer may throw anything: messageOf never throws.
    const message = messageOf(error);
    events.keepObserverError({ source, hook, message });
    if (events.active) events.emit({ type: 'observer-error', source, hook, message });
  }

  describeFrame(pfn: number): FrameOwner {
    return describeFrame(this.phys, pfn);
  }

  get crashed(): CrashRecord | undefined {
    return this.crashRecord;
  }

  crash(record: CrashRecord): void {
    if (this.crashRecord) return;
    this.crashRecord = record;
    if (this.events.active) this.events.emit({ type: 'crash', ...record });
  }

  checkAlive(op: string): void {
    // A hook's call is refused first, on a crashed host too: a HostCrashedError it caught would hide the call.
    refuseInsideHook(op);
    if (this.crashRecord) throw new HostCrashedError(op, this.crashRecord);
  }
}

export class Host {
  /** /dev/kvm, as an fd. */
  readonly fd: number;
  readonly backend: ArchBackend;
  readonly contract: Contract;
  readonly inPlaceConversion: boolean;
  readonly conversion: Conversion;
  /** Every state change, invalidation and access. */
  readonly events = new EventStream();
  private readonly kernel: HostKernel;
  private readonly counters = new Map<string, number>();
  /** The previous snapshot's parts, shared by the next one where the state did not change (snapshot.ts). */
  private readonly snapshotParts = new SnapshotParts();
  private readonly device = new KvmDevice();

  constructor(options: HostOptions = {}) {
    const op = 'createHost';
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      fail('EINVAL', op, `options is ${describeValue(options)}, not an object`, { argument: 'options' });
    checkFields(op, options, HOST_OPTIONS);
    // Only undefined (or an absent field) means the default: null is a value, and not a backend or contract.
    const backend = options.backend === undefined ? swProtected : options.backend;
    // A backend crosses the public surface: its fields are read once, here, into the host's own copy (arch/own.ts);
    // a getter that throws is this call's EINVAL, not an exception from inside a later call.
    let problems: string[];
    let own: ArchBackend | undefined;
    try {
      // Copy first, then check the copy: a getter read twice could pass the check and hand over something else.
      const isObject = (typeof backend === 'object' || typeof backend === 'function') && backend !== null;
      own = isObject ? checkedFrozenBackends.get(backend) : undefined;
      if (own !== undefined) problems = [];
      else {
        own = isObject ? ownBackend(backend) : undefined;
        problems = describeBackendProblems(own ?? backend);
        if (own !== undefined && problems.length === 0 && !readEachTime.has(backend)) {
          if (isFrozenData(backend) && readAsOwnData(backend, own)) checkedFrozenBackends.set(backend, own);
          else readEachTime.add(backend);
        }
      }
    } catch (error) {
      fail('EINVAL', op, `reading the backend threw: ${messageOf(error)}`, { argument: 'backend' });
    }
    if (problems.length > 0) {
      const notObject = (typeof backend !== 'object' && typeof backend !== 'function') || backend === null;
      fail(
        'EINVAL',
        op,
        notObject
          ? `backend is ${describeValue(backend)}, not an ArchBackend v1 object`
          : `the backend is not an ArchBackend v1: ${problems.join('; ')}`,
        {
          argument: 'backend',
          hint: notObject ? 'omit backend (or pass undefined) for the neutral backend' : undefined,
        },
      );
    }
    const contract = options.contract === undefined ? 'gmem-registry' : options.contract;
    if (!CONTRACTS.includes(contract))
      fail('EINVAL', op, `contract ${describeValue(contract)} is not one of ${CONTRACTS.join(', ')}`, {
        argument: 'contract',
      });
    if (options.inPlaceConversion !== undefined && typeof options.inPlaceConversion !== 'boolean')
      fail('EINVAL', op, 'inPlaceConversion must be a boolean', { argument: 'inPlaceConversion' });
    if (options.conversion !== undefined && !CONVERSIONS.includes(options.conversion))
      fail('EINVAL', op, `conversion ${describeValue(options.conversion)} is not one of ${CONVERSIONS.join(', ')}`, {
        argument: 'conversion',
      });
    if (
      options.conversion !== undefined &&
      options.inPlaceConversion !== undefined &&
      (options.conversion === 'in-place') !== options.inPlaceConversion
    ) {
      fail(
        'EINVAL',
        op,
        `conversion '${options.conversion}' contradicts inPlaceConversion ${String(options.inPlaceConversion)}`,
        { argument: 'inPlaceConversion', hint: 'give one of the two' },
      );
    }
    if (options.gmemOnlyMemslots !== undefined && typeof options.gmemOnlyMemslots !== 'boolean')
      fail('EINVAL', op, 'gmemOnlyMemslots must be a boolean', { argument: 'gmemOnlyMemslots' });
    if (options.registerUserRanges !== undefined && typeof options.registerUserRanges !== 'boolean')
      fail('EINVAL', op, 'registerUserRanges must be a boolean', { argument: 'registerUserRanges' });
    if (options.hugeIopteCut !== undefined && !HUGE_IOPTE_CUTS.includes(options.hugeIopteCut))
      fail(
        'EINVAL',
        op,
        `hugeIopteCut ${describeValue(options.hugeIopteCut)} is not one of ${HUGE_IOPTE_CUTS.join(', ')}`,
        { argument: 'hugeIopteCut' },
      );
    this.backend = backend;
    this.contract = contract;
    this.inPlaceConversion =
      options.conversion !== undefined ? options.conversion === 'in-place' : (options.inPlaceConversion ?? true);
    this.conversion = this.inPlaceConversion ? 'in-place' : 'separate';
    const kernel = new HostKernel(
      this.events,
      this.counters,
      own!,
      contract,
      this.inPlaceConversion,
      options.gmemOnlyMemslots ?? true,
      options.registerUserRanges ?? true,
      options.hugeIopteCut ?? 'unmap-whole',
    );
    this.kernel = kernel;
    this.fd = kernel.files.install(this.device);
  }

  /** An ioctl on /dev/kvm needs its fd open: after host.close(host.fd), EBADF. */
  private checkOpen(op: string): void {
    if (this.kernel.files.lookup(this.fd) !== this.device)
      fail('EBADF', op, `/dev/kvm fd ${this.fd} is not open`, { argument: 'fd' });
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm for the guest_memfd capabilities; 0 for any other integer, EINVAL for a non-integer. */
  checkExtension(capability: number | bigint): number {
    const op = 'KVM_CHECK_EXTENSION';
    this.kernel.checkAlive(op);
    this.checkOpen(op);
    const cap = parseLong(op, 'capability', capability);
    switch (cap) {
      case KVM_CAP_GUEST_MEMFD:
        return 1;
      case KVM_CAP_GUEST_MEMFD_FLAGS:
        // On /dev/kvm there is no VM: kvm_gmem_get_supported_flags(NULL) reports MMAP | INIT_SHARED (§1).
        return 0x3;
      case KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
        // 0 without in-place conversion; /dev/kvm has no VM, and kvm_supports_private_mem(NULL) is false.
        return 0;
      default:
        return 0;
    }
  }

  /** KVM_CREATE_VM. */
  createVm(options: CreateVmOptions = {}): Vm {
    const op = 'KVM_CREATE_VM';
    this.kernel.checkAlive(op);
    // The ioctl is on the /dev/kvm fd: fdget() fails first.
    this.checkOpen(op);
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      fail('EINVAL', op, `options is ${describeValue(options)}, not an object`, { argument: 'options' });
    checkFields(op, options, CREATE_VM_OPTIONS);
    const type = options.type ?? 'default';
    if (type !== 'default' && type !== 'coco')
      fail('EINVAL', op, `type ${String(type)} is not 'default' or 'coco'`, { argument: 'type' });
    const vcpus = options.vcpus === undefined ? 1 : parseSafe(op, 'vcpus', options.vcpus);
    if (vcpus < 1) fail('EINVAL', op, 'a VM needs at least one vCPU in the model', { argument: 'vcpus' });
    const vm = new Vm(this.kernel, type, vcpus);
    this.kernel.vms.add(vm);
    if (this.events.active) this.events.emit({ type: 'call', op, detail: `vm fd ${vm.fd}, type ${type}` });
    return vm;
  }

  /** open("/dev/iommu"). */
  openIommufd(): Iommufd {
    this.kernel.checkAlive('open /dev/iommu');
    return new Iommufd(this.kernel);
  }

  /** memfd_create + ftruncate(size): a plain shmem file. */
  memfdCreate(size: number | bigint): Memfd {
    const op = 'memfd_create';
    this.kernel.checkAlive(op);
    const bytes = parseSafe(op, 'size', size);
    return new Memfd(this.kernel, bytes);
  }

  /** close(2) of any fd. */
  close(fd: number | bigint): void {
    this.kernel.checkAlive('close');
    this.kernel.files.close('close', parseSafe('close', 'fd', fd));
  }

  /** The invariants of kernel-contract §9.5, checked now. */
  checkInvariants(): Violation[] {
    return checkInvariants(this.kernel, this.kernel.objects());
  }

  /** How many times each backend pipeline step ran on this host (facts of the model, not timings). */
  /**
   * A page map of every guest_memfd inode still alive (open, bound, mapped or held by an iommufd area), in
   * creation order: attribute, hardware state, holes, pins, and the stage-2, host and IOMMU entries over each
   * page, live or stale. Answers on a crashed host too.
   */
  pageMaps(): PageMap[] {
    return [...this.kernel.gmemInodes].map((inode) => pageMapOf(this.kernel.objects(), inode));
  }

  pipelineCounters(): Record<string, number> {
    return Object.fromEntries(this.counters);
  }

  /**
   * The pipeline counters that are upper bounds, not exact counts (a step the backend marked `bound: 'upper'`,
   * e.g. TDX's one IPI per vCPU per page): counter name -> 'upper'. Empty when every count is exact.
   */
  pipelineBounds(): Record<string, 'upper'> {
    return Object.fromEntries(
      [...this.kernel.boundSteps].filter((step) => this.counters.has(step)).map((step) => [step, 'upper' as const]),
    );
  }

  /**
   * The fatal fault that brought this host down, or undefined while it runs. After it every call throws
   * HostCrashedError; snapshot(), checkInvariants() and pipelineCounters() still answer.
   */
  get crashed(): CrashRecord | undefined {
    return this.kernel.crashed;
  }

  /**
   * Every observer that misbehaved where the operation could not stop, oldest first: a `host.events` listener that
   * threw (source 'listener', hook the event type), a registry consumer's hook that threw (an invalidation cannot
   * be vetoed), a backend's hook that threw or answered outside its type where the call cannot fail (the release
   * of the last guest_memfd file). Each was caught and the operation went on. The last OBSERVER_ERRORS_KEPT are
   * kept; observerErrorCount counts all.
   */
  observerErrors(): readonly ObserverError[] {
    return this.events.observerErrors().kept;
  }

  /** How many observer errors there were, kept or dropped (see observerErrors()). */
  get observerErrorCount(): number {
    return this.events.observerErrors().total;
  }

  /** Physical frames allocated and not freed. */
  get allocatedPages(): number {
    return this.kernel.phys.liveFrames;
  }

  /**
   * An independent host in exactly this host's state: every later call on either gives the same results,
   * errors, events and snapshots as the same call on the other, and neither affects the other. The fork's
   * event stream starts with no listeners (observer errors recorded so far are kept); the backend is shared
   * (backends are stateless); a crashed host forks into a crashed host.
   */
  fork(): Host {
    return this.forkWith(undefined).host;
  }

  /**
   * fork(), together with objects the caller holds that belong to this host (its VMs, files, mappings, pins,
   * areas, pending faults, or a record of them): `held` is copied with the host, each of its references into
   * this host replaced by the fork's copy of the object, and the rest of it copied as plain data.
   */
  forkWith<T>(held: T): { host: Host; held: T } {
    // A fork taken from inside a hook would copy a call's state half made.
    refuseInsideHook('fork');
    const cloner = new Cloner([this.backend, this.kernel.backend, constantCodec, linearCodec]);
    return { host: cloner.clone(this), held: cloner.clone(held) };
  }

  /**
   * A plain-data picture of everything a later call can observe (host PTEs excluded: a zapped PTE refaults
   * transparently). Two snapshots compare equal with deep equality exactly when the state is the same.
   * Parts that did not change since this host's previous snapshot are the same objects as in it (snapshot.ts:
   * each is checked against the state before it is used again), and a snapshot of a state no call changed is
   * the previous snapshot itself; lists of runs, frames and holders are frozen arrays shared the same way. So a
   * snapshot per state costs what changed, and equal parts compare at a glance. Every object and array of a
   * snapshot is frozen (but `crashed`, the host's own crash record): no caller can change a part later snapshots
   * share.
   */
  snapshot(): unknown {
    return this.snapshotParts.take(this.kernel, this.counters);
  }

  /**
   * @internal For a caller that never changes a snapshot and takes many (the explorer): this host's snapshots are
   * built without Object.freeze from its first snapshot on, and forks keep the setting. Anything else is unchanged:
   * each kept part is still checked against the model. Before any snapshot only (EINVAL after one: parts built
   * frozen and unfrozen must not mix).
   */
  unfrozenSnapshots(): void {
    if (this.snapshotParts.taken) fail('EINVAL', 'unfrozenSnapshots', 'this host has taken a snapshot already');
    this.snapshotParts.frozen = false;
  }
}

/** Create a host: the model's entry point. */
export function createHost(options?: HostOptions): Host {
  return new Host(options);
}
