/**
 * kernel-contract §8 tables A and B, every row the running kernel can execute, on the model and on the kernel
 * (@gmemlab/linux) with the same steps; errno names and bytes read back must agree. The model runs with the
 * options matching this kernel (KERNEL_MATCHING_MODEL_OPTIONS: no in-place conversion, no GMEM_ONLY memslots).
 *
 * Not run: A10 and A14 (need a multi-NUMA host), and the selftest's KVM_X86_SW_PROTECTED_VM for table B
 * (KVM_CAP_VM_TYPES is 0x1 here: the B rows run on the default VM, whose supported memslot flags B0 skips).
 */
import { describe, expect, it, afterAll } from 'vitest';
import { runOnBoth, KERNEL_MATCHING_MODEL_OPTIONS, type SequenceReport, type Step } from '@gmemlab/linux/differential';
import {
  closeKernelHost,
  compare,
  divergenceMessage,
  INIT_SHARED,
  KEEP,
  kernelHost,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  MMAP,
  P,
  PUNCH,
  skipReason,
  T,
} from './support.js';

const S = 0x200000;
const G = 0xc0000000;
const PMD = 0x200000;
/** Where the A20 guest's target lives: above the helper's code memslot (0xc0000-0xfffff), below 4 GiB. */
const A20_GPA = 0x100000;

const vm = (as = 'vm'): Step => ({ op: 'createVm', as });
const gmem = (size: number | bigint, flags: number | bigint, as = 'g', on = 'vm'): Step => ({
  op: 'createGuestMemfd',
  vm: on,
  size,
  flags,
  as,
});
const fill = (byte: number, length: number) => ({ fill: byte, length });

/** Every kernel outcome, as 'ok' or the errno name (faults as 'fault:<kind>'). */
function kernelOutcomes(report: SequenceReport): string[] {
  return report.steps.map(({ kernel: k }) =>
    k.status === 'ok' ? 'ok' : k.status === 'error' ? k.errno : k.status === 'fault' ? `fault:${k.fault}` : 'skipped',
  );
}

function readBack(report: SequenceReport, index: number): string {
  const outcome = report.steps[index]!.kernel;
  return outcome.status === 'ok' && typeof outcome.value === 'string' ? outcome.value : `(${outcome.status})`;
}

const hexOf = (byte: number, length: number) => byte.toString(16).padStart(2, '0').repeat(length);

interface Row {
  id: string;
  steps: Step[];
  /** Checks of the kernel's own outcomes against kernel-contract, beyond agreeing with the model. */
  check?(report: SequenceReport): void;
}

const rows: Row[] = [];

rows.push({
  id: 'A1 create with each flag bit: supported bits succeed, others EINVAL',
  steps: [vm(), ...Array.from({ length: 64 }, (_, b): Step => gmem(P, 1n << BigInt(b), `g${b}`))],
  check: (r) =>
    expect(kernelOutcomes(r).slice(1)).toEqual(Array.from({ length: 64 }, (_, b) => (b < 2 ? 'ok' : 'EINVAL'))),
});
rows.push({ id: 'A2 create(P); fstat: st_size = P', steps: [vm(), gmem(P, 0), { op: 'stat', fd: 'g' }] });
rows.push({
  id: 'A3 create(P), create(2P); fstat both',
  steps: [vm(), gmem(P, 0, 'a'), gmem(2 * P, 0, 'b'), { op: 'stat', fd: 'b' }, { op: 'stat', fd: 'a' }],
});

