/**
 * A KVM VM: its memslots (kernel-contract §3.7), its stage-2 page tables, the mmu invalidation bookkeeping that
 * makes a racing guest fault retry (§3.6), and guest accesses. The guest's accesses follow each page's current
 * attribute: a private page through the private mapping, a shared one through the shared mapping.
 */
import type { AccessFault, AccessResult, AccessVerdict } from '../access.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MAX_GPA_BITS,
  KVM_MEM_MAX_NR_PAGES,
  KVM_MEM_READONLY,
  KVM_USER_MEM_SLOTS,
  PAGE_SHIFT,
  PAGE_SIZE,
  TASK_SIZE_MAX,
} from '../constants.js';
import { fail } from '../errors.js';
import type { InvalidationCause } from '../events.js';
import { KernelFile, kindName } from '../files.js';
import type { Kernel } from '../kernel.js';
import type { Vma } from '../mm/address-space.js';
import { walkPages, type PageStep } from '../mm/page-walk.js';
import {
  fieldsOf,
  narrow,
  parseAccessBytes,
  parseAccessLength,
  parseFdArgument,
  parseLong,
  parseOptionalU64,
  parseSafe,
  parseStruct,
  parseU64,
} from '../util/args.js';
import { linearCodec, RangeMap } from '../util/range-map.js';
import { GmemInode, type PrivateEntryPlan, type ZapRemoval } from './gmem-inode.js';
import { GuestMemfd } from './guest-memfd.js';
import type { Memslot } from './memslot.js';
import {
  setVmMemoryAttributes,
  supportedMemoryAttributes,
  VmMemoryAttributes,
  type MemoryAttributesArgs,
} from './vm-attributes.js';

export type VmType = 'default' | 'coco';

export interface CreateGuestMemfdArgs {
  size: number | bigint;
  flags?: number | bigint;
}

export interface UserMemoryRegion2Args {
  slot: number | bigint;
  flags: number | bigint;
  guestPhysAddr: number | bigint;
  memorySize: number | bigint;
  userspaceAddr?: number | bigint;
  /** An fd number or an object with .fd. */
  guestMemfd?: number | bigint | { fd: number };
  guestMemfdOffset?: number | bigint;
}

export type UserMemoryRegionArgs = Omit<UserMemoryRegion2Args, 'guestMemfd' | 'guestMemfdOffset'>;

/** How the guest addresses memory. */
export interface GuestAccessOptions {
  /**
   * The private/shared intent the guest's GPA carries: the TDX shared bit, the SNP C-bit, the CCA top IPA bit.
   * Absent: the page's current attribute (a guest that always uses the right one). A mismatch with the
   * attribute is a KVM_EXIT_MEMORY_FAULT, which the VMM answers by converting the page.
   */
  intent?: 'shared' | 'private';
}

export interface GuestFaultOptions extends GuestAccessOptions {
  write?: boolean;
}

/**
 * A guest fault after its first step (resolve: the pfn from guest_memfd and the mmu_invalidate_seq sampled
 * before it, kernel-contract §3.6, §3.9), waiting for its second (install the stage-2 entry under
 * mmu_invalidate_retry_gfn). Callers may run other calls in between, as another CPU would.
 */
export interface PendingGuestFault {
  /** The faulting page's GPA. */
  readonly gpa: number;
  readonly pfn: number;
  readonly mmuSeq: number;
  readonly side: 'shared' | 'private';
  /**
   * Install the entry, or return a 'retry' fault when an invalidation overlapped the fault since it sampled
   * mmuSeq (the fault must start again). Installing twice is EINVAL.
   */
  install(): AccessResult;
}

/** A guest fault between its two steps (Vm.resolveGuestFault): its state in fields, so that a fork copies it. */
class GuestFault implements PendingGuestFault {
  readonly gpa: number;
  readonly pfn: number;
  readonly mmuSeq: number;
  readonly side: 'shared' | 'private';
  private done = false;

  constructor(
    private readonly vm: Vm,
    private readonly resolved: Resolved,
    private readonly gfn: number,
  ) {
    this.gpa = gfn * PAGE_SIZE;
    this.pfn = resolved.pfn!; // made before a GuestFault is (Vm.makeResolved)
    this.mmuSeq = resolved.mmuSeq;
    this.side = resolved.side;
  }

  /** A function of its own (made on each read), so that `const { install } = fault` works. */
  get install(): () => AccessResult {
    return (): AccessResult => {
      this.vm.checkRunnable();
      if (this.done) fail('EINVAL', 'guest fault install', 'this fault was already installed or retried');
      this.done = true;
      return this.vm.installResolved(this.resolved, this.gfn);
    };
  }
}

const GUEST_ACCESS_FIELDS = fieldsOf<GuestAccessOptions>({ intent: true });
const GUEST_FAULT_FIELDS = fieldsOf<GuestFaultOptions>({ intent: true, write: true });

/** What a private stage-2 zap will end in one guest_memfd (Vm.planPrivateZap). */
interface PrivateZap {
  inode: GmemInode;
  removal: ZapRemoval;
}

/**
 * A guest fault on a guest_memfd page, internally: decided by Vm.decide without changing anything (the backend's
 * entry hooks asked there or in Vm.installRefusal, their answers kept here), then made (Vm.makeResolved: the page
 * allocated, and made hardware-private as `enterAtResolve` says), then installed (Vm.install: hardware-private as
 * `enterAtInstall` says, and the stage-2 entry written).
 */
interface Resolved {
  gfn: number;
  slot: Memslot;
  /** The page's frame; undefined until the first step's changes are made (a page not allocated yet). */
  pfn: number | undefined;
  mmuSeq: number;
  side: 'shared' | 'private';
  gmem: GmemInode;
  index: number;
  /**
   * How the page becomes hardware-private at the first step (a private fault, privateEntryAt 'resolve'), as
   * GmemInode.privateEntryPlan answered in Vm.decide; undefined when it does not enter there.
   */
  enterAtResolve: PrivateEntryPlan | undefined;
  /**
   * How the page becomes hardware-private when its private entry is written (privateEntryAt 'install'), as
   * GmemInode.privateEntryPlan answered in Vm.installRefusal; undefined when it does not enter there.
   */
  enterAtInstall: PrivateEntryPlan | undefined;
}

