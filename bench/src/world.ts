/**
 * The guest every conversion benchmark uses: a 'coco' VM whose guest_memfd (INIT_SHARED, MMAP) is bound by
 * `slots` memslots of equal size and mapped for DMA by `areas` IOMMU_IOAS_MAP_FILE areas of equal size that tile
 * it, with a device attached (so every area has IOPTEs), in 'gmem-registry' mode (or `contract`).
 *
 * The steady state of random 2 MiB conversions alternating to-private/to-shared is each 2 MiB block private or
 * shared with probability 1/2, independently (a block's state is that of the last conversion that hit it). The
 * world starts there: a seeded half of the blocks is converted to private, in offset order, before the areas
 * are mapped. The IOAS maps with 4K IOPTEs (below).
 */
import {
  createHost,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  PUD_SIZE,
  type ArchBackend,
  type Device,
  type GuestMemfd,
  type Host,
  type Ioas,
  type Vm,
} from '@gmemlab/core';
import { MiB } from './rows.js';
import { seeded } from './rng.js';

export const BLOCK = 2 * MiB;

export interface ConversionWorld {
  host: Host;
  vm: Vm;
  gmem: GuestMemfd;
  ioas: Ioas;
  device: Device;
  /** Byte length of each area; areas tile [0, areas * areaLength) of the file. */
  areaLength: number;
  /** The IOVA of the first area; area i is at iova + i * areaLength. */
  iova: number;
  /** Which 2 MiB blocks the seeding made private. */
  initiallyPrivate: Uint8Array;
}

/** `privateHalf: false` leaves every page shared (the seeded half is for the conversion benchmarks). */
export function conversionWorld(options: {
  size: number;
  slots: number;
  areas: number;
  backend: ArchBackend;
  seed: number;
  privateHalf?: boolean;
  contract?: 'gmem-registry' | 'mirror';
}): ConversionWorld {
  const { size, slots, areas, backend } = options;
  const host = createHost({ backend, contract: options.contract ?? 'gmem-registry' });
  const vm = host.createVm({ type: 'coco', vcpus: 8 });
  const gmem = vm.createGuestMemfd({ size, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  const slotSize = size / slots;
  for (let s = 0; s < slots; s++) {
    vm.setUserMemoryRegion2({
      slot: s,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: s * slotSize,
      memorySize: slotSize,
      guestMemfd: gmem,
      guestMemfdOffset: s * slotSize,
    });
  }
  const blocks = size / BLOCK;
  const initiallyPrivate = new Uint8Array(blocks);
  const next = seeded(options.seed);
  for (let b = 0; b < blocks; b++) {
    if (options.privateHalf !== false && next() < 0.5) {
      initiallyPrivate[b] = 1;
      gmem.setMemoryAttributes2({ offset: b * BLOCK, size: BLOCK, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    }
  }
  const ioas = host.openIommufd().createIoas();
  // IOMMU_OPTION_HUGE_PAGES = 0: 4K IOPTEs, as a VMM that converts 2 MiB blocks inside its areas wants. A 1 GiB
  // IOPTE (a 1-area world whose IOVA and offset are 1 GiB-aligned) would be cut by the first conversion, and the
  // host's default IOMMU driver unmaps a whole huge IOPTE for part of it (HostOptions.hugeIopteCut 'unmap-whole'),
  // so the DMA state would drain. The 10,000-area worlds get 4K IOPTEs either way (their areas are not aligned).
  ioas.disableLargePages();
  const areaLength = Math.floor(size / areas / PAGE_SIZE) * PAGE_SIZE;
  const iova = PUD_SIZE;
  const flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
  for (let a = 0; a < areas; a++)
    ioas.mapFile({ fd: gmem, start: a * areaLength, length: areaLength, iova: iova + a * areaLength, flags });
  const device = ioas.attachDevice('nic');
  return { host, vm, gmem, ioas, device, areaLength, iova, initiallyPrivate };
}
