/**
 * The host's own copy of a backend (arch/own.ts): a backend's fields are read once, at createHost; a hook that
 * calls the model is refused; a rejected Promise answer cannot end the process. Found by the second outside
 * audit of issue 22 (N1–N5).
 */
import { describe, expect, it } from 'vitest';
import { createHost, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GmemError, PAGE_SIZE, swProtected } from '../index.js';
import { createScenario } from '../testing/index.js';

type Scenario = ReturnType<typeof createScenario>;
import type { ArchBackend } from './backend.js';
import { MAX_PIPELINE_STEPS } from './door.js';
import { isFrozenData } from './own.js';

const P = PAGE_SIZE;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const backendWith = (hooks: Partial<ArchBackend>): ArchBackend => ({ ...swProtected, id: 't:own', ...hooks });

function errnoOf(call: () => unknown): string | undefined {
  try {
    call();
  } catch (error) {
    expect(GmemError.isInstance(error), `not a GmemError: ${String(error)}`).toBe(true);
    return (error as GmemError).errno;
  }
  return undefined;
}

describe("a backend's fields are read once, when the host is created", () => {
  it('a hook getter that throws at createHost is EINVAL, not a plain Error', () => {
    const hostile = {
      ...swProtected,
      id: 't:getter',
      get removalPipeline(): never {
        throw new Error('getter');
      },
    };
    expect(errnoOf(() => createHost({ backend: hostile }))).toBe('EINVAL');
  });

  it('a getter that throws only after createHost cannot reach the model: the release still completes', () => {
    let armed = false;
    const hostile = {
      ...swProtected,
      id: 't:late',
      get removalPipeline() {
        if (armed) throw new Error('late getter');
        return () => [];
      },
    } as ArchBackend;
    const world = createScenario(hostile, { map: false, private: [{ offset: 0, length: P, faulted: true }] });
    armed = true;
    world.gmem.close();
    expect(world.host.checkInvariants()).toEqual([]);
    expect(world.host.observerErrors()).toEqual([]);
  });

  it('a data field read twice gives its first answer (privateEntryAt cannot change under the host)', () => {
    let reads = 0;
    const hostile = {
      ...swProtected,
      id: 't:flip',
      get privateEntryAt() {
        return reads++ === 0 ? 'install' : 'resolve';
      },
    } as ArchBackend;
    const world = createScenario(hostile, { map: false, private: [{ offset: 0, length: 2 * P }] });
    expect(world.vm.guestWrite(0, new Uint8Array(2 * P).fill(3), { intent: 'private' }).ok).toBe(true);
    expect(world.host.checkInvariants()).toEqual([]);
  });

  it('Host.backend is still the object the caller passed', () => {
    const backend = backendWith({});
    expect(createHost({ backend }).backend).toBe(backend);
  });
});

