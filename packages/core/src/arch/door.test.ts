/**
 * A hostile backend, one hook at a time: every hook of ArchBackend, driven through each public call that asks it,
 * throws or answers outside its declared type. Where the call can still refuse (door.ts HOOKS: 'refuse', for the
 * hook or for that call site), it fails with EIO naming the backend and the hook, the model is exactly as before
 * and no event was emitted; where it cannot (the release of the last guest_memfd file), the call completes as with
 * the documented default answer and the broken answer is reported once, naming both. The cases are generated from
 * HOOKS: a hook or call site added there without a case here fails (the typecheck, and the first tests). The
 * access hooks and the guest's entry hooks also fail late (on the second page of an access, or on a page the
 * access would allocate): still nothing changed. And an answer is owned once checked: getters are read once,
 * inside the hook's try.
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import { GmemError } from '../errors.js';
import { createHost, type Host } from '../host.js';
import { createScenario } from '../testing/scenario.js';
import { expectRefused } from '../test-support.js';
import { describeBackendProblems, type ArchBackend } from './backend.js';
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
function hostileBackend(): {
  backend: ArchBackend;
  asked: Set<BackendHook>;
  arm(hook: BackendHook, how: Misbehaviour, after?: number): void;
} {
  // `after`: how many asks of the hook are still answered well before it misbehaves.
  let armed: { hook: BackendHook; how: Misbehaviour; after: number } | undefined;
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
        if (armed?.hook === hook && armed.after-- <= 0) return MISBEHAVIOURS[armed.how]();
        return (good[hook as BackendHook] as (...a: never[]) => unknown)(...args);
      },
    ]),
  );
  const backend = { ...swProtected, id: ID, ...hooks } as ArchBackend;
  return { backend, asked, arm: (hook, how, after = 0) => (armed = { hook, how, after }) };
}

/** Per call site of a hook: the world it is asked in, and the public call that asks it. */
interface Case {
  setup(backend: ArchBackend): { host: Host };
  drive(world: { host: Host }): unknown;
}
const kase = <W extends { host: Host }>(setup: (backend: ArchBackend) => W, drive: (world: W) => unknown): Case => ({
  setup,
  drive: drive as (world: { host: Host }) => unknown,
});

type World = ReturnType<typeof createScenario>;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const punchFirstPage = (w: World) => w.gmem.fallocate(PUNCH, 0, P);
const privateFault = (w: World) => w.vm.guestRead(0, 1, { intent: 'private' });
/** Page 0 private and faulted in by the guest (hardware-private), the file mapped by an area with a device. */
const faulted = (backend: ArchBackend) =>
  createScenario(backend, { private: [{ offset: 0, length: P, faulted: true }] });
/** As `faulted`, but only the fd holds the file: closing it releases the file and evicts the inode. */
const lastReference = (backend: ArchBackend) =>
  createScenario(backend, { map: false, private: [{ offset: 0, length: P, faulted: true }] });
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
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: 0,
    memorySize: 4 * P,
    userspaceAddr: shared.address,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  vm.setMemoryAttributes({ address: 0, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.guestRead(0, 1, { intent: 'private' });
  return { host, vm };
};
const toSharedOnVm = (w: ReturnType<typeof separateZap>) =>
  w.vm.setMemoryAttributes({ address: 0, size: P, attributes: 0 });

/** Page 0 private and hardware-private on a backend whose hardware gives it up at the zap; memslot 0 is deleted. */
const zapDelete = (backend: ArchBackend) =>
  createScenario({ ...backend, privateRemovalAt: 'zap' }, { private: [{ offset: 0, length: P, faulted: true }] });
const deleteSlot0 = (w: World) => w.vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0 });

const faultCases = {
  'guest fault, entry at install': kase(entersAtInstall, privateFault),
  'guest fault, entry at resolve': kase(entersAtResolve, privateFault),
};

