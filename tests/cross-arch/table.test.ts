/**
 * The issue-4 table, run as one set of actions on all four architecture backends in both contract modes
 * ('gmem-registry': guest_memfd invalidates its registered DMA mappings; 'vmm-driven': the RFC as posted, where
 * nothing in the kernel does). Each expectation names its source tag (shared/reference/arch-behaviour.md §7).
 */
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
  type AccessResult,
  type ArchBackend,
  type Contract,
  type ViolationKind,
} from '@gmemlab/core';
import { armCca } from '@gmemlab/arm-cca';
import { pkvm } from '@gmemlab/pkvm';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import { describe, expect, it } from 'vitest';

const P = PAGE_SIZE;
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

type Outcome = 'revoked' | 'tolerated' | 'refused';
type Fault = { fault: string; fatal: boolean; logged: boolean } | 'ok';

interface Row {
  backend: ArchBackend;
  /** What a conversion to private of a DMA-mapped page does, per contract mode. */
  toPrivate: Record<Contract, Outcome>;
  /** A device write through the IOPTE afterwards, per contract mode. */
  dmaAfter: Record<Contract, Fault>;
  /** Invariants broken after that conversion in 'vmm-driven' mode ('gmem-registry' must break none). */
  vmmDrivenBreaks: ViolationKind[];
  /** A host-kernel (direct map) write to a private page. */
  hostKernelWrite: Fault;
  /** A DMA read of a page that was private when IOMMU_IOAS_MAP_FILE filled the area. */
  mapFileOverPrivate: Fault;
  /** Bytes after private -> shared. */
  contentsToShared: 'keep' | 'zero';
}

const iommuRevoked: Fault = { fault: 'iommu-fault', fatal: false, logged: true };

const TABLE: Row[] = [
  {
    backend: tdx,
    toPrivate: { 'gmem-registry': 'revoked', 'vmm-driven': 'tolerated' }, // [T1g]; vmm-driven: nothing unmaps
    dmaAfter: { 'gmem-registry': iommuRevoked, 'vmm-driven': { fault: 'machine-check', fatal: true, logged: true } }, // [T1e]
    vmmDrivenBreaks: ['unsafe-iopte'], // kernel-contract §9.5 I2
    hostKernelWrite: 'ok', // [X-d] no fault; the line is poisoned
    mapFileOverPrivate: iommuRevoked, // no IOPTE for private pages
    contentsToShared: 'zero', // [X-a] MOVDIR64B
  },
  {
    backend: sevSnp,
    toPrivate: { 'gmem-registry': 'tolerated', 'vmm-driven': 'tolerated' }, // [T1d]
    dmaAfter: { 'gmem-registry': { fault: 'contained', fatal: false, logged: true }, 'vmm-driven': { fault: 'contained', fatal: false, logged: true } }, // [S-c]
    vmmDrivenBreaks: [],
    hostKernelWrite: { fault: 'contained', fatal: true, logged: true }, // [S-e]
    mapFileOverPrivate: { fault: 'contained', fatal: false, logged: true },
    contentsToShared: 'keep', // [S-a]
  },
  {
    backend: armCca,
    toPrivate: { 'gmem-registry': 'tolerated', 'vmm-driven': 'tolerated' }, // [T1d]
    dmaAfter: { 'gmem-registry': { fault: 'contained', fatal: false, logged: false }, 'vmm-driven': { fault: 'contained', fatal: false, logged: false } }, // [C-c]
    vmmDrivenBreaks: [],
    hostKernelWrite: { fault: 'contained', fatal: true, logged: true }, // [C-b]
    mapFileOverPrivate: { fault: 'contained', fatal: false, logged: false },
    contentsToShared: 'zero', // [C-e2]
  },
  {
    backend: pkvm,
    toPrivate: { 'gmem-registry': 'refused', 'vmm-driven': 'refused' }, // [P-d, P-e]: the hypervisor's rule
    dmaAfter: { 'gmem-registry': 'ok', 'vmm-driven': 'ok' }, // still shared
    vmmDrivenBreaks: [],
    hostKernelWrite: { fault: 'contained', fatal: false, logged: true }, // [P-a, P-g]
    mapFileOverPrivate: iommuRevoked, // [P-d] no IOPTE for pages the host does not own
    contentsToShared: 'keep', // prior-art §7 (Fuad Tabba)
  },
];

function setup(backend: ArchBackend, contract: Contract) {
  const host = createHost({ backend, contract });
  const vm = host.createVm({ type: 'coco', vcpus: 2 });
  const gmem = vm.createGuestMemfd({ size: SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: SIZE, guestMemfd: gmem });
  gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, SIZE);
  const ioas = host.openIommufd().createIoas();
  const convert = (offset: number, length: number, toPrivate: boolean) =>
    gmem.setMemoryAttributes2({ offset, size: length, attributes: toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0 });
  return { host, vm, gmem, ioas, convert };
}

function faultOf(result: AccessResult): Fault {
  return result.ok ? 'ok' : { fault: result.fault, fatal: result.fatal, logged: result.logged };
}