/** A guest page the first pass sends through the memslot's userspace address: translated when it is reached. */
interface ThroughHva {
  mapping: Vma;
  page: number;
}

type GuestFaultVerdict = Extract<AccessVerdict, { allow: false }> & { exit?: AccessFault['exit'] };

/**
 * How one guest page was decided (Vm.decide): an installed stage-2 entry, a page reached through the userspace
 * address, a fault to make and install, or the fault — with, in `made`, the guest_memfd fault whose first step
 * ran before it (the page stays allocated, as kvm_gmem_get_pfn left it).
 */
type GuestPage = { pfn: number; stale: boolean } | ThroughHva | Resolved | (GuestFaultVerdict & { made?: Resolved });

/** The VM's file: the fd and every guest_memfd file of the VM hold it ("the file pins KVM"). */
class VmFile extends KernelFile {
  readonly kind = 'kvm-vm' as const;
  constructor(private readonly vm: Vm) {
    super();
  }
  protected release(): void {
    this.vm.destroy();
  }
}

const INVALID_GFN = -1;
const INVALIDATION_CAUSES: readonly InvalidationCause[] = [
  'truncate',
  'to-private',
  'to-shared',
  'release',
  'memory-failure',
];
/** The fields of kvm_userspace_memory_region and kvm_userspace_memory_region2, as the model names them. */
const REGION_FIELDS = fieldsOf<UserMemoryRegionArgs>({
  slot: true,
  flags: true,
  guestPhysAddr: true,
  memorySize: true,
  userspaceAddr: true,
});
const REGION2_FIELDS = fieldsOf<UserMemoryRegion2Args>({
  slot: true,
  flags: true,
  guestPhysAddr: true,
  memorySize: true,
  userspaceAddr: true,
  guestMemfd: true,
  guestMemfdOffset: true,
});
const CREATE_GUEST_MEMFD_FIELDS = fieldsOf<CreateGuestMemfdArgs>({ size: true, flags: true });

export class Vm {
  /** @internal */
  readonly file: KernelFile = new VmFile(this);
  readonly fd: number;
  /** Memslots by slot number (as_id << 16 | id). */
  private readonly slots = new Map<number, Memslot>();
  /** memslots() as a shared array, for snapshots; dropped where `slots` (private) changes: set and delete below. */
  private slotList: readonly Memslot[] | undefined;
  /** Per address space: gfn -> memslot. */
  private readonly gfnIndex = [new RangeMap<Memslot>(), new RangeMap<Memslot>()];
  /** @internal Stage-2 entries installed through the shared and the private mapping: gfn -> pfn (Host.pageMaps() shows them). */
  readonly stage2 = { shared: new RangeMap<number>(linearCodec), private: new RangeMap<number>(linearCodec) };
  /** kvm->mem_attr_array: the per-VM attributes KVM_SET_MEMORY_ATTRIBUTES sets (§4.4; 'separate' conversion). */
  readonly memoryAttributes = new VmMemoryAttributes();
  /** mmu_invalidate_seq / _in_progress / _range_start / _range_end (§3.6). */
  private readonly mmuState = { seq: 0, inProgress: 0, rangeStart: INVALID_GFN, rangeEnd: INVALID_GFN };

  /** @internal A plain copy of the mmu invalidation bookkeeping, for snapshots. */
  mmuSnapshot(): { seq: number; inProgress: number; rangeStart: number; rangeEnd: number } {
    return { ...this.mmuState };
  }

  /** @internal Whether `mmu` holds what the mmu invalidation bookkeeping holds now, for snapshots. */
  mmuIs(mmu: { seq: number; inProgress: number; rangeStart: number; rangeEnd: number }): boolean {
    const state = this.mmuState;
    return (
      Object.is(mmu.seq, state.seq) &&
      Object.is(mmu.inProgress, state.inProgress) &&
      Object.is(mmu.rangeStart, state.rangeStart) &&
      Object.is(mmu.rangeEnd, state.rangeEnd)
    );
  }

  /** A read-only copy of the mmu invalidation bookkeeping (§3.6), for inspection. */
  get mmu(): Readonly<{ seq: number; inProgress: number; rangeStart: number; rangeEnd: number }> {
    return Object.freeze({ ...this.mmuState });
  }
  /** Why the VM is dead (kvm_vm_dead: every ioctl is EIO from then on), once it is. Only the model kills a VM. */
  get dead(): string | undefined {
    return this.deadBecause;
  }
  /** Set once, by kvm_vm_dead; nothing brings the VM back. */
  private deadBecause: string | undefined = undefined;

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(
    private readonly kernel: Kernel,
    readonly type: VmType,
    /** Number of vCPUs, for the IPI counts of removal pipelines. */
    readonly vcpus: number,
  ) {
    this.fd = kernel.files.install(this.file);
  }

  private get label(): string {
    return `vm:${this.fd}`;
  }

  /**
   * An ioctl on the VM fd needs the fd open. The model has no vCPU fds: they go with the VM fd, so KVM_RUN (a
   * guest access) after close() is EBADF too.
   */
  private checkOpen(op: string): void {
    this.kernel.checkAlive(op);
    if (this.kernel.files.lookup(this.fd) !== this.file)
      fail('EBADF', op, `VM fd ${this.fd} is not open`, { argument: 'fd' });
    if (this.dead !== undefined)
      fail('EIO', op, `the VM is dead: ${this.dead}`, { hint: 'a dead VM only closes (kvm_vm_dead)' });
  }

  /** close(2) of the VM fd. The VM lives on while any of its guest_memfd files is open (they pin it). */
  close(): void {
    this.kernel.checkAlive('close');
    this.kernel.files.close('close', this.fd);
  }

  /**
   * @internal The last reference to the VM file went (kvm_destroy_vm): memslots are freed, unbinding their
   * guest_memfd ranges.
   */
  destroy(): void {
    for (const slot of this.memslots()) this.deleteSlot(slot);
    this.kernel.vms.delete(this);
  }

  /** x86: kvm_arch_nr_memslot_as_ids is 1 for VMs with private memory, else 2 (SMM). */
  private get addressSpaces(): number {
    return this.type === 'coco' ? 1 : 2;
  }

