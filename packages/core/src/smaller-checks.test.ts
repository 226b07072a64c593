/** The smaller checks of issue 8, item 9: defaults, KVM_CHECK_EXTENSION, a closed /dev/kvm, bigints, unknown fields, messages. */
import { describe, expect, it } from 'vitest';
import { swProtected } from './arch/sw-protected.js';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_CAP_GUEST_MEMFD,
  KVM_MEM_GUEST_MEMFD,
  PAGE_SIZE,
} from './constants.js';
import { GmemError } from './errors.js';
import { createHost, type HostOptions } from './host.js';
import { expectRefused } from './test-support.js';

const P = PAGE_SIZE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

// Hand-built: the tests make the binding, mapping and attach calls themselves (with bigints, misspelt fields, a refused attach).
function world() {
  const host = createHost();
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: 4 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  const mapping = gmem.mmap({ length: 4 * P, shared: true });
  const ioas = host.openIommufd().createIoas();
  return { host, vm, gmem, mapping, ioas };
}

function createHostError(options: unknown): GmemError {
  try {
    createHost(options as HostOptions);
  } catch (error) {
    if (GmemError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('createHost succeeded');
}

describe('createHost', () => {
  it('backend: null is EINVAL (only undefined means the default), with a plain message', () => {
    const error = createHostError({ backend: null });
    expect(error.errno).toBe('EINVAL');
    expect(error.argument).toBe('backend');
    expect(error.message).toBe('createHost: EINVAL: backend is null, not an ArchBackend v1 object');
    expect(createHostError({ backend: 42 }).message).toMatch(/backend is 42, not an ArchBackend v1 object/);
    expect(createHostError({ backend: { ...swProtected, id: '' } }).message).toMatch(
      /the backend is not an ArchBackend v1: id is not a non-empty string/,
    );
    expect(createHost({ backend: undefined }).backend).toBe(swProtected);
  });

  it('contract: null is EINVAL', () => {
    expect(createHostError({ contract: null }).errno).toBe('EINVAL');
  });

  it('a misspelt option is EINVAL naming the nearest option', () => {
    const error = createHostError({ backnd: swProtected });
    expect(error.errno).toBe('EINVAL');
    expect(error.argument).toBe('backnd');
    expect(error.message).toMatch(/unknown field "backnd" \(did you mean backend\?\)/);
  });
});

describe('KVM_CHECK_EXTENSION', () => {
  it.each(['x', 1.5, NaN, null, undefined, {}, 2n ** 64n])(
    'capability %s is EINVAL on /dev/kvm and on a VM, nothing changes',
    (capability) => {
      const { host, vm } = world();
      expectRefused(host, () => host.checkExtension(capability as number), 'EINVAL');
      expectRefused(host, () => vm.checkExtension(capability as number), 'EINVAL');
    },
  );

  it('an unknown integer capability is 0; a bigint capability is accepted', () => {
    const { host, vm } = world();
    expect(host.checkExtension(-1)).toBe(0);
    expect(host.checkExtension(2 ** 40)).toBe(0);
    expect(host.checkExtension(BigInt(KVM_CAP_GUEST_MEMFD))).toBe(1);
    expect(vm.checkExtension(BigInt(KVM_CAP_GUEST_MEMFD))).toBe(1);
  });
});

describe('a closed /dev/kvm fd', () => {
  it('makes createVm and checkExtension EBADF; nothing changes', () => {
    const { host } = world();
    host.close(host.fd);
    expectRefused(host, () => host.createVm(), 'EBADF');
    expectRefused(host, () => host.checkExtension(KVM_CAP_GUEST_MEMFD), 'EBADF');
    // Files opened from it live on, as in Linux.
    expect(() => host.memfdCreate(P)).not.toThrow();
  });
});

describe('bigint arguments', () => {
  it('fallocate, mmap, pin, accesses, madvise and map take a bigint wherever they take a number', () => {
    const { host, vm, gmem, mapping, ioas } = world();
    vm.setUserMemoryRegion2({
      slot: 0n,
      flags: BigInt(KVM_MEM_GUEST_MEMFD),
      guestPhysAddr: 0n,
      memorySize: 4n * BigInt(P),
      guestMemfd: gmem,
    });
    gmem.fallocate(BigInt(FALLOC_FL_KEEP_SIZE), 0n, BigInt(P));
    const second = gmem.mmap({ length: BigInt(P), shared: true, offset: BigInt(P) });
    gmem.pin(0n, BigInt(P)).unpin();
    expect(vm.guestWrite(0n, new Uint8Array([5])).ok).toBe(true);
    expect(vm.guestRead(0n, 1n)).toMatchObject({ ok: true, data: new Uint8Array([5]) });
    expect(mapping.read(0n, 1n)).toMatchObject({ ok: true, data: new Uint8Array([5]) });
    expect(gmem.directMapRead(0n, 1n)).toMatchObject({ ok: true });
    const iova = ioas.map({ mapping, offset: 0n, length: BigInt(P), flags: BigInt(RW) });
    const device = ioas.attachDevice();
    expect(device.dmaRead(BigInt(iova), 1n)).toMatchObject({ ok: true, data: new Uint8Array([5]) });
    expect(device.dmaWrite(BigInt(iova), new Uint8Array([6])).ok).toBe(true);
    second.madvise(0n, BigInt(P), 4n);
    gmem.fallocate(BigInt(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), 0n, BigInt(P));
    expect(host.checkInvariants()).toEqual([]);
  });
});

describe('unknown fields of struct-like arguments', () => {
  it('are EINVAL naming the field and the nearest valid name; nothing changes', () => {
    const { host, vm, gmem, mapping, ioas } = world();
    const cases: Array<[() => unknown, string, string]> = [
      [
        () =>
          vm.setUserMemoryRegion2({
            slot: 0,
            flags: KVM_MEM_GUEST_MEMFD,
            guestPhysAddr: 0,
            memorySize: 4 * P,
            guestMemfd: gmem,
            guestMemfdOfset: P,
          } as never),
        'guestMemfdOfset',
        'guestMemfdOffset',
      ],
      [
        () => vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: 0, memorySize: P, userspaceAdr: 0 } as never),
        'userspaceAdr',
        'userspaceAddr',
      ],
      [() => vm.createGuestMemfd({ size: P, flag: 1 } as never), 'flag', 'flags'],
      [() => gmem.mmap({ length: P, shared: true, ofset: 0 } as never), 'ofset', 'offset'],
      [() => gmem.setMemoryAttributes2({ offset: 0, size: P, atributes: 8 } as never), 'atributes', 'attributes'],
      [() => ioas.mapFile({ fd: gmem, start: 0, length: P, flags: RW, iovaa: 0 } as never), 'iovaa', 'iova'],
      [() => ioas.map({ mapping, offset: 0, length: P, flags: RW, lenght: P } as never), 'lenght', 'length'],
      [() => ioas.unmap({ iova: 0, length: P, flag: 0 } as never), 'flag', 'iova'],
      [() => host.createVm({ type: 'coco', vcpu: 2 } as never), 'vcpu', 'vcpus'],
    ];
    for (const [call, field, nearest] of cases) {
      const error = expectRefused(host, call, 'EINVAL');
      expect(error.argument).toBe(field);
      expect(error.message).toContain(`unknown field "${field}" (did you mean ${nearest}?)`);
    }
  });
});

