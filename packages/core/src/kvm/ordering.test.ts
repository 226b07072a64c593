/**
 * The order in which truncation and conversion reach each consumer (kernel-contract §3.5, §4.2), as seen on the
 * event stream.
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from '../constants.js';
import type { GmemEvent } from '../events.js';
import type { ArchBackend } from '../arch/backend.js';
import { swProtected } from '../arch/sw-protected.js';
import { createScenario } from '../testing/scenario.js';

const P = PAGE_SIZE;

function world(backend: ArchBackend = swProtected) {
  const { host, vm, gmem, iova, device } = createScenario(backend, { size: 4 * P });
  const mapping = gmem.mmap({ length: 4 * P, shared: true });
  // Fault every side in: stage-2, host PTEs, IOPTEs.
  vm.guestRead(0, 4 * P);
  mapping.read(0, 4 * P);
  device!.dmaRead(iova, 4 * P);
  return { host, gmem, vm };
}

function trace(events: GmemEvent[]): string[] {
  return events.flatMap((e) => {
    if (e.type === 'invalidate-begin' || e.type === 'invalidate-end') return [`${e.type}:${e.cause}`];
    if (e.type === 'zap') return [`zap:${e.target}`];
    if (e.type === 'revoke') return ['revoke'];
    return [];
  });
}

describe('invalidation order', () => {
  it('truncation: begin, stage-2, IOPTEs (whole area revoked), then host PTEs and the free, then end', () => {
    const { host, gmem } = world();
    const rec = host.events.record();
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, P, P);
    rec.stop();
    expect(trace(rec.events)).toEqual([
      'invalidate-begin:truncate',
      'zap:stage2',
      'zap:iopte',
      'revoke',
      'zap:host-pte',
      'invalidate-end:truncate',
    ]);
  });

  it('to private: host PTEs first (before the refcount check), then begin, stage-2, the policy, end', () => {
    const revoking: ArchBackend = { ...swProtected, id: 'revoking', conversionPolicy: () => 'revoke' };
    const { host, gmem } = world(revoking);
    const rec = host.events.record();
    gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    rec.stop();
    expect(trace(rec.events)).toEqual([
      'zap:host-pte',
      'invalidate-begin:to-private',
      'zap:stage2',
      'zap:iopte',
      'revoke',
      'invalidate-end:to-private',
    ]);
  });

  it('a refused conversion zaps host PTEs (they refault transparently) and invalidates nothing else', () => {
    const refusing: ArchBackend = { ...swProtected, id: 'refusing', conversionPolicy: () => 'refuse' };
    const { host, gmem } = world(refusing);
    const rec = host.events.record();
    expect(() => gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })).toThrow(
      /EAGAIN/,
    );
    rec.stop();
    expect(trace(rec.events)).toEqual(['zap:host-pte']);
  });

  it('to shared: no host PTE zap, private stage-2 entries go', () => {
    const { host, gmem, vm } = world();
    gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(vm.guestRead(0, 1).ok).toBe(true); // installs a private stage-2 entry
    const rec = host.events.record();
    gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: 0 });
    rec.stop();
    expect(trace(rec.events)).toEqual(['invalidate-begin:to-shared', 'zap:stage2', 'invalidate-end:to-shared']);
  });
});
