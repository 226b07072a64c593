/**
 * An IOAS (io_pagetable): IOVA areas, their mapping and unmapping (kernel-contract §5.2, §5.3), device
 * attachment and lazy pinning. IOVAs are kept as IOVA page numbers in a run map of areas.
 *
 * Model limits, documented: the IOAS always uses PAGE_SIZE IOVA alignment (as with a 4K IOMMU domain), reserved
 * regions and IOMMU_IOAS_ALLOW_IOVAS are not modelled, IOVAs above 2^53 are refused with EINVAL, and
 * IOMMU_IOAS_MAP_FILE checks a memfd's or guest_memfd's size at map time rather than at pin time. The file's type
 * is checked where the kernel checks it: when the pages are pinned (kernel-contract §5.2 step 11).
 */
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  PAGE_SIZE,
  PMD_SIZE,
  U64_MAX,
} from '../constants.js';
import type { DmaAreaInfo } from '../arch/backend.js';
import { registersWithGmem } from '../contract.js';
import { fail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { GuestMemfd } from '../kvm/guest-memfd.js';
import type { GmemInode } from '../kvm/gmem-inode.js';
import { HostMapping } from '../mm/host-mapping.js';
import type { PageCacheInode } from '../mm/inode.js';
import { Memfd } from '../mm/memfd.js';
import { fieldsOf, MAX_SAFE, narrow, parseFdArgument, parseOptionalU64, parseStruct, parseU64 } from '../util/args.js';
import { RangeMap } from '../util/range-map.js';
import { IoasArea, type AreaSource } from './area.js';
import { Device } from './device.js';
import { IoptPages } from './pages.js';

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

export interface CopyArgs {
  /** The source IOAS (src_ioas_id); this IOAS, the destination, when omitted. */
  src?: Ioas;
  /** src_iova: the first byte to copy. */
  srcIova: number | bigint;
  length: number | bigint;
  /** dst_iova, with IOMMU_IOAS_MAP_FIXED_IOVA; otherwise chosen and returned. */
  iova?: number | bigint;
  flags: number | bigint;
}

const MAP_FILE_FIELDS = fieldsOf<MapFileArgs>({ fd: true, start: true, length: true, iova: true, flags: true });
const MAP_FIELDS = fieldsOf<MapArgs>({ mapping: true, offset: true, length: true, iova: true, flags: true });
const UNMAP_FIELDS = fieldsOf<UnmapArgs>({ iova: true, length: true });
const COPY_FIELDS = fieldsOf<CopyArgs>({ src: true, srcIova: true, length: true, iova: true, flags: true });
const KNOWN_MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
const ULONG_MAX = U64_MAX;
const MAX_IOVA_PAGE = Math.floor(Number.MAX_SAFE_INTEGER / PAGE_SIZE);
type KernelFileWithInode = Extract<AreaSource, { kind: 'file' }>['file'];
/** IOASes in creation order (only the order matters: it is how kernel.ioases lists them). */
let ioasesCreated = 0;

export class Ioas {
  /** IOVA page -> area. */
  private readonly areas = new RangeMap<IoasArea>();
  /** areasInOrder(), with the change count of `areas` it was listed at. */
  private areaCache: { changes: number; list: readonly IoasArea[] } | undefined;
  private readonly devices = new Set<Device>();
  private nextAreaId = 1;
  private destroyed = false;
  private largePagesEnabled = true;
  private readonly order = ioasesCreated++;

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(
    private readonly kernel: Kernel,
    readonly id: number,
    /** The iommufd the IOAS belongs to: IOAS ids name objects of one iommufd (iommufd_get_ioas). */
    private readonly context: object = kernel,
  ) {}

  get hasDomain(): boolean {
    return this.devices.size > 0;
  }

  /** Whether the domain may use huge IOPTEs (IOMMU_OPTION_HUGE_PAGES; off for VFIO_TYPE1_IOMMU). */
  get largePages(): boolean {
    return this.largePagesEnabled;
  }

  /**
   * The areas, in IOVA order, as a backend is told about them (DmaAreaInfo: IOVA, length, file offset, IOPTE
   * size, whether IOPTEs exist now). No ioctl lists areas; this is the model's view, for tests and tools.
   */
  listAreas(): Array<Readonly<DmaAreaInfo>> {
    return this.areasInOrder().map((area) => area.info());
  }

  /** @internal The areas, in IOVA order. */
  areaList(): IoasArea[] {
    const list: IoasArea[] = [];
    for (const run of this.areas) if (list[list.length - 1] !== run.value) list.push(run.value);
    return list;
  }

  /**
   * @internal areaList() as one array shared until the areas change (the run map's change count says when), for
   * snapshots and the invariant checks, which read it after every call: do not change it. Not frozen, so that
   * fork() copies it with the areas it lists.
   */
  areasInOrder(): readonly IoasArea[] {
    const changes = this.areas.changeCount;
    if (this.areaCache === undefined || this.areaCache.changes !== changes)
      this.areaCache = { changes, list: this.areaList() };
    return this.areaCache.list;
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
    if (flagsBig > 0xffffffffn || Number(flagsBig) & ~KNOWN_MAP_FLAGS)
      fail('EOPNOTSUPP', op, `flags 0x${flagsBig.toString(16)} has unknown bits`, { argument: 'flags' });
    const flags = Number(flagsBig);
    if (iovaBig >= ULONG_MAX || lengthBig >= ULONG_MAX)
      fail('EOVERFLOW', op, 'iova or length is ULONG_MAX or more', {
        argument: iovaBig >= ULONG_MAX ? 'iova' : 'length',
      });
    if (!(flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)))
      fail('EINVAL', op, 'neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE is set', { argument: 'flags' });
    this.checkLive(op);
    return { flags, iovaBig, lengthBig };
  }

  /** Pick or check the IOVA (§5.2 steps 7-9) for a page-aligned `length`; `source` is the source address. */
  private placeIova(op: string, flags: number, iovaBig: bigint, length: number, source: number): number {
    if (length % PAGE_SIZE !== 0)
      fail('EINVAL', op, `length ${length} is not a multiple of the IOVA alignment ${PAGE_SIZE}`, {
        argument: 'length',
      });
    const npages = length / PAGE_SIZE;
    if (flags & IOMMU_IOAS_MAP_FIXED_IOVA) {
      if (iovaBig % BigInt(PAGE_SIZE) !== 0n)
        fail('EINVAL', op, `iova 0x${iovaBig.toString(16)} is not aligned to ${PAGE_SIZE}`, { argument: 'iova' });
      if (iovaBig + BigInt(length) - 1n > ULONG_MAX)
        fail('EOVERFLOW', op, 'iova + length overflows', { argument: 'iova' });
      const iova = narrow(op, 'iova', iovaBig + BigInt(length)) - length;
      const first = iova / PAGE_SIZE;
      if (this.areas.intersects(first, first + npages))
        fail('EEXIST', op, `[0x${iova.toString(16)}, +${length}) overlaps an existing area`, { argument: 'iova' });
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

  /**
   * Make and insert one area over `pages` (iopt_map_pages: iopt_alloc_area_pages, then iopt_fill_domains_pages,
   * then area->pages is set): a fill that fails changes nothing.
   */
  private insert(
    op: string,
    iova: number,
    length: number,
    flags: number,
    source: AreaSource,
    registers: boolean,
    pages?: IoptPages,
  ): IoasArea {
    if (registers || pages?.registered)
      this.checkNotInvalidating(
        op,
        source.inode as GmemInode,
        source.firstIndex,
        source.firstIndex + length / PAGE_SIZE,
      );
    // iopt_alloc_*_pages: the pages object of a MAP or MAP_FILE, named after its first area.
    pages ??= new IoptPages(
      this.id,
      this.nextAreaId,
      source.kind === 'file' ? source.file : undefined,
      source.inode,
      source.firstIndex,
      length / PAGE_SIZE,
      !!(flags & IOMMU_IOAS_MAP_WRITEABLE),
    );
    const area = new IoasArea(
      this.kernel,
      this.id,
      this.nextAreaId,
      iova,
      length,
      !!(flags & IOMMU_IOAS_MAP_READABLE),
      !!(flags & IOMMU_IOAS_MAP_WRITEABLE),
      source,
      pages,
      this.order,
      this,
    );
    if (this.hasDomain) {
      const problem = area.fillProblem();
      if (problem) {
        area.destroy();
        fail(problem.errno, op, problem.message, { argument: problem.errno === 'EINVAL' ? 'fd' : 'iova' });
      }
    }
    this.nextAreaId++;
    // 'gmem-registry' and 'mirror': guest_memfd learns of the mapping, by file, through its pages object (§9.1).
    // 'vmm-driven': the RFC as posted.
    if (registers) pages.register();
    if (this.hasDomain) area.fill();
    this.areas.set(iova / PAGE_SIZE, iova / PAGE_SIZE + area.npages, area);
    area.track();
    if (this.kernel.events.active)
      this.kernel.events.emit({
        type: 'call',
        op,
        detail: `${area.label} iova 0x${iova.toString(16)} length ${length}${area.registered ? ' (registered with guest_memfd)' : ''}`,
      });
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
    // iopt_alloc_file_pages takes a reference to any file (get_file) and checks nothing of its type: a file
    // that is neither shmem nor hugetlbfs fails only when memfd_pin_folios pins it — at once if a domain is
    // attached, else at attach (IOPT, PAGES-FILE, MEMFDPIN; kernel-contract §5.2 step 11). The model's guest_memfd
    // is pinned the RFC's way (§6).
    const pinnable = file instanceof GuestMemfd || file instanceof Memfd;
    const start = narrow(op, 'start', startBig);
    const length = narrow(op, 'length', lengthBig);
    if (pinnable && start + length > file.inode.size)
      fail('EINVAL', op, `[${start}, ${start + length}) is beyond the file size ${file.inode.size}`, {
        argument: 'length',
      });
    const iova = this.placeIova(op, flags, iovaBig, length, start);
    if (start % PAGE_SIZE !== iova % PAGE_SIZE)
      fail('EINVAL', op, `start ${start} and iova are not equally aligned within a page`, { argument: 'start' });
    // A file with no page cache has no inode: its area never gets IOPTEs (the pin fails first), so nothing reads it.
    const inode = pinnable ? file.inode : (undefined as unknown as PageCacheInode);
    const source: AreaSource = {
      kind: 'file',
      file: file as KernelFileWithInode,
      inode,
      firstIndex: start / PAGE_SIZE,
    };
    return this.insert(
      op,
      iova,
      length,
      flags,
      source,
      file instanceof GuestMemfd && registersWithGmem(this.kernel.contract),
    ).iova;
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
    if (!(a.mapping instanceof HostMapping))
      fail('EFAULT', op, 'mapping is not a HostMapping (user_va points nowhere)', { argument: 'mapping' });
    // A mapping of another host is an address in another process: here user_va points nowhere, so EFAULT, as
    // for a value that is no mapping at all (the mapping is a user address, not an fd: EBADF does not apply).
    if (!this.kernel.addressSpace.owns(a.mapping)) {
      fail(
        'EFAULT',
        op,
        `mapping 0x${a.mapping.address.toString(16)} belongs to another host (user_va is not in this process)`,
        {
          argument: 'mapping',
          hint: 'each createHost() is a separate machine: use objects only with the host that created them',
        },
      );
    }
    const mapping = a.mapping;
    const offset = narrow(op, 'offset', parseU64(op, 'offset', a.offset));
    if (lengthBig === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
    const length = narrow(op, 'length', lengthBig);
    if (offset % PAGE_SIZE !== 0)
      fail('EINVAL', op, `user_va offset ${offset} is not page aligned`, { argument: 'offset' });
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
    const registers =
      mapping.file instanceof GuestMemfd &&
      mapping.mapped &&
      this.kernel.registerUserRanges &&
      registersWithGmem(this.kernel.contract);
    return this.insert(op, iova, length, flags, source, registers).iova;
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
      if (iova >= ULONG_MAX || length >= ULONG_MAX)
        fail('EOVERFLOW', op, 'iova or length is ULONG_MAX or more', {
          argument: iova >= ULONG_MAX ? 'iova' : 'length',
        });
      if (length === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
      if (iova + length - 1n > U64_MAX) fail('EOVERFLOW', op, 'iova + length overflows', { argument: 'length' });
    }
    const unmapped = this.unmapIovaRange(op, iova, all ? U64_MAX : iova + length - 1n);
    // UNMAP-FIX: a ranged unmap that found nothing is ENOENT; unmap-all of an empty IOAS succeeds.
    if (unmapped === 0 && !all)
      fail('ENOENT', op, `nothing is mapped in [0x${iova.toString(16)}, +${length})`, { argument: 'iova' });
    if (this.kernel.events.active)
      this.kernel.events.emit({ type: 'call', op, detail: `ioas ${this.id}: ${unmapped} bytes unmapped` });
    return unmapped;
  }

  /**
   * iopt_unmap_iova_range: the areas inside [iova, lastByte] go one by one in IOVA order; an area only partly
   * inside is ENOENT, and the areas unmapped before it stay unmapped. Returns the bytes unmapped (0 if none).
   */
  private unmapIovaRange(op: string, iova: bigint, lastByte: bigint): number {
    // No area lies above 2^53, so a range reaching further can be clipped without changing its meaning.
    const first = iova > MAX_SAFE ? MAX_IOVA_PAGE + 1 : Math.floor(Number(iova) / PAGE_SIZE);
    const last = lastByte > MAX_SAFE ? MAX_IOVA_PAGE + 1 : Math.floor(Number(lastByte) / PAGE_SIZE);
    const firstByte = Number(iova > MAX_SAFE ? MAX_SAFE : iova);
    let unmapped = 0;
    // iopt_unmap_iova_range: areas go one by one in IOVA order; areas unmapped before an error stay unmapped.
    for (const run of this.areas.overlapping(first, last + 1)) {
      const area = run.value;
      if (!this.areas.has(area.iova / PAGE_SIZE)) continue; // already removed in this loop
      const areaLast = area.iova + area.length - 1;
      if (area.iova < firstByte || BigInt(areaLast) > lastByte) {
        fail(
          'ENOENT',
          op,
          `${area.label} [0x${area.iova.toString(16)}, +${area.length}) is only partly inside the range; splitting areas is not allowed`,
          {
            argument: 'length',
            hint:
              unmapped > 0
                ? `${unmapped} bytes of earlier areas were unmapped before this error, as in the kernel`
                : undefined,
          },
        );
      }
      this.areas.delete(area.iova / PAGE_SIZE, area.iova / PAGE_SIZE + area.npages);
      area.destroy();
      unmapped += area.length;
      if (this.kernel.events.active)
        this.kernel.events.emit({
          type: 'zap',
          target: 'iopte',
          cause: 'unmap',
          owner: area.label,
          start: 0,
          end: area.npages,
        });
    }
    return unmapped;
  }

  /** IOMMU_IOAS_UNMAP with iova 0 and length U64_MAX. */
  unmapAll(): number {
    return this.unmap({ iova: 0n, length: U64_MAX });
  }

  /**
   * IOMMU_IOAS_COPY (§5.3): map into this IOAS (the destination) the pages that [srcIova, srcIova + length) of
   * `src` maps, sharing their iopt_pages (nothing is pinned again, and guest_memfd's registry sees the same
   * pages object). Returns the destination IOVA. Checks in the order of `ioas.c` `iommufd_ioas_copy` (IOAS):
   * flags, overflow, READABLE/WRITEABLE, the source IOAS, `iopt_get_pages` (length 0 EINVAL; wrap EOVERFLOW; a
   * hole anywhere in the range ENOENT — only a hole: the range may start and end inside areas and span
   * several), the destination IOAS, then `iopt_map_pages` as for a map (alignment, IOVA, EPERM for WRITEABLE
   * over read-only pages, the fill). Each source area met becomes one new area.
   */
  copy(args: CopyArgs): number {
    const op = 'IOMMU_IOAS_COPY';
    this.kernel.checkAlive(op);
    const a = parseStruct(op, args, COPY_FIELDS);
    const flagsBig = parseU64(op, 'flags', a.flags);
    const srcIovaBig = parseU64(op, 'srcIova', a.srcIova);
    const lengthBig = parseU64(op, 'length', a.length);
    const dstIovaBig = parseOptionalU64(op, 'iova', a.iova);
    if (flagsBig > 0xffffffffn || Number(flagsBig) & ~KNOWN_MAP_FLAGS)
      fail('EOPNOTSUPP', op, `flags 0x${flagsBig.toString(16)} has unknown bits`, { argument: 'flags' });
    const flags = Number(flagsBig);
    if (lengthBig >= ULONG_MAX || srcIovaBig >= ULONG_MAX || dstIovaBig >= ULONG_MAX) {
      fail('EOVERFLOW', op, 'length, srcIova or iova is ULONG_MAX or more', {
        argument: lengthBig >= ULONG_MAX ? 'length' : srcIovaBig >= ULONG_MAX ? 'srcIova' : 'iova',
      });
    }
    if (!(flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)))
      fail('EINVAL', op, 'neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE is set', { argument: 'flags' });
    const src = a.src === undefined ? this : a.src;
    // iommufd_get_ioas(ucmd->ictx, src_ioas_id): an IOAS of another iommufd (or no IOAS) is not found.
    if (!(src instanceof Ioas) || src.context !== this.context || src.destroyed)
      fail('ENOENT', op, 'the source IOAS does not exist in this iommufd', { argument: 'src' });
    src.kernel.checkAlive(op);
    const pieces = src.getPages(op, srcIovaBig, lengthBig);
    this.checkLive(op);
    const length = narrow(op, 'length', lengthBig);
    const writable = !!(flags & IOMMU_IOAS_MAP_WRITEABLE);
    // iopt_alloc_area_pages: the length against the IOAS alignment, then the IOVA (the first piece's source
    // address guides an automatic one), then iopt_insert_area for each piece.
    const first = pieces[0]!;
    const sourceAddress =
      first.area.source.kind === 'user'
        ? first.area.source.mapping.address + (first.area.source.firstPage + first.offset / PAGE_SIZE) * PAGE_SIZE
        : first.area.source.firstIndex * PAGE_SIZE + first.offset;
    const iova = this.placeIova(op, flags, dstIovaBig, length, sourceAddress);
    for (const piece of pieces) {
      if (writable && !piece.area.pages.writable)
        fail('EPERM', op, `${piece.area.pages.label} was mapped without IOMMU_IOAS_MAP_WRITEABLE`, {
          argument: 'flags',
        });
      if (piece.offset % PAGE_SIZE !== 0)
        fail(
          'EINVAL',
          op,
          `srcIova starts ${piece.offset % PAGE_SIZE} bytes into a page; the IOAS alignment is ${PAGE_SIZE}`,
          { argument: 'srcIova' },
        );
    }
    for (const piece of pieces) {
      if (piece.area.pages.registered)
        this.checkNotInvalidating(
          op,
          piece.area.inode as GmemInode,
          piece.area.first + piece.offset / PAGE_SIZE,
          piece.area.first + (piece.offset + piece.length) / PAGE_SIZE,
        );
    }
    // Make every area first, then fill: a piece that cannot be pinned fails the copy with nothing changed.
    const made: IoasArea[] = [];
    let at = iova;
    for (const piece of pieces) {
      const source = sliceSource(piece.area.source, piece.offset / PAGE_SIZE);
      made.push(
        new IoasArea(
          this.kernel,
          this.id,
          this.nextAreaId + made.length,
          at,
          piece.length,
          !!(flags & IOMMU_IOAS_MAP_READABLE),
          writable,
          source,
          piece.area.pages,
          this.order,
          this,
        ),
      );
      at += piece.length;
    }
    if (this.hasDomain) {
      for (const area of made) {
        const problem = area.fillProblem();
        if (problem) {
          for (const undo of made) undo.destroy();
          fail(problem.errno, op, problem.message, { argument: 'srcIova' });
        }
      }
    }
    this.nextAreaId += made.length;
    for (const area of made) {
      if (this.hasDomain) area.fill();
      this.areas.set(area.iova / PAGE_SIZE, area.iova / PAGE_SIZE + area.npages, area);
      area.track();
    }
    if (this.kernel.events.active) {
      this.kernel.events.emit({
        type: 'call',
        op,
        detail: `ioas ${src.id} [0x${srcIovaBig.toString(16)}, +${length}) -> ${made.map((m) => m.label).join(', ')} iova 0x${iova.toString(16)}${made[0]!.registered ? ' (pages registered with guest_memfd)' : ''}`,
      });
    }
    return iova;
  }

  /**
   * iopt_get_pages: the slices of the areas that cover [iova, iova + length) without a hole
   * (iopt_for_each_contig_area, then !iopt_area_contig_done is ENOENT). `offset` is the byte offset of the
   * slice in its area.
   */
  private getPages(
    op: string,
    iova: bigint,
    length: bigint,
  ): Array<{ area: IoasArea; offset: number; length: number }> {
    if (length === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
    const lastBig = iova + length - 1n;
    if (lastBig > U64_MAX) fail('EOVERFLOW', op, 'srcIova + length overflows', { argument: 'length' });
    const pieces: Array<{ area: IoasArea; offset: number; length: number }> = [];
    // No area lies above 2^53: a range reaching further has a hole there.
    if (lastBig <= MAX_SAFE) {
      const last = Number(lastBig);
      let cur = Number(iova);
      while (cur <= last) {
        const area = this.areas.get(Math.floor(cur / PAGE_SIZE));
        if (!area) break;
        const areaLast = area.iova + area.length - 1;
        const end = Math.min(last, areaLast);
        pieces.push({ area, offset: cur - area.iova, length: end - cur + 1 });
        cur = end + 1;
      }
      if (cur > last) return pieces;
      return fail(
        'ENOENT',
        op,
        `nothing is mapped at IOVA 0x${cur.toString(16)} of ioas ${this.id}: the range has a hole`,
        { argument: 'srcIova' },
      );
    }
    return fail('ENOENT', op, `the range [0x${iova.toString(16)}, 0x${lastBig.toString(16)}] has a hole`, {
      argument: 'srcIova',
    });
  }

  /**
   * IOMMU_OPTION(IOMMU_OPTION_HUGE_PAGES, 0), as VFIO_SET_IOMMU(VFIO_TYPE1_IOMMU) does: every IOPTE is 4K from
   * now on, so an area can be cut. `io_pagetable.c` `iopt_disable_large_pages` (IOPT): EINVAL once a domain is
   * attached and an area exists ("Won't do it if domains already have pages mapped in them").
   */
  disableLargePages(): void {
    const op = 'IOMMU_OPTION';
    this.checkLive(op);
    if (!this.largePagesEnabled) return;
    if (this.hasDomain && this.areas.runCount > 0)
      fail('EINVAL', op, 'a domain is attached and areas are mapped: large pages cannot be disabled now', {
        argument: 'val64',
      });
    this.largePagesEnabled = false;
    for (const area of this.areaList()) area.useSmallPages();
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA through iommufd's VFIO compatibility (`vfio_compat.c` `iommufd_vfio_unmap_dma`,
   * VFIOCOMPAT): with large pages disabled it first cuts the areas at the range's last byte and, unless iova is 0,
   * just before its first (`iopt_cut_iova` -> `iopt_area_split`), so a range inside an area unmaps that part;
   * then `iopt_unmap_iova`. Unlike IOMMU_IOAS_UNMAP, a range that held nothing succeeds with 0 (UNMAP-FIX).
   * Returns the bytes unmapped. A cut that fails leaves the cuts before it in place, as in the kernel; so does a
   * cut at the wrapped last byte of a range that then fails with EOVERFLOW. Pages registered with guest_memfd
   * are not cut (EOPNOTSUPP, `cutAt`).
   */
  vfioUnmapDma(args: UnmapArgs): number {
    const op = 'VFIO_IOMMU_UNMAP_DMA';
    this.kernel.checkAlive(op);
    const a = parseStruct(op, args, UNMAP_FIELDS);
    const iova = parseU64(op, 'iova', a.iova);
    const length = parseU64(op, 'length', a.length);
    this.checkLive(op);
    if (!this.largePagesEnabled) {
      // `unsigned long iovas[] = { unmap.iova + unmap.size - 1, unmap.iova - 1 }` (VFIOCOMPAT): unsigned long
      // arithmetic, so a range past ULONG_MAX wraps and may cut a low area before iopt_unmap_iova's EOVERFLOW;
      // that cut stays, as every cut before a failure does.
      const wrap = (value: bigint) => value & U64_MAX;
      const cuts = iova !== 0n ? [wrap(iova + length - 1n), iova - 1n] : [wrap(iova + length - 1n)];
      for (const cut of cuts) this.cutAt(op, cut);
    }
    if (length === 0n) fail('EINVAL', op, 'length is 0', { argument: 'length' });
    if (iova + length - 1n > U64_MAX) fail('EOVERFLOW', op, 'iova + length overflows', { argument: 'length' });
    const unmapped = this.unmapIovaRange(op, iova, iova + length - 1n);
    if (this.kernel.events.active)
      this.kernel.events.emit({ type: 'call', op, detail: `ioas ${this.id}: ${unmapped} bytes unmapped` });
    return unmapped;
  }

  /**
   * iopt_area_split: the area holding byte `cut` becomes two areas over the same iopt_pages, the first ending at
   * `cut`; nothing happens when `cut` is the area's first or last byte or no area holds it. EINVAL when the
   * second half would not start on the IOAS alignment; EINVAL too when a domain may hold huge IOPTEs (not
   * reachable here: the compat unmap cuts only with large pages disabled); EOPNOTSUPP for pages registered with
   * guest_memfd, as the dma-buf series refuses dma-buf pages. Domains are not touched.
   */
  private cutAt(op: string, cut: bigint): void {
    if (cut < 0n || cut > MAX_SAFE) return;
    const byte = Number(cut);
    const area = this.areas.get(Math.floor(byte / PAGE_SIZE));
    if (!area) return;
    const areaLast = area.iova + area.length - 1;
    if (byte === area.iova || byte === areaLast) return;
    // The precedent refuses to cut what it revokes: the dma-buf series' iopt_area_split returns EOPNOTSUPP for
    // dma-buf pages ("[PATCH v2 4/9] iommufd: Allow a DMABUF to be revoked", DMABUF-REVOKE), since the halves
    // would have to be re-entered in the pages' (domain, area) tracker. Registered guest_memfd pages are revoked
    // the same way, so they are refused the same way, before any change (kernel-contract §5.5, §9.1). Pages the
    // RFC as posted maps ('vmm-driven') are not registered and are cut as any file's.
    if (area.pages.registered)
      fail(
        'EOPNOTSUPP',
        op,
        `cannot cut ${area.label}: its pages are registered with guest_memfd, and pages that can be revoked are not split (as dma-buf pages, iopt_area_split)`,
        { argument: 'iova' },
      );
    const newStart = byte + 1;
    if (newStart % PAGE_SIZE !== 0)
      fail('EINVAL', op, `cannot cut ${area.label} at IOVA 0x${newStart.toString(16)}: not aligned to ${PAGE_SIZE}`, {
        argument: 'iova',
      });
    if (this.hasDomain && this.largePagesEnabled)
      fail('EINVAL', op, `${area.label} may be mapped with huge IOPTEs`, { argument: 'iova' });
    const lhsPages = (newStart - area.iova) / PAGE_SIZE;
    const lhs = new IoasArea(
      this.kernel,
      this.id,
      this.nextAreaId++,
      area.iova,
      lhsPages * PAGE_SIZE,
      area.readable,
      area.writable,
      area.source,
      area.pages,
      this.order,
      this,
    );
    const rhs = new IoasArea(
      this.kernel,
      this.id,
      this.nextAreaId++,
      newStart,
      area.length - lhsPages * PAGE_SIZE,
      area.readable,
      area.writable,
      sliceSource(area.source, lhsPages),
      area.pages,
      this.order,
      this,
    );
    lhs.takeSliceOf(area, 0);
    rhs.takeSliceOf(area, lhsPages);
    // The old area leaves without unmapping anything: its IOPTEs now belong to the halves.
    area.ioptes.clear();
    area.destroy();
    this.areas.set(lhs.iova / PAGE_SIZE, lhs.iova / PAGE_SIZE + lhs.npages, lhs);
    this.areas.set(rhs.iova / PAGE_SIZE, rhs.iova / PAGE_SIZE + rhs.npages, rhs);
    lhs.track();
    rhs.track();
    if (this.kernel.events.active)
      this.kernel.events.emit({
        type: 'call',
        op: 'iopt_area_split',
        detail: `${area.label} -> ${lhs.label} + ${rhs.label}`,
      });
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
        if (area.registered)
          this.checkNotInvalidating(
            op,
            area.inode as GmemInode,
            area.source.firstIndex,
            area.source.firstIndex + area.npages,
          );
      }
      // iopt_table_add_domain -> iopt_fill_domain: the first domain pins every area (lazy pinning, §5.1); the
      // first area that cannot be pinned fails the attach with its errno and the domain is left unchanged.
      for (const area of areas) {
        const problem = area.fillProblem();
        if (problem) fail(problem.errno, op, `${area.label}: ${problem.message}`, { argument: 'ioas' });
      }
      for (const area of areas) area.fill();
    }
    const device = new Device(this.kernel, this, label);
    this.devices.add(device);
    if (this.kernel.events.active)
      this.kernel.events.emit({ type: 'call', op, detail: `device ${label} attached to ioas ${this.id}` });
    return device;
  }

  /** @internal Called by Device.detach(). */
  detach(device: Device): void {
    if (!this.devices.has(device))
      fail('EINVAL', 'detach device', 'that device is not attached to this IOAS', {
        argument: 'device',
        hint: 'call device.detach()',
      });
    this.devices.delete(device);
    if (this.kernel.events.active)
      this.kernel.events.emit({
        type: 'call',
        op: 'detach device',
        detail: `device ${device.name} detached from ioas ${this.id}`,
      });
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
      fail(
        'EAGAIN',
        op,
        `guest_memfd ino ${inode.ino} is invalidating [${inv.start * PAGE_SIZE}, ${inv.end * PAGE_SIZE}) (${inv.cause}); new mappings of that range wait until invalidate_end`,
        {
          hint: 'retry after the invalidation ends',
        },
      );
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

/** The source of area pages from `page` on: the same file or mapping, `page` pages further in. */
function sliceSource(source: AreaSource, page: number): AreaSource {
  if (source.kind === 'user')
    return { ...source, firstPage: source.firstPage + page, firstIndex: source.firstIndex + page };
  return { ...source, firstIndex: source.firstIndex + page };
}
