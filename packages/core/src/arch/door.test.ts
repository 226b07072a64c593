/**
 * A hostile backend, one hook at a time: every hook of ArchBackend, driven through each public call that asks it,
 * throws or answers outside its declared type. Where the call can still refuse (door.ts HOOKS: 'refuse', for the
 * hook or for that call site), it fails with EIO naming the backend and the hook, the model is exactly as before
 * and no event was emitted; where it cannot (the release of the last guest_memfd file), the call completes as with
 * the documented default answer and the broken answer is reported once, naming both. The cases are generated from
 * HOOKS: a hook or call site added there without a case here fails (the typecheck, and the first tests).
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from '../constants.js';
import { GmemError } from '../errors.js';
import { createHost, type Host } from '../host.js';
import { createScenario } from '../testing/scenario.js';
import { expectRefused } from '../test-support.js';
import type { ArchBackend } from './backend.js';
import { HOOKS, type BackendHook, type HookKind } from './door.js';
import { swProtected } from './sw-protected.js';

const P = PAGE_SIZE;
const ID = 'test:hostile';

/** How the hook under test misbehaves. */
const MISBEHAVIOURS = {
  throws: () => {
    throw new Error('hostile hook');
  },
  // 'ZERO' is no answer of any hook (the example: contentsOnConversion answering 'ZERO').
  'answers a wrong string': () => 'ZERO',
  // A hook is synchronous: a Promise is outside every declared type.
  'answers a Promise': () => Promise.resolve('keep'),
} as const;
type Misbehaviour = keyof typeof MISBEHAVIOURS;

/**
 * A backend whose every hook is present and well-behaved (the neutral backend's answers, the documented default
 * for the optional ones) until `arm` makes one misbehave.
 */
function hostileBackend(): { backend: ArchBackend; asked: Set<BackendHook>; arm(hook: BackendHook, how: Misbehaviour): void } {
  let armed: { hook: BackendHook; how: Misbehaviour } | undefined;
  const asked = new Set<BackendHook>();
  const good: { [K in BackendHook]-?: NonNullable<ArchBackend[K]> } = {
    conversionPolicy: swProtected.conversionPolicy,
    hypervisorRefusal: () => undefined,
    deviceAccess: swProtected.deviceAccess,
    hostKernelAccess: swProtected.hostKernelAccess,
    deviceMayReach: swProtected.deviceMayReach,
    contentsOnConversion: swProtected.contentsOnConversion,
    privateEntryRefusal: () => undefined,
    contentsOnRemoval: () => 'keep',
    removalPipeline: () => [],
    contentsOnPrivateEntry: () => 'keep',
    privateEntry: () => [],
  };
  const hooks = Object.fromEntries(
    Object.keys(HOOKS).map((hook) => [
      hook,
      (...args: never[]) => {
        asked.add(hook as BackendHook);
        return armed?.hook === hook ? MISBEHAVIOURS[armed.how]() : (good[hook as BackendHook] as (...a: never[]) => unknown)(...args);
      },
    ]),
  );
  const backend = { ...swProtected, id: ID, ...hooks } as ArchBackend;
  return { backend, asked, arm: (hook, how) => (armed = { hook, how }) };
}

/** Per call site of a hook: the world it is asked in, and the public call that asks it. */
interface Case {
  setup(backend: ArchBackend): { host: Host };
  drive(world: { host: Host }): unknown;
}
const kase = <W extends { host: Host }>(setup: (backend: ArchBackend) => W, drive: (world: W) => unknown): Case => ({ setup, drive: drive as (world: { host: Host }) => unknown });

