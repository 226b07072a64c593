/**
 * The scenario most backend tests start from: a VM with private memory, a populated guest_memfd (mappable,
 * shared unless asked otherwise) bound at GPA 0, and an iommufd area over it with a device attached.
 */
import type { ArchBackend, ConversionTarget, DmaAreaInfo } from '../arch/backend.js';
import {
  FALLOC_FL_KEEP_SIZE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import type { Contract } from '../contract.js';
import { createHost } from '../host.js';

export interface ScenarioOptions {
  contract?: Contract;
  /** Bytes of guest_memfd; 16 pages by default (small files keep every area at 4K IOPTEs). */
  size?: number;
  /** false: the file starts private (no GUEST_MEMFD_FLAG_INIT_SHARED). */
  initShared?: boolean;
  vcpus?: number;
  /** The file range IOMMU_IOAS_MAP_FILE maps; the whole file by default; false maps nothing. */
  map?: { start: number; length: number } | false;
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
  const host = createHost({ backend, contract: options.contract ?? 'gmem-registry' });
  const baseline = host.allocatedPages;
  const vm = host.createVm({ type: 'coco', vcpus: options.vcpus ?? 2 });
  const flags = GUEST_MEMFD_FLAG_MMAP | (options.initShared === false ? 0 : GUEST_MEMFD_FLAG_INIT_SHARED);
  const gmem = vm.createGuestMemfd({ size, flags });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: size, guestMemfd: gmem, guestMemfdOffset: 0 });
  gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, size);
  for (const range of options.private ?? []) {
    gmem.setMemoryAttributes2({ offset: range.offset, size: range.length, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    if (range.faulted) for (let at = range.offset; at < range.offset + range.length; at += PAGE_SIZE) vm.guestRead(at, 1, { intent: 'private' });
  }
  const iommufd = host.openIommufd();
  const ioas = iommufd.createIoas();
  const range = options.map === false ? undefined : (options.map ?? { start: 0, length: size });
  const iova = range ? ioas.mapFile({ fd: gmem, start: range.start, length: range.length, flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE }) : 0;
  const device = options.attach === false ? undefined : ioas.attachDevice('dev0');
  const area: DmaAreaInfo | undefined = range
    ? { ioas: ioas.id, area: 1, iova, length: range.length, fileOffset: range.start, iopteSize: PAGE_SIZE, hasIoptes: device !== undefined, source: 'file' }
    : undefined;
  /** KVM_SET_MEMORY_ATTRIBUTES2 of [offset, offset + length). */
  const convert = (offset: number, length: number, to: ConversionTarget) =>
    gmem.setMemoryAttributes2({ offset, size: length, attributes: to === 'private' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0 });
  /** The guest faults [offset, offset + length) in as private, page by page (GPA = file offset here). */
  const faultPrivate = (offset: number, length: number) => {
    for (let at = offset; at < offset + length; at += PAGE_SIZE) vm.guestRead(at, 1, { intent: 'private' });
  };
  return { host, baseline, vm, gmem, iommufd, ioas, iova, device, area, convert, faultPrivate };
}
