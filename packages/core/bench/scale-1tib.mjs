#!/usr/bin/env node --expose-gc
// Scale check (issue: "a 1 TiB guest_memfd bound, mapped and converted in 10,000 places stays under 200 MB
// resident"). Creates a 1 TiB guest_memfd on a private-memory VM, binds it to a memslot, mmaps it, maps it for
// DMA with a device attached (which allocates all 2^28 pages), converts 10,000 2 MiB ranges to private and
// back in half of them, then reports resident memory and the number of runs held. Exits 1 above the target.
import {
  createHost,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
} from '@gmemlab/core';

const TiB = 2 ** 40;
const MiB = 2 ** 20;
const CONVERSIONS = 10_000;
const LIMIT_MB = 200;

const gc = globalThis.gc ?? (() => {});
const rss = () => {
  gc();
  return process.memoryUsage().rss / MiB;
};

const baseline = rss();
const started = performance.now();
const host = createHost();
const vm = host.createVm({ type: 'coco' });
const gmem = vm.createGuestMemfd({ size: TiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: TiB, memorySize: TiB, guestMemfd: gmem, guestMemfdOffset: 0 });
const mapping = gmem.mmap({ length: TiB, shared: true });
const ioas = host.openIommufd().createIoas();
const iova = ioas.mapFile({ fd: gmem, start: 0, length: TiB, flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE });
const device = ioas.attachDevice('nic');
const setup = performance.now();

const stride = Math.floor(TiB / CONVERSIONS / (2 * MiB)) * 2 * MiB;
const convertStart = performance.now();
for (let i = 0; i < CONVERSIONS; i++) {
  gmem.setMemoryAttributes2({ offset: i * stride, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
}
for (let i = 0; i < CONVERSIONS; i += 2) {
  gmem.setMemoryAttributes2({ offset: i * stride, size: 2 * MiB, attributes: 0 });
}
const convertMs = performance.now() - convertStart;
// Touch a few pages from every side so that stage-2, host PTEs and IOPTEs are all in use.
for (let i = 1; i < CONVERSIONS; i += 97) {
  vm.guestWrite(TiB + i * stride, new Uint8Array([1]));
  mapping.write(i * stride + 2 * MiB, new Uint8Array([2]));
  device.dmaRead(iova + i * stride + 4 * MiB, 1);
}
const violations = host.checkInvariants();
const resident = rss();
const snapshot = host.snapshot();
const attributeRuns = snapshot.inodes[0].attributes.length;
const pageRuns = snapshot.inodes[0].pages.length;

console.log(`1 TiB guest_memfd: ${host.allocatedPages.toLocaleString()} pages allocated in ${pageRuns} runs; ${attributeRuns} attribute runs after ${(1.5 * CONVERSIONS).toLocaleString()} conversions`);
console.log(`setup ${(setup - started).toFixed(0)} ms; conversions ${convertMs.toFixed(0)} ms (${Math.round((1.5 * CONVERSIONS) / (convertMs / 1000)).toLocaleString()} per second); invariants broken: ${violations.length}`);
console.log(`resident: ${resident.toFixed(1)} MB (baseline ${baseline.toFixed(1)} MB before the model), target < ${LIMIT_MB} MB`);
if (resident >= LIMIT_MB || violations.length > 0) process.exit(1);
