/**
 * Benchmark 2: the TD boot conversion storm, replayed. Yan Zhao measured a TD with 4 GiB and 8 vCPUs booting
 * (prior-art §6): about 2,710 guest accepts at 4 KiB, and private -> shared -> private flips on GFNs
 * 0x7d3ff-0x7e7fe, single GFNs hit 974, 476 and 156 times; the count does not scale with guest memory. Here a
 * boot is: a TD with a 4 GiB private guest_memfd bound at GPA 0, its SWIOTLB (6% of memory, clamped to
 * [64 MiB, 1 GiB]) converted to shared and mapped for a device, then in a seeded order 2,710 accepts of distinct
 * pages (a private guest write that faults the page in: PAGE.AUG + ACCEPT) and the flips of the three hot GFNs,
 * each flip through guest exits as a VMM sees it: a shared access exits (KVM_EXIT_MEMORY_FAULT), the VMM converts
 * the page to shared, the guest's shared access goes through; a private access exits, the VMM converts it back,
 * the guest's private access faults it in and accepts it again. Boots repeat (a new TD each) up to 1,000,000
 * operations (guest accesses and conversions) or the time budget.
 */
import {
  createHost,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  type GuestMemfd,
  type Host,
  type Vm,
} from '@gmemlab/core';
import { TDX_STEPS, tdx } from '@gmemlab/tdx';
import { measure } from '../measure.js';
import { seeded } from '../rng.js';
import { checkRate, GiB, MiB, type BenchResult, rateNote } from '../rows.js';
import { round } from './conversions.js';

const MEMORY = 4 * GiB;
const ACCEPTS = 2_710;
const HOT: ReadonlyArray<[gfn: number, flips: number]> = [
  [0x7d3ff, 974],
  [0x7e000, 476],
  [0x7e7fe, 156],
];
export const BOOT_OPERATIONS = 1_000_000;
const SWIOTLB = Math.min(GiB, Math.max(64 * MiB, Math.round((0.06 * MEMORY) / (2 * MiB)) * 2 * MiB));
const ONE = new Uint8Array([1]);

type Action = { kind: 'accept'; gfn: number } | { kind: 'flip'; gfn: number };

/** One boot's script, the same every boot: the accepted pages and the hot flips, in a seeded order. */
function bootScript(): Action[] {
  const next = seeded(7);
  const pages = MEMORY / PAGE_SIZE;
  const swiotlbFirst = (MEMORY - SWIOTLB) / PAGE_SIZE;
  const taken = new Set<number>(HOT.map(([gfn]) => gfn));
  const actions: Action[] = [];
  while (actions.length < ACCEPTS) {
    const gfn = Math.floor(next() * swiotlbFirst);
    if (taken.has(gfn)) continue;
    taken.add(gfn);
    actions.push({ kind: 'accept', gfn });
  }
  for (const [gfn, flips] of HOT) for (let i = 0; i < flips; i++) actions.push({ kind: 'flip', gfn });
  for (let i = actions.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [actions[i], actions[j]] = [actions[j]!, actions[i]!];
  }
  return actions;
}

class BootReplay {
  private readonly script = bootScript();
  host!: Host;
  private vm!: Vm;
  private gmem!: GuestMemfd;
  private action = 0;
  /** Step within a flip (0-5). */
  private phase = 0;
  boots = 0;
  broken: string | undefined;

  constructor() {
    this.boot();
  }

  private boot(): void {
    this.host = createHost({ backend: tdx, contract: 'gmem-registry' });
    this.vm = this.host.createVm({ type: 'coco', vcpus: 8 });
    this.gmem = this.vm.createGuestMemfd({ size: MEMORY, flags: GUEST_MEMFD_FLAG_MMAP });
    this.vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: MEMORY,
      guestMemfd: this.gmem,
      guestMemfdOffset: 0,
    });
    // The guest makes its SWIOTLB shared at boot; the VMM maps it for the device.
    this.gmem.setMemoryAttributes2({ offset: MEMORY - SWIOTLB, size: SWIOTLB, attributes: 0 });
    const ioas = this.host.openIommufd().createIoas();
    ioas.mapFile({
      fd: this.gmem,
      start: MEMORY - SWIOTLB,
      length: SWIOTLB,
      flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
    });
    ioas.attachDevice('virtio-net');
    this.action = 0;
    this.phase = 0;
    this.boots++;
  }

  private expect(ok: boolean, what: string): void {
    if (!ok && this.broken === undefined) this.broken = `boot ${this.boots}, action ${this.action}: ${what}`;
  }

  /** One operation: a guest access or a VMM conversion. */
  step(): void {
    if (this.action === this.script.length) this.boot();
    const a = this.script[this.action]!;
    const gpa = a.gfn * PAGE_SIZE;
    if (a.kind === 'accept') {
      this.expect(this.vm.guestWrite(gpa, ONE, { intent: 'private' }).ok, 'accept failed');
      this.action++;
      return;
    }
    switch (this.phase++) {
      case 0:
        this.expect(
          this.vm.guestRead(gpa, 8, { intent: 'shared' }).ok === false,
          'shared access to a private page did not exit',
        );
        break;
      case 1:
        this.gmem.setMemoryAttributes2({ offset: gpa, size: PAGE_SIZE, attributes: 0 });
        break;
      case 2:
        this.expect(this.vm.guestWrite(gpa, ONE, { intent: 'shared' }).ok, 'shared access after to-shared failed');
        break;
      case 3:
        this.expect(
          this.vm.guestRead(gpa, 8, { intent: 'private' }).ok === false,
          'private access to a shared page did not exit',
        );
        break;
      case 4:
        this.gmem.setMemoryAttributes2({ offset: gpa, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
        break;
      default:
        this.expect(this.vm.guestWrite(gpa, ONE, { intent: 'private' }).ok, 'private access after to-private failed');
        this.phase = 0;
        this.action++;
    }
  }
}

export function runBootStorm(): BenchResult {
  const problems: string[] = [];
  const replay = new BootReplay();
  const rate = measure(
    {
      name: 'boot storm',
      run: (from, to) => {
        for (let i = from; i < to; i++) replay.step();
      },
    },
    { maxOps: BOOT_OPERATIONS, rounds: 5, roundSeconds: 1.2 },
  );
  checkRate('boot storm', rate.median, problems);
  if (replay.broken) problems.push(`boot storm: ${replay.broken}`);
  const violations = replay.host.checkInvariants();
  if (violations.length > 0)
    problems.push(`boot storm: ${violations.length} invariant violations, first: ${violations[0]!.message}`);
  const augs = replay.host.pipelineCounters()[TDX_STEPS.aug] ?? 0;
  const perBoot = ACCEPTS + HOT.reduce((n, [, flips]) => n + flips * 6, 0);
  return {
    rows: [
      {
        name: 'boot storm replay tdx',
        value: Math.round(rate.median),
        unit: 'operations/s',
        note: `${rateNote(rate, ' operations')}; ${perBoot.toLocaleString('en-US')} a boot, ${replay.boots} boots; PAGE.AUG in the last boot so far: ${augs}`,
      },
      { name: 'boot storm replay tdx boots', value: round(rate.median / perBoot), unit: 'boots/s' },
    ],
    problems,
  };
}