/** Per hook, per call site: for a hook whose kind is per call site, exactly the sites HOOKS names. */
const CASES: {
  [K in BackendHook]: (typeof HOOKS)[K] extends HookKind
    ? Record<string, Case>
    : { [S in keyof (typeof HOOKS)[K]]: Case };
} = {
  conversionPolicy: { KVM_SET_MEMORY_ATTRIBUTES2: kase(createScenario, (w) => w.convert(0, P, 'private')) },
  hypervisorRefusal: { KVM_SET_MEMORY_ATTRIBUTES2: kase(createScenario, (w) => w.convert(0, P, 'private')) },
  deviceAccess: { 'DMA read': kase(faulted, (w) => w.device!.dmaRead(w.iova, 1)) },
  hostKernelAccess: { 'direct-map read': kase(faulted, (w) => w.gmem.directMapRead(0, 1)) },
  deviceMayReach: { checkInvariants: kase(createScenario, (w) => w.host.checkInvariants()) },
  contentsOnConversion: {
    KVM_SET_MEMORY_ATTRIBUTES2: kase(faulted, (w) => w.convert(0, P, 'shared')),
    KVM_SET_MEMORY_ATTRIBUTES: kase(separateZap, toSharedOnVm),
  },
  privateEntryRefusal: faultCases,
  privateEntry: faultCases,
  contentsOnPrivateEntry: faultCases,
  contentsOnRemoval: {
    fallocate: kase(faulted, punchFirstPage),
    release: kase(lastReference, (w) => w.gmem.close()),
    KVM_SET_USER_MEMORY_REGION2: kase(zapDelete, deleteSlot0),
  },
  removalPipeline: {
    fallocate: kase(faulted, punchFirstPage),
    KVM_SET_MEMORY_ATTRIBUTES2: kase(faulted, (w) => w.convert(0, P, 'shared')),
    KVM_SET_MEMORY_ATTRIBUTES: kase(separateZap, toSharedOnVm),
    release: kase(lastReference, (w) => w.gmem.close()),
    KVM_SET_USER_MEMORY_REGION2: kase(zapDelete, deleteSlot0),
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

  it('only the release of the last file and a memslot deletion, which cannot fail, report; every other call site refuses', () => {
    const reporting = (Object.keys(HOOKS) as BackendHook[]).flatMap((hook) =>
      Object.keys(CASES[hook])
        .filter((site) => kindAt(hook, site) === 'report')
        .map((site) => `${hook} at ${site}`),
    );
    expect(reporting).toEqual([
      'contentsOnRemoval at release',
      'contentsOnRemoval at KVM_SET_USER_MEMORY_REGION2',
      'removalPipeline at release',
      'removalPipeline at KVM_SET_USER_MEMORY_REGION2',
    ]);
  });

  it('describeBackendProblems checks every hook of the door: each one that is not a function is named', () => {
    for (const hook of Object.keys(HOOKS)) {
      expect(describeBackendProblems({ ...swProtected, [hook]: 42 })).toEqual([
        expect.stringMatching(new RegExp(`^${hook} is (present but )?not a function$`)),
      ]);
    }
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
            expect(world.host.observerErrors()).toEqual([
              { source: `backend ${ID}`, hook, message: expect.any(String) },
            ]);
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

/** Page 0 shared, page 1 private and hardware-private: a device or the host kernel asks the backend for page 1 only. */
const sharedThenFaulted = (backend: ArchBackend) =>
  createScenario(backend, { private: [{ offset: P, length: P, faulted: true }] });
/** Pages 0 and 1 private, not yet faulted in: the guest's private write asks privateEntryRefusal for each. */
const twoUnfaulted = (backend: ArchBackend) => createScenario(backend, { private: [{ offset: 0, length: 2 * P }] });
/** Page 0 private and not allocated (punched after the scenario's fallocate): reaching it allocates it. */
const unallocated = (backend: ArchBackend) => {
  const world = entersAtInstall(backend);
  punchFirstPage(world);
  return world;
};
const TWO_PAGES = new Uint8Array(2 * P).fill(0xab);
/**
 * Today's path (conversion 'separate'): page 0 shared, reached through the memslot's userspace address (a
 * MAP_PRIVATE memfd mapping: the guest's write faults it in and copies it), page 1 private and not faulted in.
 */
const todayShared0Private1 = (backend: ArchBackend): World => {
  const host = createHost({ backend, conversion: 'separate' });
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: 2 * P });
  const shared = host.memfdCreate(2 * P).mmap({ length: 2 * P, shared: false });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: 0,
    memorySize: 2 * P,
    userspaceAddr: shared.address,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  vm.setMemoryAttributes({ address: P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  return { host, vm } as World;
};
const resolveAt = (backend: ArchBackend): ArchBackend => ({ ...backend, privateEntryAt: 'resolve' });

/**
 * Per access hook, accesses where the hook fails only after the access has reached something it would change: a
 * page written before it on a longer access, or a page allocated for it. `after`: the asks answered well first.
 */
/** The guest's entry hooks, asked together at its private fault (GmemInode.privateEntryPlan): each fails late too. */
const ENTRY_HOOKS = [
  'privateEntryRefusal',
  'privateEntry',
  'contentsOnPrivateEntry',
] as const satisfies readonly BackendHook[];
const LATE: Array<{
  name: string;
  hook: BackendHook;
  setup(backend: ArchBackend): World;
  drive(world: World): unknown;
  after: number;
}> = [
  {
    name: 'a 2-page DMA write, page 1 private',
    hook: 'deviceAccess',
    setup: sharedThenFaulted,
    drive: (w) => w.device!.dmaWrite(w.iova, TWO_PAGES),
    after: 0,
  },
  {
    name: 'a 2-page direct map write, page 1 private',
    hook: 'hostKernelAccess',
    setup: sharedThenFaulted,
    drive: (w) => w.gmem.directMapWrite(0, TWO_PAGES),
    after: 0,
  },
  {
    name: 'a direct map read of a private page not allocated yet',
    hook: 'hostKernelAccess',
    setup: unallocated,
    drive: (w) => w.gmem.directMapRead(0, 1),
    after: 0,
  },
  ...ENTRY_HOOKS.flatMap((hook) => [
    {
      name: 'a 2-page private guest write (entry at install)',
      hook,
      setup: twoUnfaulted,
      drive: (w: World) => w.vm.guestWrite(0, TWO_PAGES, { intent: 'private' }),
      after: 1,
    },
    {
      name: 'a 2-page private guest write (entry at resolve)',
      hook,
      setup: (b: ArchBackend) => twoUnfaulted(resolveAt(b)),
      drive: (w: World) => w.vm.guestWrite(0, TWO_PAGES, { intent: 'private' }),
      after: 1,
    },
    {
      name: "today's path: a 2-page guest write, page 0 through the userspace address",
      hook,
      setup: todayShared0Private1,
      drive: (w: World) => w.vm.guestWrite(0, TWO_PAGES),
      after: 0,
    },
    {
      name: 'a private guest fault on a page not allocated yet (entry at install)',
      hook,
      setup: unallocated,
      drive: privateFault,
      after: 0,
    },
    {
      name: 'a private guest fault on a page not allocated yet (entry at resolve)',
      hook,
      setup: (b: ArchBackend) => unallocated(resolveAt(b)),
      drive: privateFault,
      after: 0,
    },
  ]),
];

describe('the door: a refusing access hook that fails late in an access changes nothing either', () => {
  for (const { name, hook, setup, drive, after } of LATE) {
    for (const how of Object.keys(MISBEHAVIOURS) as Misbehaviour[]) {
      it(`${hook} ${how} on ${name}: EIO, nothing written, allocated or made private`, () => {
        const { backend, arm } = hostileBackend();
        const world = setup(backend);
        // Well-behaved, the same call asks the hook and changes the model: there is something to leave as it was.
        const well = hostileBackend();
        const twin = setup(well.backend);
        const before = twin.host.snapshot();
        well.asked.clear();
        expect(drive(twin)).toMatchObject({ ok: true });
        expect(well.asked).toContain(hook);
        expect(twin.host.snapshot()).not.toEqual(before);
        arm(hook, how, after);
        const error = expectRefused(world.host, () => drive(world), 'EIO');
        expect(error.message).toMatch(new RegExp(`backend ${ID}: ${hook} (threw|returned)`));
      });
    }
  }
});

/** A refusing verdict that passes every check. */
const CONTAINED = { allow: false, fault: 'contained', fatal: false, logged: true, mechanism: 'test: blocked' } as const;

/** An object whose field `name` answers `first` on its first read and `then` on every later one. */
function turncoat<T extends object>(base: T, name: string, first: unknown, then: unknown): T {
  let reads = 0;
  return Object.defineProperty({ ...base }, name, { enumerable: true, get: () => (reads++ === 0 ? first : then) });
}

const bomb = (name: string): object =>
  Object.defineProperty({}, name, {
    enumerable: true,
    get: () => {
      throw new Error('getter bomb');
    },
  });

describe('the door owns what it checks: a hostile answer object', () => {
  const withHooks = (hooks: Partial<ArchBackend>): ArchBackend => ({ ...swProtected, id: ID, ...hooks });

  it('an access verdict whose getter throws fails the access with EIO naming the hook, as a throwing hook does', () => {
    const world = faulted(withHooks({ deviceAccess: () => bomb('allow') as never }));
    const error = expectRefused(world.host, () => world.device!.dmaRead(world.iova, 1), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: deviceAccess threw: getter bomb`);
  });

  it('a refusal whose getter throws fails the guest fault with EIO naming privateEntryRefusal', () => {
    const world = entersAtInstall(withHooks({ privateEntryRefusal: () => bomb('fault') as never }));
    const error = expectRefused(world.host, () => privateFault(world), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: privateEntryRefusal threw: getter bomb`);
  });

  it('a verdict is read once: what was checked is what the access does (fault, then a wrong string)', () => {
    const world = faulted(withHooks({ deviceAccess: () => turncoat(CONTAINED, 'fault', 'contained', 'ZERO') }));
    expect(world.device!.dmaRead(world.iova, 1)).toMatchObject({
      ok: false,
      fault: 'contained',
      mechanism: 'test: blocked',
    });
  });

  it('a verdict is read once: a fatal flag checked as false does not crash the host afterwards', () => {
    const world = faulted(withHooks({ hostKernelAccess: () => turncoat(CONTAINED, 'fatal', false, 'yes') }));
    expect(world.gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fatal: false });
    expect(world.host.crashed).toBeUndefined();
  });

  it('a refusing verdict with a poisons that is not a boolean is wrong: EIO, and the frame is not poisoned', () => {
    const world = faulted(withHooks({ deviceAccess: () => ({ ...CONTAINED, lands: true, poisons: 'no' }) as never }));
    const error = expectRefused(world.host, () => world.device!.dmaWrite(world.iova, new Uint8Array([1])), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: deviceAccess returned`);
    expect(error.message).toMatch('poisons is not a boolean');
    expect(world.host.snapshot()).toMatchObject({ poisoned: [] });
  });

  it('a hook that throws an exception which itself throws when printed still fails with EIO naming the hook', () => {
    const hostile = {
      toString() {
        throw new Error('toString bomb');
      },
    };
    const world = faulted(
      withHooks({
        deviceAccess: () => {
          throw hostile;
        },
      }),
    );
    const error = expectRefused(world.host, () => world.device!.dmaRead(world.iova, 1), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: deviceAccess threw: an object that throws when read`);
  });

  it('an answer that throws when it is read is EIO naming the hook (the host reads it as part of the hook: arch/own.ts)', () => {
    const answer = new Proxy(
      {},
      {
        get: (_target, name) => (name === 'allow' ? 'maybe' : undefined),
        ownKeys: () => {
          throw new Error('ownKeys bomb');
        },
      },
    );
    const world = faulted(withHooks({ deviceAccess: () => answer as never }));
    const error = expectRefused(world.host, () => world.device!.dmaRead(world.iova, 1), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: deviceAccess threw: ownKeys bomb`);
  });

  it('a removalPipeline step whose getter throws fails the punch with EIO naming the hook (it asks before it changes anything)', () => {
    const world = faulted(withHooks({ removalPipeline: () => [bomb('step') as never] }));
    const error = expectRefused(world.host, () => punchFirstPage(world), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: removalPipeline threw: getter bomb`);
  });

  it('a removalPipeline step whose getter throws at the release is reported, and the release goes on with no steps (it cannot fail)', () => {
    const world = lastReference(withHooks({ removalPipeline: () => [bomb('step') as never] }));
    const twin = lastReference(withHooks({ removalPipeline: () => [] }));
    expect(() => world.gmem.close()).not.toThrow();
    twin.gmem.close();
    expect(world.host.snapshot()).toEqual(twin.host.snapshot());
    expect(world.host.observerErrors()).toEqual([
      { source: `backend ${ID}`, hook: 'removalPipeline', message: 'getter bomb' },
    ]);
  });

  it('a privateEntry step whose getter throws fails the guest fault with EIO naming the hook; nothing changed', () => {
    const world = entersAtInstall(withHooks({ privateEntry: () => [bomb('count') as never] }));
    const error = expectRefused(world.host, () => privateFault(world), 'EIO');
    expect(error.message).toMatch(`backend ${ID}: privateEntry threw: getter bomb`);
  });

  it('pipeline steps are read once: the count that was checked is the count recorded (a non-negative count, then -5)', () => {
    const step = (name: string) => turncoat({ step: name, count: 1 }, 'count', 1, -5);
    const world = entersAtInstall(
      withHooks({ privateEntry: () => [step('test-entry')], removalPipeline: () => [step('test-removal')] }),
    );
    expect(privateFault(world)).toMatchObject({ ok: true });
    punchFirstPage(world);
    expect(world.host.pipelineCounters()).toMatchObject({ 'test-entry': 1, 'test-removal': 1 });
  });

  it('a report hook that throws a value which throws when printed is still reported, at the release (the observer-error message never throws)', () => {
    const hostile = {
      toString() {
        throw new Error('toString bomb');
      },
    };
    const world = lastReference(
      withHooks({
        removalPipeline: () => {
          throw hostile;
        },
      }),
    );
    expect(() => world.gmem.close()).not.toThrow();
    expect(world.host.observerErrors()).toEqual([
      { source: `backend ${ID}`, hook: 'removalPipeline', message: 'an object that throws when read' },
    ]);
  });
});
