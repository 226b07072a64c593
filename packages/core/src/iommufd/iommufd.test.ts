/**
 * Issue 21: memfd MAP_FILE pins, IOMMU_IOAS_COPY and the VFIO-compatible cut, the pages object as the registry's
 * unit, and lazy pinning — each against `drivers/iommu/iommufd` (kernel-contract §5, §9).
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import type { ArchBackend } from '../arch/backend.js';
import { swProtected } from '../arch/sw-protected.js';
import { createHost, type Host, type HostOptions } from '../host.js';
import type { Memfd } from '../mm/memfd.js';
import { expectRefused } from '../test-support.js';
import { createScenario } from '../testing/scenario.js';

const P = PAGE_SIZE;
const R = IOMMU_IOAS_MAP_READABLE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
const BASE = 0x100000;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

function bytes(fill: number, length = 16): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

/** Hand-built: a memfd's world (no VM, no guest_memfd), which createScenario does not build. */
function memfdWorld(options?: HostOptions) {
  const host = createHost(options);
  const memfd = host.memfdCreate(8 * P);
  const ioas = host.openIommufd().createIoas();
  return { host, memfd, ioas };
}

/** Nothing mapped or attached: the tests map (after IOMMU_OPTION_HUGE_PAGES where they set it) and copy themselves. */
const gmemWorld = (contract: HostOptions['contract'] = 'gmem-registry') =>
  createScenario(swProtected, { contract, size: 8 * P, populate: false, map: false, attach: false });

function pinsOf(memfd: Memfd) {
  return memfd.inode.pins.map((pin) => [pin.start, pin.end, pin.holder]);
}

function iopteViolations(host: Host) {
  return host.checkInvariants().filter((v) => v.kind === 'stale-iopte');
}

describe('a memfd mapped with IOMMU_IOAS_MAP_FILE is pinned (pfn_reader_user_pin -> memfd_pin_folios)', () => {
  it('a page punched out of the memfd lives on under the pin: DMA reads its old bytes, not another file', () => {
    const { host, memfd, ioas } = memfdWorld();
    memfd.pwrite(bytes(0xaa), 0);
    const iova = ioas.mapFile({ fd: memfd, start: 0, length: 4 * P, flags: RW });
    const dev = ioas.attachDevice();
    memfd.fallocate(PUNCH, 0, P);
    // Another file now allocates: the frame the IOPTE reaches must not be handed to it.
    const other = host.memfdCreate(P);
    other.pwrite(bytes(0xbb), 0);
    const read = dev.dmaRead(iova, 16);
    expect(read.ok).toBe(true);
    expect(read.ok && [...read.data!]).toEqual([...bytes(0xaa)]);
    expect(read.ok && read.reached?.map((r) => r.owner.kind)).toEqual(['pinned']);
    expect(iopteViolations(host)).toEqual([]);
  });

  it('the pin exists only while a domain holds the area and goes at unmap or the last detach (batch_unpin)', () => {
    const { memfd, ioas } = memfdWorld();
    const iova = ioas.mapFile({ fd: memfd, start: P, length: 2 * P, flags: RW });
    expect(pinsOf(memfd)).toEqual([]); // lazy: no domain, no pin
    const dev = ioas.attachDevice();
    expect(pinsOf(memfd)).toEqual([[1, 3, 'ioas:1/area:1']]);
    dev.detach();
    expect(pinsOf(memfd)).toEqual([]);
    ioas.attachDevice();
    expect(pinsOf(memfd)).toEqual([[1, 3, 'ioas:1/area:1']]);
    ioas.unmap({ iova, length: 2 * P });
    expect(pinsOf(memfd)).toEqual([]);
  });

  it('the invariant that catches DMA reaching freed memory covers every file: a memfd IOPTE over a freed frame is stale-iopte', () => {
    const { host, memfd, ioas } = memfdWorld();
    ioas.mapFile({ fd: memfd, start: 0, length: 2 * P, flags: RW });
    ioas.attachDevice();
    // Take the pin away behind the model's back (what a kernel without the pin would do): the punch frees the frame.
    memfd.inode.pins.length = 0;
    memfd.fallocate(PUNCH, P, P);
    expect(iopteViolations(host).map((v) => [v.owner, v.offset, v.length])).toEqual([['ioas:1/area:1', P, P]]);
  });
});