for (const flags of [0, MMAP, MMAP | INIT_SHARED]) {
  const f = `flags ${flags}`;
  const base = (size = T): Step[] => [vm(), gmem(size, flags)];
  rows.push({
    id: `A4 [${f}] sizes 1..P-1 are EINVAL`,
    steps: [vm(), ...Array.from({ length: P - 1 }, (_, i): Step => gmem(i + 1, flags, `s${i}`))],
    check: (r) => expect(new Set(kernelOutcomes(r).slice(1))).toEqual(new Set(['EINVAL'])),
  });
  rows.push({
    id: `A5 [${f}] read/write/pread/pwrite fail`,
    steps: [
      ...base(),
      { op: 'read', fd: 'g', length: 64 },
      { op: 'write', fd: 'g', data: fill(0, 64) },
      { op: 'pread', fd: 'g', length: 64, offset: 0 },
      { op: 'pwrite', fd: 'g', data: fill(0, 64), offset: 0 },
    ],
    check: (r) => expect(kernelOutcomes(r).slice(2)).toEqual(['EINVAL', 'EINVAL', 'ESPIPE', 'ESPIPE']),
  });
  if (flags === (MMAP | INIT_SHARED)) {
    rows.push({
      id: `A6-A8 [${f}] mmap, memset 0xaa, punch the first page (reads 0), rewrite it, munmap`,
      steps: [
        ...base(),
        { op: 'mmap', fd: 'g', length: T, shared: true, as: 'm' },
        { op: 'mapWrite', map: 'm', offset: 0, data: fill(0xaa, T) },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
        { op: 'fallocate', fd: 'g', mode: PUNCH, offset: 0, length: P },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
        { op: 'mapWrite', map: 'm', offset: 0, data: fill(0xaa, P) },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
        { op: 'munmap', map: 'm' },
      ],
      check: (r) => {
        expect(readBack(r, 4)).toBe(hexOf(0xaa, T));
        expect(readBack(r, 6)).toBe(hexOf(0, P) + hexOf(0xaa, T - P));
        expect(readBack(r, 8)).toBe(hexOf(0xaa, T));
      },
    });
    rows.push({
      id: `A9 [${f}] mmap(4T): memset faults with SIGBUS at T, mem[T] faults, [0,T) is 0xaa`,
      steps: [
        ...base(),
        { op: 'mmap', fd: 'g', length: 4 * T, shared: true, as: 'm' },
        { op: 'mapWrite', map: 'm', offset: 0, data: fill(0xaa, 4 * T) },
        { op: 'mapRead', map: 'm', offset: T, length: 1 },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
      ],
      check: (r) => {
        expect(r.steps[3]!.kernel).toMatchObject({ status: 'fault', fault: 'sigbus', address: T });
        expect(r.steps[4]!.kernel).toMatchObject({ status: 'fault', fault: 'sigbus', address: T });
        expect(readBack(r, 5)).toBe(hexOf(0xaa, T));
      },
    });
    rows.push({
      id: `A11 [${f}] PMD-sized gmem: read every page, MADV_HUGEPAGE ok, MADV_COLLAPSE EINVAL, MADV_DONTNEED ok`,
      steps: [
        ...base(PMD),
        { op: 'mmap', fd: 'g', length: PMD, shared: true, as: 'm' },
        ...Array.from({ length: PMD / P }, (_, i): Step => ({ op: 'mapRead', map: 'm', offset: i * P, length: 1 })),
        { op: 'madvise', map: 'm', offset: 0, length: PMD, advice: 14 },
        { op: 'madvise', map: 'm', offset: 0, length: PMD, advice: 25 },
        { op: 'madvise', map: 'm', offset: 0, length: PMD, advice: 4 },
        { op: 'mapRead', map: 'm', offset: 0, length: 1 },
      ],
      check: (r) => expect(kernelOutcomes(r).slice(-4)).toEqual(['ok', 'EINVAL', 'ok', 'ok']),
    });
  }
  if (flags === MMAP) {
    rows.push({
      id: `A12 [${f}] without INIT_SHARED: mmap ok, memset SIGBUS at byte 0, mem[0] SIGBUS`,
      steps: [
        ...base(),
        { op: 'mmap', fd: 'g', length: T, shared: true, as: 'm' },
        { op: 'mapWrite', map: 'm', offset: 0, data: fill(0xaa, T) },
        { op: 'mapRead', map: 'm', offset: 0, length: 1 },
      ],
      check: (r) => expect(kernelOutcomes(r).slice(2)).toEqual(['ok', 'fault:sigbus', 'fault:sigbus']),
    });
  }
  if (flags & MMAP) {
    rows.push({
      id: `A13 [${f}] MAP_PRIVATE is EINVAL`,
      steps: [...base(), { op: 'mmap', fd: 'g', length: T, shared: false, as: 'm' }],
      check: (r) => expect(kernelOutcomes(r)[2]).toBe('EINVAL'),
    });
  } else {
    rows.push({
      id: `A15 [${f}] without MMAP: mmap(P) and mmap(T) are ENODEV`,
      steps: [
        ...base(),
        { op: 'mmap', fd: 'g', length: P, shared: true, as: 'm' },
        { op: 'mmap', fd: 'g', length: T, shared: true, as: 'm2' },
      ],
      check: (r) => expect(kernelOutcomes(r).slice(2)).toEqual(['ENODEV', 'ENODEV']),
    });
  }
  rows.push({
    id: `A16 [${f}] fstat: st_size = T, st_blksize = P`,
    steps: [...base(), { op: 'stat', fd: 'g' }],
    check: (r) => expect(r.steps[2]!.kernel).toEqual({ status: 'ok', value: { size: T, blksize: P } }),
  });
  const a17: Array<[number, number, number]> = [
    [KEEP, 0, T],
    [PUNCH, P - 1, P],
    [KEEP, T, P],
    [KEEP, T + P, P],
    [PUNCH, T, P],
    [PUNCH, T + P, P],
    [PUNCH, P, P - 1],
    [PUNCH, P, P],
    [KEEP, P, P],
  ];
  rows.push({
    id: `A17 [${f}] the fallocate sequence`,
    steps: [
      ...base(),
      ...a17.map(([mode, offset, length]): Step => ({ op: 'fallocate', fd: 'g', mode, offset, length })),
    ],
    check: (r) =>
      expect(kernelOutcomes(r).slice(2)).toEqual([
        'ok',
        'EINVAL',
        'EINVAL',
        'EINVAL',
        'ok',
        'ok',
        'EINVAL',
        'ok',
        'ok',
      ]),
  });
  const a18: Array<[number, number]> = [
    [0, 1],
    [0, P - 1],
    [0, P + 1],
    [1, 1],
    [1, P - 1],
    [1, P],
    [1, P + 1],
    [P, 1],
    [P, P - 1],
    [P, P + 1],
  ];
  rows.push({
    id: `A18 [${f}] unaligned punch holes are EINVAL`,
    steps: [
      ...base(),
      ...a18.map(([offset, length]): Step => ({ op: 'fallocate', fd: 'g', mode: PUNCH, offset, length })),
    ],
    check: (r) => expect(new Set(kernelOutcomes(r).slice(2))).toEqual(new Set(['EINVAL'])),
  });
  rows.push({
    id: `§8.A model errno additions [${f}]: mode without KEEP_SIZE and unknown mode bits are EOPNOTSUPP`,
    steps: [
      ...base(),
      { op: 'fallocate', fd: 'g', mode: 0, offset: 0, length: P },
      { op: 'fallocate', fd: 'g', mode: KEEP | 0x10, offset: 0, length: P },
      { op: 'fallocate', fd: 'g', mode: 0x02, offset: 0, length: P },
    ],
  });
}