  /** KVM_CHECK_EXTENSION on the VM fd, for the guest_memfd capabilities (§1, §4.1); 0 for any other. */
  checkExtension(capability: number | bigint): number {
    this.checkOpen('KVM_CHECK_EXTENSION');
    switch (parseLong('KVM_CHECK_EXTENSION', 'capability', capability)) {
      case KVM_CAP_GUEST_MEMFD:
        return 1;
      case KVM_CAP_GUEST_MEMFD_FLAGS:
        return Number(this.supportedGuestMemfdFlags());
      case KVM_CAP_MEMORY_ATTRIBUTES:
        // kvm_supported_mem_attributes (§4.4): 0 with in-place conversion on (the per-VM attributes are off).
        return supportedMemoryAttributes(this.kernel, this.type);
      case KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
        // 0 unless in-place conversion is on and the VM has private memory (§4.1).
        return this.kernel.inPlaceConversion && this.type === 'coco' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
      default:
        return 0;
    }
  }

  /** KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS) on this VM (§1). */
  supportedGuestMemfdFlags(): bigint {
    this.checkOpen('KVM_CHECK_EXTENSION');
    let flags = BigInt(GUEST_MEMFD_FLAG_MMAP);
    // x86: INIT_SHARED iff gmem_in_place_conversion || !kvm_arch_has_private_mem (CONV8 25/46).
    if (this.kernel.inPlaceConversion || this.type === 'default') flags |= BigInt(GUEST_MEMFD_FLAG_INIT_SHARED);
    return flags;
  }

  /** KVM_CREATE_GUEST_MEMFD (§3.1). */
  createGuestMemfd(args: CreateGuestMemfdArgs): GuestMemfd {
    const op = 'KVM_CREATE_GUEST_MEMFD';
    this.checkOpen(op);
    const a = parseStruct(op, args, CREATE_GUEST_MEMFD_FIELDS);
    const size = parseU64(op, 'size', a.size);
    const flags = parseOptionalU64(op, 'flags', a.flags);
    const unsupported = flags & ~this.supportedGuestMemfdFlags();
    if (unsupported)
      fail('EINVAL', op, `flags 0x${flags.toString(16)} include unsupported bits 0x${unsupported.toString(16)}`, {
        argument: 'flags',
      });
    // size is a loff_t: a u64 with the top bit set is negative.
    if (size === 0n || size >= 1n << 63n) fail('EINVAL', op, `size ${size} must be > 0`, { argument: 'size' });
    if (size % BigInt(PAGE_SIZE) !== 0n) fail('EINVAL', op, `size ${size} is not page aligned`, { argument: 'size' });
    const bytes = narrow(op, 'size', size);
    const inode = new GmemInode(
      this.kernel,
      this.kernel.nextIno(),
      bytes,
      Number(flags),
      this.type,
      this.vcpus,
      this.label,
    );
    this.kernel.gmemInodes.add(inode);
    const gmem = new GuestMemfd(this.kernel, this, inode);
    if (this.kernel.events.active)
      this.kernel.events.emit({
        type: 'call',
        op,
        detail: `fd ${gmem.fd}, ino ${inode.ino}, size ${bytes}, flags 0x${flags.toString(16)}`,
      });
    return gmem;
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES on the VM fd (§4.4): make gfns [address, address + size) private or shared in KVM's
   * eyes. Today's path ('separate' conversion); with in-place conversion on, no attribute is supported.
   */
  setMemoryAttributes(args: MemoryAttributesArgs): void {
    const op = 'KVM_SET_MEMORY_ATTRIBUTES';
    this.checkOpen(op);
    const done = setVmMemoryAttributes(this.kernel, this, op, args);
    if (this.kernel.events.active) {
      this.kernel.events.emit({
        type: 'call',
        op,
        detail: `gpa 0x${(done.start * PAGE_SIZE).toString(16)} size ${(done.end - done.start) * PAGE_SIZE} to ${done.to}${done.changed ? '' : ' (no change)'}`,
      });
    }
  }

  /** KVM_SET_USER_MEMORY_REGION (v1): no guest_memfd fields; KVM_MEM_GUEST_MEMFD is a v2-only flag (B1). */
  setUserMemoryRegion(args: UserMemoryRegionArgs): void {
    const op = 'KVM_SET_USER_MEMORY_REGION';
    this.checkOpen(op);
    const a = parseStruct(op, args, REGION_FIELDS);
    const flags = parseU32(op, 'flags', a.flags);
    if (flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY))
      fail('EINVAL', op, `flags 0x${flags.toString(16)} are not valid for the v1 ioctl`, { argument: 'flags' });
    this.setMemoryRegion(op, { ...a, guestMemfd: undefined, guestMemfdOffset: undefined });
  }

  /** KVM_SET_USER_MEMORY_REGION2 (§3.7): create, move, change flags of, or (memorySize 0) delete a memslot. */
  setUserMemoryRegion2(args: UserMemoryRegion2Args): void {
    const op = 'KVM_SET_USER_MEMORY_REGION2';
    this.checkOpen(op);
    this.setMemoryRegion(op, parseStruct(op, args, REGION2_FIELDS));
  }

