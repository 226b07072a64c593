/**
 * Where a guest_memfd page stops being hardware-private on today's path (HostOptions.conversion 'separate',
 * kernel-contract §4.4): a conversion to shared on the VM fd zaps the private stage-2 entry
 * (kvm_vm_set_mem_attributes -> kvm_mmu_unmap_gfn_range, private side) while guest_memfd keeps the folio until the
 * VMM punches it. Each backend says which of the two ends the hardware's ownership (ArchBackend.privateRemovalAt):
 * TDX removes the page from the S-EPT at the zap [X-a]; Arm CCA destroys and undelegates the granule at the
 * conversion's unmap [C-a]; SEV-SNP's RMP entry stays assigned until guest_memfd frees the folio [S-a]; pKVM's
 * donated page returns to the host only by reclaim (model's reading, [P-d]). Measured by running the steps:
 * the page map's hardware runs and the backend's pipeline counters after each call.
 */
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  type ArchBackend,
} from '@gmemlab/core';
import { ARM_CCA_STEPS, armCca } from '@gmemlab/arm-cca';
import { PKVM_STEPS, pkvm } from '@gmemlab/pkvm';
import { SEV_SNP_STEPS, sevSnp } from '@gmemlab/sev-snp';
import { TDX_STEPS, tdx } from '@gmemlab/tdx';
import { describe, expect, it } from 'vitest';

const P = PAGE_SIZE;
const GPA = 4 * 2 ** 30;

