/**
 * An IOAS (io_pagetable): IOVA areas, their mapping and unmapping (kernel-contract §5.2, §5.3), device
 * attachment and lazy pinning. IOVAs are kept as IOVA page numbers in a run map of areas.
 *
 * Model limits, documented: the IOAS always uses PAGE_SIZE IOVA alignment (as with a 4K IOMMU domain), reserved
 * regions and IOMMU_IOAS_ALLOW_IOVAS are not modelled, IOVAs above 2^53 are refused with EINVAL, and
 * IOMMU_IOAS_MAP_FILE checks the file's size at map time rather than at pin time.
 */
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  PAGE_SIZE,
  PMD_SIZE,
  U64_MAX,
} from '../constants.js';
import { registersWithGmem } from '../contract.js';
import { fail } from '../errors.js';
import { kindName } from '../files.js';
import type { Kernel } from '../kernel.js';
import { GuestMemfd } from '../kvm/guest-memfd.js';
import type { GmemInode } from '../kvm/gmem-inode.js';
import { HostMapping } from '../mm/host-mapping.js';
import { Memfd } from '../mm/memfd.js';
import { fieldsOf, MAX_SAFE, narrow, parseFdArgument, parseOptionalU64, parseStruct, parseU64 } from '../util/args.js';
import { RangeMap } from '../util/range-map.js';
import { IoasArea, type AreaSource } from './area.js';
import { Device } from './device.js';

export interface MapFileArgs {
  /** An fd number or an object with .fd (a guest_memfd or memfd). */
  fd: number | bigint | { fd: number };
  start: number | bigint;
  length: number | bigint;
  iova?: number | bigint;
  flags: number | bigint;
}

export interface MapArgs {
  /** The host mapping holding the user address range. */
  mapping: HostMapping;
  /** Offset of the range inside the mapping. */
  offset: number | bigint;
  length: number | bigint;
  iova?: number | bigint;
  flags: number | bigint;
}

export interface UnmapArgs {
  iova: number | bigint;
  length: number | bigint;
}

const MAP_FILE_FIELDS = fieldsOf<MapFileArgs>({ fd: true, start: true, length: true, iova: true, flags: true });
const MAP_FIELDS = fieldsOf<MapArgs>({ mapping: true, offset: true, length: true, iova: true, flags: true });
const UNMAP_FIELDS = fieldsOf<UnmapArgs>({ iova: true, length: true });
const KNOWN_MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
const ULONG_MAX = U64_MAX;
const MAX_IOVA_PAGE = Math.floor(Number.MAX_SAFE_INTEGER / PAGE_SIZE);
/** IOASes in creation order (only the order matters: it is how kernel.ioases lists them). */
let ioasesCreated = 0;

export class Ioas {
  /** IOVA page -> area. */
  private readonly areas = new RangeMap<IoasArea>();
  private readonly devices = new Set<Device>();
  private nextAreaId = 1;
  private destroyed = false;
  private readonly order = ioasesCreated++;

  constructor(
    private readonly kernel: Kernel,
    readonly id: number,
  ) {}

  get hasDomain(): boolean {
    return this.devices.size > 0;
  }

  /** The areas, in IOVA order. */
  /** @internal */
  areaList(): IoasArea[] {
    const list: IoasArea[] = [];
    for (const run of this.areas) if (list[list.length - 1] !== run.value) list.push(run.value);
    return list;
  }

  /** @internal */
  areaAt(iovaPage: number): IoasArea | undefined {
    return this.areas.get(iovaPage);
  }

  private checkLive(op: string): void {
    this.kernel.checkAlive(op);
    if (this.destroyed) fail('ENOENT', op, `IOAS ${this.id} does not exist`, { argument: 'ioas_id' });
  }

