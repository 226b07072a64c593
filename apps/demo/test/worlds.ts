/**
 * Step lists the runner and verdict tests start from, written once: a coco VM with a 2 MiB guest_memfd (mmap-able,
 * shared at creation) in memslot 0 at 1 GiB, an iommufd IOAS mapping the whole file by MAP_FILE at `iova`, and a
 * device attached.
 */
import { parseScenario, type Scenario } from '../src/scenario/load.js';

export const DMA_SETUP: ReadonlyArray<Record<string, unknown>> = [
  { call: 'host.createVm', as: 'vm' },
  {
    call: 'vm.createGuestMemfd',
    size: '2MiB',
    flags: ['GUEST_MEMFD_FLAG_MMAP', 'GUEST_MEMFD_FLAG_INIT_SHARED'],
    as: 'gmem',
  },
  {
    call: 'vm.setUserMemoryRegion2',
    slot: 0,
    flags: 'KVM_MEM_GUEST_MEMFD',
    guestPhysAddr: '1GiB',
    memorySize: '2MiB',
    guestMemfd: 'gmem',
    guestMemfdOffset: 0,
  },
  { call: 'host.openIommufd', as: 'iommufd' },
  { call: 'iommufd.createIoas', as: 'ioas' },
  {
    call: 'ioas.mapFile',
    fd: 'gmem',
    start: 0,
    length: '2MiB',
    flags: 'IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE',
    as: 'iova',
  },
  { call: 'ioas.attachDevice', as: 'device' },
];

/** A scenario of these steps, with a minimal header. */
export const testScenario = (
  steps: readonly unknown[],
  extra: Record<string, unknown> = {},
  file = 'test.yaml',
): Scenario => parseScenario({ title: 't', situation: 's', source: 's', ...extra, steps }, file);