describe('a backend that is frozen data is copied and checked once per process', () => {
  /** A Proxy over `target` that counts the reads of its fields (the target's own freezing shows through it). */
  const counted = (target: object) => {
    const reads = { count: 0 };
    const proxy = new Proxy(target, {
      get(t, key, receiver) {
        reads.count++;
        return Reflect.get(t, key, receiver) as unknown;
      },
    });
    return { proxy: proxy as ArchBackend, reads };
  };
  const deepFreeze = <T extends object>(object: T): T => {
    for (const value of Object.values(object)) if (typeof value === 'object' && value !== null) deepFreeze(value);
    return Object.freeze(object);
  };
  const plain = (): Record<string, unknown> =>
    ({ ...swProtected, id: 't:frozen', pageSizes: [P], conversionPolicyInputs: undefined }) as Record<string, unknown>;

  it('a second host made with a frozen plain backend reads none of its fields; it behaves as the first', () => {
    const { proxy, reads } = counted(deepFreeze(plain()));
    const first = createScenario(proxy, { private: [{ offset: 0, length: P }] });
    expect(reads.count).toBeGreaterThan(0);
    const before = reads.count;
    const second = createScenario(proxy, { private: [{ offset: 0, length: P }] });
    // Hooks are called through the copy made for the first host: the backend object itself is not read again.
    expect(reads.count).toBe(before);
    expect(second.host.snapshot()).toEqual(first.host.snapshot());
    expect(second.host.backend).toBe(proxy);
  });

  it('is read afresh for each host when anything in it is not frozen data', () => {
    class Inherited {
      specificationVersion = 'v1';
    }
    const cases: Array<[string, object]> = [
      ['not frozen', plain()],
      ['an array in it not frozen', Object.freeze({ ...plain(), pageSizes: [P] })],
      [
        'a getter',
        deepFreeze(Object.defineProperty(plain(), 'mapsPrivatePages', { get: () => true, enumerable: true })),
      ],
      // A class instance: what it inherits lives on a prototype that can still change.
      [
        'a class instance',
        Object.freeze(Object.assign(new Inherited(), { ...plain(), pageSizes: Object.freeze([P]) })),
      ],
    ];
    for (const [name, target] of cases) {
      const { proxy, reads } = counted(target);
      createHost({ backend: proxy });
      const before = reads.count;
      expect(before, name).toBeGreaterThan(0);
      createHost({ backend: proxy });
      expect(reads.count - before, name).toBe(before);
    }
  });

  it('a Proxy over frozen data whose get trap answers for what its target lacks is read afresh by each host', () => {
    // The Proxy invariants bind only the frozen target's own properties: [[Get]] of any other key (a field the backend
    // leaves out, an array's inherited Symbol.iterator) is the trap's answer, which the next read may change.
    let entryAt = 'install';
    const field = new Proxy(deepFreeze(plain()), {
      get: (t, key, receiver) => (key === 'privateEntryAt' ? entryAt : (Reflect.get(t, key, receiver) as unknown)),
    });
    expect(errnoOf(() => createHost({ backend: field as unknown as ArchBackend }))).toBeUndefined();
    entryAt = 'bogus';
    expect(errnoOf(() => createHost({ backend: field as unknown as ArchBackend }))).toBe('EINVAL');

    let sizes = [P, 512 * P];
    const iommuPageSizes = new Proxy(Object.freeze([P]), {
      get: (t, key, receiver) =>
        key === Symbol.iterator ? () => sizes[Symbol.iterator]() : (Reflect.get(t, key, receiver) as unknown),
    });
    const iterated = Object.freeze({ ...deepFreeze(plain()), iommuPageSizes }) as unknown as ArchBackend;
    expect(errnoOf(() => createHost({ backend: iterated }))).toBeUndefined();
    sizes = [2 * P];
    expect(errnoOf(() => createHost({ backend: iterated }))).toBe('EINVAL');
  });

  it('a frozen backend that fails its check is refused every time (no copy is kept)', () => {
    const broken = deepFreeze({ ...plain(), mapsPrivatePages: 'yes' });
    expect(errnoOf(() => createHost({ backend: broken as unknown as ArchBackend }))).toBe('EINVAL');
    expect(errnoOf(() => createHost({ backend: broken as unknown as ArchBackend }))).toBe('EINVAL');
  });

  it('the published neutral backend is frozen data', () => {
    expect(isFrozenData(swProtected)).toBe(true);
    // A Proxy whose traps throw is not (and is not an error of the check).
    const throwing = new Proxy(Object.freeze({}), {
      ownKeys() {
        throw new Error('trap');
      },
    });
    expect(isFrozenData(throwing)).toBe(false);
  });
});

