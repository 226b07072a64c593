/**
 * Faults are returned, not thrown. A memory access by the host CPU (through an mmap or the direct map), the guest
 * (through stage-2) or a device (through an IOVA) returns an AccessResult. An access spanning pages goes page by
 * page in address order and stops at the first page that faults, as a CPU memset or a DMA engine would.
 */

export type FaultKind =
  /** SIGBUS to the accessing process (guest_memfd fault handler refusal, access beyond EOF). */
  | 'sigbus'
  /** SIGSEGV: no mapping at that address (after munmap). */
  | 'sigsegv'
  /** The IOMMU refused the translation (no IOPTE, revoked area, permission) and raised a fault event. */
  | 'iommu-fault'
  /** The access was blocked by hardware and the fault contained (RMP, GPC, hypervisor stage-2). */
  | 'contained'
  /** The access consumed or produced poison. */
  | 'poison'
  /** A machine check: the host or TD goes down. */
  | 'machine-check'
  /** KVM returned -EFAULT from KVM_RUN (KVM_EXIT_MEMORY_FAULT): e.g. the guest_memfd file is gone. */
  | 'efault'
  /**
   * KVM_RUN returned -EINVAL with no exit reason: the hypervisor refused to make the page private at the guest's
   * fault (Android pKVM's donation of a page some IOPTE maps). The guest has not moved on; running the vCPU again
   * retries the access. Added in core 0.2.
   */
  | 'einval'
  /** The guest touched a GPA with no memslot: KVM exits to userspace for MMIO emulation. */
  | 'mmio'
  /** A guest fault raced an invalidation (mmu_invalidate_retry_gfn) and must be retried after it ends. */
  | 'retry'
  /**
   * The guest's private/shared intent (TDX shared bit, SNP C-bit, CCA top IPA bit) differs from the page's
   * attribute: KVM_RUN returns -EFAULT with exit reason KVM_EXIT_MEMORY_FAULT (see AccessFault.exit), and the
   * VMM is expected to convert the page and re-enter.
   */
  | 'memory-fault';

/** The kvm_run.memory_fault fields of a KVM_EXIT_MEMORY_FAULT (kvm_prepare_memory_fault_exit). */
export interface MemoryFaultExit {
  reason: 'KVM_EXIT_MEMORY_FAULT';
  /** The faulting page's guest physical address. */
  gpa: number;
  /** PAGE_SIZE. */
  size: number;
  /** KVM_MEMORY_EXIT_FLAG_PRIVATE when the guest's access was private. */
  flags: number;
}

/** Who owns a frame now, as an access through a stale entry finds it. */
export type FrameOwner =
  | { kind: 'free' }
  | {
      kind: 'guest_memfd';
      ino: number;
      offset: number;
      vm: string;
      attribute: 'shared' | 'private';
      hardware: 'shared' | 'private';
    }
  | { kind: 'shmem'; ino: number; offset: number }
  | { kind: 'anonymous'; mapping: string }
  /** Truncated from file `ino` while a long-term pin held it. */
  | { kind: 'pinned'; ino: number; offset: number; holder: string };

/** A page an access reached through a stale entry (the frame no longer belongs to the entry's owner). */
export interface ReachedFrame {
  /** The page's address in the accessor's address space (IOVA, GPA, mapping offset). */
  address: number;
  pfn: number;
  owner: FrameOwner;
}

export interface AccessOk {
  ok: true;
  /** The bytes read (reads only). */
  data?: Uint8Array;
  /** Pages reached through stale entries, and whose memory they were. */
  reached?: ReachedFrame[];
}

export interface AccessFault {
  ok: false;
  fault: FaultKind;
  /** The faulting address, in the accessor's address space (mapping offset, GPA or IOVA). */
  address: number;
  /** Whether the host machine or kernel goes down (not merely the accessing process). */
  fatal: boolean;
  /** Whether the host logs it (IOMMU event log, kernel log). */
  logged: boolean;
  /** The mechanism that raised it, e.g. 'kvm_gmem_fault_user_mapping', 'RMP check', 'SMMU GPC'. */
  mechanism: string;
  /** Bytes completed before the faulting page. */
  done: number;
  /**
   * What KVM_RUN reports to the VMM with its error: for 'memory-fault', and for 'efault' or 'poison' from a
   * failing kvm_gmem_get_pfn (mmu.c kvm_mmu_faultin_pfn_gmem calls kvm_mmu_prepare_memory_fault_exit on any error).
   */
  exit?: MemoryFaultExit;
  /** Pages reached through stale entries (including the faulting one), and whose memory they were. */
  reached?: ReachedFrame[];
}

export type AccessResult = AccessOk | AccessFault;

/**
 * What an architecture says one page access does. 'allow' may still corrupt (`poisons`: the write lands and
 * breaks integrity, to be consumed later).
 */
export type AccessVerdict =
  | { allow: true; poisons?: boolean }
  | {
      allow: false;
      fault: FaultKind;
      fatal: boolean;
      logged: boolean;
      mechanism: string;
      lands?: boolean;
      poisons?: boolean;
    };

export function faultResult(
  verdict: Extract<AccessVerdict, { allow: false }>,
  address: number,
  done: number,
): AccessFault {
  return {
    ok: false,
    fault: verdict.fault,
    address,
    fatal: verdict.fatal,
    logged: verdict.logged,
    mechanism: verdict.mechanism,
    done,
  };
}
