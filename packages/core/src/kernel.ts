/*
 * The host-wide state every object reaches: physical memory, the fd table, the backend and contract, the event
 * stream and the address space. Objects hold a Kernel rather than the public Host so that the public surface
 * stays small.
 *
 * A leaf of the core: it names no object that holds a Kernel (no Vm, inode, IOAS or mapping type), so that every
 * module can import it without an import circle. The host's lists of live objects are kept here write-only; the
 * host (host.ts), which knows their types, passes them to whoever reads them (invariants.ts, page-map.ts).
 *
 * A plain comment, not a doc comment: the declarations of this file that are published (HugeIopteCut,
 * CrashRecord) are not about the Kernel, which is not published, and a doc comment here would be published with them.
 */
import type { FrameOwner } from './access.js';
import type { ArchBackend, PipelineStep } from './arch/backend.js';
import type { ConversionPolicyMemo } from './arch/policy-memo.js';
import type { Contract } from './contract.js';
import type { EventStream } from './events.js';
import type { FdTable } from './files.js';
import type { PhysicalMemory } from './mm/physical.js';
import type { AddressSpace } from './mm/address-space.js';

/**
 * What the host's IOMMU driver does when an unmap covers only part of a huge IOPTE (HostOptions.hugeIopteCut):
 * remove the whole IOPTE ('unmap-whole'), replace it with smaller ones first ('split'), or unmap nothing
 * ('refuse', which the registry turns into an EAGAIN before the conversion's point of no return).
 */
export type HugeIopteCut = 'unmap-whole' | 'split' | 'refuse';

/** One of the host's lists of live objects, as the objects see it: they enter it when made and leave it when released. */
export interface ObjectList {
  add(item: object): unknown;
  delete(item: object): boolean;
}

export interface Kernel {
  readonly phys: PhysicalMemory;
  readonly files: FdTable;
  readonly events: EventStream;
  readonly backend: ArchBackend;
  readonly contract: Contract;
  /** The conversionPolicy answers of the conversion running, for a backend that declares its inputs (door.ts). */
  readonly policyMemo: ConversionPolicyMemo;
  readonly addressSpace: AddressSpace;
  /** kvm.gmem_in_place_conversion (kernel-contract §4.1). */
  readonly inPlaceConversion: boolean;
  /** Whether MMAP guest_memfd bindings make memslots KVM_MEMSLOT_GMEM_ONLY (HostOptions.gmemOnlyMemslots). */
  readonly gmemOnlyMemslots: boolean;
  /** Every guest_memfd inode alive (open, bound, mapped or held by an iommufd area), in creation order. */
  readonly gmemInodes: ObjectList;
  /** Every VM not yet released, in creation order. */
  readonly vms: ObjectList;
  /** Every IOAS not yet destroyed, in creation order. */
  readonly ioases: ObjectList;
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