describe('a hook must not call the model', () => {
  const cases: Array<{
    name: string;
    hooks: (w: () => Scenario) => Partial<ArchBackend>;
    call: (w: Scenario) => unknown;
  }> = [
    {
      name: 'privateEntry converting the page it is asked about',
      hooks: (w) => ({ privateEntry: () => (w().convert(0, P, 'shared'), []) }),
      call: (w) => w.vm.guestRead(0, 1, { intent: 'private' }),
    },
    {
      name: 'contentsOnPrivateEntry converting two pages',
      hooks: (w) => ({ contentsOnPrivateEntry: () => (w().convert(0, 2 * P, 'shared'), 'keep') }),
      call: (w) => w.vm.guestWrite(0, new Uint8Array(2 * P).fill(3), { intent: 'private' }),
    },
    {
      name: 'privateEntryRefusal punching the page',
      hooks: (w) => ({ privateEntryRefusal: () => (w().gmem.fallocate(PUNCH, 0, P), undefined) }),
      call: (w) => w.vm.guestRead(0, 1, { intent: 'private' }),
    },
    {
      name: 'conversionPolicy punching the converting page',
      hooks: (w) => ({ conversionPolicy: () => (w().gmem.fallocate(PUNCH, 0, P), 'revoke') }),
      call: (w) => w.convert(0, P, 'shared'),
    },
  ];

  for (const { name, hooks, call } of cases) {
    it(`${name}: EIO naming the backend and the hook, nothing changed`, () => {
      let world: Scenario | undefined;
      let armed = false;
      const made = hooks(() => world!);
      const armedHooks = Object.fromEntries(
        Object.entries(made).map(([hook, fn]) => [
          hook,
          (context: unknown) =>
            armed
              ? (fn as (c: unknown) => unknown)(context)
              : ((swProtected as unknown as Record<string, (c: unknown) => unknown>)[hook]?.(context) ??
                (hook === 'privateEntry' ? [] : hook === 'contentsOnPrivateEntry' ? 'keep' : undefined)),
        ]),
      ) as Partial<ArchBackend>;
      world = createScenario(backendWith(armedHooks), { private: [{ offset: 0, length: 2 * P }] });
      const before = JSON.stringify(world.host.snapshot());
      armed = true;
      let caught: unknown;
      try {
        call(world);
      } catch (error) {
        caught = error;
      }
      armed = false;
      expect(GmemError.isInstance(caught)).toBe(true);
      expect((caught as GmemError).errno).toBe('EIO');
      expect((caught as GmemError).message).toMatch(
        new RegExp(`backend t:own: its ${Object.keys(made)[0]} called into the host`),
      );
      expect(JSON.stringify(world.host.snapshot())).toBe(before);
      expect(world.host.checkInvariants()).toEqual([]);
    });
  }

  it('a hook that catches the refusal is still broken: the asking call fails with EIO and changes nothing', () => {
    let world: Scenario | undefined;
    let inner: string | undefined;
    let armed = false;
    world = createScenario(
      backendWith({
        deviceAccess: (context) => {
          if (armed) inner = errnoOf(() => world!.gmem.fallocate(PUNCH, 0, P));
          return swProtected.deviceAccess(context);
        },
      }),
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    const before = JSON.stringify(world.host.snapshot());
    armed = true;
    let caught: unknown;
    try {
      world.device!.dmaWrite(world.iova, new Uint8Array(2 * P).fill(0xab));
    } catch (error) {
      caught = error;
    }
    expect(inner).toBe('EIO');
    expect(GmemError.isInstance(caught)).toBe(true);
    expect((caught as GmemError).errno).toBe('EIO');
    expect((caught as GmemError).message).toMatch(/backend t:own: deviceAccess threw: .*caught the refusal/);
    expect(JSON.stringify(world.host.snapshot())).toBe(before);
    expect(world.host.checkInvariants()).toEqual([]);
  });

  it('where the asking call cannot fail (the last close), a caught refusal is reported and the release completes', () => {
    let world: Scenario | undefined;
    let inner: string | undefined;
    let armed = false;
    world = createScenario(
      backendWith({
        removalPipeline: (context) => {
          if (armed) inner = errnoOf(() => world!.gmem.fallocate(PUNCH, 0, P));
          void context;
          return [];
        },
      }),
      { map: false, private: [{ offset: 0, length: P, faulted: true }] },
    );
    armed = true;
    world.gmem.close();
    expect(inner).toBe('EIO');
    expect(world.gmem.released).toBe(true);
    expect(world.host.checkInvariants()).toEqual([]);
    const reported = world.host.observerErrors();
    expect(reported.length).toBeGreaterThan(0);
    expect(JSON.stringify(reported)).toMatch(/caught the refusal/);
  });
});

describe('what a hook throws', () => {
  const BRAND = Symbol.for('gmemlab.GmemError');
  const refusing = (thrown: () => unknown) => {
    const world = createScenario(
      backendWith({
        hypervisorRefusal: () => {
          throw thrown();
        },
      }),
    );
    const before = JSON.stringify(world.host.snapshot());
    let caught: unknown;
    try {
      world.convert(0, P, 'private');
    } catch (error) {
      caught = error;
    }
    expect(JSON.stringify(world.host.snapshot())).toBe(before);
    expect(GmemError.isInstance(caught), String(caught)).toBe(true);
    return caught as GmemError;
  };

  it('a GmemError passes on with its errno, op and message, as a GmemError of the model', () => {
    const error = refusing(() =>
      Object.assign(new GmemError('EPERM', 'hypervisor', 'refused', { hint: 'ask later' }), {
        stack: 'the backend stack',
      }),
    );
    expect([error.errno, error.op, error.hint]).toEqual(['EPERM', 'hypervisor', 'ask later']);
    expect(error.message).toBe('hypervisor: EPERM: refused');
    expect(error).toBeInstanceOf(GmemError);
    // The copy keeps the stack of the error the backend threw (where its author looks first).
    expect(error.stack).toBe('the backend stack');
  });

  it('an object carrying the brand with an errno the model does not know is EIO naming the hook', () => {
    const error = refusing(() => ({ [BRAND]: true, errno: 'EWHATEVER', op: 'x', message: 'forged' }));
    expect(error.errno).toBe('EIO');
    expect(error.message).toMatch(
      /backend t:own: hypervisorRefusal threw: .*branded GmemError that is not one.*EWHATEVER/,
    );
  });

  it('an object carrying the brand with fields that are not strings is EIO', () => {
    const error = refusing(() => ({ [BRAND]: true, errno: 'EPERM', op: 7, message: 'forged' }));
    expect(error.errno).toBe('EIO');
  });

  it('an object carrying the brand whose errno getter throws is EIO', () => {
    const error = refusing(() => ({
      [BRAND]: true,
      get errno(): string {
        throw new Error('errno getter');
      },
    }));
    expect(error.errno).toBe('EIO');
    expect(error.message).toMatch(/fields cannot be read/);
  });

  it('a thrown Proxy whose traps throw is EIO', () => {
    const error = refusing(
      () =>
        new Proxy(
          {},
          {
            get() {
              throw new Error('trap');
            },
          },
        ),
    );
    expect(error.errno).toBe('EIO');
  });
});

describe('ways around the copy and the guard (third check of issue 22)', () => {
  it('a getter that answers well twice and then throws: the copy is what createHost checks', () => {
    let reads = 0;
    const hostile = {
      ...swProtected,
      get id() {
        reads++;
        if (reads <= 2) return 't:ok';
        return {
          toString: () => {
            throw new Error('id toString');
          },
        };
      },
    };
    const problems = (() => {
      try {
        createHost({ backend: hostile as unknown as ArchBackend });
        return 'accepted';
      } catch (error) {
        return (error as GmemError).errno;
      }
    })();
    // Either refused at createHost, or accepted with the id it read once: never a broken id inside the model.
    if (problems === 'accepted') expect(reads).toBe(1);
    else expect(problems).toBe('EINVAL');
  });

  it('a data field is read once: what createHost checked is what the host uses (no unchecked second read)', () => {
    let reads = 0;
    const hostile = {
      ...swProtected,
      id: 't:flip2',
      get privateEntryAt() {
        return reads++ === 0 ? 'install' : 'bogus';
      },
    };
    const world = createScenario(hostile as unknown as ArchBackend, {
      map: false,
      private: [{ offset: 0, length: P }],
    });
    expect(reads).toBe(1);
    expect(world.vm.guestWrite(0, new Uint8Array(1), { intent: 'private' }).ok).toBe(true);
    expect(world.host.checkInvariants()).toEqual([]);
  });

  it("a getter on a hook's answer that calls the model is refused too (the answer is read inside the guard)", () => {
    let world: Scenario | undefined;
    let armed = false;
    world = createScenario(
      backendWith({
        deviceAccess: (context) => {
          if (!armed) return swProtected.deviceAccess(context);
          return {
            get allow() {
              world!.gmem.fallocate(PUNCH, 0, P);
              return true;
            },
          } as never;
        },
      }),
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    const before = JSON.stringify(world.host.snapshot());
    armed = true;
    expect(errnoOf(() => world!.device!.dmaWrite(world!.iova, new Uint8Array(2 * P).fill(1)))).toBe('EIO');
    armed = false;
    expect(JSON.stringify(world.host.snapshot())).toBe(before);
    expect(world.host.checkInvariants()).toEqual([]);
  });

  it('a fork taken from inside a hook is EIO', () => {
    let world: Scenario | undefined;
    let forked: string | undefined;
    world = createScenario(
      backendWith({
        contentsOnRemoval: () => {
          forked = errnoOf(() => world!.host.fork());
          return 'keep';
        },
      }),
      { map: false, private: [{ offset: 0, length: P, faulted: true }] },
    );
    // The hook caught the refusal; it still called the model, so the punch that asked it fails too.
    expect(errnoOf(() => world!.gmem.fallocate(PUNCH, 0, P))).toBe('EIO');
    expect(forked).toBe('EIO');
  });

  it('a huge sparse array nested in an answer is refused at once, with a short message', () => {
    const world = createScenario(backendWith({ deviceAccess: () => ({ allow: new Array(2 ** 24) }) as never }), {
      private: [{ offset: 0, length: P, faulted: true }],
    });
    let message = '';
    try {
      world.device!.dmaWrite(world.iova, new Uint8Array([1]));
    } catch (error) {
      message = (error as GmemError).message;
    }
    expect(message).toMatch(/EIO|deviceAccess/);
    expect(message.length).toBeLessThan(500);
  });
});

describe('what else a hostile backend or consumer can do', () => {
  it('a hook answering a rejected Promise is EIO, and the rejection cannot end the process', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const world = createScenario(
        backendWith({ deviceAccess: () => Promise.reject(new Error('rejected')) as never }),
        {
          private: [{ offset: 0, length: P, faulted: true }],
        },
      );
      expect(errnoOf(() => world.device!.dmaWrite(world.iova, new Uint8Array([1])))).toBe('EIO');
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a pipeline longer than the door accepts is EIO at the punch, and a huge sparse one is refused at once', () => {
    const steps = (n: number) => Array.from({ length: n }, () => ({ step: 's', count: 1 }));
    for (const [answer, errno] of [
      [steps(MAX_PIPELINE_STEPS), undefined],
      [steps(MAX_PIPELINE_STEPS + 1), 'EIO'],
      [new Array(2 ** 32 - 1), 'EIO'],
    ] as const) {
      const world = createScenario(backendWith({ removalPipeline: () => answer as never }), {
        map: false,
        private: [{ offset: 0, length: P, faulted: true }],
      });
      const before = JSON.stringify(world.host.snapshot());
      expect(errnoOf(() => world.gmem.fallocate(PUNCH, 0, P))).toBe(errno);
      if (errno) expect(JSON.stringify(world.host.snapshot())).toBe(before);
    }
  });

  it('a consumer whose label getter throws cannot abort a punch: it completes and the failure is listed', () => {
    let armed = false;
    const world = createScenario(swProtected, { map: false, private: [{ offset: 0, length: 2 * P, faulted: true }] });
    world.gmem.registerConsumer({
      kind: 'k',
      first: 0,
      end: 16,
      get label(): string {
        if (armed) throw new Error('label');
        return 'c2';
      },
      invalidateBegin() {
        throw new Error('begin');
      },
    });
    armed = true;
    world.gmem.fallocate(PUNCH, 0, P);
    armed = false;
    expect(world.vm.guestRead(0, 1, { intent: 'private' })).not.toMatchObject({ fault: 'retry' });
    expect(world.host.observerErrors().map((e) => e.hook)).toContain('invalidateBegin');
  });

  it("a consumer's getters are read once, at registration: a snapshot neither throws nor follows them", () => {
    let armed = false;
    const world = createScenario(swProtected, { map: false });
    const consumer = {
      kind: 'k',
      first: 0,
      end: 4,
      get label(): string {
        if (armed) throw new Error('label');
        return 'c3';
      },
      invalidateBegin() {},
      invalidateEnd() {},
    };
    world.gmem.registerConsumer(consumer);
    const before = JSON.stringify(world.host.snapshot());
    armed = true;
    consumer.first = 2;
    const inode = (world.host.snapshot() as { inodes: Array<{ consumers: string[] }> }).inodes.find((i) =>
      i.consumers.some((name) => name.startsWith('k:')),
    )!;
    expect(inode.consumers).toContain('k:c3:0-4');
    expect(JSON.stringify(world.host.snapshot())).toBe(before);
  });
});