  private setMemoryRegion(op: string, a: Record<string, unknown>): void {
    const slot = parseU32(op, 'slot', a.slot);
    const flags = parseU32(op, 'flags', a.flags);
    const gpa = parseU64(op, 'guestPhysAddr', a.guestPhysAddr);
    const size = parseU64(op, 'memorySize', a.memorySize);
    const uaddr = parseOptionalU64(op, 'userspaceAddr', a.userspaceAddr);
    const gmemOffset = parseOptionalU64(op, 'guestMemfdOffset', a.guestMemfdOffset);
    const gmemFd = a.guestMemfd === undefined ? 0 : parseFdArgument(op, 'guestMemfd', a.guestMemfd);
    const page = BigInt(PAGE_SIZE);
    const asId = slot >>> 16;
    const id = slot & 0xffff;

    if (id >= KVM_USER_MEM_SLOTS)
      fail('EINVAL', op, `slot id ${id} is not below KVM_USER_MEM_SLOTS (${KVM_USER_MEM_SLOTS})`, { argument: 'slot' });
    // check_memory_region_flags
    let valid = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD;
    // "Dirty logging private memory is not currently supported."
    if (flags & KVM_MEM_GUEST_MEMFD) valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
    // guest_memfd is incompatible with read-only memslots (writes to those are emulated MMIO).
    if (!(flags & KVM_MEM_GUEST_MEMFD)) valid |= KVM_MEM_READONLY;
    if (flags & ~valid)
      fail('EINVAL', op, `flags 0x${flags.toString(16)} are not supported here (valid: 0x${valid.toString(16)})`, {
        argument: 'flags',
      });
    // General sanity checks of __kvm_set_memory_region.
    if (size % page !== 0n) fail('EINVAL', op, `memory_size ${size} is not page aligned`, { argument: 'memorySize' });
    if (gpa % page !== 0n)
      fail('EINVAL', op, `guest_phys_addr 0x${gpa.toString(16)} is not page aligned`, { argument: 'guestPhysAddr' });
    if (uaddr % page !== 0n || uaddr + size > BigInt(TASK_SIZE_MAX))
      fail('EINVAL', op, `userspace_addr 0x${uaddr.toString(16)} is unaligned or not a user range (access_ok)`, {
        argument: 'userspaceAddr',
      });
    if (flags & KVM_MEM_GUEST_MEMFD && (gmemOffset % page !== 0n || gmemOffset + size > (1n << 64n) - 1n)) {
      fail('EINVAL', op, `guest_memfd_offset ${gmemOffset} is unaligned or overflows`, {
        argument: 'guestMemfdOffset',
      });
    }
    if (asId >= this.addressSpaces)
      fail('EINVAL', op, `address space ${asId} does not exist for this VM`, { argument: 'slot' });
    if (gpa + size > (1n << 64n) - 1n)
      fail('EINVAL', op, 'guest_phys_addr + memory_size overflows', { argument: 'memorySize' });
    if (size >> BigInt(PAGE_SHIFT) > BigInt(KVM_MEM_MAX_NR_PAGES))
      fail('EINVAL', op, `memory_size exceeds KVM_MEM_MAX_NR_PAGES pages`, { argument: 'memorySize' });

    const old = this.slots.get(slot);
    if (size === 0n) {
      if (!old) fail('EINVAL', op, `slot ${slot} does not exist, so it cannot be deleted`, { argument: 'slot' });
      this.deleteSlot(old);
      if (this.kernel.events.active) this.kernel.events.emit({ type: 'call', op, detail: `slot ${slot} deleted` });
      return;
    }
    const baseGfn = narrow(op, 'guestPhysAddr', gpa) / PAGE_SIZE;
    const npages = Number(size) / PAGE_SIZE;
    const userspaceAddr = Number(uaddr);
    let change: 'create' | 'move' | 'flags';
    if (!old) {
      change = 'create';
    } else {
      // "Private memslots are immutable, they can only be deleted."
      if (flags & KVM_MEM_GUEST_MEMFD)
        fail('EINVAL', op, `slot ${slot} exists; guest_memfd memslots cannot be modified, only deleted`, {
          argument: 'flags',
        });
      if (
        userspaceAddr !== old.userspaceAddr ||
        npages !== old.npages ||
        (flags ^ old.flags) & (KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD)
      ) {
        fail('EINVAL', op, `slot ${slot} exists; only its GPA or dirty logging may change`, { argument: 'slot' });
      }
      if (baseGfn !== old.baseGfn) change = 'move';
      else if (flags !== old.flags) change = 'flags';
      else return;
    }
    if (change !== 'flags') {
      for (const run of this.gfnIndex[asId]!.overlapping(baseGfn, baseGfn + npages)) {
        if (run.value !== old)
          fail('EEXIST', op, `GPA range overlaps slot ${run.value.slot}`, { argument: 'guestPhysAddr' });
      }
    }
    let gmem: GuestMemfd | undefined;
    let pgoff = 0;
    if (flags & KVM_MEM_GUEST_MEMFD) {
      // kvm_gmem_bind (§3.7 step 4)
      const file = this.kernel.files.get(op, 'guestMemfd', gmemFd, a.guestMemfd);
      if (!(file instanceof GuestMemfd))
        fail('EINVAL', op, `fd ${gmemFd} is ${kindName(file.kind)}, not a guest_memfd`, { argument: 'guestMemfd' });
      if (file.vm !== this)
        fail('EINVAL', op, `guest_memfd fd ${gmemFd} belongs to another VM`, { argument: 'guestMemfd' });
      if (gmemOffset + size > BigInt(file.inode.size))
        fail(
          'EINVAL',
          op,
          `[${gmemOffset}, ${gmemOffset + size}) is beyond the guest_memfd's size ${file.inode.size}`,
          { argument: 'guestMemfdOffset' },
        );
      pgoff = Number(gmemOffset) / PAGE_SIZE;
      if (file.bindings.intersects(pgoff, pgoff + npages))
        fail('EINVAL', op, `guest_memfd range is already bound to another memslot`, { argument: 'guestMemfdOffset' });
      gmem = file;
    }

    // kvm_arch_prepare_memory_region (x86), after kvm_gmem_bind: the slot must end below kvm_mmu_max_gfn().
    if (change !== 'flags' && baseGfn + npages > 2 ** (KVM_MAX_GPA_BITS - PAGE_SHIFT))
      fail('EINVAL', op, `the memslot ends above the ${KVM_MAX_GPA_BITS}-bit guest physical address space`, {
        argument: 'guestPhysAddr',
      });
    if (old) {
      // Move or flags-only change of a slot without guest_memfd.
      if (change === 'move') {
        this.gfnIndex[asId]!.delete(old.baseGfn, old.baseGfn + old.npages);
        this.zapSlot(old, 'memslot-delete');
        old.baseGfn = baseGfn;
        this.gfnIndex[asId]!.set(baseGfn, baseGfn + npages, old);
      }
      old.flags = flags;
      return;
    }
    const memslot: Memslot = {
      slot,
      asId,
      baseGfn,
      npages,
      flags,
      userspaceAddr,
      gmem: gmem ? { file: gmem, pgoff } : null,
      // GMEM-LATER forces gmem-only for a VM with private memory only because in-place conversion is on; without
      // it (§4.4) the file's MMAP flag alone decides (kvm_gmem_bind), and shared faults use userspace_addr.
      gmemOnly:
        gmem !== undefined &&
        ((this.kernel.gmemOnlyMemslots && !!(gmem.inode.flags & GUEST_MEMFD_FLAG_MMAP)) ||
          (this.type === 'coco' && this.kernel.inPlaceConversion)),
    };
    this.slots.set(slot, memslot);
    this.slotList = undefined;
    this.gfnIndex[asId]!.set(baseGfn, baseGfn + npages, memslot);
    if (gmem) gmem.bindings.set(pgoff, pgoff + npages, memslot);
    if (this.kernel.events.active)
      this.kernel.events.emit({
        type: 'call',
        op,
        detail: `slot ${slot} gpa 0x${(baseGfn * PAGE_SIZE).toString(16)} size ${npages * PAGE_SIZE}${gmem ? ` guest_memfd ino ${gmem.inode.ino} offset ${pgoff * PAGE_SIZE}` : ''}`,
      });
  }