  /** Common flag and length checks of IOMMU_IOAS_MAP and IOMMU_IOAS_MAP_FILE (§5.2 steps 1-3). */
  private parseMapCommon(op: string, a: Record<string, unknown>) {
    const flagsBig = parseU64(op, 'flags', a.flags);
    const iovaBig = parseOptionalU64(op, 'iova', a.iova);
    const lengthBig = parseU64(op, 'length', a.length);
    if (flagsBig > 0xffffffffn || Number(flagsBig) & ~KNOWN_MAP_FLAGS) fail('EOPNOTSUPP', op, `flags 0x${flagsBig.toString(16)} has unknown bits`, { argument: 'flags' });
    const flags = Number(flagsBig);
    if (iovaBig >= ULONG_MAX || lengthBig >= ULONG_MAX) fail('EOVERFLOW', op, 'iova or length is ULONG_MAX or more', { argument: iovaBig >= ULONG_MAX ? 'iova' : 'length' });
    if (!(flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE))) fail('EINVAL', op, 'neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE is set', { argument: 'flags' });
    this.checkLive(op);
    return { flags, iovaBig, lengthBig };
  }

  /** Pick or check the IOVA (§5.2 steps 7-9) for a page-aligned `length`; `source` is the source address. */
  private placeIova(op: string, flags: number, iovaBig: bigint, length: number, source: number): number {
    if (length % PAGE_SIZE !== 0) fail('EINVAL', op, `length ${length} is not a multiple of the IOVA alignment ${PAGE_SIZE}`, { argument: 'length' });
    const npages = length / PAGE_SIZE;
    if (flags & IOMMU_IOAS_MAP_FIXED_IOVA) {
      if (iovaBig % BigInt(PAGE_SIZE) !== 0n) fail('EINVAL', op, `iova 0x${iovaBig.toString(16)} is not aligned to ${PAGE_SIZE}`, { argument: 'iova' });
      if (iovaBig + BigInt(length) - 1n > ULONG_MAX) fail('EOVERFLOW', op, 'iova + length overflows', { argument: 'iova' });
      const iova = narrow(op, 'iova', iovaBig + BigInt(length)) - length;
      const first = iova / PAGE_SIZE;
      if (this.areas.intersects(first, first + npages)) fail('EEXIST', op, `[0x${iova.toString(16)}, +${length}) overlaps an existing area`, { argument: 'iova' });
      return iova;
    }
    // Automatic IOVA: keep the source's alignment to help huge IOPTEs, capped at a PMD; never IOVA 0.
    let align = 1;
    while (align < length) align *= 2;
    if (source > 0) align = Math.min(align, lowestSetBit(source));
    align = Math.max(PAGE_SIZE, Math.min(align, PMD_SIZE)) / PAGE_SIZE;
    for (const gap of this.areas.gaps(1, MAX_IOVA_PAGE)) {
      const start = Math.ceil(gap.start / align) * align;
      if (start + npages <= gap.end) return start * PAGE_SIZE;
    }
    return fail('ENOSPC', op, `no free IOVA range of ${length} bytes`, { argument: 'length' });
  }

  private insert(op: string, iova: number, length: number, flags: number, source: AreaSource, gmemBacked: boolean): IoasArea {
    const registers = gmemBacked && registersWithGmem(this.kernel.contract);
    if (registers) this.checkNotInvalidating(op, source.inode as GmemInode, source.firstIndex, source.firstIndex + length / PAGE_SIZE);
    const area = new IoasArea(this.kernel, this.id, this.nextAreaId, iova, length, !!(flags & IOMMU_IOAS_MAP_READABLE), !!(flags & IOMMU_IOAS_MAP_WRITEABLE), source, this.order, this);
    if (this.hasDomain) {
      const problem = area.fillProblem();
      if (problem) {
        area.destroy();
        fail('EFAULT', op, problem, { argument: 'iova' });
      }
    }
    this.nextAreaId++;
    // 'gmem-registry' and 'mirror': guest_memfd learns of the mapping, by file (§9.1). 'vmm-driven': the RFC as posted.
    if (registers) area.register();
    if (this.hasDomain) area.fill();
    this.areas.set(iova / PAGE_SIZE, iova / PAGE_SIZE + area.npages, area);
    area.track();
    if (this.kernel.events.active) this.kernel.events.emit({ type: 'call', op, detail: `${area.label} iova 0x${iova.toString(16)} length ${length}${area.registered ? ' (registered with guest_memfd)' : ''}` });
    return area;
  }

  /** IOMMU_IOAS_MAP_FILE (§5.2): map [start, start + length) of a memfd or guest_memfd; returns the IOVA. */
  mapFile(args: MapFileArgs): number {
    const op = 'IOMMU_IOAS_MAP_FILE';
    this.kernel.checkAlive(op);
    const a = parseStruct(op, args, MAP_FILE_FIELDS);
    const { flags, iovaBig, lengthBig } = this.parseMapCommon(op, a);
    const startBig = parseU64(op, 'start', a.start);
    const fd = parseFdArgument(op, 'fd', a.fd);
    if (lengthBig === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
    if (startBig + lengthBig - 1n > U64_MAX) fail('EOVERFLOW', op, 'start + length overflows', { argument: 'start' });
    const file = this.kernel.files.get(op, 'fd', fd, a.fd);
    if (!(file instanceof GuestMemfd) && !(file instanceof Memfd)) {
      // The kernel finds this when it pins (memfd_pin_folios: not shmem/hugetlb); the model refuses at map time.
      fail('EINVAL', op, `fd ${fd} is ${kindName(file.kind)}; only memfd and guest_memfd pages can be mapped`, { argument: 'fd' });
    }
    const start = narrow(op, 'start', startBig);
    const length = narrow(op, 'length', lengthBig);
    if (start + length > file.inode.size) fail('EINVAL', op, `[${start}, ${start + length}) is beyond the file size ${file.inode.size}`, { argument: 'length' });
    const iova = this.placeIova(op, flags, iovaBig, length, start);
    if (start % PAGE_SIZE !== iova % PAGE_SIZE) fail('EINVAL', op, `start ${start} and iova are not equally aligned within a page`, { argument: 'start' });
    const source: AreaSource = { kind: 'file', file, inode: file.inode, firstIndex: start / PAGE_SIZE };
    return this.insert(op, iova, length, flags, source, file instanceof GuestMemfd).iova;
  }

  /**
   * IOMMU_IOAS_MAP of a user address range inside a host mapping: how VMMs map DMA today. Filling the domain
   * GUP-pins the pages (elevated refcounts), so a conversion to private of those pages fails with EAGAIN until
   * they are unmapped. In 'gmem-registry' and 'mirror' modes a range inside a guest_memfd mapping is also registered with the
   * guest_memfd, looked up from the user address (RFC-AT), so truncation revokes it.
   */
  map(args: MapArgs): number {
    const op = 'IOMMU_IOAS_MAP';
    this.kernel.checkAlive(op);
    const a = parseStruct(op, args, MAP_FIELDS);
    const { flags, iovaBig, lengthBig } = this.parseMapCommon(op, a);
    if (!(a.mapping instanceof HostMapping)) fail('EFAULT', op, 'mapping is not a HostMapping (user_va points nowhere)', { argument: 'mapping' });
    // A mapping of another host is an address in another process: here user_va points nowhere, so EFAULT, as
    // for a value that is no mapping at all (the mapping is a user address, not an fd: EBADF does not apply).
    if (!this.kernel.addressSpace.owns(a.mapping)) {
      fail('EFAULT', op, `mapping 0x${a.mapping.address.toString(16)} belongs to another host (user_va is not in this process)`, {
        argument: 'mapping',
        hint: 'each createHost() is a separate machine: use objects only with the host that created them',
      });
    }
    const mapping = a.mapping;
    const offset = narrow(op, 'offset', parseU64(op, 'offset', a.offset));
    if (lengthBig === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
    const length = narrow(op, 'length', lengthBig);
    if (offset % PAGE_SIZE !== 0) fail('EINVAL', op, `user_va offset ${offset} is not page aligned`, { argument: 'offset' });
    const iova = this.placeIova(op, flags, iovaBig, length, mapping.address + offset);
    const firstPage = offset / PAGE_SIZE;
    const source: AreaSource = {
      kind: 'user',
      mapping,
      firstPage,
      inode: mapping.file.inode,
      firstIndex: mapping.fileOffset / PAGE_SIZE + firstPage,
    };
    // Registration of a user range follows HostOptions.registerUserRanges: found from the user address (RFC-AT,
    // the seed) or not at all, the range then only pinned (§9.1 prefers registration by fd).
    return this.insert(op, iova, length, flags, source, mapping.file instanceof GuestMemfd && mapping.mapped && this.kernel.registerUserRanges).iova;
  }

  /** IOMMU_IOAS_UNMAP (§5.3); returns the bytes unmapped. */
  unmap(args: UnmapArgs): number {
    const op = 'IOMMU_IOAS_UNMAP';
    this.kernel.checkAlive(op);
    const a = parseStruct(op, args, UNMAP_FIELDS);
    const iova = parseU64(op, 'iova', a.iova);
    const length = parseU64(op, 'length', a.length);
    this.checkLive(op);
    const all = iova === 0n && length === U64_MAX;
    if (!all) {
      if (iova >= ULONG_MAX || length >= ULONG_MAX) fail('EOVERFLOW', op, 'iova or length is ULONG_MAX or more', { argument: iova >= ULONG_MAX ? 'iova' : 'length' });
      if (length === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
      if (iova + length - 1n > U64_MAX) fail('EOVERFLOW', op, 'iova + length overflows', { argument: 'length' });
    }
    // No area lies above 2^53, so a range reaching further can be clipped without changing its meaning.
    const first = iova > MAX_SAFE ? MAX_IOVA_PAGE + 1 : Math.floor(Number(iova) / PAGE_SIZE);
    const lastByte = iova + length - 1n;
    const last = lastByte > MAX_SAFE ? MAX_IOVA_PAGE + 1 : Math.floor(Number(lastByte) / PAGE_SIZE);
    const firstByte = Number(iova > MAX_SAFE ? MAX_SAFE : iova);
    let unmapped = 0;
    // iopt_unmap_iova_range: areas go one by one in IOVA order; areas unmapped before an error stay unmapped.
    for (const run of this.areas.overlapping(first, last + 1)) {
      const area = run.value;
      if (!this.areas.has(area.iova / PAGE_SIZE)) continue; // already removed in this loop
      const areaLast = area.iova + area.length - 1;
      if (area.iova < firstByte || BigInt(areaLast) > lastByte) {
        fail('ENOENT', op, `${area.label} [0x${area.iova.toString(16)}, +${area.length}) is only partly inside the range; splitting areas is not allowed`, {
          argument: 'length',
          hint: unmapped > 0 ? `${unmapped} bytes of earlier areas were unmapped before this error, as in the kernel` : undefined,
        });
      }
      this.areas.delete(area.iova / PAGE_SIZE, area.iova / PAGE_SIZE + area.npages);
      area.destroy();
      unmapped += area.length;
      if (this.kernel.events.active) this.kernel.events.emit({ type: 'zap', target: 'iopte', cause: 'unmap', owner: area.label, start: 0, end: area.npages });
    }
    // UNMAP-FIX: a ranged unmap that found nothing is ENOENT; unmap-all of an empty IOAS succeeds.
    if (unmapped === 0 && !all) fail('ENOENT', op, `nothing is mapped in [0x${iova.toString(16)}, +${length})`, { argument: 'iova' });
    if (this.kernel.events.active) this.kernel.events.emit({ type: 'call', op, detail: `ioas ${this.id}: ${unmapped} bytes unmapped` });
    return unmapped;
  }

  /** IOMMU_IOAS_UNMAP with iova 0 and length U64_MAX. */
  unmapAll(): number {
    return this.unmap({ iova: 0n, length: U64_MAX });
  }

  /** Attach a device through a domain; the first attach fills (pins) every area, as the kernel does lazily. */
  attachDevice(name?: string): Device {
    const op = 'attach device';
    this.checkLive(op);
    const label = name === undefined ? `dev${this.devices.size}` : name;
    if (typeof label !== 'string') fail('EINVAL', op, 'name must be a string', { argument: 'name' });
    const areas = this.areaList();
    if (!this.hasDomain) {
      for (const area of areas) {
        if (area.registered) this.checkNotInvalidating(op, area.inode as GmemInode, area.source.firstIndex, area.source.firstIndex + area.npages);
      }
      for (const area of areas) {
        const problem = area.fillProblem();
        if (problem) fail('EFAULT', op, `${area.label}: ${problem}`, { argument: 'ioas' });
      }
      for (const area of areas) area.fill();
    }
    const device = new Device(this.kernel, this, label);
    this.devices.add(device);
    if (this.kernel.events.active) this.kernel.events.emit({ type: 'call', op, detail: `device ${label} attached to ioas ${this.id}` });
    return device;
  }

  /** @internal Called by Device.detach(). */
  detach(device: Device): void {
    if (!this.devices.has(device)) fail('EINVAL', 'detach device', 'that device is not attached to this IOAS', { argument: 'device', hint: 'call device.detach()' });
    this.devices.delete(device);
    if (this.kernel.events.active) this.kernel.events.emit({ type: 'call', op: 'detach device', detail: `device ${device.name} detached from ioas ${this.id}` });
    if (!this.hasDomain) for (const area of this.areaList()) area.unfill();
  }

  /**
   * New mappings of a range wait while guest_memfd invalidates it: the invalidate lock is held from
   * invalidate_begin to invalidate_end (kernel-contract §3.5 design note, "block new IOMMU maps until
   * invalidate_end", as KVM's in_progress makes a racing fault retry, §3.6). The kernel would sleep on the lock;
   * the model, which has no threads, answers EAGAIN so the caller retries after the invalidation ends.
   */
  private checkNotInvalidating(op: string, inode: GmemInode, start: number, end: number): void {
    const inv = inode.invalidationOver(start, end);
    if (inv) {
      fail('EAGAIN', op, `guest_memfd ino ${inode.ino} is invalidating [${inv.start * PAGE_SIZE}, ${inv.end * PAGE_SIZE}) (${inv.cause}); new mappings of that range wait until invalidate_end`, {
        hint: 'retry after the invalidation ends',
      });
    }
  }

  /** Destroy the IOAS (its iommufd was closed): every area is unmapped. */
  destroy(): void {
    for (const device of [...this.devices]) device.detach();
    for (const area of this.areaList()) area.destroy();
    this.areas.clear();
    this.destroyed = true;
    this.kernel.ioases.delete(this);
  }
}

function lowestSetBit(value: number): number {
  let bit = 1;
  while (bit < value && (value / bit) % 2 === 0) bit *= 2;
  return bit;
}
