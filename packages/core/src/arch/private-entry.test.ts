/**
 * The hooks a backend answers at the guest's private fault (privateEntryRefusal, contentsOnPrivateEntry), the
 * shared-back pages a removal is told about (RemovalContext.sharedBack), and pipeline counts that are bounds
 * (PipelineStep.bound, Host.pipelineBounds()).
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PAGE_SIZE } from '../constants.js';
import { createScenario } from '../testing/scenario.js';
import { expectRefused } from '../test-support.js';
import type { ArchBackend, RemovalContext } from './backend.js';
import { describeBackendProblems } from './backend.js';
import { swProtected } from './sw-protected.js';

const P = PAGE_SIZE;

/** sw-protected with a hypervisor that refuses to take a DMA-mapped page at the guest's fault (as Android pKVM). */
const refusing: ArchBackend = {
  ...swProtected,
  id: 'test:refusing',
  privateEntryRefusal: ({ dmaMapped }) =>
    dmaMapped
      ? { allow: false, fault: 'einval', fatal: false, logged: false, mechanism: 'test: DMA-mapped page' }
      : undefined,
};

describe('privateEntryRefusal', () => {
  it('a refused private fault returns the fault, installs nothing and changes nothing; after the unmap the retried fault enters', () => {
    const { host, vm, ioas, convert } = createScenario(refusing, {
      contract: 'vmm-driven',
      map: { start: 0, length: 4 * P },
    });
    convert(0, 4 * P, 'private');
    const before = host.snapshot();
    expect(vm.guestRead(P, 1, { intent: 'private' })).toMatchObject({
      ok: false,
      fault: 'einval',
      fatal: false,
      address: P,
      done: 0,
    });
    expect(host.snapshot()).toEqual(before);
    // A page no IOPTE maps is not refused.
    expect(vm.guestRead(8 * P, 1, { intent: 'private' }).ok).toBe(false); // still shared: a memory-fault exit
    ioas.unmapAll();
    expect(vm.guestRead(P, 1, { intent: 'private' }).ok).toBe(true);
    expect(host.pageMaps()[0]!.hardware).toEqual([[1, 2, 'private']]);
  });

  it('an answer that allows, or is not a fault, fails the access with EIO naming the hook and changes nothing', () => {
    for (const answer of [
      { allow: true },
      'no',
      { allow: false, fault: 'nope', fatal: false, logged: false, mechanism: 'x' },
    ]) {
      const broken = { ...swProtected, id: 'test:broken', privateEntryRefusal: () => answer as never };
      const { host, vm, convert } = createScenario(broken, { contract: 'vmm-driven' });
      convert(0, P, 'private');
      const error = expectRefused(host, () => vm.guestRead(0, 1, { intent: 'private' }), 'EIO');
      expect(error.message).toMatch(/privateEntryRefusal/);
    }
  });

  it('describeBackendProblems names a privateEntryRefusal or contentsOnPrivateEntry that is not a function', () => {
    expect(describeBackendProblems({ ...swProtected, privateEntryRefusal: 1, contentsOnPrivateEntry: 'zero' })).toEqual(
      ['privateEntryRefusal is present but not a function', 'contentsOnPrivateEntry is present but not a function'],
    );
  });
});

describe('contentsOnPrivateEntry', () => {
  it("'zero': the guest's first private access finds zeros, not what was written while the page was shared", () => {
    const zeroing: ArchBackend = { ...swProtected, id: 'test:zeroing', contentsOnPrivateEntry: () => 'zero' };
    for (const [backend, expected] of [
      [swProtected, 0x5a],
      [zeroing, 0],
    ] as const) {
      const { vm, gmem, convert } = createScenario(backend, { map: false });
      expect(gmem.mmap({ length: P, shared: true }).write(0, new Uint8Array([0x5a])).ok).toBe(true);
      convert(0, P, 'private');
      expect(vm.guestRead(0, 1, { intent: 'private' }), backend.id).toEqual({
        ok: true,
        data: new Uint8Array([expected]),
      });
    }
  });

  it('a broken answer fails the fault with EIO before the page enters: KVM_RUN fails, nothing changed, the page is not hardware-private', () => {
    const broken = { ...swProtected, id: 'test:broken', contentsOnPrivateEntry: () => 'maybe' as never };
    const { host, vm, gmem, convert } = createScenario(broken, { map: false });
    gmem.mmap({ length: P, shared: true }).write(0, new Uint8Array([7]));
    convert(0, P, 'private');
    const error = expectRefused(host, () => vm.guestRead(0, 1, { intent: 'private' }), 'EIO');
    expect(error.message).toMatch(/backend test:broken: contentsOnPrivateEntry returned 'maybe'/);
    expect(host.pageMaps()[0]!.hardware).toEqual([]);
    expect(host.observerErrors()).toEqual([]);
  });
});

describe('RemovalContext.sharedBack', () => {
  it('freeing pages the guest had shared back tells the backend how many, once; a page made private again is not shared back', () => {
    const seen: RemovalContext[] = [];
    const backend: ArchBackend = {
      ...swProtected,
      id: 'test:seen',
      removalPipeline: (context) => (
        seen.push(context),
        [{ step: 'reclaim', count: (context.sharedBack ?? 0) + context.pages }]
      ),
    };
    const { host, gmem, convert, faultPrivate } = createScenario(backend, { map: false });
    convert(0, 3 * P, 'private');
    faultPrivate(0, 3 * P);
    convert(0, 2 * P, 'shared'); // pages 0 and 1 are shared back
    convert(P, P, 'private');
    faultPrivate(P, P); // page 1 is the guest's again
    seen.length = 0;
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    expect(seen).toMatchObject([
      { cause: 'truncate', pages: 2, sharedBack: 1, sharedBackRanges: [{ offset: 0, length: P }] },
    ]);
    seen.length = 0;
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    expect(seen).toEqual([]);
    // 2 when pages 0 and 1 left the private state by the conversion, then 2 owned + 1 shared back at the punch.
    expect(host.pipelineCounters().reclaim).toBe(5);
  });
});

describe('PipelineStep.bound', () => {
  it("a counter fed by a step marked bound: 'upper' is listed by Host.pipelineBounds(); exact ones are not", () => {
    const backend: ArchBackend = {
      ...swProtected,
      id: 'test:bounds',
      removalPipeline: ({ pages, vcpus }) => [
        { step: 'exact', count: pages },
        { step: 'ipi', count: pages * vcpus, bound: 'upper' },
      ],
    };
    const { host, gmem, convert, faultPrivate } = createScenario(backend, { map: false });
    expect(host.pipelineBounds()).toEqual({});
    convert(0, P, 'private');
    faultPrivate(0, P);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(host.pipelineCounters()).toEqual({ exact: 1, ipi: 2 });
    expect(host.pipelineBounds()).toEqual({ ipi: 'upper' });
  });

  it('a step whose bound is not upper is a broken answer: the punch fails with EIO, nothing counted or changed', () => {
    const backend: ArchBackend = {
      ...swProtected,
      id: 'test:bad',
      removalPipeline: () => [{ step: 'ipi', count: 1, bound: 'lower' as never }],
    };
    const { host, gmem, convert, faultPrivate } = createScenario(backend, { map: false });
    convert(0, P, 'private');
    faultPrivate(0, P);
    const error = expectRefused(host, () => gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P), 'EIO');
    expect(error.message).toMatch(/removalPipeline returned .*"bound":"lower"/);
    expect(host.pipelineCounters()).toEqual({});
  });
});
