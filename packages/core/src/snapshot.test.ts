/**
 * Host.snapshot() keeps the parts of the previous snapshot that did not change (snapshot.ts). Random call
 * sequences check, after every call, that the snapshot is deep-equal (toStrictEqual) to one built from nothing,
 * and that a snapshot of a state no call changed is the same object, and that every part of it is frozen: a step
 * that tries to change a part of a snapshot the caller holds (as a careless caller might) gets a TypeError.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ArchBackend } from './arch/backend.js';
import { swProtected } from './arch/sw-protected.js';
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from './constants.js';
import { CONTRACTS, type Contract } from './contract.js';
import { GmemError, HostCrashedError } from './errors.js';
import type { Host } from './host.js';
import type { Device } from './iommufd/device.js';
import type { Ioas } from './iommufd/ioas.js';
import type { GuestMemfd, Pin } from './kvm/guest-memfd.js';
import type { Vm } from './kvm/vm.js';
import { MADV_HWPOISON, type HostMapping } from './mm/host-mapping.js';
import type { Memfd } from './mm/memfd.js';
import { SnapshotParts, type SnapshotSource } from './snapshot.js';
import { fatalHostAccess } from './test-support.js';
import { createScenario } from './testing/scenario.js';

const P = PAGE_SIZE;
const PAGES = 4;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

interface World {
  host: Host;
  vms: Vm[];
  gmems: GuestMemfd[];
  memfds: Memfd[];
  mappings: HostMapping[];
  ioases: Ioas[];
  devices: Device[];
  pins: Pin[];
  faults: Array<{ install(): unknown }>;
  /** The last snapshot the test took, which a step may change. */
  held?: unknown;
}

/** The snapshot built from nothing: what host.snapshot() gives with no part kept. */
function fresh(host: Host): unknown {
  const inside = host as unknown as { kernel: SnapshotSource; counters: Map<string, number> };
  return new SnapshotParts().take(inside.kernel, inside.counters);
}

function newWorld(backend: ArchBackend, contract: Contract): World {
  const { host, vm, gmem, ioas } = createScenario(backend, {
    contract,
    size: PAGES * P,
    populate: false,
    map: false,
    attach: false,
  });
  // Areas from the start (the random calls add and remove more): one of the guest_memfd, one of a memfd.
  const memfd = host.memfdCreate(2 * P);
  ioas.mapFile({ fd: gmem, start: 0, length: 2 * P, iova: 20 * P, flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA });
  ioas.mapFile({ fd: memfd, start: 0, length: P, iova: 24 * P, flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA });
  return {
    host,
    vms: [vm],
    gmems: [gmem],
    memfds: [memfd],
    mappings: [gmem.mmap({ length: PAGES * P, shared: true })],
    ioases: [ioas],
    devices: [],
    pins: [],
    faults: [],
  };
}

type Call = { name: string; run: (w: World) => unknown };
const page = fc.integer({ min: 0, max: PAGES });
const pick = fc.nat({ max: 7 });
const at = <T>(list: T[], i: number): T | undefined => list[i % Math.max(1, list.length)];
const call = <A>(name: string, args: fc.Arbitrary<A>, run: (w: World, a: A) => unknown): fc.Arbitrary<Call> =>
  args.map((a) => ({ name: `${name}(${JSON.stringify(a)})`, run: (w: World) => run(w, a) }));

/**
 * Every object and array of a snapshot, but the host's crash record (`crashed`), which the snapshot shows as it
 * is rather than copies.
 */
function parts(value: unknown, out: object[] = []): object[] {
  if (typeof value !== 'object' || value === null) return out;
  out.push(value);
  for (const [key, child] of Object.entries(value)) if (!(key === 'crashed' && out.length === 1)) parts(child, out);
  return out;
}