/** Two private pages faulted in, page 0 converted to shared, then punched; the state after each step. */
function run(backend: ArchBackend, removal: string) {
  const host = createHost({ backend, conversion: 'separate' });
  const vm = host.createVm({ type: 'coco', vcpus: 2 });
  const gmem = vm.createGuestMemfd({ size: 4 * P });
  const shared = host.memfdCreate(4 * P).mmap({ length: 4 * P, shared: true });
  vm.setUserMemoryRegion2({
    slot: 1,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: GPA,
    memorySize: 4 * P,
    userspaceAddr: shared.address,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  vm.setMemoryAttributes({ address: GPA, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.guestWrite(GPA, new Uint8Array(8).fill(0x11));
  vm.guestWrite(GPA + P, new Uint8Array(8).fill(0x22));
  const snap = () => ({
    hardware: host.pageMaps()[0]!.hardware.map(([s, e]) => [s, e]),
    removed: host.pipelineCounters()[removal] ?? 0,
  });
  const faulted = snap();
  vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
  const converted = snap();
  gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
  const punched = snap();
  return { faulted, converted, punched, host };
}

const CASES: ReadonlyArray<[id: string, backend: ArchBackend, removal: string, at: 'zap' | 'free']> = [
  ['tdx', tdx, TDX_STEPS.remove, 'zap'],
  ['tdx (no erratum)', tdx({ pwMceErratum: false }), TDX_STEPS.remove, 'zap'],
  ['arm-cca', armCca, ARM_CCA_STEPS.dataDestroy, 'zap'],
  ['sev-snp', sevSnp, SEV_SNP_STEPS.rmpupdate4K, 'free'],
  ['pkvm', pkvm, PKVM_STEPS.reclaim, 'free'],
  ['pkvm:upstream', pkvm(pkvm.variants.upstream!), PKVM_STEPS.reclaim, 'free'],
];

describe("today's path: the hardware-private state ends where the architecture's source says (kernel-contract §4.4)", () => {
  for (const [id, backend, removal, at] of CASES) {
    it(`${id}: page 0 leaves the hardware-private state at the ${at === 'zap' ? "conversion's zap" : "VMM's punch"}`, () => {
      expect(backend.privateRemovalAt).toBe(at);
      const { faulted, converted, punched } = run(backend, removal);
      expect(faulted).toEqual({ hardware: [[0, 2]], removed: 0 });
      if (at === 'zap') {
        // The removal ran once, at KVM_SET_MEMORY_ATTRIBUTES; the punch frees a page the hardware no longer holds.
        expect(converted).toEqual({ hardware: [[1, 2]], removed: 1 });
        expect(punched).toEqual({ hardware: [[1, 2]], removed: 1 });
      } else {
        // The zap dropped only the stage-2 entry: the page is still hardware-private until guest_memfd frees it.
        expect(converted).toEqual({ hardware: [[0, 2]], removed: 0 });
        expect(punched).toEqual({ hardware: [[1, 2]], removed: 1 });
      }
    });
  }

  it('TDX: every removal step (BLOCK, TRACK, IPIs, PAGE.REMOVE, WBINVD, clear) is counted at the conversion, none at the punch', () => {
    const host = createHost({ backend: tdx, conversion: 'separate' });
    const vm = host.createVm({ type: 'coco', vcpus: 3 });
    const gmem = vm.createGuestMemfd({ size: 2 * P });
    const shared = host.memfdCreate(2 * P).mmap({ length: 2 * P, shared: true });
    vm.setUserMemoryRegion2({
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: GPA,
      memorySize: 2 * P,
      userspaceAddr: shared.address,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    vm.setMemoryAttributes({ address: GPA, size: 2 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    vm.guestWrite(GPA, new Uint8Array(8).fill(0x11));
    vm.guestWrite(GPA + P, new Uint8Array(8).fill(0x22));
    const removal = [
      TDX_STEPS.block,
      TDX_STEPS.track,
      TDX_STEPS.ipi,
      TDX_STEPS.remove,
      TDX_STEPS.wbinvd,
      TDX_STEPS.clear,
    ];
    const counts = () => removal.map((step) => host.pipelineCounters()[step] ?? 0);
    vm.setMemoryAttributes({ address: GPA, size: 2 * P, attributes: 0 });
    expect(counts()).toEqual([2, 2, 2 * 3, 2, 2, 2]);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * P);
    expect(counts()).toEqual([2, 2, 2 * 3, 2, 2, 2]);
  });

  it('TDX: a page faulted in as private again after the zap is added to the S-EPT again (PAGE.AUG), and leaves again at the next zap', () => {
    const host = createHost({ backend: tdx, conversion: 'separate' });
    const vm = host.createVm({ type: 'coco', vcpus: 1 });
    const gmem = vm.createGuestMemfd({ size: P });
    const shared = host.memfdCreate(P).mmap({ length: P, shared: true });
    vm.setUserMemoryRegion2({
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: GPA,
      memorySize: P,
      userspaceAddr: shared.address,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    vm.guestWrite(GPA, new Uint8Array(8).fill(0x11));
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(host.pageMaps()[0]!.hardware).toEqual([]);
    vm.guestWrite(GPA, new Uint8Array(8).fill(0x33));
    expect(host.pageMaps()[0]!.hardware.map(([s, e]) => [s, e])).toEqual([[0, 1]]);
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
    expect(host.pipelineCounters()[TDX_STEPS.aug]).toBe(2);
    expect(host.pipelineCounters()[TDX_STEPS.remove]).toBe(2);
  });

  it('a conversion to shared over gfns no memslot covers changes no hardware state (no zap, nothing to remove)', () => {
    const host = createHost({ backend: tdx, conversion: 'separate' });
    const vm = host.createVm({ type: 'coco', vcpus: 1 });
    const gmem = vm.createGuestMemfd({ size: P });
    const shared = host.memfdCreate(P).mmap({ length: P, shared: true });
    vm.setUserMemoryRegion2({
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: GPA,
      memorySize: P,
      userspaceAddr: shared.address,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    vm.setMemoryAttributes({ address: GPA, size: 2 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    vm.guestWrite(GPA, new Uint8Array(8).fill(0x11));
    vm.setMemoryAttributes({ address: GPA + P, size: P, attributes: 0 });
    expect(host.pageMaps()[0]!.hardware.map(([s, e]) => [s, e])).toEqual([[0, 1]]);
    expect(host.pipelineCounters()[TDX_STEPS.remove] ?? 0).toBe(0);
  });
});