rows.push({
  id: 'A20 the host writes 0xaa through mmap, the guest reads it and writes 0xff, the host sees 0xff (GPA 1 MiB, userspace_addr = the mapping)',
  steps: [
    vm(),
    gmem(P, MMAP | INIT_SHARED),
    { op: 'mmap', fd: 'g', length: P, shared: true, as: 'm' },
    { op: 'mapWrite', map: 'm', offset: 0, data: fill(0xaa, P) },
    {
      op: 'setUserMemoryRegion2',
      vm: 'vm',
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: A20_GPA,
      memorySize: P,
      userspaceAddr: { map: 'm' },
      guestMemfd: 'g',
      guestMemfdOffset: 0,
    },
    { op: 'guestRead', vm: 'vm', gpa: A20_GPA, length: P },
    { op: 'guestWrite', vm: 'vm', gpa: A20_GPA, data: fill(0xff, P) },
    { op: 'munmap', map: 'm' },
    { op: 'mmap', fd: 'g', length: P, shared: true, as: 'm2' },
    { op: 'mapRead', map: 'm2', offset: 0, length: P },
  ],
  check: (r) => {
    expect(readBack(r, 5)).toBe(hexOf(0xaa, P));
    expect(readBack(r, 9)).toBe(hexOf(0xff, P));
  },
});
rows.push({
  id: 'A20 as the selftest binds it (userspace_addr NULL): on this kernel the guest access faults (documented: gmemOnlyMemslots)',
  steps: [
    vm(),
    gmem(P, MMAP | INIT_SHARED),
    {
      op: 'setUserMemoryRegion2',
      vm: 'vm',
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: A20_GPA,
      memorySize: P,
      userspaceAddr: 0,
      guestMemfd: 'g',
      guestMemfdOffset: 0,
    },
    { op: 'guestRead', vm: 'vm', gpa: A20_GPA, length: P },
  ],
  check: (r) => expect(r.steps[3]!.kernel.status).toBe('fault'),
});