  private deleteSlot(slot: Memslot): void {
    this.zapSlot(slot, 'memslot-delete');
    // kvm_arch_flush_shadow_memslot zaps the private entries too: where that zap is where the hardware gives a page
    // up (TDX's S-EPT removal, CCA's DATA_DESTROY + UNDELEGATE; ArchBackend.privateRemovalAt 'zap'), the pages
    // bound through this memslot leave the hardware-private state now (kernel-contract §3.7). On 'free' backends
    // (SEV-SNP's RMP entry, pKVM's donation) they wait for guest_memfd's free, as at a conversion.
    const bound = slot.asId === 0 ? slot.gmem?.file : undefined;
    if (bound && this.kernel.backend.privateRemovalAt === 'zap')
      bound.inode.leaveAtMemslotDelete(slot.gmem!.pgoff, slot.gmem!.pgoff + slot.npages);
    this.gfnIndex[slot.asId]!.delete(slot.baseGfn, slot.baseGfn + slot.npages);
    this.slots.delete(slot.slot);
    this.slotList = undefined;
    // kvm_gmem_unbind: nothing to do if the file was released first.
    const file = slot.gmem?.file;
    if (file) file.bindings.delete(slot.gmem!.pgoff, slot.gmem!.pgoff + slot.npages);
  }

  private zapSlot(slot: Memslot, cause: 'memslot-delete'): void {
    if (slot.asId !== 0) return;
    this.zapStage2(slot.baseGfn, slot.baseGfn + slot.npages, 'all', cause);
  }

  /** @internal The memslot of address space 0 holding `gfn`, if any. */
  slotAt(gfn: number): Memslot | undefined {
    return this.gfnIndex[0]!.get(gfn);
  }

  /** The memslots, for inspection. */
  memslots(): readonly Memslot[] {
    return [...this.slots.values()].sort((x, y) => x.slot - y.slot);
  }

  /** @internal memslots(), the same array until a memslot is added or deleted: do not change it. */
  memslotList(): readonly Memslot[] {
    return (this.slotList ??= this.memslots());
  }

  // --- mmu invalidation (§3.6) ---

  /** @internal kvm_mmu_invalidate_begin, for guest_memfd's KVM consumer. */
  mmuInvalidateBegin(): void {
    this.mmuState.inProgress++;
    if (this.mmuState.inProgress === 1) {
      this.mmuState.rangeStart = INVALID_GFN;
      this.mmuState.rangeEnd = INVALID_GFN;
    }
  }

  private mmuInvalidateRangeAdd(start: number, end: number): void {
    if (this.mmuState.rangeStart === INVALID_GFN) {
      this.mmuState.rangeStart = start;
      this.mmuState.rangeEnd = end;
    } else {
      // Ranges accumulate until all outstanding invalidations end.
      this.mmuState.rangeStart = Math.min(this.mmuState.rangeStart, start);
      this.mmuState.rangeEnd = Math.max(this.mmuState.rangeEnd, end);
    }
  }

  /** @internal kvm_mmu_invalidate_end, for guest_memfd's KVM consumer. */
  mmuInvalidateEnd(): void {
    // §3.6: "KVM_BUG if < 0" — an end without a begin is a kernel bug, refused before it changes anything.
    if (this.mmuState.inProgress <= 0)
      fail(
        'EIO',
        'kvm_mmu_invalidate_end',
        'no invalidation is in progress (KVM_BUG_ON: mmu_invalidate_in_progress < 0)',
      );
    this.mmuState.seq++;
    this.mmuState.inProgress--;
  }

  /** mmu_invalidate_retry_gfn: whether a fault that sampled `mmuSeq` must retry. */
  private mustRetry(mmuSeq: number, gfn: number): boolean {
    if (this.mmuState.inProgress > 0) {
      if (this.mmuState.rangeStart === INVALID_GFN) return true;
      if (gfn >= this.mmuState.rangeStart && gfn < this.mmuState.rangeEnd) return true;
    }
    return this.mmuState.seq !== mmuSeq;
  }

