#!/usr/bin/env node
// Converts and truncates a guest_memfd while a device has it mapped through iommufd, under both designs argued
// in "[RFC PATCH kernel] iommufd: Allow mapping from KVM's guest_memfd", and prints what happened.
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GmemError,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '@gmemlab/core';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const GPA = 4 * 1024 * MiB;

function describeAccess(result) {
  if (result.ok) return 'ok';
  return `${result.fault} at 0x${result.address.toString(16)} after ${result.done} bytes (${result.mechanism})`;
}

function describeEvent(event) {
  switch (event.type) {
    case 'invalidate-begin':
    case 'invalidate-end':
      return `${event.type} ${event.cause} [${event.offset}, +${event.length})`;
    case 'zap': {
      // Zap ranges are in the owner's own units: gfns for stage-2, pages of the mapping or area otherwise.
      const unit = event.target === 'stage2' ? 'GPA' : event.target === 'iopte' ? 'area offset' : 'mapping offset';
      const range = `[0x${(event.start * PAGE_SIZE).toString(16)}, 0x${(event.end * PAGE_SIZE).toString(16)})`;
      return `  zap ${event.target} of ${event.owner}, ${unit} ${range} (${event.cause})`;
    }
    case 'revoke':
      return `  revoke ${`ioas:${event.ioas}/area:${event.area}`} iova 0x${event.iova.toString(16)} +${event.length} (${event.cause})`;
    default:
      return undefined;
  }
}

function run(contract) {
  console.log(`\n=== contract '${contract}' (backend: neutral software-protected VM) ===`);
  const host = createHost({ contract });
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({ slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: GPA, memorySize: SIZE, guestMemfd: gmem, guestMemfdOffset: 0 });
  const ioas = host.openIommufd().createIoas();
  const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE });
  const nic = ioas.attachDevice('nic');
  console.log(`guest_memfd fd ${gmem.fd}: ${SIZE / MiB} MiB bound at GPA 0x${GPA.toString(16)}, mapped for DMA at IOVA 0x${iova.toString(16)}`);
  console.log(`device writes 2 pages at IOVA+0: ${describeAccess(nic.dmaWrite(iova, new Uint8Array(2 * PAGE_SIZE).fill(0x5a)))}`);
  const guest = vm.guestRead(GPA, 4);
  console.log(`guest reads GPA+0: ${guest.ok ? `[${[...guest.data].map((b) => b.toString(16)).join(' ')}]` : describeAccess(guest)}`);

  const recording = host.events.record();
  console.log('\n-- convert the first 2 MiB to private (KVM_SET_MEMORY_ATTRIBUTES2)');
  gmem.setMemoryAttributes2({ offset: 0, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  console.log(`device reads IOVA+0 (now private): ${describeAccess(nic.dmaRead(iova, 4))}`);

  console.log('\n-- pin a shared page (long-term GUP) and try to convert it');
  const pin = gmem.pin(4 * MiB, PAGE_SIZE);
  try {
    gmem.setMemoryAttributes2({ offset: 2 * MiB, size: 4 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  } catch (error) {
    if (!GmemError.isInstance(error)) throw error;
    console.log(`refused: ${error.errno}, errorOffset ${error.errorOffset} (${error.message})`);
  }
  pin.unpin();

  console.log('\n-- punch a hole over [8 MiB, 10 MiB) while the device still maps it');
  gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 8 * MiB, 2 * MiB);
  console.log(`device writes IOVA+8 MiB: ${describeAccess(nic.dmaWrite(iova + 8 * MiB, new Uint8Array(16)))}`);
  recording.stop();

  console.log('\nwhat the kernel did:');
  for (const event of recording.events) {
    const line = describeEvent(event);
    if (line) console.log(`  ${line}`);
  }
  const violations = host.checkInvariants();
  console.log(violations.length === 0 ? '\ninvariants: all hold' : `\ninvariants broken:\n${violations.map((v) => `  ${v.kind}: ${v.message}`).join('\n')}`);
}

run('gmem-registry');
run('vmm-driven');