// --- table B, on the default VM ---
const region2 = (fields: Partial<Extract<Step, { op: 'setUserMemoryRegion2' }>>): Step => ({
  op: 'setUserMemoryRegion2',
  vm: 'vm',
  slot: 10,
  flags: KVM_MEM_GUEST_MEMFD,
  guestPhysAddr: G,
  memorySize: S,
  userspaceAddr: 0,
  guestMemfd: 'g',
  guestMemfdOffset: 0,
  ...fields,
});

rows.push({
  id: 'B0 REGION2 with each flag bit the VM does not support is EINVAL',
  steps: [
    vm(),
    ...Array.from({ length: 29 }, (_, i): Step =>
      region2({ slot: 0, flags: 1 << (i + 3), guestPhysAddr: 0, guestMemfd: 0 }),
    ),
  ],
  check: (r) => expect(new Set(kernelOutcomes(r).slice(1))).toEqual(new Set(['EINVAL'])),
});
rows.push({
  id: 'B1 v1 SET_USER_MEMORY_REGION with KVM_MEM_GUEST_MEMFD is EINVAL',
  steps: [
    vm(),
    { op: 'setUserMemoryRegion', vm: 'vm', slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: S },
  ],
  check: (r) => expect(kernelOutcomes(r)[1]).toBe('EINVAL'),
});
rows.push({
  id: 'B2 LOG_DIRTY_PAGES | GUEST_MEMFD is EINVAL',
  steps: [vm(), gmem(S, 0), region2({ flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD })],
  check: (r) => expect(kernelOutcomes(r)[2]).toBe('EINVAL'),
});
rows.push({
  id: 'B3 guest_memfd = /dev/kvm is EINVAL',
  steps: [vm(), region2({ guestMemfd: 'kvm' })],
  check: (r) => expect(kernelOutcomes(r)[1]).toBe('EINVAL'),
});
rows.push({
  id: 'B4 guest_memfd = the VM fd is EINVAL',
  steps: [vm(), region2({ guestMemfd: 'vm' })],
  check: (r) => expect(kernelOutcomes(r)[1]).toBe('EINVAL'),
});
rows.push({
  id: 'B5 guest_memfd = a memfd is EINVAL',
  steps: [vm(), { op: 'memfdCreate', size: S, as: 'memfd' }, region2({ guestMemfd: 'memfd' })],
  check: (r) => expect(kernelOutcomes(r)[2]).toBe('EINVAL'),
});
rows.push({
  id: "B6 another VM's guest_memfd is EINVAL; that VM binds it",
  steps: [vm(), vm('other'), gmem(S, 0, 'g', 'other'), region2({}), region2({ vm: 'other' })],
  check: (r) => expect(kernelOutcomes(r).slice(3)).toEqual(['EINVAL', 'ok']),
});
rows.push({
  id: 'B7 guest_memfd_offset 1..P-1 is EINVAL; offset 0 binds',
  steps: [
    vm(),
    gmem(S, 0),
    ...Array.from({ length: P - 1 }, (_, i): Step => region2({ guestMemfdOffset: i + 1 })),
    region2({}),
  ],
  check: (r) => {
    const out = kernelOutcomes(r);
    expect(new Set(out.slice(2, -1))).toEqual(new Set(['EINVAL']));
    expect(out.at(-1)).toBe('ok');
  },
});
for (const [id, gpa] of [
  ['B8', 2 * G - S],
  ['B9', 2 * G + S],
] as const) {
  rows.push({
    id: `${id} recreating slot 10 at 0x${gpa.toString(16)} overlaps slot 11 in GPA: EEXIST`,
    steps: [
      vm(),
      gmem(4 * S, 0),
      region2({ memorySize: 2 * S }),
      region2({ slot: 11, guestPhysAddr: 2 * G, memorySize: 2 * S, guestMemfdOffset: 2 * S }),
      region2({ memorySize: 0 }),
      region2({ guestPhysAddr: gpa, memorySize: 2 * S }),
    ],
    check: (r) => expect(kernelOutcomes(r).slice(2)).toEqual(['ok', 'ok', 'ok', 'EEXIST']),
  });
}
rows.push({
  id: 'B10 disjoint GPAs, overlapping guest_memfd ranges: EINVAL',
  steps: [
    vm(),
    gmem(4 * S, 0),
    region2({ memorySize: 2 * S }),
    region2({ slot: 11, guestPhysAddr: 2 * G, memorySize: 2 * S, guestMemfdOffset: S }),
  ],
  check: (r) => expect(kernelOutcomes(r).slice(2)).toEqual(['ok', 'EINVAL']),
});