const modelCalls: Array<fc.Arbitrary<Call>> = [
  call('convert', fc.tuple(pick, page, page, fc.boolean()), (w, [g, off, n, priv]) =>
    at(w.gmems, g)?.setMemoryAttributes2({
      offset: off * P,
      size: n * P,
      attributes: priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
    }),
  ),
  call('punchHole', fc.tuple(pick, page, page), (w, [g, off, n]) => at(w.gmems, g)?.fallocate(3, off * P, n * P)),
  call('allocate', fc.tuple(pick, page, page), (w, [g, off, n]) => at(w.gmems, g)?.fallocate(1, off * P, n * P)),
  call('createVm', fc.constant(0), (w) => w.vms.push(w.host.createVm({ type: 'coco' }))),
  call('createGuestMemfd', pick, (w, v) => {
    const vm = at(w.vms, v);
    if (vm) w.gmems.push(vm.createGuestMemfd({ size: PAGES * P, flags: 3 }));
  }),
  call('bind', fc.tuple(pick, pick, fc.integer({ min: 0, max: 2 }), page), (w, [v, g, slot, gpa]) => {
    const gmem = at(w.gmems, g);
    return at(w.vms, v)?.setUserMemoryRegion2({
      slot,
      flags: 4,
      guestPhysAddr: gpa * P,
      memorySize: P,
      guestMemfd: gmem ?? 0,
      guestMemfdOffset: 0,
    });
  }),
  call('deleteSlot', fc.tuple(pick, fc.integer({ min: 0, max: 2 })), (w, [v, slot]) =>
    at(w.vms, v)?.setUserMemoryRegion2({ slot, flags: 0, guestPhysAddr: 0, memorySize: 0 }),
  ),
  call('mmap', fc.tuple(pick, fc.boolean()), (w, [g, shared]) => {
    const gmem = at(w.gmems, g);
    if (gmem) w.mappings.push(gmem.mmap({ length: PAGES * P, shared }));
  }),
  call('memfdMmap', pick, (w, m) => {
    const memfd = at(w.memfds, m);
    if (memfd) w.mappings.push(memfd.mmap({ length: 2 * P, shared: true }));
  }),
  call('memfdCreate', fc.constant(0), (w) => w.memfds.push(w.host.memfdCreate(2 * P))),
  call('munmap', pick, (w, m) => at(w.mappings, m)?.munmap()),
  call('hostWrite', fc.tuple(pick, page, fc.integer({ min: 1, max: 255 })), (w, [m, off, byte]) =>
    at(w.mappings, m)?.write(off * P, new Uint8Array(16).fill(byte)),
  ),
  call('hwpoison', fc.tuple(pick, page), (w, [m, off]) => at(w.mappings, m)?.madvise(off * P, P, MADV_HWPOISON)),
  call('memoryFailure', fc.tuple(pick, page), (w, [g, index]) => at(w.gmems, g)?.memoryFailure(index)),
  call('createIoas', fc.constant(0), (w) => w.ioases.push(w.host.openIommufd().createIoas())),
  call('mapFile', fc.tuple(pick, pick, page, page, fc.integer({ min: 1, max: 8 })), (w, [i, g, start, n, iova]) => {
    const gmem = at(w.gmems, g);
    return (
      gmem &&
      at(w.ioases, i)?.mapFile({
        fd: gmem,
        start: start * P,
        length: n * P,
        iova: iova * P,
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA,
      })
    );
  }),
  call('mapMemfd', fc.tuple(pick, pick, fc.integer({ min: 9, max: 12 })), (w, [i, m, iova]) => {
    const memfd = at(w.memfds, m);
    return (
      memfd &&
      at(w.ioases, i)?.mapFile({
        fd: memfd,
        start: 0,
        length: P,
        iova: iova * P,
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA,
      })
    );
  }),
  call('mapUser', fc.tuple(pick, pick, page, page), (w, [i, m, off, n]) => {
    const mapping = at(w.mappings, m);
    return mapping && at(w.ioases, i)?.map({ mapping, offset: off * P, length: n * P, flags: RW });
  }),
  call('unmap', fc.tuple(pick, fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 4 })), (w, [i, iova, n]) =>
    at(w.ioases, i)?.unmap({ iova: iova * P, length: n * P }),
  ),
  call('unmapAll', pick, (w, i) => at(w.ioases, i)?.unmapAll()),
  call('attach', pick, (w, i) => {
    const ioas = at(w.ioases, i);
    if (ioas) w.devices.push(ioas.attachDevice());
  }),
  call('detach', pick, (w, d) => at(w.devices, d)?.detach()),
  call('dmaWrite', fc.tuple(pick, fc.integer({ min: 0, max: 12 })), (w, [d, iova]) =>
    at(w.devices, d)?.dmaWrite(iova * P, new Uint8Array(8).fill(9)),
  ),
  call('guestWrite', fc.tuple(pick, page, fc.constantFrom(undefined, 'private', 'shared')), (w, [v, gpa, intent]) =>
    at(w.vms, v)?.guestWrite(gpa * P, new Uint8Array(8).fill(5), intent ? { intent } : undefined),
  ),
  call('resolveFault', fc.tuple(pick, page, fc.boolean()), (w, [v, gpa, write]) => {
    const fault = at(w.vms, v)?.resolveGuestFault(gpa * P, { write });
    if (fault && !('ok' in fault)) w.faults.push(fault);
  }),
  call('installFault', pick, (w, f) => at(w.faults, f)?.install()),
  call('pin', fc.tuple(pick, page, fc.integer({ min: 1, max: 2 })), (w, [g, off, n]) => {
    const gmem = at(w.gmems, g);
    if (gmem) w.pins.push(gmem.pin(off * P, n * P));
  }),
  call('unpin', pick, (w, p) => at(w.pins, p)?.unpin()),
  call('closeGmem', pick, (w, g) => at(w.gmems, g)?.close()),
  call('closeVm', pick, (w, v) => at(w.vms, v)?.close()),
  call('closeMemfd', pick, (w, m) => at(w.memfds, m)?.close()),
  call('closeFd', fc.integer({ min: 3, max: 12 }), (w, fd) => w.host.close(fd)),
];

