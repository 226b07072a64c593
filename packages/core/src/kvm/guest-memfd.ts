/**
 * A guest_memfd file: one VM's view of a guest_memfd inode (struct gmem_file, kernel-contract §2), with the
 * file operations a VMM uses: fstat, read/write (which fail), fallocate, mmap, KVM_SET_MEMORY_ATTRIBUTES2, close.
 * The file holds a reference on its VM ("the file pins KVM, not the other way 'round").
 */
import type { AccessResult, AccessVerdict } from '../access.js';
import {
  FALLOC_FL_COLLAPSE_RANGE,
  FALLOC_FL_INSERT_RANGE,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_UNSHARE_RANGE,
  FALLOC_FL_WRITE_ZEROES,
  FALLOC_FL_ZERO_RANGE,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import { fail } from '../errors.js';
import { KernelFile } from '../files.js';
import type { Kernel } from '../kernel.js';
import { HostMapping, parseMmap, reserveAddress, type MappedFile, type MmapArgs } from '../mm/host-mapping.js';
import { walkPages } from '../mm/page-walk.js';
import { gmemPageVerdict, verdictStep } from '../arch/hardware.js';
import type { Invalidation, MappingConsumer, Registration } from '../registry/registry.js';
import {
  fieldsOf,
  hex,
  parseAccessBytes,
  parseAccessLength,
  parseFallocate,
  parseOptionalU64,
  parseSafe,
  parseStruct,
  parseU64,
} from '../util/args.js';
import { RangeMap } from '../util/range-map.js';
import { ShortList } from '../util/short-list.js';
import type { InvalidationCause } from '../events.js';
import type { GmemInode } from './gmem-inode.js';
import { conversionShortcuts } from './conversion-shortcuts.js';

/**
 * The VM a guest_memfd file was created for, as the file uses it (struct gmem_file's `kvm`): its reference, its
 * type, and the mmu invalidation its stage-2 takes. kvm/vm.ts's Vm implements it; the file names no Vm type,
 * so that kvm/ has no import circle (vm.ts makes the files).
 */
export interface GmemVm {
  readonly fd: number;
  readonly type: 'default' | 'coco';
  /** The VM's file: the guest_memfd holds a reference on it ("the file pins KVM"). */
  readonly file: KernelFile;
  mmuInvalidateBegin(): void;
  mmuInvalidateEnd(): void;
  /** Zap the stage-2 entries of gfns [start, end). */
  unmapGfnRange(start: number, end: number, cause: InvalidationCause): void;
}

/** A memslot as the file's bindings xarray holds it (kvm/memslot.ts's Memslot is one). */
export interface GmemBinding {
  readonly baseGfn: number;
  /** The binding; the file clears `file` when it is released first (§3.7 unbind, §3.8). */
  readonly gmem: { file: unknown; readonly pgoff: number } | null;
}

const FALLOC_FL_MODE_MASK =
  FALLOC_FL_PUNCH_HOLE |
  FALLOC_FL_COLLAPSE_RANGE |
  FALLOC_FL_ZERO_RANGE |
  FALLOC_FL_INSERT_RANGE |
  FALLOC_FL_UNSHARE_RANGE |
  FALLOC_FL_WRITE_ZEROES;

export interface GuestMemfdStat {
  size: number;
  blksize: number;
  ino: number;
}

export interface SetMemoryAttributes2Args {
  offset: number | bigint;
  size: number | bigint;
  attributes: number | bigint;
  flags?: number | bigint;
  /** reserved[11]: must be zero. */
  reserved?: ReadonlyArray<number | bigint>;
}

export type { MmapArgs };

const SET_MEMORY_ATTRIBUTES2_FIELDS = fieldsOf<SetMemoryAttributes2Args>({
  offset: true,
  size: true,
  attributes: true,
  flags: true,
  reserved: true,
});

export interface Pin {
  unpin(): void;
}

/** KVM's view of one guest_memfd file, as a registry consumer (kvm_gmem_invalidate_begin/end, §3.5). */
class KvmConsumer implements MappingConsumer {
  readonly kind = 'kvm';
  readonly label: string;
  readonly first = 0;
  /** The invalidations that began an mmu invalidation here, so end it. */
  private readonly begun = new ShortList<number>();

  constructor(
    private readonly gmem: GuestMemfd,
    private readonly vm: GmemVm,
    readonly end: number,
  ) {
    this.label = `vm:${vm.fd}`;
  }

  invalidateBegin(inv: Invalidation): void {
    const vm = this.vm;
    const bindings = this.gmem.bindings;
    if (!bindings.intersects(inv.start, inv.end)) return;
    this.begun.add(inv.id);
    vm.mmuInvalidateBegin();
    if (this.gmem.inode.kernel.events.active || !conversionShortcuts.enabled) {
      // A listener of the zap's events may call the model: the runs are listed before the first zap.
      for (const run of bindings.overlapping(inv.start, inv.end))
        zapBinding(run.start, run.end, run.value, vm, inv.cause);
      return;
    }
    // Each bound run in key order, through the module's visitor (no list of runs per invalidation): with nobody
    // listening, a zap runs no code outside the model, and it changes the stage-2 tables, never the bindings.
    const outerVm = zapVm;
    const outerCause = zapCause;
    zapVm = vm;
    zapCause = inv.cause;
    try {
      bindings.forEachOverlap(inv.start, inv.end, zapWalked);
    } finally {
      zapVm = outerVm;
      zapCause = outerCause;
    }
  }

  invalidateEnd(inv: Invalidation): void {
    if (this.begun.delete(inv.id)) this.vm.mmuInvalidateEnd();
  }
}

/** The VM and cause of the KVM consumer's zap walk in progress (KvmConsumer.invalidateBegin). */
let zapVm: GmemVm | undefined;
let zapCause: InvalidationCause = 'truncate';

/** Bound file pages [start, end) of `slot`: zap the gfns they back. */
function zapBinding(start: number, end: number, slot: GmemBinding, vm: GmemVm, cause: InvalidationCause): void {
  const pgoff = slot.gmem!.pgoff;
  vm.unmapGfnRange(slot.baseGfn + start - pgoff, slot.baseGfn + end - pgoff, cause);
}

/** zapBinding for the walk in progress. */
function zapWalked(start: number, end: number, slot: GmemBinding): void {
  zapBinding(start, end, slot, zapVm!, zapCause);
}

/** A long-term pin of pages of a guest_memfd (GuestMemfd.pin()). */
class GmemPin implements Pin {
  private pinned = true;

  constructor(
    private readonly gmem: GuestMemfd,
    private readonly record: { start: number; end: number; holder: string },
    private readonly off: number,
    private readonly len: number,
  ) {}

  /** A function of its own (made on each read), so that `const { unpin } = pin` works. */
  get unpin(): () => void {
    return () => {
      if (!this.pinned) return;
      this.pinned = false;
      // A page truncated while pinned loses its last reference here and goes back to the allocator
      // (mm/gup.c unpin_user_page -> gup_put_folio); its `.free_folio` (kvm_gmem_free_folio ->
      // kvm_arch_gmem_invalidate) already ran when truncation took it out of the page cache (mm/filemap.c
      // filemap_free_folio), so no architecture work is left for this moment.
      const freed = this.gmem.inode.removePin(this.record);
      const pages = freed.reduce((sum, run) => sum + run.count, 0);
      this.gmem.emitCall(
        'unpin_user_pages',
        () =>
          `ino ${this.gmem.inode.ino} [${this.off}, ${this.off + this.len}) unpinned${pages > 0 ? `; ${pages} truncated page(s) freed` : ''}`,
      );
    };
  }
}

export class GuestMemfd extends KernelFile {
  readonly kind = 'guest_memfd' as const;
  readonly fd: number;
  /** @internal gmem page index -> memslot (the file's bindings xarray; Vm.memslots() shows them). */
  readonly bindings = new RangeMap<GmemBinding>();
  private readonly kvmRegistration: Registration;
  readonly refusesCollapse = true;

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(
    private readonly kernel: Kernel,
    /** @internal */
    readonly vm: GmemVm,
    /** @internal */
    readonly inode: GmemInode,
  ) {
    super();
    vm.file.get();
    // KVM is a registry consumer like any other: on invalidate_begin it zaps the stage-2 entries of every
    // memslot bound to the range (kvm_gmem_invalidate_begin, §3.5), and ends the mmu invalidation after.
    this.kvmRegistration = inode.registry.register(new KvmConsumer(this, vm, inode.npages));
    this.fd = kernel.files.install(this);
  }

  private checkOpen(op: string): void {
    this.kernel.checkAlive(op);
    if (this.kernel.files.lookup(this.fd) !== this) fail('EBADF', op, `fd ${this.fd} is not open`, { argument: 'fd' });
  }

  /** @internal A 'call' event; `detail` is built only when someone listens. */
  emitCall(op: string, detail: () => string): void {
    if (this.kernel.events.active) this.kernel.events.emit({ type: 'call', op, detail: detail() });
  }

  stat(): GuestMemfdStat {
    this.checkOpen('fstat');
    return { size: this.inode.size, blksize: PAGE_SIZE, ino: this.inode.ino };
  }

  /** guest_memfd has no read/write file operations (§3.2): read(2) is EINVAL (no FMODE_CAN_READ). */
  read(_length: number | bigint): Uint8Array {
    this.checkOpen('read');
    return fail('EINVAL', 'read', 'guest_memfd has no read file operation');
  }

  write(_data: Uint8Array): number {
    this.checkOpen('write');
    return fail('EINVAL', 'write', 'guest_memfd has no write file operation');
  }

  /** pread64: a negative position is EINVAL before the fd is looked at; then ESPIPE (no FMODE_PREAD), §10. */
  pread(_length: number | bigint, offset: number | bigint): Uint8Array {
    this.kernel.checkAlive('pread');
    if ((typeof offset === 'number' || typeof offset === 'bigint') && offset < 0)
      fail('EINVAL', 'pread', `pos ${offset} is negative`, { argument: 'offset' });
    this.checkOpen('pread');
    return fail('ESPIPE', 'pread', 'guest_memfd does not support positional reads');
  }

  pwrite(_data: Uint8Array, offset: number | bigint): number {
    this.kernel.checkAlive('pwrite');
    if ((typeof offset === 'number' || typeof offset === 'bigint') && offset < 0)
      fail('EINVAL', 'pwrite', `pos ${offset} is negative`, { argument: 'offset' });
    this.checkOpen('pwrite');
    return fail('ESPIPE', 'pwrite', 'guest_memfd does not support positional writes');
  }

  /** fallocate(2): vfs_fallocate's generic checks, then kvm_gmem_fallocate (§3.4). */
  fallocate(mode: number | bigint, offset: number | bigint, length: number | bigint): void {
    this.allocate(parseFallocate(this.kernel, mode, offset, length, () => this.checkOpen('fallocate')));
  }

  /**
   * @internal MADV_REMOVE's hole punch (madvise_remove -> vfs_fallocate): through the mapping's own file
   * reference, so a closed fd is no EBADF.
   */
  punchHoleForMapping(offset: number, length: number): void {
    this.allocate(parseFallocate(this.kernel, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, undefined));
  }

  /** fallocate past the checks every file shares (parseFallocate): the rest of vfs_fallocate, then kvm_gmem_fallocate. */
  private allocate({ mode: m, offset: off, length: len }: { mode: number; offset: number; length: number }): void {
    const op = 'fallocate';
    // vfs_fallocate
    if (m & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE))
      fail('EOPNOTSUPP', op, `mode ${hex(m)} has unknown bits`, { argument: 'mode' });
    switch (m & FALLOC_FL_MODE_MASK) {
      case 0:
      case FALLOC_FL_UNSHARE_RANGE:
      case FALLOC_FL_ZERO_RANGE:
        break;
      case FALLOC_FL_PUNCH_HOLE:
        if (!(m & FALLOC_FL_KEEP_SIZE)) fail('EOPNOTSUPP', op, 'PUNCH_HOLE requires KEEP_SIZE', { argument: 'mode' });
        break;
      case FALLOC_FL_COLLAPSE_RANGE:
      case FALLOC_FL_INSERT_RANGE:
      case FALLOC_FL_WRITE_ZEROES:
        if (m & FALLOC_FL_KEEP_SIZE)
          fail('EOPNOTSUPP', op, 'this mode cannot be combined with KEEP_SIZE', { argument: 'mode' });
        break;
      default:
        fail('EOPNOTSUPP', op, `mode ${hex(m)} combines exclusive modes`, { argument: 'mode' });
    }
    // kvm_gmem_fallocate (§3.4 steps 1-3)
    if (!(m & FALLOC_FL_KEEP_SIZE))
      fail('EOPNOTSUPP', op, 'guest_memfd size is immutable: KEEP_SIZE is required', { argument: 'mode' });
    if (m & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
      fail('EOPNOTSUPP', op, 'only allocate and PUNCH_HOLE are supported', { argument: 'mode' });
    if (off % PAGE_SIZE !== 0 || len % PAGE_SIZE !== 0) {
      fail('EINVAL', op, `offset ${off} and len ${len} must be page aligned`, {
        argument: off % PAGE_SIZE ? 'offset' : 'len',
      });
    }
    const start = off / PAGE_SIZE;
    const end = (off + len) / PAGE_SIZE;
    if (m & FALLOC_FL_PUNCH_HOLE) {
      // Step 4: always succeeds; a range at or beyond EOF is a no-op.
      this.inode.punchHole(start, end);
      this.emitCall(op, () => `punched [${off}, ${off + len}) of ino ${this.inode.ino}`);
      return;
    }
    // Step 5: allocation must stay inside the file.
    if (off + len > this.inode.size)
      fail('EINVAL', op, `offset + len ${off + len} is beyond i_size ${this.inode.size}`, { argument: 'len' });
    this.inode.populate(start, end);
    this.emitCall(op, () => `allocated [${off}, ${off + len}) of ino ${this.inode.ino}`);
  }

  /** mmap(2) of this file (§3.3): needs GUEST_MEMFD_FLAG_MMAP (ENODEV) and MAP_SHARED (EINVAL). */
  mmap(args: MmapArgs): HostMapping {
    const op = 'mmap';
    this.kernel.checkAlive(op);
    const { length: rounded, offset, shared } = parseMmap(op, args, () => this.checkOpen(op));
    // kvm_gmem_mmap:
    if (!(this.inode.flags & GUEST_MEMFD_FLAG_MMAP)) {
      fail('ENODEV', op, 'the guest_memfd was created without GUEST_MEMFD_FLAG_MMAP', {
        hint: 'create it with flags GUEST_MEMFD_FLAG_MMAP',
      });
    }
    if (!shared) fail('EINVAL', op, 'guest_memfd can only be mapped MAP_SHARED', { argument: 'shared' });
    // No size check at mmap time: a mapping may extend beyond EOF and faults there with SIGBUS (case A9).
    const address = reserveAddress(this.kernel, op, rounded);
    const mapping = new HostMapping(this.kernel, this, address, rounded, offset, true, this.inode.registry);
    this.emitCall(
      op,
      () => `mapped ino ${this.inode.ino} [${offset}, ${offset + rounded}) at 0x${address.toString(16)}`,
    );
    return mapping;
  }

  /** KVM_SET_MEMORY_ATTRIBUTES2 on this file: in-place conversion (§4.2). */
  setMemoryAttributes2(args: SetMemoryAttributes2Args): void {
    const op = 'KVM_SET_MEMORY_ATTRIBUTES2';
    this.checkOpen(op);
    // Step 0: without in-place conversion the ioctl does not exist.
    if (!this.kernel.inPlaceConversion) fail('ENOTTY', op, 'kvm.gmem_in_place_conversion is off');
    const a = parseStruct(op, args, SET_MEMORY_ATTRIBUTES2_FIELDS);
    const fast = this.plainConversion(a);
    if (fast !== undefined) {
      this.inode.convert(op, fast.start, fast.end, fast.to);
      if (this.kernel.events.active)
        this.emitCall(
          op,
          () => `ino ${this.inode.ino} [${a.offset}, ${Number(a.offset) + Number(a.size)}) -> ${fast.to}`,
        );
      return;
    }
    const offset = parseU64(op, 'offset', a.offset);
    const size = parseU64(op, 'size', a.size);
    const attributes = parseU64(op, 'attributes', a.attributes);
    const flags = parseOptionalU64(op, 'flags', a.flags);
    if (a.reserved !== undefined && !Array.isArray(a.reserved))
      fail('EINVAL', op, 'reserved must be an array of u64', { argument: 'reserved' });
    const reserved = ((a.reserved as unknown[] | undefined) ?? []).map((r, i) => parseU64(op, `reserved[${i}]`, r));
    if (reserved.length > 11) fail('EINVAL', op, 'reserved has 11 entries', { argument: 'reserved' });
    // Steps 2-8, in the kernel's order.
    if (flags !== 0n) fail('EINVAL', op, `flags 0x${flags.toString(16)} must be 0`, { argument: 'flags' });
    const bad = reserved.findIndex((r) => r !== 0n);
    if (bad >= 0) fail('EINVAL', op, `reserved[${bad}] must be 0`, { argument: `reserved[${bad}]` });
    if (this.vm.type !== 'coco')
      fail('EINVAL', op, "the VM has no private memory (type 'default')", { hint: "create the VM with type 'coco'" });
    if (attributes & ~BigInt(KVM_MEMORY_ATTRIBUTE_PRIVATE))
      fail('EINVAL', op, `attributes 0x${attributes.toString(16)} has bits other than PRIVATE`, {
        argument: 'attributes',
      });
    if (size === 0n || offset + size > (1n << 64n) - 1n)
      fail('EINVAL', op, size === 0n ? 'size is 0' : 'offset + size overflows', { argument: 'size' });
    if (offset % BigInt(PAGE_SIZE) !== 0n || size % BigInt(PAGE_SIZE) !== 0n)
      fail('EINVAL', op, 'offset and size must be page aligned', {
        argument: offset % BigInt(PAGE_SIZE) ? 'offset' : 'size',
      });
    const fileSize = BigInt(this.inode.size);
    if (offset >= fileSize || offset + size > fileSize)
      fail('EINVAL', op, `[${offset}, ${offset + size}) is not inside i_size ${fileSize}`, { argument: 'size' });
    const start = Number(offset) / PAGE_SIZE;
    const end = start + Number(size) / PAGE_SIZE;
    const to = attributes ? 'private' : 'shared';
    this.inode.convert(op, start, end, to);
    this.emitCall(op, () => `ino ${this.inode.ino} [${offset}, ${offset + size}) -> ${to}`);
  }

  /**
   * The common call, decided without bigints: offset and size safe integers, page aligned and inside the file,
   * attributes 0 or PRIVATE, no flags or reserved words, on a VM with private memory. Every check of the exact
   * path below passes for such arguments, so the outcome is the same; anything else (a bigint, a value to
   * refuse) goes the exact way, which finds the error in the kernel's order.
   */
  private plainConversion(
    a: Record<string, unknown>,
  ): { start: number; end: number; to: 'private' | 'shared' } | undefined {
    const { offset, size, attributes } = a;
    if (
      typeof offset !== 'number' ||
      typeof size !== 'number' ||
      (attributes !== 0 && attributes !== KVM_MEMORY_ATTRIBUTE_PRIVATE)
    )
      return undefined;
    if ((a.flags !== undefined && a.flags !== 0) || a.reserved !== undefined || this.vm.type !== 'coco')
      return undefined;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size <= 0) return undefined;
    if (offset % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0 || offset + size > this.inode.size) return undefined;
    return { start: offset / PAGE_SIZE, end: (offset + size) / PAGE_SIZE, to: attributes ? 'private' : 'shared' };
  }

  /**
   * A long-term GUP pin (pin_user_pages with FOLL_LONGTERM, as the gup_test debugfs hook does in case C9)
   * through a host mapping of this file. It faults the pages in and elevates their refcounts, so a conversion
   * to private fails with EAGAIN until unpin().
   */
  pin(offset: number | bigint, length: number | bigint): Pin {
    const op = 'pin_user_pages';
    this.kernel.checkAlive(op);
    const off = parseSafe(op, 'offset', offset);
    const len = parseSafe(op, 'length', length);
    this.checkOpen(op);
    if (off % PAGE_SIZE !== 0 || len % PAGE_SIZE !== 0 || len === 0)
      fail('EINVAL', op, 'offset and length must be page aligned and length > 0', { argument: 'length' });
    if (!(this.inode.flags & GUEST_MEMFD_FLAG_MMAP))
      fail('EFAULT', op, 'no host mapping of this guest_memfd can exist to pin through (no GUEST_MEMFD_FLAG_MMAP)');
    const start = off / PAGE_SIZE;
    const end = start + len / PAGE_SIZE;
    for (let index = start; index < end; index++) {
      const refused = this.inode.userFaultCheck(index);
      if (refused)
        fail('EFAULT', op, `page at offset ${index * PAGE_SIZE} cannot be pinned (${refused.mechanism})`, {
          argument: 'offset',
        });
    }
    this.inode.populate(start, end);
    const record = { start, end, holder: 'pin()' };
    this.inode.addPin(record);
    this.emitCall(op, () => `ino ${this.inode.ino} [${off}, ${off + len}) pinned`);
    return new GmemPin(this, record, off, len);
  }

  /**
   * Register a consumer of this guest_memfd's pages with the inode's registry (a vhost worker, an accelerator's
   * page table, ...): it is told of every invalidation that overlaps [first, end) and may answer conversions.
   */
  registerConsumer(consumer: MappingConsumer): Registration {
    const op = 'register consumer';
    this.checkOpen(op);
    // No field check here: a consumer is an implementation (it may carry its own state), not a struct.
    const c = parseStruct(op, consumer) as Partial<MappingConsumer>;
    if (typeof c.kind !== 'string' || typeof c.label !== 'string')
      fail('EINVAL', op, 'kind and label must be strings', { argument: 'consumer' });
    const first = parseSafe(op, 'first', c.first);
    const end = parseSafe(op, 'end', c.end);
    if (first >= end || end > this.inode.npages)
      fail('EINVAL', op, `[${first}, ${end}) is not a page range inside the file (${this.inode.npages} pages)`, {
        argument: 'end',
      });
    if (typeof c.invalidateBegin !== 'function')
      fail('EINVAL', op, 'invalidateBegin must be a function', { argument: 'invalidateBegin' });
    return this.inode.registry.register(consumer, first, end);
  }

  /**
   * Memory failure on the page at `index` (the error_remove_folio path, §3.11). `index` is a page index in the
   * file (a number or a bigint). Errors follow madvise(MADV_HWPOISON), the model's other way in: a value that is
   * not a non-negative integer is EINVAL; a page at or beyond EOF, which get_user_pages could not reach, is
   * EFAULT; a released file (no fd, mapping or area left) has no pages: EBADF.
   */
  memoryFailure(index: number | bigint): void {
    const op = 'memory failure';
    this.kernel.checkAlive(op);
    const page = parseSafe(op, 'index', index);
    if (this.released) fail('EBADF', op, `the guest_memfd (ino ${this.inode.ino}) was released`, { argument: 'fd' });
    if (page >= this.inode.npages) {
      fail('EFAULT', op, `page ${page} (offset ${page * PAGE_SIZE}) is at or beyond EOF (${this.inode.npages} pages)`, {
        argument: 'index',
      });
    }
    this.inode.memoryFailure(page);
  }

  /**
   * The host kernel touching a guest_memfd page through the direct map (a stale kernel pointer, a
   * copy_to_user of a page that went private). Shared pages are ordinary memory; what touching a private page
   * does is the architecture's call.
   */
  directMapRead(offset: number | bigint, length: number | bigint): AccessResult {
    this.kernel.checkAlive('direct map read');
    return this.directMapAccess(
      'direct map read',
      offset,
      parseAccessLength('direct map read', 'length', length),
      undefined,
    );
  }

  directMapWrite(offset: number | bigint, data: Uint8Array): AccessResult {
    this.kernel.checkAlive('direct map write');
    return this.directMapAccess(
      'direct map write',
      offset,
      parseAccessBytes('direct map write', 'data', data).length,
      data,
    );
  }

  private directMapAccess(
    op: string,
    offset: number | bigint,
    length: number,
    data: Uint8Array | undefined,
  ): AccessResult {
    const off = parseSafe(op, 'offset', offset);
    this.checkOpen(op);
    if (off + length > this.inode.size)
      fail('EINVAL', op, `[${off}, ${off + length}) is beyond i_size ${this.inode.size}`, { argument: 'length' });
    return walkPages(
      this.kernel,
      { by: 'host-kernel', via: `ino:${this.inode.ino}` },
      off,
      length,
      data,
      (index, write): AccessVerdict | undefined => {
        const pfn = this.inode.lookup(index);
        // A poisoned line consumed by the kernel is an unrecoverable machine check in kernel context [X-d]. (A
        // page not allocated yet gets a fresh frame, never a poisoned one.)
        if (!write && pfn !== undefined && this.kernel.phys.isPoisoned(pfn))
          return {
            allow: false,
            fault: 'machine-check',
            fatal: true,
            logged: true,
            mechanism: 'the host kernel consumed poisoned memory (#MC in kernel context)',
          };
        return gmemPageVerdict(this.kernel, 'host-kernel', op, this.inode, index, write, false);
      },
      // The page is allocated when it is reached, as before, even when the access faults there.
      (verdict, index) => verdictStep(verdict, this.inode.getOrAllocate(index), false),
    );
  }

  /** close(2) of the fd. The file is released when the last reference (mmaps, iommufd areas) goes too. */
  close(): void {
    this.kernel.checkAlive('close');
    this.kernel.files.close('close', this.fd);
  }

  /** kvm_gmem_release (§3.8). */
  protected release(): void {
    for (const run of this.bindings) run.value.gmem!.file = null;
    this.inode.evict();
    this.bindings.clear();
    this.kvmRegistration.unregister();
    this.vm.file.put();
  }
}