type World = ReturnType<typeof createScenario>;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const punchFirstPage = (w: World) => w.gmem.fallocate(PUNCH, 0, P);
const privateFault = (w: World) => w.vm.guestRead(0, 1, { intent: 'private' });
/** Page 0 private and faulted in by the guest (hardware-private), the file mapped by an area with a device. */
const faulted = (backend: ArchBackend) => createScenario(backend, { private: [{ offset: 0, length: P, faulted: true }] });
/** As `faulted`, but only the fd holds the file: closing it releases the file and evicts the inode. */
const lastReference = (backend: ArchBackend) => createScenario(backend, { map: false, private: [{ offset: 0, length: P, faulted: true }] });
/**
 * Page 0 private, not yet faulted in, entering at the stage-2 install (TDX, CCA, pKVM): the guest's next private
 * access makes it hardware-private. The page is in the page cache already: the fault's first step
 * (kvm_gmem_get_pfn) takes the folio, and a later failure of the fault leaves it there, as in the kernel.
 */
const entersAtInstall = (backend: ArchBackend) => createScenario(backend, { private: [{ offset: 0, length: P }] });
/**
 * Page 0 private and not even in the page cache, entering in kvm_gmem_get_pfn's prepare step (SEV-SNP): a broken
 * answer must fail the fault before the folio is taken.
 */
const entersAtResolve = (backend: ArchBackend) => {
  const world = createScenario({ ...backend, privateEntryAt: 'resolve' }, { private: [{ offset: 0, length: P }] });
  punchFirstPage(world);
  return world;
};
/**
 * Today's path (conversion 'separate') with a backend whose hardware gives a page up at the private zap
 * (privateRemovalAt 'zap'): page 0 private and hardware-private; KVM_SET_MEMORY_ATTRIBUTES to shared ends that.
 */