// --- madvise: every advice of mman-common.h on a guest_memfd mapping and on memfd mappings, shared and private ---
const ADVICE = [
  0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 101, 102, 103, 104,
];
for (const [kind, file, shared] of [
  ['guest_memfd', gmem(T, MMAP | INIT_SHARED), true],
  ['memfd MAP_SHARED', { op: 'memfdCreate', size: T, as: 'g' } as Step, true],
  ['memfd MAP_PRIVATE', { op: 'memfdCreate', size: T, as: 'g' } as Step, false],
] as const) {
  for (const advice of ADVICE) {
    rows.push({
      id: `madvise ${advice} on a ${kind} mapping twice the file: inside EOF, past EOF, past the mapping; then guard, populate and read back`,
      steps: [
        vm(),
        file,
        { op: 'mmap', fd: 'g', length: 2 * T, shared, as: 'm' },
        { op: 'mapWrite', map: 'm', offset: 0, data: fill(0xaa, 2 * P) },
        { op: 'madvise', map: 'm', offset: 0, length: T, advice },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
        { op: 'madvise', map: 'm', offset: P, length: 2 * T, advice },
        { op: 'madvise', map: 'm', offset: 0, length: 2 * T + P, advice },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
        { op: 'madvise', map: 'm', offset: 2 * P, length: P, advice: 102 },
        { op: 'madvise', map: 'm', offset: 0, length: T, advice },
        { op: 'pwrite', fd: 'g', data: fill(0xcc, T), offset: 0 },
        { op: 'mapRead', map: 'm', offset: 0, length: T },
        { op: 'madvise', map: 'm', offset: 0, length: T, advice: 103 },
        { op: 'mapRead', map: 'm', offset: 0, length: 2 * T },
      ],
    });
  }
}

/**
 * kernel-contract §8.E: KVM_SET_MEMORY_ATTRIBUTES on the VM fd, on a KVM_X86_SW_PROTECTED_VM (the model's 'coco'
 * VM on its neutral backend, with in-place conversion off as on this kernel). They run only where the kernel offers
 * that VM type (KVM_CAP_VM_TYPES bit 1), which also means it has the ioctl; elsewhere each skips, saying why.
 */