  /**
   * kvm_mmu_unmap_gfn_range inside an invalidation: record the range and zap stage-2. Conversions filter by
   * the side that goes away (to private: the shared mappings; to shared: the private ones, GMEM-LATER).
   */
  /** @internal */
  unmapGfnRange(start: number, end: number, cause: InvalidationCause): void {
    const op = 'kvm_mmu_unmap_gfn_range';
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start)
      fail('EINVAL', op, `[${String(start)}, ${String(end)}) is not a gfn range`);
    if (!INVALIDATION_CAUSES.includes(cause)) fail('EINVAL', op, `${String(cause)} is not an invalidation cause`);
    // §3.6: range_add WARNs outside an invalidation; the model refuses instead.
    if (this.mmuState.inProgress <= 0)
      fail('EIO', op, 'called outside an mmu invalidation (WARN_ON(!mmu_invalidate_in_progress))');
    this.mmuInvalidateRangeAdd(start, end);
    const filter = cause === 'to-private' ? 'shared' : cause === 'to-shared' ? 'private' : 'all';
    this.zapStage2(start, end, filter, cause);
  }

  /**
   * @internal The zap of private stage-2 entries at a conversion to shared on the VM fd (§4.4): where the backend
   * says the hardware gives the page up there (`privateRemovalAt: 'zap'`), the guest_memfd pages bound to
   * [start, end) leave the hardware-private state at the zap, with the backend's removal steps, although
   * guest_memfd still holds them until the VMM punches them. Elsewhere ('free', the default) nothing changes until
   * the punch. This asks the backend, before the call changes anything; zapPrivateHardware applies the answer.
   */
  planPrivateZap(start: number, end: number): PrivateZap[] | undefined {
    if (this.kernel.backend.privateRemovalAt !== 'zap') return undefined;
    let plan: PrivateZap[] | undefined;
    for (const slot of this.memslots()) {
      const file = slot.gmem?.file;
      if (slot.asId !== 0 || !file) continue;
      const first = Math.max(start, slot.baseGfn);
      const last = Math.min(end, slot.baseGfn + slot.npages);
      if (first >= last) continue;
      const removal = file.inode.zapRemoval(
        slot.gmem!.pgoff + (first - slot.baseGfn),
        slot.gmem!.pgoff + (last - slot.baseGfn),
      );
      if (removal) (plan ??= []).push({ inode: file.inode, removal });
    }
    return plan;
  }

  /** @internal The zap ends the hardware-private state planPrivateZap found. */
  zapPrivateHardware(plan: PrivateZap[] | undefined, zero: boolean): void {
    if (plan) for (const { inode, removal } of plan) inode.leaveAtZap(removal, zero);
  }

  private zapStage2(
    start: number,
    end: number,
    filter: 'shared' | 'private' | 'all',
    cause: InvalidationCause | 'memslot-delete',
  ): void {
    let zapped = false;
    if (filter !== 'private' && this.stage2.shared.intersects(start, end)) {
      this.stage2.shared.delete(start, end);
      zapped = true;
    }
    if (filter !== 'shared' && this.stage2.private.intersects(start, end)) {
      this.stage2.private.delete(start, end);
      zapped = true;
    }
    if (zapped && this.kernel.events.active)
      this.kernel.events.emit({ type: 'zap', target: 'stage2', cause, owner: this.label, start, end });
  }

  // --- guest accesses ---

  private parseIntent(op: string, options: unknown): 'shared' | 'private' | undefined {
    if (options === undefined) return undefined;
    const o = parseStruct(op, options, GUEST_ACCESS_FIELDS) as Record<string, unknown>;
    if (o.intent === undefined) return undefined;
    if (o.intent !== 'shared' && o.intent !== 'private')
      fail('EINVAL', op, `intent ${String(o.intent)} is not 'shared' or 'private'`, { argument: 'intent' });
    if (o.intent === 'private' && this.type !== 'coco')
      fail('EINVAL', op, "a VM without private memory (type 'default') has no private GPAs", { argument: 'intent' });
    return o.intent;
  }

  /** The guest reads `length` bytes at `gpa`. */
  guestRead(gpa: number | bigint, length: number | bigint, options?: GuestAccessOptions): AccessResult {
    const op = 'guest read';
    this.checkOpen('KVM_RUN');
    const intent = this.parseIntent(op, options);
    return this.guestAccess(parseSafe(op, 'gpa', gpa), parseAccessLength(op, 'length', length), undefined, intent);
  }

  /** The guest writes `data` at `gpa`. */
  guestWrite(gpa: number | bigint, data: Uint8Array, options?: GuestAccessOptions): AccessResult {
    const op = 'guest write';
    this.checkOpen('KVM_RUN');
    const intent = this.parseIntent(op, options);
    const at = parseSafe(op, 'gpa', gpa);
    return this.guestAccess(at, parseAccessBytes(op, 'data', data).length, data, intent);
  }

  /**
   * The first step of a guest fault on the page at `gpa`: look the page up as the TDP fault path does and
   * sample mmu_invalidate_seq. Returns the pending fault, or the fault that ends it here (a memory-fault exit,
   * no memslot, EHWPOISON, ...). A page whose stage-2 entry already exists needs no fault: EEXIST.
   */
  resolveGuestFault(gpa: number, options: GuestFaultOptions = {}): PendingGuestFault | AccessFault {
    const op = 'guest fault';
    this.checkOpen('KVM_RUN');
    const o = parseStruct(op, options, GUEST_FAULT_FIELDS) as Record<string, unknown>;
    if (o.write !== undefined && typeof o.write !== 'boolean')
      fail('EINVAL', op, 'write must be a boolean', { argument: 'write' });
    const intent = this.parseIntent(op, { intent: o.intent });
    const address = parseSafe(op, 'gpa', gpa);
    const gfn = Math.floor(address / PAGE_SIZE);
    const page = this.decide(gfn, o.write === true, intent);
    let fault: GuestFaultVerdict | undefined;
    if ('allow' in page) {
      if (page.made) this.makeResolved(page.made);
      fault = page;
    } else if ('mapping' in page) {
      const translated = this.translateHva(page, o.write === true);
      if (typeof translated !== 'number') fault = translated;
    } else if ('mmuSeq' in page) {
      this.makeResolved(page);
      return new GuestFault(this, page, gfn);
    }
    if (fault)
      return {
        ok: false,
        fault: fault.fault,
        address: gfn * PAGE_SIZE,
        fatal: fault.fatal,
        logged: fault.logged,
        mechanism: fault.mechanism,
        done: 0,
        ...(fault.exit ? { exit: fault.exit } : {}),
      };
    return fail('EEXIST', op, `gpa 0x${address.toString(16)} needs no fault: it is already mapped`, {
      argument: 'gpa',
    });
  }

  /** @internal The second step of a guest fault (GuestFault.install). */
  installResolved(resolved: Resolved, gfn: number): AccessResult {
    const refused = this.installRefusal(resolved);
    if (refused)
      return {
        ok: false,
        fault: refused.fault,
        address: gfn * PAGE_SIZE,
        fatal: refused.fatal,
        logged: refused.logged,
        mechanism: refused.mechanism,
        done: 0,
      };
    this.install(resolved);
    return { ok: true };
  }

  /** @internal For GuestFault: the VM fd must still be open for KVM_RUN. */
  checkRunnable(): void {
    this.checkOpen('KVM_RUN');
  }

  private memoryFault(
    gfn: number,
    wantPrivate: boolean,
  ): Extract<AccessVerdict, { allow: false }> & { exit: AccessFault['exit'] } {
    // arch/x86/kvm/mmu/mmu.c __kvm_faultin_pfn: fault->is_private != kvm_mem_is_private(gfn) ->
    // kvm_mmu_prepare_memory_fault_exit (include/linux/kvm_host.h kvm_prepare_memory_fault_exit).
    return {
      allow: false,
      fault: 'memory-fault',
      fatal: false,
      logged: false,
      mechanism: `KVM_EXIT_MEMORY_FAULT: a ${wantPrivate ? 'private' : 'shared'} access to a ${wantPrivate ? 'shared' : 'private'} page (KVM_RUN returns EFAULT)`,
      exit: this.memoryFaultExit(gfn, wantPrivate),
    };
  }

  /** The kvm_run.memory_fault fields (include/linux/kvm_host.h kvm_prepare_memory_fault_exit): gpa, PAGE_SIZE, private flag. */
  private memoryFaultExit(gfn: number, wantPrivate: boolean): NonNullable<AccessFault['exit']> {
    return {
      reason: 'KVM_EXIT_MEMORY_FAULT',
      gpa: gfn * PAGE_SIZE,
      size: PAGE_SIZE,
      flags: wantPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0,
    };
  }

  /**
   * Decide one guest page, changing nothing (the first step of the fault path as far as its checks go, kvm_mmu
   * page fault through kvm_gmem_get_pfn): an installed stage-2 entry (its pfn, as { pfn, stale }), a page
   * reached through the memslot's userspace address (translated when it is reached: not tracked in stage-2), a
   * guest_memfd fault to make and install (Resolved), or the fault. Where the page enters the hardware-private
   * state at this step (privateEntryAt 'resolve'), the backend's entry hooks are asked here, all three at once
   * (the inode's privateEntryPlan: a refusal, or the plan makeResolved applies; a broken answer throws EIO).
   */
  private decide(gfn: number, write: boolean, intent: 'shared' | 'private' | undefined): GuestPage {
    const slot = this.gfnIndex[0]!.get(gfn);
    const gmem = slot?.gmem;
    const index = slot && gmem ? gfn - slot.baseGfn + gmem.pgoff : -1;
    // kvm_mem_is_private: guest_memfd's attributes with in-place conversion on, the VM's own otherwise (§4.4).
    const isPrivate = this.kernel.inPlaceConversion
      ? gmem?.file
        ? gmem.file.inode.isPrivateToGuest(index)
        : false
      : this.type === 'coco' && this.memoryAttributes.isPrivate(gfn);
    const wantPrivate = intent === undefined ? isPrivate : intent === 'private';
    const side = wantPrivate ? 'private' : 'shared';
    const installed = this.stage2[side].get(gfn);
    if (installed !== undefined) {
      const stale = !gmem?.file || gmem.file.inode.lookup(index) !== installed;
      return { pfn: installed, stale: stale && !!gmem };
    }
    // The fault path: the intent must match the attribute before anything else (§3.9, arch-behaviour 6b).
    if (wantPrivate !== isPrivate) return this.memoryFault(gfn, wantPrivate);
    if (!slot)
      return { allow: false, fault: 'mmio', fatal: false, logged: false, mechanism: 'no memslot: KVM_EXIT_MMIO' };
    if (write && slot.flags & KVM_MEM_READONLY)
      return {
        allow: false,
        fault: 'mmio',
        fatal: false,
        logged: false,
        mechanism: 'write to a read-only memslot: KVM_EXIT_MMIO',
      };
    const mmuSeq = this.mmuState.seq;
    // kvm_mmu_faultin_pfn_private: a private gfn in a memslot that cannot be private (no guest_memfd) is a
    // memory-fault exit with EFAULT (arch/x86/kvm/mmu/mmu.c; §4.4). Only the per-VM attributes can say so.
    if (isPrivate && !gmem)
      return {
        ...this.memoryFault(gfn, true),
        fault: 'efault',
        mechanism:
          'a private gfn in a memslot without guest_memfd (kvm_slot_has_gmem: no): KVM_RUN returns EFAULT with KVM_EXIT_MEMORY_FAULT',
      };
    if (gmem && (isPrivate || slot.gmemOnly)) {
      // kvm_gmem_get_pfn (§3.9)
      // A failing kvm_gmem_get_pfn goes through kvm_mmu_prepare_memory_fault_exit whatever the error, shared or
      // private (arch/x86/kvm/mmu/mmu.c kvm_mmu_faultin_pfn_gmem, reached when `is_private ||
      // kvm_memslot_is_gmem_only(slot)`): KVM_RUN returns the error with a KVM_EXIT_MEMORY_FAULT exit.
      const file = gmem.file;
      if (!file)
        return {
          allow: false,
          fault: 'efault',
          fatal: false,
          logged: false,
          mechanism: 'kvm_gmem_get_pfn: guest_memfd file released (KVM_RUN returns EFAULT with KVM_EXIT_MEMORY_FAULT)',
          exit: this.memoryFaultExit(gfn, wantPrivate),
        };
      if (file.inode.hwpoison.has(index))
        return {
          allow: false,
          fault: 'poison',
          fatal: false,
          logged: true,
          mechanism: 'kvm_gmem_get_pfn: EHWPOISON (KVM_RUN returns EHWPOISON with KVM_EXIT_MEMORY_FAULT)',
          exit: this.memoryFaultExit(gfn, wantPrivate),
        };
      const resolved: Resolved = {
        gfn,
        slot,
        pfn: undefined,
        mmuSeq,
        side,
        gmem: file.inode,
        index,
        enterAtResolve: undefined,
        enterAtInstall: undefined,
      };
      // SEV-SNP makes the page RMP-assigned in kvm_gmem_get_pfn's prepare step, before the retry check [S-a]. The
      // backend is asked here, before the folio is taken (Vm.makeResolved), so that a broken answer (EIO) leaves
      // the page cache as it was; a refusal still comes after the allocation, as kvm_arch_gmem_prepare's error
      // does (the folio stays in the page cache: `made`).
      if (isPrivate && this.kernel.backend.privateEntryAt === 'resolve') {
        const entry = file.inode.privateEntryPlan('guest fault', index, 'resolve');
        if (entry !== undefined && 'allow' in entry) return { ...entry, made: resolved };
        resolved.enterAtResolve = entry;
      }
      return resolved;
    }
    // A shared access through the memslot's userspace address (hva_to_pfn / GUP); not tracked in stage-2
    // because the model has no mmu_notifier for non-guest_memfd memory.
    const hva = slot.userspaceAddr + (gfn - slot.baseGfn) * PAGE_SIZE;
    const mapping = this.kernel.addressSpace.find(hva);
    if (!mapping)
      return {
        allow: false,
        fault: 'efault',
        fatal: false,
        logged: false,
        mechanism: 'hva_to_pfn: no VMA at the userspace address (EFAULT)',
      };
    return { mapping, page: (hva - mapping.address) / PAGE_SIZE };
  }

  /** hva_to_pfn: the frame behind a page reached through the userspace address, faulting it in; or EFAULT. */
  private translateHva(page: ThroughHva, write: boolean): number | GuestFaultVerdict {
    const translated = page.mapping.translate(page.page, write);
    if (typeof translated !== 'number')
      return {
        allow: false,
        fault: 'efault',
        fatal: false,
        logged: false,
        mechanism: `hva_to_pfn: ${translated.mechanism} (EFAULT)`,
      };
    return translated;
  }

  /**
   * The first step's changes of a decided guest_memfd fault: the page allocated (kvm_gmem_get_pfn), and made
   * hardware-private at this step as decide's plan says (`enterAtResolve`; nothing is asked here).
   */
  private makeResolved(r: Resolved): void {
    r.pfn = r.gmem.getOrAllocate(r.index);
    if (r.enterAtResolve) r.gmem.enterHardware(r.index, r.enterAtResolve);
  }

  /**
   * The second step's checks, changing nothing: under mmu_lock, mmu_invalidate_retry_gfn (§3.6), then the
   * backend's refusal of the private entry when it is written at this step. The fault, or undefined.
   */
  private installRefusal(r: Resolved): GuestFaultVerdict | undefined {
    // is_page_fault_stale: the memslot the fault resolved through was deleted or moved since.
    if (this.mustRetry(r.mmuSeq, r.gfn) || this.gfnIndex[0]!.get(r.gfn) !== r.slot) {
      return {
        allow: false,
        fault: 'retry',
        fatal: false,
        logged: false,
        mechanism: 'mmu_invalidate_retry_gfn: an invalidation overlapped the fault; it must be retried',
      };
    }
    // TDX PAGE.AUG, CCA DATA_CREATE and pKVM donation run when the private entry is written: the backend is asked
    // here, before anything changes. A hypervisor that refuses the page (pKVM's donation of a DMA-mapped page)
    // fails the fault: nothing is installed, and KVM_RUN returns the error to the VMM. A broken answer is EIO
    // (door.ts); in an access nothing changed yet, and after resolveGuestFault the folio its first step took stays
    // in the page cache, as kvm_gmem_get_pfn leaves it.
    r.enterAtInstall = undefined;
    if (r.side === 'private' && this.kernel.backend.privateEntryAt !== 'resolve') {
      const entry = r.gmem.privateEntryPlan('guest fault', r.index, 'install');
      if (entry !== undefined && 'allow' in entry) return entry;
      r.enterAtInstall = entry;
    }
    return undefined;
  }

  /** The second step's changes, after installRefusal found none: write the stage-2 entry (§3.6). Returns the pfn. */
  private install(r: Resolved): number {
    // TDX PAGE.AUG, CCA DATA_CREATE and pKVM donation run when the private entry is written, as installRefusal's plan says.
    if (r.enterAtInstall) r.gmem.enterHardware(r.index, r.enterAtInstall);
    this.stage2[r.side].set(r.gfn, r.gfn + 1, r.pfn!);
    return r.pfn!;
  }

  /**
   * A guest access: every page decided first, with both steps' checks (the backend's refusals asked), then each
   * page's fault made and installed as the access reaches it (page-walk.ts).
   */
  private guestAccess(
    gpa: number,
    length: number,
    data: Uint8Array | undefined,
    intent: 'shared' | 'private' | undefined,
  ): AccessResult {
    return walkPages(
      this.kernel,
      { by: 'guest', via: this.label },
      gpa,
      length,
      data,
      (gfn, write): GuestPage => {
        const page = this.decide(gfn, write, intent);
        if (!('mmuSeq' in page)) return page;
        const refused = this.installRefusal(page);
        return refused ? { ...refused, made: page } : page;
      },
      (page, gfn, write): PageStep => {
        let pfn: number;
        let stale = false;
        if ('allow' in page) {
          if (page.made) this.makeResolved(page.made);
          return page;
        }
        if ('mapping' in page) {
          const translated = this.translateHva(page, write);
          if (typeof translated !== 'number') return translated;
          pfn = translated;
        } else if ('mmuSeq' in page) {
          this.makeResolved(page);
          pfn = this.install(page);
        } else {
          pfn = page.pfn;
          stale = page.stale;
        }
        if (!write && this.kernel.phys.isPoisoned(pfn)) {
          // Consuming poison: a machine check while the guest runs. The host survives it (the MCE handler marks
          // the page poisoned) and the VM is killed: "the TDX module marks the guest as dead" [X-a], the only
          // architecture in the model whose writes poison.
          this.deadBecause = `the guest consumed poisoned memory at gpa 0x${(gfn * PAGE_SIZE).toString(16)} (machine check)`;
          if (this.kernel.events.active)
            this.kernel.events.emit({ type: 'call', op: 'kvm_vm_dead', detail: `${this.label}: ${this.dead}` });
          return {
            allow: false,
            fault: 'machine-check',
            fatal: false,
            logged: true,
            mechanism: 'the guest consumed poisoned memory: machine check, the VM is marked dead',
          };
        }
        return { pfn, stale };
      },
    );
  }
}

function parseU32(op: string, argument: string, value: unknown): number {
  const v = parseU64(op, argument, value);
  if (v > 0xffffffffn) fail('EINVAL', op, `${argument}=${v} does not fit a u32`, { argument });
  return Number(v);
}
