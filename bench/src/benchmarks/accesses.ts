/**
 * Benchmark 4: 4 KiB accesses at random offsets of a 1 TiB guest_memfd (INIT_SHARED, TDX, 'gmem-registry'): the
 * guest through a memslot, the host through an mmap of the whole file, a device through one area over the whole
 * file. Reads go to random 4 KiB-aligned offsets anywhere in the file; writes go to random offsets drawn from a
 * fixed set of 16,384 pages, so that the bytes the model keeps stay at 64 MiB whatever the rate.
 */
import {
  createHost,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  PAGE_SIZE,
  PUD_SIZE,
  type AccessResult,
} from '@gmemlab/core';
import { tdx } from '@gmemlab/tdx';
import { measure } from '../measure.js';
import { randomIndices } from '../rng.js';
import { checkRate, TiB, type BenchResult, type Row, rateNote } from '../rows.js';

const ACCESSES = 200_000;
const WRITE_POOL = 16_384;

export function runAccesses(): BenchResult {
  const problems: string[] = [];
  const host = createHost({ backend: tdx, contract: 'gmem-registry' });
  const vm = host.createVm({ type: 'coco', vcpus: 8 });
  const gmem = vm.createGuestMemfd({ size: TiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  const slots = 128;
  const slotSize = TiB / slots;
  for (let s = 0; s < slots; s++)
    vm.setUserMemoryRegion2({
      slot: s,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: s * slotSize,
      memorySize: slotSize,
      guestMemfd: gmem,
      guestMemfdOffset: s * slotSize,
    });
  const mapping = gmem.mmap({ length: TiB, shared: true });
  const ioas = host.openIommufd().createIoas();
  const iova = PUD_SIZE;
  ioas.mapFile({
    fd: gmem,
    start: 0,
    length: TiB,
    iova,
    flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
  });
  const device = ioas.attachDevice('nvme');

  const pages = TiB / PAGE_SIZE;
  const readAt = randomIndices(5, ACCESSES, pages);
  const pool = randomIndices(6, WRITE_POOL, pages);
  const writeAt = Uint32Array.from(randomIndices(7, ACCESSES, WRITE_POOL), (i) => pool[i]!);
  const data = new Uint8Array(PAGE_SIZE).fill(0x5a);
  const ok = (result: AccessResult, what: string) => {
    if (!result.ok && problems.length < 5) problems.push(`${what}: ${result.fault} (${result.mechanism})`);
  };
  const kinds: Array<[string, (page: number) => AccessResult, Uint32Array]> = [
    ['guest read', (p) => vm.guestRead(p * PAGE_SIZE, PAGE_SIZE), readAt],
    ['guest write', (p) => vm.guestWrite(p * PAGE_SIZE, data), writeAt],
    ['host read', (p) => mapping.read(p * PAGE_SIZE, PAGE_SIZE), readAt],
    ['host write', (p) => mapping.write(p * PAGE_SIZE, data), writeAt],
    ['device read', (p) => device.dmaRead(iova + p * PAGE_SIZE, PAGE_SIZE), readAt],
    ['device write', (p) => device.dmaWrite(iova + p * PAGE_SIZE, data), writeAt],
  ];
  const rows: Row[] = [];
  for (const [kind, access, offsets] of kinds) {
    const rate = measure(
      {
        name: kind,
        run(from, to) {
          for (let i = from; i < to; i++) ok(access(offsets[i % ACCESSES]!), kind);
        },
      },
      { maxOps: ACCESSES, rounds: 5, roundSeconds: 0.25 },
    );
    checkRate(kind, rate.median, problems);
    rows.push({
      name: `4KiB ${kind} 1TiB tdx`,
      value: Math.round(rate.median),
      unit: 'accesses/s',
      note: rateNote(rate),
    });
  }
  // Every path must see what the others wrote.
  const at = pool[0]! * PAGE_SIZE;
  const writers: Array<[string, (bytes: Uint8Array) => AccessResult]> = [
    ['guest', (b) => vm.guestWrite(at, b)],
    ['host', (b) => mapping.write(at, b)],
    ['device', (b) => device.dmaWrite(iova + at, b)],
  ];
  writers.forEach(([who, write], i) => {
    const byte = 0x11 * (i + 1);
    ok(write(new Uint8Array([byte])), `${who} write`);
    for (const read of [vm.guestRead(at, 1), mapping.read(at, 1), device.dmaRead(iova + at, 1)]) {
      if (!read.ok || read.data?.[0] !== byte)
        problems.push(`accesses: what the ${who} wrote does not read back the same on every path`);
    }
  });
  const violations = host.checkInvariants();
  if (violations.length > 0)
    problems.push(`accesses: ${violations.length} invariant violations, first: ${violations[0]!.message}`);
  return { rows, problems };
}