function conversionOutcome(convert: () => void, dma: () => AccessResult): Outcome {
  try {
    convert();
  } catch (error) {
    if (GmemError.isInstance(error) && error.errno === 'EAGAIN') return 'refused';
    throw error;
  }
  const after = dma();
  return !after.ok && after.mechanism === 'IO page fault: IOPTE revoked by guest_memfd' ? 'revoked' : 'tolerated';
}

for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
  describe(`cross-architecture table, '${contract}' mode`, () => {
    for (const row of TABLE) {
      describe(row.backend.name, () => {
        it('to-private of a DMA-mapped page: who revokes, who refuses, who tolerates; then what a DMA does', () => {
          const { host, gmem, ioas, convert } = setup(row.backend, contract);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          const device = ioas.attachDevice();
          const before = host.snapshot();
          const outcome = conversionOutcome(
            () => convert(2 * P, 2 * P, true),
            () => device.dmaRead(iova + 2 * P, 1),
          );
          expect(outcome).toBe(row.toPrivate[contract]);
          if (outcome === 'refused') expect(host.snapshot()).toEqual(before);
          expect(faultOf(device.dmaWrite(iova + 2 * P, new Uint8Array([1])))).toEqual(row.dmaAfter[contract]);
          const broken = host.checkInvariants().map((v) => v.kind);
          expect(broken).toEqual(contract === 'gmem-registry' ? [] : row.vmmDrivenBreaks);
        });

        it('to-shared under DMA: every architecture tolerates it', () => {
          const { host, gmem, ioas, convert } = setup(row.backend, contract);
          convert(2 * P, 2 * P, true);
          ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          ioas.attachDevice();
          expect(() => convert(2 * P, 2 * P, false)).not.toThrow();
          if (contract === 'gmem-registry') expect(host.checkInvariants()).toEqual([]);
        });

        it("truncation: 'gmem-registry' revokes whatever the architecture; 'vmm-driven' leaves a stale IOPTE", () => {
          const { host, gmem, ioas, convert } = setup(row.backend, contract);
          convert(0, 4 * P, true);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          const device = ioas.attachDevice();
          gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 8 * P);
          const dma = device.dmaWrite(iova + 6 * P, new Uint8Array([1]));
          const broken = host.checkInvariants().map((v) => v.kind);
          if (contract === 'gmem-registry') {
            expect(faultOf(dma)).toEqual(iommuRevoked);
            expect(broken).toEqual([]);
          } else {
            expect(dma.ok).toBe(true); // lands on a freed page
            expect(broken).toContain('stale-iopte');
          }
        });

        it('the host kernel touching a private page through the direct map', () => {
          const { gmem, convert } = setup(row.backend, contract);
          convert(0, P, true);
          expect(faultOf(gmem.directMapWrite(0, new Uint8Array([1])))).toEqual(row.hostKernelWrite);
        });

        it('IOMMU_IOAS_MAP_FILE over a page that is private at fill time', () => {
          const { gmem, ioas, convert } = setup(row.backend, contract);
          convert(0, P, true);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          expect(faultOf(ioas.attachDevice().dmaRead(iova, 1))).toEqual(row.mapFileOverPrivate);
        });

        it('page contents after private -> shared', () => {
          const { vm, gmem, convert } = setup(row.backend, contract);
          convert(0, P, true);
          vm.guestWrite(0, new Uint8Array([0xab]));
          convert(0, P, false);
          const read = gmem.mmap({ length: P, shared: true }).read(0, 1);
          expect(read).toEqual({ ok: true, data: new Uint8Array([row.contentsToShared === 'keep' ? 0xab : 0]) });
        });

        it('removing private pages runs the backend pipeline; counters are whole numbers', () => {
          const { host, gmem, convert } = setup(row.backend, contract);
          convert(0, 4 * P, true);
          gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
          const counters = Object.values(host.pipelineCounters());
          expect(counters.length).toBeGreaterThan(0);
          for (const count of counters) expect(Number.isInteger(count) && count > 0).toBe(true);
        });
      });
    }
  });
}

describe('variants', () => {
  it("pKVM upstream has no hypervisor refusal: in 'vmm-driven' mode a device reads the protected page ('unsafe-iopte')", () => {
    const { host, gmem, ioas, convert } = setup(pkvm({ variant: 'upstream' }), 'vmm-driven');
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
    const device = ioas.attachDevice();
    convert(0, P, true);
    expect(device.dmaRead(iova, 1).ok).toBe(true);
    expect(host.checkInvariants().map((v) => v.kind)).toEqual(['unsafe-iopte']);
  });

  it('every variant has its own id', () => {
    const ids = [tdx, tdx({ variant: 'connect' }), sevSnp, sevSnp({ variant: 'tio' }), armCca, armCca({ variant: 'da' }), pkvm, pkvm({ variant: 'upstream' })].map((b) => b.id);
    expect(ids).toEqual(['tdx', 'tdx:connect', 'sev-snp', 'sev-snp:tio', 'arm-cca', 'arm-cca:da', 'pkvm', 'pkvm:upstream']);
  });
});
