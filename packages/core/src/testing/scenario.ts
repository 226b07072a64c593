/**
 * The scenario most backend tests start from: a VM with private memory, a populated guest_memfd (mappable,
 * shared unless asked otherwise) bound at GPA 0, and an iommufd area over it with a device attached. Each part
 * can be moved or left out by an option, so that a test builds by hand only what it is about.
 */
import type { ArchBackend, ConversionTarget, DmaAreaInfo } from '../arch/backend.js';
import {
  FALLOC_FL_KEEP_SIZE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import type { Contract } from '../contract.js';
import { createHost, type HostOptions } from '../host.js';

export interface ScenarioOptions {
  contract?: Contract;
  /** Further createHost options (the conversion switches, `hugeIopteCut`, ...); none by default. */
  host?: Omit<HostOptions, 'backend' | 'contract'>;
  /** Bytes of guest_memfd; 16 pages by default (small files keep every area at 4K IOPTEs). */
  size?: number;
  /** false: the file starts private (no GUEST_MEMFD_FLAG_INIT_SHARED). */
  initShared?: boolean;
  vcpus?: number;
  /** The GPA at which memslot 0 binds the file's first page; 0 by default. */
  guestPhysAddr?: number;
  /** false: no fallocate of the whole file, so a page stays a hole until something touches it; true by default. */
  populate?: boolean;
  /**
   * The file range IOMMU_IOAS_MAP_FILE maps, at `iova` with IOMMU_IOAS_MAP_FIXED_IOVA if given (else where the
   * IOAS allocates it); the whole file by default; false maps nothing.
   */
  map?: { start: number; length: number; iova?: number } | false;
  /** Attach a device to the IOAS (which fills the IOPTEs); true by default. */
  attach?: boolean;
  /**
   * File ranges converted to private before anything is mapped (so no policy can refuse them), each optionally
   * faulted in by the guest as private (making it hardware-private).
   */
  private?: ReadonlyArray<{ offset: number; length: number; faulted?: boolean }>;
}

export function createScenario(backend: ArchBackend, options: ScenarioOptions = {}) {
  const size = options.size ?? 16 * PAGE_SIZE;
  const gpa = options.guestPhysAddr ?? 0;
  const host = createHost({ ...options.host, backend, contract: options.contract ?? 'gmem-registry' });
  const baseline = host.allocatedPages;
  const vm = host.createVm({ type: 'coco', vcpus: options.vcpus ?? 2 });
  const flags = GUEST_MEMFD_FLAG_MMAP | (options.initShared === false ? 0 : GUEST_MEMFD_FLAG_INIT_SHARED);
  const gmem = vm.createGuestMemfd({ size, flags });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: gpa,
    memorySize: size,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  if (options.populate !== false) gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, size);
  /** The guest faults [offset, offset + length) in as private, page by page (at GPA guestPhysAddr + offset). */
  const faultPrivate = (offset: number, length: number) => {
    for (let at = offset; at < offset + length; at += PAGE_SIZE) vm.guestRead(gpa + at, 1, { intent: 'private' });
  };
  for (const range of options.private ?? []) {
    gmem.setMemoryAttributes2({ offset: range.offset, size: range.length, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    if (range.faulted) faultPrivate(range.offset, range.length);
  }
  const iommufd = host.openIommufd();
  const ioas = iommufd.createIoas();
  const range = options.map === false ? undefined : (options.map ?? { start: 0, length: size });
  const rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
  const placement =
    range?.iova === undefined ? { flags: rw } : { iova: range.iova, flags: rw | IOMMU_IOAS_MAP_FIXED_IOVA };
  const iova = range ? ioas.mapFile({ fd: gmem, start: range.start, length: range.length, ...placement }) : 0;
  const device = options.attach === false ? undefined : ioas.attachDevice('dev0');
  /** The area as a backend's hooks are told of it (its IOPTE size is the host's choice: huge where aligned). */
  const area: Readonly<DmaAreaInfo> | undefined = range ? ioas.listAreas()[0] : undefined;
  /** KVM_SET_MEMORY_ATTRIBUTES2 of [offset, offset + length). */
  const convert = (offset: number, length: number, to: ConversionTarget) =>
    gmem.setMemoryAttributes2({
      offset,
      size: length,
      attributes: to === 'private' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
    });
  return { host, baseline, vm, gmem, iommufd, ioas, iova, device, area, convert, faultPrivate };
}
