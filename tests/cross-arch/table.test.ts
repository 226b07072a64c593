/**
 * The issue-4 table, run as one set of actions on all four architecture backends in every contract mode
 * ('gmem-registry': guest_memfd invalidates its registered DMA mappings; 'vmm-driven': the RFC as posted, where
 * nothing in the kernel does; 'mirror': as 'gmem-registry' up to the end of a conversion, then iommufd maps the
 * pages a conversion to shared returned, RFC-J5, RFC-J6). Each expectation names its source tag (docs/sources.md). A page is private in
 * KVM's view after the conversion, and held by the hardware only once the guest accepts it (faults it in as
 * private): what a device or the kernel meets, and what a removal costs, follow the hardware.
 */
import {
  CONTRACTS,
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
  PMD_SIZE,
  registersWithGmem,
  type AccessResult,
  type ArchBackend,
  type Contract,
  type ViolationKind,
} from '@gmemlab/core';
import { ARM_CCA_STEPS, armCca } from '@gmemlab/arm-cca';
import { PKVM_STEPS, pkvm } from '@gmemlab/pkvm';
import { SEV_SNP_STEPS, sevSnp } from '@gmemlab/sev-snp';
import { TDX_STEPS, tdx } from '@gmemlab/tdx';
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
  /** What the guest's private fault on that page gets while the IOPTE is still live (if it is), per contract mode. */
  acceptUnderDma: Record<Contract, Fault>;
  /** A device write through the IOPTE once the guest's fault was answered, per contract mode. */
  dmaAfter: Record<Contract, Fault>;
  /** Invariants broken after that conversion, per mode. */
  breaks: Record<Contract, ViolationKind[]>;
  /** A host-kernel (direct map) write to a page the guest accepted as private. */
  hostKernelWrite: Fault;
  /** A DMA read of a page that was private (and accepted) when IOMMU_IOAS_MAP_FILE filled the area, per mode. */
  mapFileOverPrivate: Record<Contract, Fault>;
  /** Bytes after private -> shared of a page the guest accepted. */
  contentsToShared: 'keep' | 'zero';
  /** What the guest's first private access finds in a page a device wrote while it was shared. */
  contentsAtEntry: 'keep' | 'zero';
  /** Steps of 2 MiB converted to private, accepted page by page by the guest, then punched (2 vCPUs). */
  steps2M: Record<string, number>;
}

const iommuRevoked: Fault = { fault: 'iommu-fault', fatal: false, logged: true };
const machineCheck: Fault = { fault: 'machine-check', fatal: true, logged: true };
/**
 * An expectation per mode from the registry's and the RFC's. 'mirror' registers, revokes on truncation and answers a
 * conversion to private exactly as 'gmem-registry' does (it differs only after a conversion to shared completes,
 * which the round-trip test below computes), so its entry is the registry's by definition, not a separate claim.
 */
const modes = <T>(registry: T, vmmDriven: T): Record<Contract, T> => ({
  'gmem-registry': registry,
  'vmm-driven': vmmDriven,
  mirror: registry,
});
const both = <T>(value: T): Record<Contract, T> => modes(value, value);
const PAGES_2M = PMD_SIZE / P;