const separateZap = (backend: ArchBackend) => {
  const host = createHost({ backend: { ...backend, privateRemovalAt: 'zap' }, conversion: 'separate' });
  const vm = host.createVm({ type: 'coco', vcpus: 2 });
  const gmem = vm.createGuestMemfd({ size: 4 * P });
  const shared = host.memfdCreate(4 * P).mmap({ length: 4 * P, shared: true });
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * P, userspaceAddr: shared.address, guestMemfd: gmem, guestMemfdOffset: 0 });
  vm.setMemoryAttributes({ address: 0, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.guestRead(0, 1, { intent: 'private' });
  return { host, vm };
};
const toSharedOnVm = (w: ReturnType<typeof separateZap>) => w.vm.setMemoryAttributes({ address: 0, size: P, attributes: 0 });

const faultCases = {
  'guest fault, entry at install': kase(entersAtInstall, privateFault),
  'guest fault, entry at resolve': kase(entersAtResolve, privateFault),
};

/** Per hook, per call site: for a hook whose kind is per call site, exactly the sites HOOKS names. */
const CASES: { [K in BackendHook]: (typeof HOOKS)[K] extends HookKind ? Record<string, Case> : { [S in keyof (typeof HOOKS)[K]]: Case } } = {
  conversionPolicy: { KVM_SET_MEMORY_ATTRIBUTES2: kase(createScenario, (w) => w.convert(0, P, 'private')) },
  hypervisorRefusal: { KVM_SET_MEMORY_ATTRIBUTES2: kase(createScenario, (w) => w.convert(0, P, 'private')) },
  deviceAccess: { 'DMA read': kase(faulted, (w) => w.device!.dmaRead(w.iova, 1)) },
  hostKernelAccess: { 'direct-map read': kase(faulted, (w) => w.gmem.directMapRead(0, 1)) },
  deviceMayReach: { checkInvariants: kase(createScenario, (w) => w.host.checkInvariants()) },
  contentsOnConversion: { KVM_SET_MEMORY_ATTRIBUTES2: kase(faulted, (w) => w.convert(0, P, 'shared')), KVM_SET_MEMORY_ATTRIBUTES: kase(separateZap, toSharedOnVm) },
  privateEntryRefusal: faultCases,
  privateEntry: faultCases,
  contentsOnPrivateEntry: faultCases,
  contentsOnRemoval: { fallocate: kase(faulted, punchFirstPage), release: kase(lastReference, (w) => w.gmem.close()) },
  removalPipeline: {
    fallocate: kase(faulted, punchFirstPage),
    KVM_SET_MEMORY_ATTRIBUTES2: kase(faulted, (w) => w.convert(0, P, 'shared')),
    KVM_SET_MEMORY_ATTRIBUTES: kase(separateZap, toSharedOnVm),
    release: kase(lastReference, (w) => w.gmem.close()),
  },
};

/** The kind of `hook` where `site` asks it. */
function kindAt(hook: BackendHook, site: string): HookKind {
  const kind = HOOKS[hook];
  return typeof kind === 'string' ? kind : (kind as Record<string, HookKind>)[site]!;
}

describe('the door: a hostile backend, one hook at a time', () => {
  it('every hook of the door has cases, and every case a hook; a hook whose kind is per call site has a case per site', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(HOOKS).sort());
    for (const hook of Object.keys(HOOKS) as BackendHook[]) {
      const kind = HOOKS[hook];
      expect(Object.keys(CASES[hook]).length, hook).toBeGreaterThan(0);
      if (typeof kind !== 'string') expect(Object.keys(CASES[hook]).sort(), hook).toEqual(Object.keys(kind).sort());
    }
  });

  it('only the release of the last file, which cannot fail, reports; every other call site refuses', () => {
    const reporting = (Object.keys(HOOKS) as BackendHook[]).flatMap((hook) => Object.keys(CASES[hook]).filter((site) => kindAt(hook, site) === 'report').map((site) => `${hook} at ${site}`));
    expect(reporting).toEqual(['contentsOnRemoval at release', 'removalPipeline at release']);
  });

  for (const hook of Object.keys(HOOKS) as BackendHook[]) {
    for (const [site, { setup, drive }] of Object.entries(CASES[hook] as Record<string, Case>)) {
      for (const how of Object.keys(MISBEHAVIOURS) as Misbehaviour[]) {
        if (kindAt(hook, site) === 'refuse') {
          it(`${hook} at ${site}, ${how}: the call fails with EIO naming the hook and the backend; nothing changed, no event`, () => {
            const { backend, arm } = hostileBackend();
            const world = setup(backend);
            // The case really asks the hook: well-behaved, the call asks it and succeeds.
            const well = hostileBackend();
            const twin = setup(well.backend);
            well.asked.clear();
            expect(() => drive(twin)).not.toThrow();
            expect(well.asked).toContain(hook);
            arm(hook, how);
            const recording = world.host.events.record();
            const error = expectRefused(world.host, () => drive(world), 'EIO');
            recording.stop();
            expect(error.message).toMatch(new RegExp(`backend ${ID}: ${hook} (threw|returned)`));
            expect(recording.events).toEqual([]);
            expect(world.host.observerErrors()).toEqual([]);
          });
        } else {
          it(`${hook} at ${site}, ${how}: the call completes as with the default answer; the broken answer is reported, naming the hook and the backend`, () => {
            const { backend, arm } = hostileBackend();
            const world = setup(backend);
            const well = hostileBackend();
            const twin = setup(well.backend);
            well.asked.clear();
            arm(hook, how);
            const result = drive(world);
            expect(result).toEqual(drive(twin));
            expect(world.host.snapshot()).toEqual(twin.host.snapshot());
            expect(world.host.observerErrors()).toEqual([{ source: `backend ${ID}`, hook, message: expect.any(String) }]);
            expect(twin.host.observerErrors()).toEqual([]);
            expect(well.asked).toContain(hook);
          });
        }
      }
    }
  }

  it('a GmemError a hook throws passes through as it is (a backend may refuse with an errno of its own)', () => {
    const backend: ArchBackend = {
      ...swProtected,
      id: ID,
      hypervisorRefusal: () => {
        throw new GmemError('EPERM', 'hypervisor', 'refused');
      },
    };
    const world = createScenario(backend);
    expect(expectRefused(world.host, () => world.convert(0, P, 'private'), 'EPERM').message).toMatch(/refused/);
  });
});
