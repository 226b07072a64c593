/**
 * The RFC's IOMMU_IOAS_MAP_FILE of a guest_memfd on today's path (HostOptions.conversion 'separate',
 * kernel-contract §4.4): guest_memfd holds only the private side, so the area maps private memory, which only a
 * trusted device (TDX Connect, SEV-TIO, CCA DA) is meant to reach. Each backend answers through its existing hooks
 * (`deviceAccess` for a hardware-private frame, `deviceMayReach` for the invariant, `mapsPrivatePages` in the
 * registry design); none models a bound TDI, so every device here is an untrusted one. A conversion on the VM fd
 * does nothing to the area; the VMM's punch of the private side after a conversion to shared is a truncation,
 * which only a registry turns into a revoke. Every outcome is measured by running the steps.
 */
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  swProtected,
  type AccessResult,
  type ArchBackend,
  type Contract,
} from '@gmemlab/core';
import { armCca } from '@gmemlab/arm-cca';
import { pkvm } from '@gmemlab/pkvm';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import { describe, expect, it } from 'vitest';

const P = PAGE_SIZE;
const GPA = 4 * 2 ** 30;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/** What a device read met: 'ok', the fault kind (with '!' when fatal), or 'host-down'. */
function outcome(read: () => AccessResult): string {
  try {
    const r = read();
    if (r.ok)
      return r.reached && r.reached.length > 0 ? `reached:${r.reached.map((x) => x.owner.kind).join(',')}` : 'ok';
    return r.fatal ? `${r.fault}!` : r.fault;
  } catch (error) {
    return (error as Error).name === 'HostCrashedError' ? 'host-down' : `threw ${String(error)}`;
  }
}

function run(backend: ArchBackend, contract: Contract) {
  const host = createHost({ backend, contract, conversion: 'separate' });
  const vm = host.createVm({ type: 'coco', vcpus: 2 });
  const gmem = vm.createGuestMemfd({ size: 16 * P });
  const shared = host.memfdCreate(16 * P).mmap({ length: 16 * P, shared: true });
  vm.setUserMemoryRegion2({
    slot: 1,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: GPA,
    memorySize: 16 * P,
    userspaceAddr: shared.address,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  vm.setMemoryAttributes({ address: GPA, size: 16 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.guestWrite(GPA, new Uint8Array(16).fill(0x11)); // page 0 enters the hardware's private state
  const ioas = host.openIommufd().createIoas();
  const iova = ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, flags: RW });
  const device = ioas.attachDevice('tdi');
  const atPrivate = outcome(() => device.dmaRead(iova, 16));
  const violations = host.crashed ? [] : [...new Set(host.checkInvariants().map((v) => v.kind))];
  let afterShared = 'host-down';
  let afterPunch = 'host-down';
  if (!host.crashed) {
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
    afterShared = outcome(() => device.dmaRead(iova, 16));
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    afterPunch = outcome(() => device.dmaRead(iova, 16));
  }
  return { atPrivate, violations, afterShared, afterPunch };
}

const BACKENDS: ReadonlyArray<[string, ArchBackend]> = [
  ['tdx', tdx],
  ['tdx:connect', tdx(tdx.variants.connect!)],
  ['sev-snp', sevSnp],
  ['sev-snp:tio', sevSnp(sevSnp.variants.tio!)],
  ['arm-cca', armCca],
  ['arm-cca:da', armCca(armCca.variants.da!)],
  ['pkvm', pkvm],
  ['pkvm:upstream', pkvm(pkvm.variants.upstream!)],
  ['sw-protected', swProtected],
];

describe("IOMMU_IOAS_MAP_FILE of a guest_memfd on today's path maps private memory (kernel-contract §4.4)", () => {
  // What an untrusted device's read of the hardware-private page meets, then after the conversion to shared (the
  // IOPTE still reaches the private side), then after the VMM punches that page (QEMU's discard of the private
  // side). The RFC as posted ('vmm-driven', the 'today' column) registers nothing, so the punch leaves the IOPTE
  // over a freed frame.
  const expected: Record<string, [atPrivate: string, afterShared: string, afterPunch: string]> = {
    // [T1e]: no ownership check on DMA; TDX Connect's trusted DMA goes through S-EPT, not a host IOPTE [T1g, X-i].
    tdx: ['machine-check!', 'host-down', 'host-down'],
    'tdx:connect': ['machine-check!', 'host-down', 'host-down'],
    // [S-c]: the IOMMU's RMP check blocks it; SEV-TIO's private DMA needs a bound TDI, which the model lacks.
    'sev-snp': ['contained', 'contained', 'reached:free'],
    'sev-snp:tio': ['contained', 'contained', 'reached:free'],
    // [C-c]: the SMMU's granule protection check; CCA DA programs the Realm's own stage-2 [C-f]. The conversion's
    // unmap destroys and undelegates the granule [C-a] (privateRemovalAt 'zap'): from then on the IOPTE reaches a
    // Non-secure page guest_memfd still holds, and the read goes through.
    'arm-cca': ['contained', 'ok', 'reached:free'],
    'arm-cca:da': ['contained', 'ok', 'reached:free'],
    // [P-c], [P-d]: Android's hypervisor took the donated page out of the host's IOMMU view.
    pkvm: ['iommu-fault', 'iommu-fault', 'reached:free'],
    // [P-a]: upstream pKVM has no DMA isolation.
    'pkvm:upstream': ['ok', 'ok', 'reached:free'],
    'sw-protected': ['ok', 'ok', 'reached:free'],
  };

  for (const [id, backend] of BACKENDS) {
    it(`${id}: ${expected[id]!.join(' -> ')}`, () => {
      const r = run(backend, 'vmm-driven');
      expect([r.atPrivate, r.afterShared, r.afterPunch]).toEqual(expected[id]);
    });
  }

  it('the invariant names the architectures where no device may reach private memory: TDX and upstream pKVM', () => {
    const unsafe = BACKENDS.filter(([, b]) => run(b, 'vmm-driven').violations.includes('unsafe-iopte')).map(
      ([id]) => id,
    );
    expect(unsafe).toEqual(['pkvm:upstream']); // TDX's host is down before the check; its crash is the verdict
  });

  it("under the registry the VMM's punch revokes the area: the late DMA is an IOMMU fault, never a freed frame", () => {
    for (const [id, backend] of BACKENDS) {
      if (id.startsWith('tdx')) continue;
      expect(run(backend, 'gmem-registry').afterPunch, id).toBe('iommu-fault');
    }
  });
});