const TABLE: Row[] = [
  {
    backend: tdx,
    toPrivate: modes<Outcome>('revoked', 'tolerated'), // [T1g]; vmm-driven: nothing unmaps
    acceptUnderDma: both<Fault>('ok'), // nothing in TDX refuses PAGE.AUG of a page an IOPTE maps
    dmaAfter: modes(iommuRevoked, machineCheck), // [T1e]
    breaks: modes<ViolationKind[]>([], ['unsafe-iopte']), // kernel-contract §9.5 I2
    hostKernelWrite: 'ok', // [X-d] no fault; the line is poisoned
    // Registry: no IOPTE for private pages [T1g]; the RFC as posted maps it (§6), and the DMA is fatal [T1e].
    mapFileOverPrivate: modes(iommuRevoked, machineCheck),
    contentsToShared: 'zero', // [X-a] MOVDIR64B
    contentsAtEntry: 'zero', // [X-j] TDG.MEM.PAGE.ACCEPT initialises the page to all-0
    // [X-a, 6b] AUG + ACCEPT per page at the fault; BLOCK, TRACK + one IPI per vCPU, REMOVE, WBINVD, clear per page.
    steps2M: {
      [TDX_STEPS.aug]: PAGES_2M,
      [TDX_STEPS.accept]: PAGES_2M,
      [TDX_STEPS.block]: PAGES_2M,
      [TDX_STEPS.track]: PAGES_2M,
      [TDX_STEPS.ipi]: 2 * PAGES_2M,
      [TDX_STEPS.remove]: PAGES_2M,
      [TDX_STEPS.wbinvd]: PAGES_2M,
      [TDX_STEPS.clear]: PAGES_2M,
    },
  },
  {
    backend: sevSnp,
    toPrivate: both('tolerated'), // [T1d]
    acceptUnderDma: both<Fault>('ok'),
    dmaAfter: both({ fault: 'contained', fatal: false, logged: true }), // [S-c]
    breaks: both([]),
    hostKernelWrite: { fault: 'contained', fatal: true, logged: true }, // [S-e]
    mapFileOverPrivate: both({ fault: 'contained', fatal: false, logged: true }),
    contentsToShared: 'keep', // [S-a]
    contentsAtEntry: 'keep', // [S-a] sev_gmem_prepare clears nothing (the guest reads it through its key [I])
    // [S-a, 6b] order-0 folios: one 4K RMPUPDATE (+ PVALIDATE) per page in, one 4K RMPUPDATE + clflush per page out.
    steps2M: {
      [SEV_SNP_STEPS.makePrivate]: PAGES_2M,
      [SEV_SNP_STEPS.pvalidate]: PAGES_2M,
      [SEV_SNP_STEPS.rmpupdate4K]: PAGES_2M,
      [SEV_SNP_STEPS.clflush]: PAGES_2M,
    },
  },
  {
    backend: armCca,
    toPrivate: both('tolerated'), // [T1d]
    acceptUnderDma: both<Fault>('ok'),
    dmaAfter: both({ fault: 'contained', fatal: false, logged: false }), // [C-c]
    breaks: both([]),
    hostKernelWrite: { fault: 'contained', fatal: true, logged: true }, // [C-b]
    // [T1d] the registry maps shared pages only on Arm (no IOPTE: an IOMMU fault); the RFC as posted maps every
    // page, and the SMMU's GPC contains the access [C-c].
    mapFileOverPrivate: modes(iommuRevoked, { fault: 'contained', fatal: false, logged: false }),
    contentsToShared: 'zero', // [C-e2]
    contentsAtEntry: 'zero', // [C-e2, C-i] scrubbed leaving DELEGATED; data_create() zero-initialises
    // [C-a, C-d, C-e2, 6b] DELEGATE (a GPT write) + DATA_CREATE_UNKNOWN (a scrub) per granule in; DATA_DESTROY, UNDELEGATE (a GPT write), scrub out.
    steps2M: {
      [ARM_CCA_STEPS.delegate]: PAGES_2M,
      [ARM_CCA_STEPS.dataCreate]: PAGES_2M,
      [ARM_CCA_STEPS.gptUpdate]: 2 * PAGES_2M,
      [ARM_CCA_STEPS.dataDestroy]: PAGES_2M,
      [ARM_CCA_STEPS.undelegate]: PAGES_2M,
      [ARM_CCA_STEPS.scrub]: 2 * PAGES_2M,
    },
  },
  {
    backend: pkvm,
    toPrivate: both('tolerated'), // [T1a] the seed: Will would rather not unmap; the hypervisor keeps its IOMMU in step [P-c]
    // [P-d, P-h] __pkvm_host_donate_guest refuses a page with a DMA refcount: KVM_RUN returns EINVAL, the page stays
    // the host's, and the DMA through the kept IOPTE still lands.
    acceptUnderDma: both<Fault>({ fault: 'einval', fatal: false, logged: false }),
    dmaAfter: both<Fault>('ok'),
    breaks: both([]),
    hostKernelWrite: { fault: 'contained', fatal: true, logged: true }, // [P-a, P-g] abort injected into the kernel: oops
    mapFileOverPrivate: both(iommuRevoked), // [P-d] no IOPTE; [P-c] blocked
    contentsToShared: 'keep', // prior-art §7 (Fuad Tabba)
    contentsAtEntry: 'keep', // [P-d] __pkvm_host_donate_guest maps the page as it is
    // [P-d, P-c] donation + identity-domain update + IOTLB per page in; unmap, TLBI, poison, reclaim + the same IOMMU steps out.
    steps2M: {
      [PKVM_STEPS.donate]: PAGES_2M,
      [PKVM_STEPS.idmap]: 2 * PAGES_2M,
      [PKVM_STEPS.iotlb]: 2 * PAGES_2M,
      [PKVM_STEPS.unmap]: PAGES_2M,
      [PKVM_STEPS.tlbi]: PAGES_2M,
      [PKVM_STEPS.poison]: PAGES_2M,
      [PKVM_STEPS.reclaim]: PAGES_2M,
    },
  },
];

