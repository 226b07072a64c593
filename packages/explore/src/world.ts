/**
 * The small world the explorer searches: one confidential VM with a guest_memfd of `pages` pages bound to a
 * memslot at GPA 0 and mmap-able, one IOAS (a device may attach to it), and a second confidential VM whose
 * guest_memfd of `vm2Pages` pages, private from the start, takes frames from the allocator when its guest touches
 * them, so that frames VM 1 frees are reused by someone else (most recently freed first, as the model's allocator
 * hands them out).
 *
 * The world is built by the same calls, in the same order, as the setup steps of every scenario the explorer
 * writes (`setupSteps`), so a replay with `gmemlab run` meets the same fds, inos, addresses and IOVAs.
 */
import {
  createHost,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  PAGE_SIZE,
  type ArchBackend,
  type Contract,
  type Device,
  type GuestMemfd,
  type Host,
  type HostMapping,
  type Ioas,
  type PendingGuestFault,
  type Pin,
  type Vm,
} from '@gmemlab/core';

/** The size of the world. Every field is small on purpose: the default run must be exhaustive. */
export interface WorldConfig {
  /** Pages of the confidential VM's guest_memfd (INIT_SHARED, MMAP), bound at GPA 0. */
  pages: number;
  /** Pages of the second VM's guest_memfd (private, not mappable): frames it can take from the allocator. */
  vm2Pages: number;
  /**
   * How many IOAS areas may exist at once: one page each (IOMMU_IOAS_MAP_FILE of a page, IOMMU_IOAS_MAP of a
   * page of the mmap), or, in a world of two pages or more, IOMMU_IOAS_MAP_FILE of the whole file.
   */
  maxAreas: number;
}

/**
 * The default world: one page each, one area. Small, and still every actor's every move: the default run over
 * every architecture and contract is exhaustive in seconds. Larger worlds: `--pages`, and random walks.
 */
export const DEFAULT_WORLD: Readonly<WorldConfig> = Object.freeze({ pages: 1, vm2Pages: 1, maxAreas: 1 });

/** Check and complete a partial world configuration; a bad value is a RangeError naming the field. */
export function worldConfig(partial: Partial<WorldConfig> = {}): WorldConfig {
  const config = { ...DEFAULT_WORLD, ...partial };
  const limits: Record<keyof WorldConfig, [number, number]> = { pages: [1, 8], vm2Pages: [0, 4], maxAreas: [0, 4] };
  for (const [key, [min, max]] of Object.entries(limits) as Array<[keyof WorldConfig, [number, number]]>) {
    const value = config[key];
    if (!Number.isInteger(value) || value < min || value > max)
      throw new RangeError(`world.${key} must be an integer in [${min}, ${max}], not ${String(value)}`);
  }
  return config;
}

/** An IOAS area the VMM made, as the VMM knows it (its IOVA and what it asked to map). */
export interface AreaHandle {
  iova: number;
  /** The first page of VM 1's guest_memfd it maps. */
  page: number;
  /** How many pages it maps: 1, or the whole file for `map-file:all` (and its copies). */
  pages: number;
  /** 'file': IOMMU_IOAS_MAP_FILE by fd; 'user': IOMMU_IOAS_MAP of the page in the VMM's mmap. */
  kind: 'file' | 'user';
  /** Per page of the area: whether that page was truncated (punched, or the file released) after the area was made. */
  truncated: boolean[];
  /** For 'user' areas: the mapping whose user address was mapped (it may have been unmapped since). */
  mapping?: HostMapping;
}

/**
 * What the actors hold besides the host: the VMM's handles (the fd, its mmap, its areas, its pins), the device,
 * and the guest's fault between its two steps. The explorer may only pass the kernel what an actor holds.
 */
export interface Handles {
  gmemOpen: boolean;
  /** Whether the guest_memfd file was released (its last fd, mmap and MAP_FILE area gone). */
  released: boolean;
  /** The VMM's mmap of the guest_memfd: none yet (or its mmap failed), live, or unmapped (the VMM keeps the address). */
  mappingState: 'none' | 'live' | 'dead';
  mapping?: HostMapping;
  /** In IOVA order. */
  areas: AreaHandle[];
  device?: Device;
  /** pin_user_pages pins the VMM holds, by page. */
  pins: Array<Pin | undefined>;
  /** A guest fault after its first step (resolve), waiting for its second (install). */
  pending?: { fault: PendingGuestFault; page: number; intent: 'shared' | 'private' };
}

/** A live world: the host and every object the actors hold. */
export interface World {
  config: WorldConfig;
  host: Host;
  vm: Vm;
  gmem: GuestMemfd;
  /** The ino of VM 1's guest_memfd. */
  gmemIno: number;
  vm2: Vm | undefined;
  ioas: Ioas;
  handles: Handles;
}

