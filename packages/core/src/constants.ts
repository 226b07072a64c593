/** uAPI constants, with the kernel's names and values (kernel-contract §1). */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/** x86-64 PMD size: the THP and 2M IOPTE/RMP size. */
export const PMD_SIZE = 2 * 1024 * 1024;
export const PUD_SIZE = 1024 * 1024 * 1024;

// KVM_CREATE_GUEST_MEMFD flags (KVMUAPI)
export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;

// fallocate modes (include/uapi/linux/falloc.h)
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_NO_HIDE_STALE = 0x04;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;
export const FALLOC_FL_UNSHARE_RANGE = 0x40;
export const FALLOC_FL_WRITE_ZEROES = 0x80;

// kvm_userspace_memory_region(2).flags
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;

// kvm_memory_attributes2.attributes (CONV8)
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;
/** kvm_run.exit_reason for a guest fault whose private/shared intent differs from the attribute (include/uapi/linux/kvm.h). */
export const KVM_EXIT_MEMORY_FAULT = 39;
/** kvm_run.memory_fault.flags: the faulting access was private. */
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

// KVM_CHECK_EXTENSION numbers
/** KVM_CAP_MEMORY_ATTRIBUTES: the attributes the per-VM KVM_SET_MEMORY_ATTRIBUTES accepts (kernel-contract §4.4). */
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;
export const KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES = 250;

// iommu_ioas_map(_file).flags (UAPI)
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

// madvise advice values (include/uapi/asm-generic/mman-common.h)
export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_DONTNEED = 4;
export const MADV_FREE = 8;
export const MADV_REMOVE = 9;
export const MADV_DONTFORK = 10;
export const MADV_DOFORK = 11;
export const MADV_MERGEABLE = 12;
export const MADV_UNMERGEABLE = 13;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_DONTDUMP = 16;
export const MADV_DODUMP = 17;
export const MADV_WIPEONFORK = 18;
export const MADV_KEEPONFORK = 19;
export const MADV_COLD = 20;
export const MADV_PAGEOUT = 21;
export const MADV_POPULATE_READ = 22;
export const MADV_POPULATE_WRITE = 23;
export const MADV_DONTNEED_LOCKED = 24;
export const MADV_COLLAPSE = 25;
// MADV_HWPOISON (100) is exported by mm/host-mapping.ts.
export const MADV_SOFT_OFFLINE = 101;
export const MADV_GUARD_INSTALL = 102;
export const MADV_GUARD_REMOVE = 103;

/** x86-64 TASK_SIZE_MAX with 4-level paging: the end of the user address space access_ok() accepts. */
export const TASK_SIZE_MAX = 2 ** 47 - PAGE_SIZE;
/** x86 KVM_USER_MEM_SLOTS: KVM_MEM_SLOTS_NUM (SHRT_MAX) less 3 internal slots. */
export const KVM_USER_MEM_SLOTS = 32764;
/** x86 KVM_MEM_MAX_NR_PAGES. */
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
/**
 * x86 kvm_mmu_max_gfn() with TDP is the host's MAXPHYADDR: memslots ending above it are EINVAL. 48 bits on the
 * host the @gmemlab/linux differential tests run on (CPUID 0x80000008); 52 without TDP.
 */
export const KVM_MAX_GPA_BITS = 48;

export const U64_MAX = (1n << 64n) - 1n;

/**
 * MAX_RW_COUNT (include/linux/fs.h): INT_MAX & PAGE_MASK, the most bytes one read(2) or write(2) transfers.
 * vfs_read/vfs_write truncate a larger count to it; the model's access calls, which have no short count, refuse
 * a larger length with EINVAL (see parseAccessLength in util/args.ts).
 */
export const MAX_RW_COUNT = 0x7fff_f000;