const PRIVATE = 8;
const KVM_CAP_VM_TYPES = 235;
const SW_PROTECTED = 1 << 1;
const swVm = (as = 'vm'): Step => ({ op: 'createVm', as, type: 'sw-protected' });
const attrs = (
  address: number | bigint,
  size: number | bigint,
  attributes: number,
  flags?: number,
  on = 'vm',
): Step => ({
  op: 'setMemoryAttributes',
  vm: on,
  address,
  size,
  attributes,
  ...(flags === undefined ? {} : { flags }),
});
const attributeRows: Row[] = [
  {
    id: 'E1 flags != 0: EINVAL',
    steps: [swVm(), attrs(0, P, PRIVATE, 1), attrs(0, P, 3, 1)],
    check: (r) => expect(kernelOutcomes(r).slice(1)).toEqual(['EINVAL', 'EINVAL']),
  },
  {
    id: 'E2 an attribute bit other than PRIVATE: EINVAL (before the size)',
    steps: [swVm(), attrs(0, P, PRIVATE | 1), attrs(0, 0, 2)],
    check: (r) => expect(kernelOutcomes(r).slice(1)).toEqual(['EINVAL', 'EINVAL']),
  },
  { id: 'E3 size 0: EINVAL (before alignment)', steps: [swVm(), attrs(0, 0, PRIVATE), attrs(1, 0, PRIVATE)] },
  {
    id: 'E4 address + size wraps: EINVAL',
    steps: [swVm(), attrs(2n ** 64n - BigInt(P), P, PRIVATE), attrs(2n ** 64n - 1n, 2, PRIVATE)],
  },
  { id: 'E5 unaligned address or size: EINVAL', steps: [swVm(), attrs(1, P, PRIVATE), attrs(0, P + 1, PRIVATE)] },
  {
    id: 'E6 a default VM: PRIVATE is EINVAL, 0 succeeds',
    steps: [vm(), attrs(0, P, PRIVATE), attrs(0, P, 0)],
    check: (r) => expect(kernelOutcomes(r).slice(1)).toEqual(['EINVAL', 'ok']),
  },
  {
    id: 'E10 a range already holding the attribute, or one no memslot meets: 0',
    steps: [swVm(), attrs(0, P, 0), attrs(G, P, PRIVATE), attrs(G, P, PRIVATE)],
  },
  {
    id: 'E12 a conversion on the VM fd: the guest reads guest_memfd, the memfd at userspace_addr keeps the shared bytes',
    steps: [
      swVm(),
      { op: 'memfdCreate', size: T, as: 'shared' },
      { op: 'mmap', fd: 'shared', length: T, shared: true, as: 'm' },
      gmem(T, 0),
      {
        op: 'setUserMemoryRegion2',
        vm: 'vm',
        slot: 1,
        flags: KVM_MEM_GUEST_MEMFD,
        guestPhysAddr: A20_GPA,
        memorySize: T,
        userspaceAddr: { map: 'm' },
        guestMemfd: 'g',
        guestMemfdOffset: 0,
      },
      { op: 'guestWrite', vm: 'vm', gpa: A20_GPA, data: fill(0xaa, 16) },
      { op: 'mapRead', map: 'm', offset: 0, length: 16 },
      attrs(A20_GPA, P, PRIVATE),
      { op: 'guestRead', vm: 'vm', gpa: A20_GPA, length: 16 },
      { op: 'mapRead', map: 'm', offset: 0, length: 16 },
    ],
    check: (r) => {
      expect(readBack(r, 6)).toBe(hexOf(0xaa, 16));
      expect(readBack(r, 8)).toBe(hexOf(0, 16));
      expect(readBack(r, 9)).toBe(hexOf(0xaa, 16));
    },
  },
];

describe.skipIf(skipReason !== undefined)(
  `kernel-contract §8.E rows on the model and on the kernel${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    for (const row of attributeRows) {
      it(row.id, async (context) => {
        const types = await (await kernelHost()).checkExtension(KVM_CAP_VM_TYPES);
        if (!(types & SW_PROTECTED)) {
          console.log(
            `${row.id}: skipped: KVM_CAP_VM_TYPES is 0x${types.toString(16)}, without KVM_X86_SW_PROTECTED_VM (a kernel built with CONFIG_KVM_SW_PROTECTED_VM offers it, and KVM_SET_MEMORY_ATTRIBUTES with it)`,
          );
          context.skip();
        }
        const report = await compare(row.steps);
        const message = divergenceMessage(report);
        expect(message, message).toBeUndefined();
        row.check?.(report);
      });
    }
  },
);

describe.skipIf(skipReason !== undefined)(
  `kernel-contract §8 rows on the model and on the kernel${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let compared = 0;
    afterAll(async () => {
      console.log(`differential rows: ${compared} of ${rows.length} rows compared on model and kernel`);
      await closeKernelHost();
    });

    for (const row of rows) {
      it(row.id, async () => {
        const report = await compare(row.steps);
        const message = divergenceMessage(report);
        expect(message, message).toBeUndefined();
        expect(report.stoppedAfter).toBeUndefined();
        row.check?.(report);
        compared++;
      });
    }

    it('A20 with userspace_addr NULL: the model with GMEM_ONLY memslots (the default) differs, as documented', async () => {
      const steps = rows.find((r) => r.id.startsWith('A20 as the selftest'))!.steps;
      const report = await runOnBoth(steps, {
        kernel: await kernelHost(),
        model: { ...KERNEL_MATCHING_MODEL_OPTIONS, gmemOnlyMemslots: true },
      });
      expect(report.steps[3]!.model.status).toBe('ok');
      expect(report.steps[3]!.kernel.status).toBe('fault');
    });
  },
);
