/**
 * A hostile backend, one hook at a time: every hook of ArchBackend, driven through the public call that asks
 * it, throws or answers outside its declared type. A 'refuse' hook (door.ts) fails that call with EIO naming the
 * backend and the hook, and the model is exactly as before; a 'report' hook's call completes as with the
 * documented default answer, and the broken answer is reported once, naming both. The cases are generated from
 * door.ts's HOOKS: a hook added there without a case here fails (the typecheck, and the first test).
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PAGE_SIZE } from '../constants.js';
import { GmemError } from '../errors.js';
import { createScenario } from '../testing/scenario.js';
import { expectRefused } from '../test-support.js';
import type { ArchBackend } from './backend.js';
import { HOOKS, type BackendHook } from './door.js';
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

type World = ReturnType<typeof createScenario>;

/** Per hook: the world it is asked in, and the public call that asks it. */
interface Case {
  setup(backend: ArchBackend): World;
  drive(world: World): unknown;
}

const punchFirstPage = (w: World) => w.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
const privateFault = (w: World) => w.vm.guestRead(0, 1, { intent: 'private' });
/** Page 0 private and faulted in by the guest (hardware-private), the file mapped by an area with a device. */
const faulted = (backend: ArchBackend) => createScenario(backend, { private: [{ offset: 0, length: P, faulted: true }] });
/** Page 0 private, not yet faulted in: the guest's next private access makes it hardware-private. */
const unfaulted = (backend: ArchBackend) => createScenario(backend, { private: [{ offset: 0, length: P }] });

const CASES: { [K in BackendHook]: Case } = {
  conversionPolicy: { setup: (b) => createScenario(b), drive: (w) => w.convert(0, P, 'private') },
  hypervisorRefusal: { setup: (b) => createScenario(b), drive: (w) => w.convert(0, P, 'private') },
  deviceAccess: { setup: faulted, drive: (w) => w.device!.dmaRead(w.iova, 1) },
  hostKernelAccess: { setup: faulted, drive: (w) => w.gmem.directMapRead(0, 1) },
  deviceMayReach: { setup: (b) => createScenario(b), drive: (w) => w.host.checkInvariants() },
  contentsOnConversion: { setup: faulted, drive: (w) => w.convert(0, P, 'shared') },
  privateEntryRefusal: { setup: unfaulted, drive: privateFault },
  contentsOnRemoval: { setup: faulted, drive: punchFirstPage },
  removalPipeline: { setup: faulted, drive: punchFirstPage },
  contentsOnPrivateEntry: { setup: unfaulted, drive: privateFault },
  privateEntry: { setup: unfaulted, drive: privateFault },
};

describe('the door: a hostile backend, one hook at a time', () => {
  it('every hook of the door has a case, and every case a hook', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(HOOKS).sort());
  });

  for (const hook of Object.keys(HOOKS) as BackendHook[]) {
    const { setup, drive } = CASES[hook];
    for (const how of Object.keys(MISBEHAVIOURS) as Misbehaviour[]) {
      if (HOOKS[hook] === 'refuse') {
        it(`${hook} ${how}: the call that asked fails with EIO naming the hook and the backend; nothing changed`, () => {
          const { backend, arm } = hostileBackend();
          const world = setup(backend);
          // The case really asks the hook: well-behaved, the call asks it and succeeds.
          const well = hostileBackend();
          const twin = setup(well.backend);
          well.asked.clear();
          expect(() => drive(twin)).not.toThrow();
          expect(well.asked).toContain(hook);
          arm(hook, how);
          const error = expectRefused(world.host, () => drive(world), 'EIO');
          expect(error.message).toMatch(new RegExp(`backend ${ID}: ${hook} (threw|returned)`));
          expect(world.host.observerErrors()).toEqual([]);
        });
      } else {
        it(`${hook} ${how}: the call completes as with the default answer; the broken answer is reported, naming the hook and the backend`, () => {
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