// A careless caller tries to change a part of the snapshot it holds: set a field, add one, delete one, or grow a
// list. Every part is frozen, so the change throws (a TypeError: test modules are strict) and changes nothing.
const changeHeld = call(
  'changeHeldSnapshot',
  fc.tuple(fc.nat(), fc.constantFrom('set', 'add', 'delete', 'push'), fc.constantFrom<unknown>(-0, null, 1, {})),
  (w, [n, how, value]) => {
    const all = parts(w.held);
    const part = all[n % Math.max(1, all.length)] as Record<string, unknown> | unknown[] | undefined;
    if (part === undefined) return;
    const keys = Object.keys(part);
    const key = keys[n % Math.max(1, keys.length)];
    let change: (() => unknown) | undefined;
    if (how === 'push' && Array.isArray(part)) change = () => part.push(-1);
    else if (how === 'add')
      change = () => ((part as Record<string, unknown>)[Array.isArray(part) ? String(part.length) : 'extra'] = 1);
    else if (key !== undefined && how === 'delete' && !Array.isArray(part)) change = () => delete part[key];
    else if (key !== undefined) change = () => ((part as Record<string, unknown>)[key] = value);
    if (change) expect(change, `${how} on a part of a snapshot`).toThrow(TypeError);
  },
);

/** One call in four changes the snapshot the test holds. */
const calls: fc.Arbitrary<Call> = fc.oneof(
  { weight: 3 * modelCalls.length, arbitrary: fc.oneof(...modelCalls) },
  { weight: modelCalls.length, arbitrary: changeHeld },
);

function step(world: World, c: Call): void {
  try {
    c.run(world);
  } catch (error) {
    if (!GmemError.isInstance(error) && !HostCrashedError.isInstance(error)) throw error;
  }
}

describe('Host.snapshot() shares the parts that did not change', () => {
  for (const contract of CONTRACTS) {
    it(`after every call it equals a snapshot built from nothing ('${contract}')`, () => {
      let shared = 0;
      fc.assert(
        fc.property(
          fc.constantFrom(swProtected, fatalHostAccess),
          fc.array(calls, { maxLength: 60 }),
          (backend, list) => {
            const world = newWorld(backend, contract);
            world.held = world.host.snapshot();
            for (const c of list) {
              step(world, c);
              const snapshot = world.host.snapshot();
              expect(snapshot, `after ${c.name}`).toStrictEqual(fresh(world.host));
              const unfrozen = parts(snapshot).filter((part) => !Object.isFrozen(part));
              if (unfrozen.length > 0) expect(unfrozen, `after ${c.name}: parts not frozen`).toEqual([]);
              // Nothing ran since: the same object.
              expect(world.host.snapshot() === snapshot, `after ${c.name}: a second snapshot is the same object`).toBe(
                true,
              );
              if (!c.name.startsWith('changeHeldSnapshot') && snapshot === world.held) shared++;
              world.held = snapshot;
            }
            // A fork starts with nothing kept, and sees the same state.
            expect(world.host.fork().snapshot()).toStrictEqual(world.host.snapshot());
          },
        ),
        { numRuns: 150 },
      );
      // Calls that change nothing (refused ones, reads) hand back the previous snapshot itself.
      expect(shared).toBeGreaterThan(100);
    }, 60_000);
  }

  it('a part of the state that changed is new; the parts that did not are the previous objects', () => {
    const world = newWorld(swProtected, 'gmem-registry');
    const gmem = world.gmems[0]!;
    const before = world.host.snapshot() as { inodes: unknown[]; vms: unknown[]; fds: unknown; mappings: unknown };
    gmem.fallocate(1, 0, P);
    const after = world.host.snapshot() as typeof before;
    expect(after).not.toBe(before);
    expect(after.inodes[0]).not.toBe(before.inodes[0]);
    expect(after.vms[0]).toBe(before.vms[0]);
    expect(after.fds).toBe(before.fds);
    expect(after.mappings).toBe(before.mappings);
  });
});