describe('IOMMU_IOAS_COPY (ioas.c iommufd_ioas_copy, io_pagetable.c iopt_get_pages)', () => {
  function twoAreas() {
    const world = memfdWorld();
    const { memfd, ioas } = world;
    memfd.pwrite(bytes(0x11), 0);
    memfd.pwrite(bytes(0x22), 2 * P);
    ioas.mapFile({ fd: memfd, start: 0, length: 2 * P, iova: BASE, flags: FIXED });
    ioas.mapFile({ fd: memfd, start: 2 * P, length: 2 * P, iova: BASE + 2 * P, flags: FIXED });
    return world;
  }

  it('copies a sub-slice spanning two contiguous areas into another IOAS, one new area per source area, sharing their pages', () => {
    const { host, memfd } = memfdWorld();
    memfd.pwrite(bytes(0x22), 2 * P);
    const iommufd = host.openIommufd();
    const src = iommufd.createIoas();
    src.mapFile({ fd: memfd, start: 0, length: 2 * P, iova: BASE, flags: FIXED });
    src.mapFile({ fd: memfd, start: 2 * P, length: 2 * P, iova: BASE + 2 * P, flags: FIXED });
    const dst = iommufd.createIoas();
    // An IOAS of another iommufd is not found (iommufd_get_ioas looks in the caller's iommufd).
    const stranger = host.openIommufd().createIoas();
    expectRefused(host, () => stranger.copy({ src, srcIova: BASE + P, length: 2 * P, flags: RW }), 'ENOENT');
    const iova = dst.copy({ src, srcIova: BASE + P, length: 2 * P, flags: RW });
    const made = dst.areaList();
    expect(made.map((a) => [a.iova - iova, a.length, a.first])).toEqual([
      [0, P, 1],
      [P, P, 2],
    ]);
    expect(made.map((a) => a.pages)).toEqual(src.areaList().map((a) => a.pages));
    const read = dst.attachDevice().dmaRead(iova + P, 16);
    expect(read.ok && [...read.data!]).toEqual([...bytes(0x22)]);
    // The memfd is pinned once per filled area: the copies hold their slices.
    expect(pinsOf(memfd)).toEqual([
      [1, 2, 'ioas:2/area:1'],
      [2, 3, 'ioas:2/area:2'],
    ]);
  });

  it('ENOENT only for a hole; a range starting and ending inside areas succeeds', () => {
    const { host, ioas } = twoAreas();
    // [BASE + P, BASE + 3P): half of each area, contiguous.
    const iova = ioas.copy({ srcIova: BASE + P, length: 2 * P, flags: RW });
    const dev = ioas.attachDevice();
    const first = dev.dmaRead(iova, 16);
    const second = dev.dmaRead(iova + P, 16);
    expect(first.ok && [...first.data!]).toEqual(new Array(16).fill(0)); // page 1 of the memfd: zeros
    expect(second.ok && [...second.data!]).toEqual([...bytes(0x22)]); // page 2
    // A hole before, after or inside the range.
    expectRefused(host, () => ioas.copy({ srcIova: BASE - P, length: 2 * P, flags: RW }), 'ENOENT');
    expectRefused(host, () => ioas.copy({ srcIova: BASE + 3 * P, length: 2 * P, flags: RW }), 'ENOENT');
  });

  it('checks in the kernel order: flags, overflow, R/W, the source, the range, then the destination', () => {
    const { host, ioas } = twoAreas();
    expectRefused(host, () => ioas.copy({ srcIova: BASE, length: P, flags: 1 << 8 }), 'EOPNOTSUPP');
    expectRefused(host, () => ioas.copy({ srcIova: 2n ** 64n - 1n, length: P, flags: 0 }), 'EOVERFLOW');
    expectRefused(host, () => ioas.copy({ srcIova: BASE, length: P, flags: 0 }), 'EINVAL');
    expectRefused(host, () => ioas.copy({ srcIova: BASE, length: 0, flags: R }), 'EINVAL');
    expectRefused(host, () => ioas.copy({ srcIova: 2n ** 64n - 2n * BigInt(P), length: 4 * P, flags: R }), 'EOVERFLOW');
    expectRefused(host, () => ioas.copy({ srcIova: BASE + 16 * P, length: P, flags: R }), 'ENOENT');
    // The destination: an existing area at the fixed IOVA, an unaligned sub-page start.
    expectRefused(
      host,
      () => ioas.copy({ srcIova: BASE, length: P, iova: BASE + P, flags: R | IOMMU_IOAS_MAP_FIXED_IOVA }),
      'EEXIST',
    );
    expectRefused(host, () => ioas.copy({ srcIova: BASE + 511, length: P, flags: R }), 'EINVAL');
  });

  it('WRITEABLE over pages mapped read-only is EPERM (iopt_insert_area)', () => {
    const { host, memfd, ioas } = memfdWorld();
    ioas.mapFile({ fd: memfd, start: 0, length: P, iova: BASE, flags: R | IOMMU_IOAS_MAP_FIXED_IOVA });
    expectRefused(host, () => ioas.copy({ srcIova: BASE, length: P, flags: RW }), 'EPERM');
    expect(typeof ioas.copy({ srcIova: BASE, length: P, flags: R })).toBe('number');
  });

  it('copy_sweep, page-granular: one page at each offset copies inside the area and is ENOENT outside it', () => {
    const { host, memfd, ioas } = memfdWorld();
    ioas.mapFile({ fd: memfd, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    const dst = ioas.copy({ srcIova: BASE, length: P, flags: RW }); // a second IOAS area in the same IOAS
    ioas.unmap({ iova: dst, length: P });
    for (let iova = BASE - P; iova <= BASE + 4 * P; iova += P) {
      if (iova < BASE || iova + P - 1 > BASE + 4 * P - 1)
        expectRefused(host, () => ioas.copy({ srcIova: iova, length: P, flags: RW }), 'ENOENT');
      else ioas.unmap({ iova: ioas.copy({ srcIova: iova, length: P, flags: RW }), length: P });
    }
  });
});

describe('a new area over filled pages takes its frames from the storage domain (pages.c pfn_reader_fill_span)', () => {
  it('a COPY after munmap of the source user range succeeds and reaches the pinned pages; without a domain it is EFAULT', () => {
    const { host, memfd, ioas } = memfdWorld();
    const mapping = memfd.mmap({ length: 2 * P, shared: true });
    mapping.write(0, bytes(0x5a));
    const iova = ioas.map({ mapping, offset: 0, length: 2 * P, flags: RW });
    const dev = ioas.attachDevice();
    mapping.munmap();
    const copy = ioas.copy({ srcIova: iova, length: 2 * P, flags: RW });
    const read = dev.dmaRead(copy, 16);
    expect(read.ok && [...read.data!]).toEqual([...bytes(0x5a)]);
    expect(host.checkInvariants()).toEqual([]);
    // No domain holds the pages: the copy's fill has to GUP the unmapped range.
    const { memfd: memfd2, ioas: bare } = memfdWorld();
    const gone = memfd2.mmap({ length: P, shared: true });
    const at = bare.map({ mapping: gone, offset: 0, length: P, flags: RW });
    gone.munmap();
    bare.copy({ srcIova: at, length: P, flags: RW });
    expect(() => bare.attachDevice()).toThrow(expect.objectContaining({ errno: 'EFAULT' }));
  });

  it('a COPY of a memfd area whose page was punched under the pin reaches the old, pinned page, as the original does', () => {
    const { host, memfd, ioas } = memfdWorld();
    memfd.pwrite(bytes(0x11), 0);
    const iova = ioas.mapFile({ fd: memfd, start: 0, length: P, flags: RW });
    const dev = ioas.attachDevice();
    memfd.fallocate(PUNCH, 0, P);
    memfd.pwrite(bytes(0x22), 0);
    const copy = ioas.copy({ srcIova: iova, length: P, flags: RW });
    const original = dev.dmaRead(iova, 16);
    const copied = dev.dmaRead(copy, 16);
    expect(original.ok && [...original.data!]).toEqual([...bytes(0x11)]);
    expect(copied.ok && [...copied.data!]).toEqual([...bytes(0x11)]);
    expect(host.checkInvariants()).toEqual([]);
  });
});

describe('host.snapshot() shows memfd pins, the pages object of each area and file references', () => {
  type Snap = {
    memfdInodes: Array<{ ino: number; pins: Array<[number, number, string, unknown]> }>;
    ioases: Array<{ areas: Array<{ pagesId: string }> }>;
    pagesObjects: Array<{ label: string; fileRefs: number | null; areas: string[] }>;
    fileRefs: Array<[number, number]>;
  };
  it('a pin, a shared pages object and a file reference each change the snapshot, so a leak would fail expectRefused', () => {
    const { host, memfd, ioas } = memfdWorld();
    const before = host.snapshot() as Snap;
    expect(before.memfdInodes).toEqual([{ ino: memfd.inode.ino, pins: [] }]);
    const refsOfMemfd = (snap: Snap) => snap.fileRefs.find(([fd]) => fd === memfd.fd)![1];
    expect(refsOfMemfd(before)).toBe(1);
    const iova = ioas.mapFile({ fd: memfd, start: 0, length: 2 * P, flags: RW });
    ioas.copy({ srcIova: iova, length: P, flags: RW });
    ioas.attachDevice();
    const after = host.snapshot() as Snap;
    expect(after.ioases[0]!.areas.map((a) => a.pagesId)).toEqual([
      'iopt_pages@ioas:1/area:1',
      'iopt_pages@ioas:1/area:1',
    ]);
    expect(after.pagesObjects.map((p) => [p.label, p.fileRefs, [...p.areas].sort()])).toEqual([
      ['iopt_pages@ioas:1/area:1', 2, ['ioas:1/area:1', 'ioas:1/area:2']],
    ]);
    // The fd and the pages object each hold the memfd (iopt_alloc_file_pages: get_file).
    expect(refsOfMemfd(after)).toBe(2);
    expect(
      after.memfdInodes[0]!.pins.map(([start, end, holder]) => [start, end, holder]).sort((a, b) =>
        String(a[2]).localeCompare(String(b[2])),
      ),
    ).toEqual([
      [0, 2, 'ioas:1/area:1'],
      [0, 1, 'ioas:1/area:2'],
    ]);
    // A failed call leaves all of it as it was (expectRefused compares whole snapshots).
    expectRefused(host, () => ioas.copy({ srcIova: iova, length: 4 * P, flags: RW }), 'ENOENT');
    ioas.unmapAll();
    expect((host.snapshot() as Snap).memfdInodes).toEqual(before.memfdInodes);
    expect((host.snapshot() as Snap).fileRefs).toEqual(before.fileRefs);
  });
});

describe('a private mapping: the GUP pin keeps its COW copies alive after munmap (I1 covers the area)', () => {
  it('DMA still reaches the copy after munmap; the copy is freed when the area is unmapped; no stale IOPTE', () => {
    const { host, memfd, ioas } = memfdWorld();
    memfd.pwrite(bytes(0x01), 0);
    const mapping = memfd.mmap({ length: P, shared: false });
    mapping.write(0, bytes(0x7c)); // a COW copy; the file keeps 0x01
    const iova = ioas.map({ mapping, offset: 0, length: P, flags: RW });
    const dev = ioas.attachDevice();
    const live = (host.snapshot() as { liveFrames: number }).liveFrames;
    mapping.munmap();
    const read = dev.dmaRead(iova, 16);
    expect(read.ok && [...read.data!]).toEqual([...bytes(0x7c)]);
    expect((host.snapshot() as { liveFrames: number }).liveFrames).toBe(live);
    expect(host.checkInvariants()).toEqual([]);
    ioas.unmap({ iova, length: P });
    expect((host.snapshot() as { liveFrames: number }).liveFrames).toBe(live - 1);
    expect(host.checkInvariants()).toEqual([]);
  });
});

describe('the VFIO-compatible unmap cuts areas (vfio_compat.c iommufd_vfio_unmap_dma -> iopt_cut_iova -> iopt_area_split)', () => {
  it('with large pages disabled, unmapping the middle of an area leaves two areas over the same pages, IOPTEs untouched', () => {
    const { host, memfd, ioas } = memfdWorld();
    memfd.pwrite(bytes(0x33), 3 * P);
    ioas.disableLargePages();
    ioas.mapFile({ fd: memfd, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    const dev = ioas.attachDevice();
    const pages = ioas.areaList()[0]!.pages;
    expect(ioas.vfioUnmapDma({ iova: BASE + P, length: 2 * P })).toBe(2 * P);
    expect(ioas.areaList().map((a) => [a.iova - BASE, a.length, a.first, a.pages === pages, a.iopteSize])).toEqual([
      [0, P, 0, true, P],
      [3 * P, P, 3, true, P],
    ]);
    const read = dev.dmaRead(BASE + 3 * P, 16);
    expect(read.ok && [...read.data!]).toEqual([...bytes(0x33)]);
    expect(dev.dmaRead(BASE + P, 16)).toMatchObject({ ok: false, fault: 'iommu-fault' });
    // Each half keeps its slice pinned; the middle is unpinned.
    expect(
      pinsOf(memfd)
        .map(([start, end]) => [start, end])
        .sort((a, b) => Number(a[0]) - Number(b[0])),
    ).toEqual([
      [0, 1],
      [3, 4],
    ]);
    expect(host.checkInvariants()).toEqual([]);
  });

  it('without the cut (large pages on) the same unmap is ENOENT, as IOMMU_IOAS_UNMAP always is; an empty range succeeds with 0', () => {
    const { host, memfd, ioas } = memfdWorld();
    ioas.mapFile({ fd: memfd, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    expectRefused(host, () => ioas.vfioUnmapDma({ iova: BASE + P, length: 2 * P }), 'ENOENT');
    expectRefused(host, () => ioas.unmap({ iova: BASE + P, length: 2 * P }), 'ENOENT');
    expect(ioas.vfioUnmapDma({ iova: BASE + 16 * P, length: P })).toBe(0);
  });

  it('a range past ULONG_MAX cuts at its wrapped last byte (unsigned long in iommufd_vfio_unmap_dma) before EOVERFLOW', () => {
    const { host, memfd, ioas } = memfdWorld();
    ioas.disableLargePages();
    ioas.mapFile({ fd: memfd, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    // iova + size - 1 wraps to BASE + P - 1 and iova - 1 is BASE + 2P - 1: both cut, then iopt_unmap_iova overflows.
    const iova = BigInt(BASE + 2 * P);
    const length = 2n ** 64n - BigInt(P);
    expect(() => ioas.vfioUnmapDma({ iova, length })).toThrow(expect.objectContaining({ errno: 'EOVERFLOW' }));
    expect(ioas.areaList().map((a) => [a.iova - BASE, a.length])).toEqual([
      [0, P],
      [P, P],
      [2 * P, 2 * P],
    ]);
    expect(host.checkInvariants()).toEqual([]);
  });

  it('pages registered with guest_memfd are not cut: EOPNOTSUPP and nothing changed, as iopt_area_split refuses dma-buf pages', () => {
    const { host, gmem, ioas } = gmemWorld();
    ioas.disableLargePages();
    ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    ioas.attachDevice();
    expectRefused(host, () => ioas.vfioUnmapDma({ iova: BASE + P, length: 2 * P }), 'EOPNOTSUPP');
    expect(ioas.areaList()).toHaveLength(1);
    // A whole-area unmap cuts nothing (cuts at an area's edges are no-ops) and still works.
    expect(ioas.vfioUnmapDma({ iova: BASE, length: 4 * P })).toBe(4 * P);
  });

  it("in 'vmm-driven' (the RFC as posted) guest_memfd pages are not registered and are cut as any file's", () => {
    const { gmem, ioas } = gmemWorld('vmm-driven');
    ioas.disableLargePages();
    ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    expect(ioas.vfioUnmapDma({ iova: BASE + P, length: 2 * P })).toBe(2 * P);
    expect(ioas.areaList().map((a) => [a.iova - BASE, a.length])).toEqual([
      [0, P],
      [3 * P, P],
    ]);
  });

  it('IOMMU_OPTION_HUGE_PAGES = 0 with a domain and areas is EINVAL (iopt_disable_large_pages)', () => {
    const { host, memfd, ioas } = memfdWorld();
    ioas.mapFile({ fd: memfd, start: 0, length: P, flags: RW });
    ioas.attachDevice();
    expectRefused(host, () => ioas.disableLargePages(), 'EINVAL');
  });
});

describe('the registry registers the pages object, so a COPY of a guest_memfd area is revoked with it (iopt_revoke_notify)', () => {
  it('truncating a page of the original revokes every area over the pages, the copy in another IOAS included', () => {
    const { host, gmem, iommufd, ioas } = gmemWorld();
    ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    const other = iommufd.createIoas();
    // The copy maps only pages 2 and 3; the punch hits page 0.
    const copyIova = other.copy({ src: ioas, srcIova: BASE + 2 * P, length: 2 * P, flags: RW });
    const dev = ioas.attachDevice();
    const otherDev = other.attachDevice();
    expect(otherDev.dmaRead(copyIova, 16).ok).toBe(true);
    // One consumer for the pages, the original's range; none for the copy.
    expect(
      gmem.inode.registry
        .all()
        .filter((c) => c.kind.startsWith('iommufd'))
        .map((c) => [c.kind, c.first, c.end]),
    ).toEqual([['iommufd-pages', 0, 4]]);
    gmem.fallocate(PUNCH, 0, P);
    expect(otherDev.dmaRead(copyIova, 16)).toMatchObject({
      ok: false,
      fault: 'iommu-fault',
      mechanism: 'IO page fault: IOPTE revoked by guest_memfd',
    });
    expect(dev.dmaRead(BASE + 3 * P, 16)).toMatchObject({
      ok: false,
      mechanism: 'IO page fault: IOPTE revoked by guest_memfd',
    });
    expect(host.checkInvariants()).toEqual([]);
    // A copy made after the revoke maps nothing either (iopt_area_fill_domain returns early for revoked pages).
    const late = other.copy({ src: ioas, srcIova: BASE, length: P, flags: R });
    expect(otherDev.dmaRead(late, 16)).toMatchObject({
      ok: false,
      mechanism: 'IO page fault: IOPTE revoked by guest_memfd',
    });
  });

  it("in 'vmm-driven' (the RFC as posted) nothing registers, and the copy's IOPTE is left stale", () => {
    const { host, gmem, iommufd, ioas } = gmemWorld('vmm-driven');
    ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, iova: BASE, flags: FIXED });
    const other = iommufd.createIoas();
    other.copy({ src: ioas, srcIova: BASE + 2 * P, length: 2 * P, iova: BASE, flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA });
    other.attachDevice();
    expect(gmem.inode.registry.has('iommufd-pages')).toBe(false);
    gmem.fallocate(PUNCH, 2 * P, P);
    expect(iopteViolations(host).map((v) => v.owner)).toEqual(['ioas:2/area:1']);
  });
});

describe('pinning is lazy: MAP_FILE takes a file reference, memfd_pin_folios refuses a file at attach (iopt_alloc_file_pages)', () => {
  it('a file that is neither memfd nor guest_memfd maps without a domain; the attach is EINVAL and changes nothing', () => {
    const { host, ioas } = memfdWorld();
    const kvmLike = host.openIommufd();
    const iova = ioas.mapFile({ fd: kvmLike.fd, start: 0, length: P, flags: RW });
    expectRefused(host, () => ioas.attachDevice(), 'EINVAL');
    // The area holds the file: closing the fd does not release it until the unmap.
    ioas.unmap({ iova, length: P });
    expect(ioas.attachDevice().isAttached).toBe(true);
  });

  it('with a domain attached the same MAP_FILE is EINVAL at once (iopt_fill_domains_pages)', () => {
    const { host, ioas } = memfdWorld();
    const stranger = host.openIommufd();
    ioas.attachDevice();
    expectRefused(host, () => ioas.mapFile({ fd: stranger.fd, start: 0, length: P, flags: RW }), 'EINVAL');
  });
});

describe('a conversion asks each area over the pages for its own answer, and each area does what it answered', () => {
  it('the backend revokes the original and tolerates the copy: only the original loses its IOPTE over the converted page', () => {
    const original = BASE;
    const backend: ArchBackend = {
      ...swProtected,
      id: 'per-area',
      conversionPolicy: (context) => (context.area.iova === original ? 'revoke' : 'tolerate'),
    };
    const { gmem, ioas } = createScenario(backend, {
      size: 4 * P,
      populate: false,
      map: { start: 0, length: 2 * P, iova: original },
      attach: false,
    });
    const copy = ioas.copy({ srcIova: original, length: 2 * P, iova: BASE + 16 * P, flags: FIXED });
    const dev = ioas.attachDevice();
    gmem.setMemoryAttributes2({ offset: P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(dev.dmaRead(original + P, 1)).toMatchObject({ ok: false, fault: 'iommu-fault' });
    expect(dev.dmaRead(original, 1).ok).toBe(true);
    expect(dev.dmaRead(copy + P, 1).ok).toBe(true);
  });

  it('one refusing area refuses the conversion for the whole pages object, and nothing changes', () => {
    const backend: ArchBackend = {
      ...swProtected,
      id: 'copy-refuses',
      conversionPolicy: (context) => (context.area.iova === BASE ? 'revoke' : 'refuse'),
    };
    const { host, gmem, ioas } = createScenario(backend, {
      size: 4 * P,
      populate: false,
      map: { start: 0, length: 2 * P, iova: BASE },
      attach: false,
    });
    ioas.copy({ srcIova: BASE + P, length: P, iova: BASE + 16 * P, flags: FIXED });
    ioas.attachDevice();
    const error = expectRefused(
      host,
      () => gmem.setMemoryAttributes2({ offset: P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }),
      'EAGAIN',
    );
    expect(error.errorOffset).toBe(P);
  });
});

describe('host.snapshot() keeps the pages objects of two iommufds apart', () => {
  it('two pages objects with one label (IOAS ids are per iommufd) are two entries, each with its own fields', () => {
    // IOAS and area ids name objects of one iommufd (iommufd_get_ioas), so two iommufds each have an
    // 'iopt_pages@ioas:1/area:1'. The snapshot must still show each: a state where only the second one is revoked
    // differs from one where neither is.
    const host = createHost({ backend: swProtected, contract: 'gmem-registry' });
    const vm = host.createVm({ type: 'coco', vcpus: 1 });
    const files = [0, 1].map(() => {
      const gmem = vm.createGuestMemfd({ size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
      gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, 2 * P);
      return gmem;
    });
    const ioases = files.map((gmem) => {
      const ioas = host.openIommufd().createIoas();
      ioas.mapFile({ fd: gmem, start: 0, length: 2 * P, flags: RW });
      return ioas;
    });
    type Pages = Array<{ label: string; revoked: boolean; areas: string[] }>;
    const pagesOf = () => (host.snapshot() as { pagesObjects: Pages }).pagesObjects;
    expect(pagesOf().map((p) => [p.label, p.revoked, p.areas])).toEqual([
      ['iopt_pages@ioas:1/area:1', false, ['ioas:1/area:1']],
      ['iopt_pages@ioas:1/area:1', false, ['ioas:1/area:1']],
    ]);
    const before = host.snapshot();
    // Truncating the second file revokes the second iommufd's pages only (iopt_revoke_notify).
    files[1]!.fallocate(PUNCH, 0, P);
    expect(pagesOf().map((p) => p.revoked)).toEqual([false, true]);
    expect(host.snapshot()).not.toEqual(before);
    expect(ioases.map((ioas) => ioas.id)).toEqual([1, 1]);
    expect(host.checkInvariants()).toEqual([]);
  });
});