describe('messages', () => {
  it('a negative fallocate mode reads as the kernel prints it', () => {
    const { host, gmem } = world();
    const error = expectRefused(host, () => gmem.fallocate(-0x1000, 0, P), 'EOPNOTSUPP');
    expect(error.message).toMatch(/mode 0xfffff000 /);
    expect(error.message).not.toMatch(/0x-/);
  });

  it('file kinds take the right article', () => {
    const { host, ioas } = world();
    const iommufd = host.openIommufd();
    // Lazy pinning: MAP_FILE takes the file; memfd_pin_folios refuses it when a domain is attached.
    ioas.mapFile({ fd: iommufd.fd, start: 0, length: P, flags: RW });
    expect(expectRefused(host, () => ioas.attachDevice(), 'EINVAL').message).toMatch(
      /is an iommufd file, neither shmem nor hugetlbfs/,
    );
  });

  it('a size that overflowed a 32-bit shift says so', () => {
    const { host, vm, gmem } = world();
    const error = expectRefused(host, () => vm.createGuestMemfd({ size: 2 << 30 }), 'EINVAL');
    expect(error.message).toMatch(/size=-2147483648 is not a non-negative integer/);
    expect(error.hint).toMatch(/2\^31 overflowed to a negative 32-bit int/);
    expect(expectRefused(host, () => gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, 3 << 30), 'EINVAL').hint).toMatch(/32-bit/);
  });
});
