/**
 * fallocate(2) on the two files that take it (guest_memfd, memfd): the checks they share (parseFallocate), and
 * MADV_REMOVE's punch, which goes through the mapping's own file reference and so works after the fd is closed,
 * while fallocate(2) itself is EBADF there whatever else it is given.
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  MADV_REMOVE,
  PAGE_SIZE,
} from '../constants.js';
import { createHost } from '../host.js';
import { expectRefused } from '../test-support.js';

const P = PAGE_SIZE;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

function world(kind: 'guest_memfd' | 'memfd') {
  const host = createHost();
  const vm = host.createVm({ type: 'coco' });
  const file =
    kind === 'memfd'
      ? host.memfdCreate(4 * P)
      : vm.createGuestMemfd({ size: 4 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  const map = file.mmap({ length: 4 * P, shared: true });
  expect(map.write(0, new Uint8Array(2 * P).fill(0xaa)).ok).toBe(true);
  return { host, file, map };
}

describe.each(['guest_memfd', 'memfd'] as const)('fallocate on a %s', (kind) => {
  it('is EBADF once the fd is closed, an extra argument or not (none reaches the mapping-only punch), and changes nothing', () => {
    const { host, file } = world(kind);
    file.close();
    expectRefused(host, () => file.fallocate(PUNCH, 0, P), 'EBADF');
    // The fourth parameter `viaMapping` used to be public: `true` skipped the EBADF and punched a closed file.
    const loose = file.fallocate as (...args: unknown[]) => void;
    expectRefused(host, () => loose.call(file, PUNCH, 0, P, true), 'EBADF');
  });

  it('checks in the order both files share: the arguments parse (EINVAL), then the fd (EBADF), then the range (EINVAL)', () => {
    const { host, file } = world(kind);
    file.close();
    expect(expectRefused(host, () => file.fallocate('x' as never, 0, P), 'EINVAL').argument).toBe('mode');
    expectRefused(host, () => file.fallocate(PUNCH, -P, P), 'EBADF');
    const open = world(kind);
    expect(expectRefused(open.host, () => open.file.fallocate(PUNCH, -P, P), 'EINVAL').argument).toBe('offset');
    expect(expectRefused(open.host, () => open.file.fallocate(PUNCH, 0, 0), 'EINVAL').argument).toBe('len');
  });

  it('MADV_REMOVE punches through the mapping after the fd is closed (the mapping holds the file)', () => {
    const { host, file, map } = world(kind);
    file.close();
    const before = host.allocatedPages;
    map.madvise(0, P, MADV_REMOVE);
    expect(host.allocatedPages).toBe(before - 1);
    const read = map.read(0, 2 * P);
    expect(read.ok).toBe(true);
    if (read.ok) {
      expect(read.data!.subarray(0, P).every((b) => b === 0)).toBe(true);
      expect(read.data!.subarray(P).every((b) => b === 0xaa)).toBe(true);
    }
  });
});