function setup(backend: ArchBackend, contract: Contract, size = SIZE) {
  const host = createHost({ backend, contract });
  const vm = host.createVm({ type: 'coco', vcpus: 2 });
  const gmem = vm.createGuestMemfd({ size, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: 0,
    memorySize: size,
    guestMemfd: gmem,
  });
  gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, size);
  const ioas = host.openIommufd().createIoas();
  const convert = (offset: number, length: number, toPrivate: boolean) =>
    gmem.setMemoryAttributes2({ offset, size: length, attributes: toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0 });
  /** The guest accepts [offset, offset + length) as private, page by page. */
  const accept = (offset: number, length: number) => {
    for (let at = offset; at < offset + length; at += P)
      expect(vm.guestRead(at, 1, { intent: 'private' }).ok).toBe(true);
  };
  return { host, vm, gmem, ioas, convert, accept };
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
  // 'revoked': guest_memfd took the IOPTE away (for good in 'gmem-registry', while the page is private in 'mirror').
  return !after.ok && /^IO page fault: IOPTE (revoked|unmapped) by guest_memfd/.test(after.mechanism)
    ? 'revoked'
    : 'tolerated';
}

for (const contract of CONTRACTS) {
  describe(`cross-architecture table, '${contract}' mode`, () => {
    for (const row of TABLE) {
      describe(row.backend.name, () => {
        it('to-private of a DMA-mapped page: who revokes, who refuses, who tolerates; then what a DMA does once the guest accepts it', () => {
          const { host, vm, gmem, ioas, convert } = setup(row.backend, contract);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          const device = ioas.attachDevice();
          const before = host.snapshot();
          const outcome = conversionOutcome(
            () => convert(2 * P, 2 * P, true),
            () => device.dmaRead(iova + 2 * P, 1),
          );
          expect(outcome).toBe(row.toPrivate[contract]);
          if (outcome === 'refused') expect(host.snapshot()).toEqual(before);
          // The guest's private fault on the page (a refused conversion left it shared: nothing to fault in).
          if (outcome !== 'refused')
            expect(faultOf(vm.guestRead(2 * P, 1, { intent: 'private' }))).toEqual(
              outcome === 'revoked' ? 'ok' : row.acceptUnderDma[contract],
            );
          expect(faultOf(device.dmaWrite(iova + 2 * P, new Uint8Array([1])))).toEqual(row.dmaAfter[contract]);
          expect(host.crashed !== undefined).toBe(row.dmaAfter[contract] !== 'ok' && row.dmaAfter[contract].fatal);
          expect(host.checkInvariants().map((v) => v.kind)).toEqual(row.breaks[contract]);
        });

        it('to-shared under DMA: every architecture tolerates it', () => {
          const { host, gmem, ioas, convert } = setup(row.backend, contract);
          convert(2 * P, 2 * P, true);
          ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          ioas.attachDevice();
          expect(() => convert(2 * P, 2 * P, false)).not.toThrow();
          if (registersWithGmem(contract)) expect(host.checkInvariants()).toEqual([]);
        });

        it("a round trip under DMA (to private, the guest accepts, to shared): 'mirror' maps the pages again, 'gmem-registry' keeps what its policy removed unmapped", () => {
          const { host, vm, gmem, ioas, convert } = setup(row.backend, contract);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          const device = ioas.attachDevice();
          convert(2 * P, 2 * P, true);
          const kept = row.toPrivate[contract] === 'tolerated';
          expect(faultOf(vm.guestRead(2 * P, 1, { intent: 'private' }))).toEqual(
            kept ? row.acceptUnderDma[contract] : 'ok',
          );
          convert(2 * P, 2 * P, false);
          const dma = device.dmaWrite(iova + 2 * P, new Uint8Array([1]));
          // Computed from the row: the page is shared again, so a DMA lands unless an IOPTE removal outlived the
          // conversion, which only a 'revoked' to-private outcome outside 'mirror' leaves behind.
          const stillUnmapped = row.toPrivate[contract] === 'revoked' && contract !== 'mirror';
          expect(faultOf(dma)).toEqual(stillUnmapped ? iommuRevoked : 'ok');
          if (registersWithGmem(contract)) expect(host.checkInvariants()).toEqual([]);
        });

        it("truncation: 'gmem-registry' and 'mirror' revoke whatever the architecture; 'vmm-driven' leaves a stale IOPTE", () => {
          const { host, gmem, ioas, convert } = setup(row.backend, contract);
          convert(0, 4 * P, true);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          const device = ioas.attachDevice();
          gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 8 * P);
          const dma = device.dmaWrite(iova + 6 * P, new Uint8Array([1]));
          const broken = host.checkInvariants().map((v) => v.kind);
          if (registersWithGmem(contract)) {
            expect(faultOf(dma)).toEqual(iommuRevoked);
            expect(broken).toEqual([]);
          } else {
            expect(dma.ok).toBe(true); // lands on a freed frame
            expect(dma.reached?.[0]?.owner.kind).toBe('free');
            expect(broken).toContain('stale-iopte');
          }
        });

        it('the host kernel touching a private page through the direct map, before and after the guest accepts it', () => {
          const { host, gmem, convert, accept } = setup(row.backend, contract);
          convert(0, P, true);
          // Private in KVM's view only: the hardware does not hold the page yet, so it is ordinary memory.
          expect(faultOf(gmem.directMapWrite(0, new Uint8Array([1])))).toBe('ok');
          accept(0, P);
          expect(faultOf(gmem.directMapWrite(0, new Uint8Array([1])))).toEqual(row.hostKernelWrite);
          expect(host.crashed !== undefined).toBe(row.hostKernelWrite !== 'ok' && row.hostKernelWrite.fatal);
        });

        it('IOMMU_IOAS_MAP_FILE over a page that is private (and accepted) at fill time', () => {
          const { gmem, ioas, convert, accept } = setup(row.backend, contract);
          convert(0, P, true);
          accept(0, P);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          expect(faultOf(ioas.attachDevice().dmaRead(iova, 1))).toEqual(row.mapFileOverPrivate[contract]);
        });

        it('page contents after private -> shared of a page the guest accepted', () => {
          const { vm, gmem, convert } = setup(row.backend, contract);
          convert(0, P, true);
          vm.guestWrite(0, new Uint8Array([0xab]));
          convert(0, P, false);
          const read = gmem.mmap({ length: P, shared: true }).read(0, 1);
          expect(read).toEqual({ ok: true, data: new Uint8Array([row.contentsToShared === 'keep' ? 0xab : 0]) });
        });

        it("what the guest's first private access finds in a page a device wrote while it was shared", () => {
          const { vm, gmem, ioas, convert } = setup(row.backend, contract);
          const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
          expect(ioas.attachDevice().dmaWrite(iova, new Uint8Array([0xcd])).ok).toBe(true);
          ioas.unmapAll();
          convert(0, P, true);
          expect(vm.guestRead(0, 1, { intent: 'private' })).toEqual({
            ok: true,
            data: new Uint8Array([row.contentsAtEntry === 'keep' ? 0xcd : 0]),
          });
        });

        it('2 MiB converted to private and punched: steps follow the per-page loop for pages the guest accepted, and are zero without private faults', () => {
          const untouched = setup(row.backend, contract, 2 * PMD_SIZE);
          untouched.convert(0, PMD_SIZE, true);
          untouched.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PMD_SIZE);
          expect(untouched.host.pipelineCounters()).toEqual({});
          const used = setup(row.backend, contract, 2 * PMD_SIZE);
          used.convert(0, PMD_SIZE, true);
          used.accept(0, PMD_SIZE);
          used.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PMD_SIZE);
          expect(used.host.pipelineCounters()).toEqual(row.steps2M);
        });
      });
    }
  });
}

