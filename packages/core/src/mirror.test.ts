/**
 * The 'mirror' contract mode (RFC-J5, RFC-J6): areas register and truncation revokes as in 'gmem-registry'
 * (kernel-contract §9.3), a 'revoke' answer on a conversion to private only unmaps the pages while they are private,
 * and a completed conversion to shared maps them again.
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PAGE_SIZE } from './constants.js';
import type { Contract } from './contract.js';
import type { GmemEvent } from './events.js';
import type { ArchBackend } from './arch/backend.js';
import { swProtected } from './arch/sw-protected.js';
import type { Invalidation } from './registry/registry.js';
import { createScenario } from './testing/scenario.js';

const P = PAGE_SIZE;

/** A TDX-like backend: IOPTEs go before a conversion to private, private pages are never mapped. */
const wiping: ArchBackend = {
  ...swProtected,
  id: 'wiping',
  conversionPolicy: ({ to }) => (to === 'private' ? 'revoke' : 'tolerate'),
  deviceMayReach: ({ attribute, vmType }) => vmType !== 'coco' || attribute === 'shared',
  mapsPrivatePages: false,
};

const world = (contract: Contract, attach = true) => createScenario(wiping, { contract, size: 4 * P, attach });

describe("contract 'mirror'", () => {
  it('maps the pages again after a round trip, where gmem-registry keeps them revoked', () => {
    const results: Record<string, boolean> = {};
    for (const contract of ['gmem-registry', 'mirror'] as const) {
      const { host, vm, iova, device, convert } = world(contract);
      convert(P, P, 'private');
      vm.guestRead(P, 1, { intent: 'private' });
      expect(device!.dmaWrite(iova + P, new Uint8Array([1])).ok).toBe(false);
      const rec = host.events.record();
      convert(P, P, 'shared');
      rec.stop();
      results[contract] = device!.dmaWrite(iova + P, new Uint8Array([2])).ok;
      expect(host.checkInvariants()).toEqual([]);
      const remaps = rec.events.filter((e): e is Extract<GmemEvent, { type: 'remap' }> => e.type === 'remap');
      if (contract === 'mirror') {
        expect(remaps).toEqual([{ type: 'remap', cause: 'to-shared', owner: 'ioas:1/area:1', start: 1, end: 2 }]);
        // the remap comes after invalidate_end
        expect(rec.events.map((e) => e.type).indexOf('remap')).toBeGreaterThan(
          rec.events.map((e) => e.type).indexOf('invalidate-end'),
        );
        const iopte = host.pageMaps()[0]!.iopte;
        expect(iopte.every(([, , v]) => v.state === 'live')).toBe(true);
        expect(iopte.reduce((n, [s, e]) => n + e - s, 0)).toBe(4);
      } else expect(remaps).toEqual([]);
    }
    expect(results).toEqual({ 'gmem-registry': false, mirror: true });
  });

  it('truncation still revokes the whole area for good (§9.3 unchanged)', () => {
    const { host, gmem, iova, device, convert } = world('mirror');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    convert(2 * P, P, 'private');
    convert(2 * P, P, 'shared');
    const write = device!.dmaWrite(iova + 2 * P, new Uint8Array([1]));
    expect(write.ok).toBe(false);
    expect(write.ok ? '' : write.mechanism).toMatch(/revoked/);
    expect(host.checkInvariants()).toEqual([]);
  });

  it('without a domain a restore maps nothing; a later attach maps shared pages only', () => {
    const { host, vm, ioas, iova, convert } = world('mirror', false);
    convert(0, 2 * P, 'private');
    vm.guestRead(0, 1, { intent: 'private' });
    convert(P, P, 'shared');
    const device = ioas.attachDevice();
    expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(false);
    expect(device.dmaWrite(iova + P, new Uint8Array([1])).ok).toBe(true);
    expect(host.checkInvariants()).toEqual([]);
  });

  it('remembers pages unmapped for privacy in the snapshot; a failed call changes nothing', () => {
    const { host, gmem, convert } = world('mirror');
    convert(P, P, 'private');
    const snap = host.snapshot() as {
      ioases: Array<{ areas: Array<{ unmappedPrivate: unknown[]; revoked: unknown[] }> }>;
    };
    expect(snap.ioases[0]!.areas[0]!.unmappedPrivate.length).toBe(1);
    expect(snap.ioases[0]!.areas[0]!.revoked).toEqual([]);
    const pin = gmem.pin(2 * P, P);
    const before = host.snapshot();
    expect(() => convert(2 * P, 2 * P, 'private')).toThrow(/EAGAIN|refcount/);
    expect(host.snapshot()).toEqual(before);
    pin.unpin();
  });

  it("calls a third-party consumer's restore hook in mirror mode only, and reports its exception", () => {
    for (const contract of ['gmem-registry', 'mirror'] as const) {
      const { host, gmem, iova, device, convert } = world(contract);
      const seen: Invalidation[] = [];
      gmem.registerConsumer({
        kind: 'accelerator',
        label: 'acc0',
        first: 0,
        end: 4,
        invalidateBegin() {},
        restore(inv) {
          seen.push(inv);
          throw new Error('boom');
        },
      });
      convert(0, P, 'private');
      convert(0, P, 'shared');
      expect(seen.map((inv) => [inv.cause, inv.start, inv.end])).toEqual(
        contract === 'mirror' ? [['to-shared', 0, 1]] : [],
      );
      expect(host.observerErrors().some((e) => e.hook === 'restore' && e.source === 'consumer acc0')).toBe(
        contract === 'mirror',
      );
      expect(device!.dmaWrite(iova, new Uint8Array([1])).ok).toBe(contract === 'mirror');
    }
  });
});