describe('a kept part is checked against every value it shows', () => {
  // Each change below is made behind the model's back (as a bug in a call might), to a value one of the parts
  // of the previous snapshot shows: the next snapshot must not reuse that part. Each value is checked again on
  // every snapshot (snapshot.ts); without the check, these cases return the previous snapshot.
  type Plant = (w: World) => void;
  const plants: Array<[string, Plant]> = [
    [
      'a consumer range of a guest_memfd inode',
      (w) => {
        // The range as the registry holds it (a consumer's own fields are read once, at registration).
        const registry = w.gmems[0]!.inode.registry as unknown as {
          registered: Map<number, { end: number }>;
          orderedNames: unknown;
        };
        const [seq, name] = [...registry.registered][0]!;
        registry.registered.set(seq, { ...name, end: name.end + 1 });
        registry.orderedNames = undefined;
      },
    ],
    [
      'a memslot field',
      (w) => {
        (w.vms[0]!.memslotList()[0] as unknown as { flags: number }).flags ^= 1;
      },
    ],
    [
      'the mmu invalidation sequence',
      (w) => {
        (w.vms[0] as unknown as { mmuState: { seq: number } }).mmuState.seq++;
      },
    ],
    [
      'a pages object flag',
      (w) => {
        const pages = w.ioases[0]!.areasInOrder()[0]!.pages as unknown as { revoked: boolean };
        pages.revoked = !pages.revoked;
      },
    ],
    [
      'a pin on a memfd inode',
      (w) => {
        w.memfds[0]!.inode.pins.push({ start: 0, end: 1, holder: 'planted' });
      },
    ],
    [
      'a pin on a guest_memfd inode',
      (w) => {
        w.gmems[0]!.inode.pins.push({ start: 0, end: 1, holder: 'planted' });
      },
    ],
    [
      'a file reference count',
      (w) => {
        w.memfds[0]!.get();
      },
    ],
    [
      'a pipeline counter',
      (w) => {
        const counters = (w.host as unknown as { counters: Map<string, number> }).counters;
        counters.set('planted', 1);
        w.host.snapshot();
        counters.set('planted', 2);
      },
    ],
  ];
  for (const [what, plant] of plants) {
    it(what, () => {
      const world = newWorld(swProtected, 'gmem-registry');
      world.host.snapshot();
      const before = world.host.snapshot();
      plant(world);
      const after = world.host.snapshot();
      expect(after).not.toBe(before);
      expect(after).toStrictEqual(fresh(world.host));
      expect(after).not.toStrictEqual(before);
    });
  }
});

describe('unfrozen snapshots (the explorer): the same pictures, not frozen', () => {
  it('a host switched before its first snapshot gives deep-equal snapshots whose parts are not frozen; after one, EINVAL', () => {
    const frozen = createScenario(swProtected, { private: [{ offset: 0, length: 4096, faulted: true }] });
    const open = createScenario(swProtected, { private: [{ offset: 0, length: 4096, faulted: true }] });
    open.host.unfrozenSnapshots();
    for (const w of [frozen, open]) w.convert(0, 4096, 'shared');
    const a = frozen.host.snapshot() as { inodes: object[] };
    const b = open.host.snapshot() as { inodes: object[] };
    expect(b).toEqual(a);
    expect(Object.isFrozen(a.inodes[0])).toBe(true);
    expect(Object.isFrozen(b)).toBe(false);
    expect(Object.isFrozen(b.inodes[0])).toBe(false);
    // A fork keeps the setting.
    expect(Object.isFrozen(open.host.fork().snapshot())).toBe(false);
    let errno: string | undefined;
    try {
      frozen.host.unfrozenSnapshots();
    } catch (error) {
      errno = (error as GmemError).errno;
    }
    expect(errno).toBe('EINVAL');
  });
});
