/**
 * The host-wide state every object reaches: physical memory, the fd table, the backend and contract, the event
 * stream and the address space. Objects hold a Kernel rather than the public Host so that the public surface
 * stays small.
 */
import type { FrameOwner } from './access.js';
import type { ArchBackend, DmaAreaInfo, PipelineStep } from './arch/backend.js';
import type { Contract } from './contract.js';
import type { EventStream } from './events.js';
import type { FdTable } from './files.js';
import type { PhysicalMemory } from './mm/physical.js';
import type { AddressSpace } from './mm/address-space.js';
import type { GmemInode } from './kvm/gmem-inode.js';
import type { Vm } from './kvm/vm.js';
import type { Ioas } from './iommufd/ioas.js';

/**
 * What the host's IOMMU driver does when an unmap covers only part of a huge IOPTE (HostOptions.hugeIopteCut):
 * remove the whole IOPTE ('unmap-whole'), replace it with smaller ones first ('split'), or unmap nothing
 * ('refuse', which the registry turns into an EAGAIN before the conversion's point of no return).
 */
export type HugeIopteCut = 'unmap-whole' | 'split' | 'refuse';

export interface Kernel {
  readonly phys: PhysicalMemory;
  readonly files: FdTable;
  readonly events: EventStream;
  readonly backend: ArchBackend;
  readonly contract: Contract;
  readonly addressSpace: AddressSpace;
  /** kvm.gmem_in_place_conversion (kernel-contract §4.1). */
  readonly inPlaceConversion: boolean;
  /** Whether MMAP guest_memfd bindings make memslots KVM_MEMSLOT_GMEM_ONLY (HostOptions.gmemOnlyMemslots). */
  readonly gmemOnlyMemslots: boolean;
  readonly gmemInodes: Set<GmemInode>;
  readonly vms: Set<Vm>;
  readonly ioases: Set<Ioas>;
  nextIno(): number;
  nextInvalidationId(): number;
  /** Count a backend's pipeline steps for this host. */
  recordPipeline(steps: readonly PipelineStep[]): void;
  /** The counters some step of which was an upper bound (PipelineStep.bound): Host.pipelineBounds(). */
  readonly boundSteps: Set<string>;
  /**
   * Whether an IOMMU_IOAS_MAP of a user range inside a guest_memfd mmap registers with the guest_memfd, found
   * from the user address (HostOptions.registration).
   */
  readonly registerUserRanges: boolean;
  /** What a partial unmap of a huge IOPTE does (HostOptions.hugeIopteCut). */
  readonly hugeIopteCut: HugeIopteCut;
  /** Byte ranges of a guest_memfd inode that IOPTEs map right now, across every IOAS. */
  dmaMappingsOf(inode: GmemInode, start: number, end: number): Array<{ start: number; end: number; area: Readonly<DmaAreaInfo> }>;
  /** Whether any IOPTE maps a page of [start, end) of the inode. */
  isDmaMapped(inode: GmemInode, start: number, end: number): boolean;
  /** A consumer, listener or backend misbehaved where the operation cannot stop: record it and go on. */
  reportObserverError(error: { source: string; hook: string; error: unknown }): void;
  /** Who owns frame `pfn` now. */
  describeFrame(pfn: number): FrameOwner;
  /** The fatal fault that brought the host down, once one happened. */
  readonly crashed: CrashRecord | undefined;
  crash(record: CrashRecord): void;
  /** Throws HostCrashedError when the host is down: nothing runs on a crashed host. */
  checkAlive(op: string): void;
}

/** A fatal fault: a machine check not contained, a host kernel oops, a hypervisor panic. */
export interface CrashRecord {
  /** Who made the access. */
  by: 'host' | 'host-kernel' | 'guest' | 'device';
  via: string;
  /** The faulting address in the accessor's address space. */
  address: number;
  fault: string;
  mechanism: string;
}