/** The IOVA of IOVA slot `slot` (1-based): areas are placed automatically from IOVA page 1 upwards. */
export const iovaOf = (slot: number): number => slot * PAGE_SIZE;

/**
 * How many IOVA slots (pages from IOVA 0x1000) an area of the world can reach, so the device has a DMA for each
 * page of every area wherever it was placed. One-page areas take the lowest free IOVA page, so `maxAreas` slots.
 * An area of the whole file is aligned to its length rounded up to a power of two, A pages (the automatic IOVA
 * keeps the source's alignment, `Ioas.placeIova`, as iopt_alloc_iova does), and never at IOVA 0: each of the
 * other `maxAreas - 1` areas (one page, or A pages A-aligned) lies inside one A-aligned block, so the first free
 * block is at most block `maxAreas` and the area ends by page (maxAreas + 1) · A - 1.
 */
export function iovaSlots(config: WorldConfig): number {
  if (config.pages < 2 || config.maxAreas === 0) return config.maxAreas;
  let align = 1;
  while (align < config.pages) align *= 2;
  return (config.maxAreas + 1) * align - 1;
}

/** A scenario step (the demo's format: `call`, arguments, `as`, `on`, `note`, `expect`). */
export type ScenarioStep = Record<string, unknown>;

/** The setup, as scenario steps: what `createWorld` does, call for call. */
export function setupSteps(config: WorldConfig): ScenarioStep[] {
  const steps: ScenarioStep[] = [
    { call: 'host.createVm', type: 'coco', as: 'vm' },
    {
      call: 'vm.createGuestMemfd',
      size: config.pages * PAGE_SIZE,
      flags: ['GUEST_MEMFD_FLAG_MMAP', 'GUEST_MEMFD_FLAG_INIT_SHARED'],
      as: 'gmem',
    },
    {
      call: 'vm.setUserMemoryRegion2',
      slot: 0,
      flags: 'KVM_MEM_GUEST_MEMFD',
      guestPhysAddr: 0,
      memorySize: config.pages * PAGE_SIZE,
      guestMemfd: 'gmem',
      guestMemfdOffset: 0,
    },
  ];
  if (config.vm2Pages > 0) {
    steps.push(
      { call: 'host.createVm', type: 'coco', as: 'vm2', note: 'a second VM, which may receive frames VM 1 frees' },
      { call: 'vm.createGuestMemfd', on: 'vm2', size: config.vm2Pages * PAGE_SIZE, as: 'gmem2' },
      {
        call: 'vm.setUserMemoryRegion2',
        on: 'vm2',
        slot: 0,
        flags: 'KVM_MEM_GUEST_MEMFD',
        guestPhysAddr: 0,
        memorySize: config.vm2Pages * PAGE_SIZE,
        guestMemfd: 'gmem2',
        guestMemfdOffset: 0,
      },
    );
  }
  steps.push({ call: 'host.openIommufd', as: 'iommufd' }, { call: 'iommufd.createIoas', as: 'ioas' });
  return steps;
}

/** Build the world on a fresh host, exactly as `setupSteps` says. */
export function createWorld(config: WorldConfig, backend: ArchBackend, contract: Contract): World {
  const host = createHost({ backend, contract });
  // The search takes a snapshot per transition and never changes one: core's internal switch skips Object.freeze
  // (a fifth of the search's time). Absent from an older core, where nothing is frozen anyway.
  (host as Host & { unfrozenSnapshots?(): void }).unfrozenSnapshots?.();
  const vm = host.createVm({ type: 'coco' });
  const size = config.pages * PAGE_SIZE;
  const gmem = vm.createGuestMemfd({ size, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: 0,
    memorySize: size,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  let vm2: Vm | undefined;
  if (config.vm2Pages > 0) {
    vm2 = host.createVm({ type: 'coco' });
    const size2 = config.vm2Pages * PAGE_SIZE;
    const gmem2 = vm2.createGuestMemfd({ size: size2 });
    vm2.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: size2,
      guestMemfd: gmem2,
      guestMemfdOffset: 0,
    });
  }
  const ioas = host.openIommufd().createIoas();
  return {
    config,
    host,
    vm,
    gmem,
    gmemIno: gmem.stat().ino,
    vm2,
    ioas,
    handles: {
      gmemOpen: true,
      released: false,
      mappingState: 'none',
      areas: [],
      pins: new Array<Pin | undefined>(config.pages).fill(undefined),
    },
  };
}

/**
 * An independent copy of a world in the same state (Host.forkWith): the host and every handle the actors hold,
 * each pointing at the copy's objects. The same as replaying the world's trace from a fresh host, at a fraction of
 * the cost.
 */
export function forkWorld(world: World): World {
  return world.host.forkWith(world).held;
}
