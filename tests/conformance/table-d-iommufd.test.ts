/**
 * kernel-contract §8.D: iommufd selftest cases relevant to the model (IOTEST, DMABUF), on a memfd source.
 */
import { createHost, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, U64_MAX } from '@gmemlab/core';
import { describe, expect, it } from 'vitest';
import { expectErrno } from '../support/expect-errno.js';

const P = PAGE_SIZE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
const BASE = 0x10000000;

function setup() {
  const host = createHost();
  const memfd = host.memfdCreate(64 * P);
  const ioas = host.openIommufd().createIoas();
  const mapFixed = (iova: number, length: number) => ioas.mapFile({ fd: memfd, start: 0, length, iova, flags: FIXED });
  return { host, memfd, ioas, mapFixed };
}

describe('iommufd selftest cases', () => {
  it('D1 unmapping nothing is ENOENT', () => {
    const { ioas } = setup();
    for (let i = 0; i < 10; i++) expectErrno(() => ioas.unmap({ iova: BASE + i * P, length: P }), 'ENOENT');
  });

  it('D2 ten fixed single pages map and unmap', () => {
    const { ioas, mapFixed } = setup();
    for (let i = 0; i < 10; i++) expect(mapFixed(BASE + i * P, P)).toBe(BASE + i * P);
    for (let i = 0; i < 10; i++) expect(ioas.unmap({ iova: BASE + i * P, length: P })).toBe(P);
  });

  it('D3 unmapping either half of a two-page area is ENOENT (no split)', () => {
    const { ioas, mapFixed } = setup();
    mapFixed(BASE + 16 * P, 2 * P);
    expectErrno(() => ioas.unmap({ iova: BASE + 16 * P, length: P }), 'ENOENT');
    expectErrno(() => ioas.unmap({ iova: BASE + 17 * P, length: P }), 'ENOENT');
  });

  it('D4 fixed maps over an existing area are EEXIST', () => {
    const { mapFixed } = setup();
    mapFixed(BASE + 16 * P, 2 * P);
    for (const [at, len] of [[16, 2], [16, 1], [17, 1], [15, 2], [15, 3]] as const) {
      expectErrno(() => mapFixed(BASE + at * P, len * P), 'EEXIST');
    }
  });

  it('D5 unmap-all succeeds twice, the second time on an empty IOAS', () => {
    const { ioas, mapFixed } = setup();
    mapFixed(BASE, P);
    expect(ioas.unmap({ iova: 0, length: U64_MAX })).toBe(P);
    expect(ioas.unmap({ iova: 0, length: U64_MAX })).toBe(0);
  });

  it('D6 ranges cutting areas are ENOENT; a range over whole areas and holes unmaps them all', () => {
    const { ioas, mapFixed } = setup();
    const base = BASE + 4 * P;
    for (let i = 0; i < 4; i++) mapFixed(base + i * 16 * P, 8 * P);
    expectErrno(() => ioas.unmap({ iova: base - 4 * P, length: 8 * P }), 'ENOENT');
    expectErrno(() => ioas.unmap({ iova: base + 3 * 16 * P + 4 * P, length: 8 * P }), 'ENOENT');
    expect(ioas.unmap({ iova: base - 4 * P, length: 3 * 16 * P + 8 * P + 4 * P })).toBe(32 * P);
  });

  it('D7 map_file beyond the end of the memfd is EINVAL', () => {
    const { ioas, memfd } = setup();
    expectErrno(() => ioas.mapFile({ fd: memfd, start: 0, length: 65 * P, flags: RW }), 'EINVAL');
  });

  it.skip('D8 ftruncate then map_file: the model does not resize memfds', () => {});
  it.skip('D9 map_file of a dma-buf with bad ranges: dma-buf is not modelled', () => {});
  it.skip('D10 dma-buf revoke and unrevoke: dma-buf is not modelled (its revoke semantics are, for guest_memfd areas)', () => {});
  it.skip('D11 access objects and their unmap callback: in-kernel iommufd access objects are not modelled', () => {});
  it.skip('D12 map_file of a guest_memfd without the RFC: the model always has the RFC applied', () => {});
});