describe('variants', () => {
  it("pKVM upstream has no DMA isolation: a device reads the protected page ('unsafe-iopte')", () => {
    const { host, gmem, ioas, convert, accept } = setup(pkvm({ variant: 'upstream' }), 'vmm-driven');
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
    const device = ioas.attachDevice();
    convert(0, P, true);
    accept(0, P);
    expect(device.dmaRead(iova, 1).ok).toBe(true);
    expect(host.checkInvariants().map((v) => v.kind)).toEqual(['unsafe-iopte']);
  });

  it('every variant has its own id', () => {
    const ids = [
      tdx,
      tdx({ variant: 'connect' }),
      tdx({ dmaToPrivate: 'poison' }),
      tdx({ pwMceErratum: false }),
      sevSnp,
      sevSnp({ variant: 'tio' }),
      armCca,
      armCca({ variant: 'da' }),
      pkvm,
      pkvm({ variant: 'upstream' }),
      pkvm({ unshare: 'refuse-dma-mapped' }),
      pkvm({ hostAbort: 'hyp-bug' }),
    ].map((b) => b.id);
    expect(ids).toEqual([
      'tdx',
      'tdx:connect',
      'tdx:dma-poison',
      'tdx:no-erratum',
      'sev-snp',
      'sev-snp:tio',
      'arm-cca',
      'arm-cca:da',
      'pkvm',
      'pkvm:upstream',
      'pkvm:refuse-dma-mapped',
      'pkvm:hyp-bug',
    ]);
  });
});
