/**
 * kernel-contract §8.A: tools/testing/selftests/kvm/guest_memfd_test.c, one case per row. The driver runs A1
 * per VM type, then the per-flag block with flags 0, MMAP and MMAP|INIT_SHARED where supported, then A20.
 */
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  MADV_COLLAPSE,
  MADV_DONTNEED,
  MADV_HUGEPAGE,
  PAGE_SIZE,
  PMD_SIZE,
  type VmType,
} from '@gmemlab/core';
import { describe, expect, it } from 'vitest';
import { allBytes, expectErrno, filled } from '../support/expect-errno.js';

const P = PAGE_SIZE;
const T = 4 * P;
const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const MMAP = GUEST_MEMFD_FLAG_MMAP;
const SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;

function flagSets(supported: bigint): number[] {
  const sets = [0];
  if (supported & BigInt(MMAP)) sets.push(MMAP);
  if (supported & BigInt(SHARED)) sets.push(MMAP | SHARED);
  return sets;
}

for (const type of ['default', 'coco'] as VmType[]) {
  describe(`guest_memfd_test on a '${type}' VM`, () => {
    const setup = (flags = 0, size = T) => {
      const host = createHost();
      const vm = host.createVm({ type });
      return { host, vm, gmem: vm.createGuestMemfd({ size, flags }) };
    };

    it('A1 every flag bit: supported bits create, others are EINVAL', () => {
      const { vm } = setup();
      const supported = vm.supportedGuestMemfdFlags();
      for (let bit = 0n; bit < 64n; bit++) {
        const flags = 1n << bit;
        if (supported & flags) vm.createGuestMemfd({ size: P, flags }).close();
        else expectErrno(() => vm.createGuestMemfd({ size: P, flags }), 'EINVAL');
      }
    });

    for (const flags of flagSets(createHost().createVm({ type }).supportedGuestMemfdFlags())) {
      describe(`flags 0x${flags.toString(16)}`, () => {
        it('A2 create one page; fstat', () => {
          const { gmem } = setup(flags, P);
          expect(gmem.stat().size).toBe(P);
        });

        it('A3 create two pages beside one; sizes and inode numbers differ', () => {
          const { vm, gmem } = setup(flags, P);
          const second = vm.createGuestMemfd({ size: 2 * P, flags });
          expect(second.stat().size).toBe(2 * P);
          expect(gmem.stat().size).toBe(P);
          expect(second.stat().ino).not.toBe(gmem.stat().ino);
        });

        it('A4 sizes 1..P-1 are EINVAL', () => {
          const { vm } = setup(flags);
          for (let size = 1; size < P; size++) expectErrno(() => vm.createGuestMemfd({ size, flags }), 'EINVAL');
        });

        it('A5 read/write/pread/pwrite fail', () => {
          const { gmem } = setup(flags);
          expectErrno(() => gmem.read(64), 'EINVAL');
          expectErrno(() => gmem.write(new Uint8Array(64)), 'EINVAL');
          expectErrno(() => gmem.pread(64, 0), 'ESPIPE');
          expectErrno(() => gmem.pwrite(new Uint8Array(64), 0), 'ESPIPE');
        });

        if (flags === (MMAP | SHARED)) {
          it('A6 mmap shared, memset 0xaa, read back', () => {
            const { gmem } = setup(flags);
            const mem = gmem.mmap({ length: T, shared: true });
            expect(mem.write(0, filled(T, 0xaa)).ok).toBe(true);
            expect(allBytes((mem.read(0, T) as { data: Uint8Array }).data, 0xaa)).toBe(true);
          });

          it('A7 punch the first page: it reads zero, the rest 0xaa', () => {
            const { gmem } = setup(flags);
            const mem = gmem.mmap({ length: T, shared: true });
            mem.write(0, filled(T, 0xaa));
            gmem.fallocate(PUNCH, 0, P);
            const data = mem.read(0, T);
            expect(data.ok).toBe(true);
            expect(allBytes((data as { data: Uint8Array }).data.subarray(0, P), 0)).toBe(true);
            expect(allBytes((data as { data: Uint8Array }).data.subarray(P), 0xaa)).toBe(true);
          });

          it('A8 the punched page can be written again; munmap', () => {
            const { gmem } = setup(flags);
            const mem = gmem.mmap({ length: T, shared: true });
            mem.write(0, filled(T, 0xaa));
            gmem.fallocate(PUNCH, 0, P);
            mem.write(0, filled(P, 0xaa));
            expect(allBytes((mem.read(0, T) as { data: Uint8Array }).data, 0xaa)).toBe(true);
            mem.munmap();
          });

          it('A9 a mapping 4x the file: memset faults with SIGBUS at offset T', () => {
            const { gmem } = setup(flags);
            const mem = gmem.mmap({ length: 4 * T, shared: true });
            const result = mem.write(0, filled(4 * T, 0xaa));
            expect(result).toMatchObject({ ok: false, fault: 'sigbus', address: T, done: T });
            expect(mem.read(T, 1)).toMatchObject({ ok: false, fault: 'sigbus', address: T });
            expect(allBytes((mem.read(0, T) as { data: Uint8Array }).data, 0xaa)).toBe(true);
          });

          it.skip('A10 NUMA allocation policy: the model has no NUMA nodes', () => {});

          it('A11 PMD-sized file: HUGEPAGE ok, COLLAPSE EINVAL, DONTNEED ok, read ok', () => {
            const { gmem } = setup(flags, PMD_SIZE);
            const mem = gmem.mmap({ length: PMD_SIZE, shared: true });
            for (let off = 0; off < PMD_SIZE; off += P) expect(mem.read(off, 1).ok).toBe(true);
            mem.madvise(0, PMD_SIZE, MADV_HUGEPAGE);
            expectErrno(() => mem.madvise(0, PMD_SIZE, MADV_COLLAPSE), 'EINVAL');
            mem.madvise(0, PMD_SIZE, MADV_DONTNEED);
            expect(mem.read(0, 1).ok).toBe(true);
          });
        }

        if (flags === MMAP) {
          it('A12 without INIT_SHARED the whole file is private: memset SIGBUS at byte 0', () => {
            const { gmem } = setup(flags);
            const mem = gmem.mmap({ length: T, shared: true });
            expect(mem.write(0, filled(T, 0xaa))).toMatchObject({ ok: false, fault: 'sigbus', address: 0, done: 0 });
            expect(mem.read(0, 1)).toMatchObject({ ok: false, fault: 'sigbus', address: 0 });
          });
        }

        if (flags & MMAP) {
          it('A13 MAP_PRIVATE is EINVAL', () => {
            const { gmem } = setup(flags);
            expectErrno(() => gmem.mmap({ length: T, shared: false }), 'EINVAL');
          });

          it.skip('A14 mbind/get_mempolicy: the model has no NUMA nodes', () => {});
        } else {
          it('A15 without MMAP, mmap is ENODEV', () => {
            const { gmem } = setup(flags);
            expectErrno(() => gmem.mmap({ length: P, shared: true }), 'ENODEV');
            expectErrno(() => gmem.mmap({ length: T, shared: true }), 'ENODEV');
          });
        }

        it('A16 fstat: size T, blksize P', () => {
          const { gmem } = setup(flags);
          expect(gmem.stat()).toMatchObject({ size: T, blksize: P });
        });

        it('A17 fallocate sequence', () => {
          const { gmem } = setup(flags);
          gmem.fallocate(KEEP, 0, T);
          expectErrno(() => gmem.fallocate(PUNCH, P - 1, P), 'EINVAL');
          expectErrno(() => gmem.fallocate(KEEP, T, P), 'EINVAL');
          expectErrno(() => gmem.fallocate(KEEP, T + P, P), 'EINVAL');
          gmem.fallocate(PUNCH, T, P);
          gmem.fallocate(PUNCH, T + P, P);
          expectErrno(() => gmem.fallocate(PUNCH, P, P - 1), 'EINVAL');
          gmem.fallocate(PUNCH, P, P);
          gmem.fallocate(KEEP, P, P);
        });

        it('A18 unaligned punch holes are EINVAL', () => {
          const { gmem } = setup(flags);
          const cases: Array<[number, number]> = [
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
          for (const [offset, len] of cases) expectErrno(() => gmem.fallocate(PUNCH, offset, len), 'EINVAL');
        });
      });
    }
  });
}

describe('guest_memfd_test guest access', () => {
  it('A20 the host writes 0xaa through mmap, the guest reads it and writes 0xff, the host sees 0xff', () => {
    const host = createHost();
    const vm = host.createVm();
    expect(vm.supportedGuestMemfdFlags() & BigInt(MMAP | SHARED)).toBe(BigInt(MMAP | SHARED));
    const gmem = vm.createGuestMemfd({ size: P, flags: MMAP | SHARED });
    const gpa = 4 * 1024 ** 3;
    vm.setUserMemoryRegion2({
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: gpa,
      memorySize: P,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    const mem = gmem.mmap({ length: P, shared: true });
    mem.write(0, filled(P, 0xaa));
    mem.munmap();
    const seen = vm.guestRead(gpa, P);
    expect(seen.ok && allBytes(seen.data, 0xaa)).toBe(true);
    expect(vm.guestWrite(gpa, filled(P, 0xff)).ok).toBe(true);
    const again = gmem.mmap({ length: P, shared: true });
    expect(allBytes((again.read(0, P) as { data: Uint8Array }).data, 0xff)).toBe(true);
  });
});
