/**
 * The action alphabet: every move an actor can make in the world, page-granular and small so that the default
 * search is exhaustive. Four actors:
 * - the VMM, adversarial: any host-side call in any order (IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_MAP of its mmap,
 *   IOMMU_IOAS_COPY of one of its areas, IOMMU_IOAS_UNMAP, attaching the device, PUNCH_HOLE, close, mmap, munmap, pin and unpin, conversions both
 *   ways, reads and writes through its mmap), including calls the kernel refuses;
 * - the guest: private and shared accesses (a mismatch with the attribute is a KVM_EXIT_MEMORY_FAULT), and the
 *   two steps of a fault (resolve, then install) with anything in between;
 * - the device: DMA read and write at every IOVA an area was placed at, mapped, revoked or unmapped;
 * - the second VM: its guest touches its private pages, taking frames from the allocator (most recently freed
 *   first), so frames VM 1 freed are reused.
 *
 * An action is enabled when its actor holds what the call needs (the VMM cannot unpin a pin it does not hold, a
 * fault cannot be installed before it is resolved); whether the kernel accepts the call is the kernel's business.
 * Each action is written once, as a step of the demo's scenario format: the search makes the call from that step
 * (calls.ts), and a trace's scenario holds the same steps, so any trace replays with `gmemlab run`.
 */
import {
  GmemError,
  HostCrashedError,
  PAGE_SIZE,
  type AccessFault,
  type AccessResult,
  type Device,
  type HostMapping,
  type PendingGuestFault,
  type Pin,
} from '@gmemlab/core';
import { execute } from './calls.js';
import { iovaOf, iovaSlots, type ScenarioStep, type World, type WorldConfig } from './world.js';

const P = PAGE_SIZE;
const RW_NAMES = 'IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE';
/** The byte every write writes: bytes never decide anything the properties look at (see canonical.ts). */
export const DATA = 0x5a;

export type Actor = 'vmm' | 'guest' | 'device' | 'vm2';

/** What one call did. Errors are thrown by the model and faults returned; both are outcomes here. */
export type Outcome =
  | { kind: 'ok'; value: unknown; access?: AccessResult }
  | { kind: 'fault'; access: AccessFault }
  | { kind: 'errno'; error: GmemError };

export interface Action {
  /** A stable name: 'punch:0', 'dma-write:2', 'guest:1:private'. Traces are lists of these. */
  readonly id: string;
  readonly actor: Actor;
  /** What kind of move it is, for the properties: which page, which IOVA slot. */
  readonly kind: ActionKind;
  readonly page?: number;
  readonly slot?: number;
  readonly write?: boolean;
  readonly intent?: 'shared' | 'private';
  enabled(world: World): boolean;
  /**
   * The move, written once: the call as a scenario step of the demo's format (made before it runs: it may read
   * the handles). `perform` makes the call from it (calls.ts), and a scenario file holds it as it is.
   */
  step(world: World): ScenarioStep;
  /** Update the actors' handles after the call, from its outcome. */
  after?(world: World, outcome: Outcome): void;
}

export type ActionKind =
  | 'map-file'
  | 'map-user'
  | 'unmap'
  | 'copy'
  | 'attach'
  | 'punch'
  | 'close'
  | 'mmap'
  | 'munmap'
  | 'pin'
  | 'unpin'
  | 'to-private'
  | 'to-shared'
  | 'host-access'
  | 'guest-access'
  | 'resolve'
  | 'install'
  | 'dma'
  | 'vm2-access';

const isAccessResult = (value: unknown): value is AccessResult =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as { ok?: unknown }).ok === 'boolean' &&
  !('install' in value);

/**
 * Run an action: its outcome, and the handles updated. A HostCrashedError (the host went down earlier) or any
 * exception that is not a GmemError is not an outcome: it propagates (the explorer never runs a call on a
 * crashed host, and anything else is a bug in the model).
 */
export function perform(world: World, action: Action): Outcome {
  let outcome: Outcome;
  try {
    const value = execute(world, action.step(world));
    if (isAccessResult(value))
      outcome = value.ok ? { kind: 'ok', value, access: value } : { kind: 'fault', access: value };
    else outcome = { kind: 'ok', value };
  } catch (error) {
    if (GmemError.isInstance(error) && !HostCrashedError.isInstance(error)) outcome = { kind: 'errno', error };
    else throw error;
  }
  action.after?.(world, outcome);
  // The last fd, mmap or MAP_FILE area of the file went: its release truncates every page (kernel-contract §3.8).
  if (!world.handles.released && world.gmem.released) {
    world.handles.released = true;
    for (const area of world.handles.areas) area.truncated.fill(true);
  }
  return outcome;
}

/** The alphabet for a world configuration, in a fixed order (the search is deterministic). */
export function alphabet(config: WorldConfig): Action[] {
  const actions: Action[] = [];
  const pages = [...Array(config.pages).keys()];
  const slots = [...Array(iovaSlots(config)).keys()].map((i) => i + 1);

  // --- the VMM ---
  for (const page of pages) {
    actions.push({
      id: `map-file:${page}`,
      actor: 'vmm',
      kind: 'map-file',
      page,
      enabled: (w) => w.handles.areas.length < config.maxAreas,
      step: () => ({ call: 'ioas.mapFile', fd: 'gmem', start: page * P, length: P, flags: RW_NAMES }),
      after: (w, o) => {
        if (o.kind === 'ok') addArea(w, { iova: o.value as number, page, pages: 1, kind: 'file', truncated: [false] });
      },
    });
  }
  if (config.pages > 1) {
    // IOMMU_IOAS_MAP_FILE of the whole file: one area over every page, so a truncation of one page invalidates
    // part of an area (the registry revokes what its design says: the page, or the area), conversions meet an
    // area that only partly overlaps them, and the device reaches each page of it at its own IOVA.
    actions.push({
      id: 'map-file:all',
      actor: 'vmm',
      kind: 'map-file',
      enabled: (w) => w.handles.areas.length < config.maxAreas,
      step: () => ({ call: 'ioas.mapFile', fd: 'gmem', start: 0, length: config.pages * P, flags: RW_NAMES }),
      after: (w, o) => {
        if (o.kind === 'ok')
          addArea(w, {
            iova: o.value as number,
            page: 0,
            pages: config.pages,
            kind: 'file',
            truncated: new Array<boolean>(config.pages).fill(false),
          });
      },
    });
  }
  for (const page of pages) {
    actions.push({
      id: `map-user:${page}`,
      actor: 'vmm',
      kind: 'map-user',
      page,
      enabled: (w) => w.handles.mappingState !== 'none' && w.handles.areas.length < config.maxAreas,
      step: () => ({ call: 'ioas.map', mapping: 'mapping', offset: page * P, length: P, flags: RW_NAMES }),
      after: (w, o) => {
        if (o.kind === 'ok')
          addArea(w, {
            iova: o.value as number,
            page,
            pages: 1,
            kind: 'user',
            truncated: [false],
            mapping: w.handles.mapping!,
          });
      },
    });
  }
  for (let k = 0; k < config.maxAreas; k++) {
    actions.push({
      id: `unmap:${k}`,
      actor: 'vmm',
      kind: 'unmap',
      slot: k,
      enabled: (w) => k < w.handles.areas.length,
      step: (w) => ({ call: 'ioas.unmap', iova: hex(w.handles.areas[k]!.iova), length: w.handles.areas[k]!.pages * P }),
      after: (w, o) => {
        if (o.kind === 'ok') w.handles.areas.splice(k, 1);
      },
    });
  }
  for (let k = 0; k < config.maxAreas; k++) {
    actions.push({
      id: `copy:${k}`,
      actor: 'vmm',
      kind: 'copy',
      slot: k,
      // IOMMU_IOAS_COPY of the VMM's k-th area into the same IOAS: a new area over the same iopt_pages, made
      // without MAP_FILE (kernel-contract §5.3). It needs a free area slot, so the default world (one area) never
      // takes it; a world of two areas or more does.
      enabled: (w) => k < w.handles.areas.length && w.handles.areas.length < config.maxAreas,
      step: (w) => ({
        call: 'ioas.copy',
        srcIova: hex(w.handles.areas[k]!.iova),
        length: w.handles.areas[k]!.pages * P,
        flags: RW_NAMES,
      }),
      after: (w, o) => {
        const src = w.handles.areas[k];
        // The copy maps the same pages as its source; it was made after any truncation its source saw.
        if (o.kind === 'ok' && src)
          addArea(w, {
            iova: o.value as number,
            page: src.page,
            pages: src.pages,
            kind: src.kind,
            truncated: new Array<boolean>(src.pages).fill(false),
            ...(src.mapping ? { mapping: src.mapping } : {}),
          });
      },
    });
  }
  actions.push({
    id: 'attach',
    actor: 'vmm',
    kind: 'attach',
    enabled: (w) => w.handles.device === undefined,
    step: () => ({ call: 'ioas.attachDevice', name: 'dev', as: 'device' }),
    after: (w, o) => {
      if (o.kind === 'ok') w.handles.device = o.value as Device;
    },
  });
  for (const page of pages) {
    actions.push({
      id: `punch:${page}`,
      actor: 'vmm',
      kind: 'punch',
      page,
      enabled: () => true,
      step: () => ({
        call: 'gmem.fallocate',
        mode: 'FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE',
        offset: page * P,
        length: P,
      }),
      after: (w, o) => {
        if (o.kind === 'ok')
          for (const area of w.handles.areas)
            if (area.page <= page && page < area.page + area.pages) area.truncated[page - area.page] = true;
      },
    });
  }
  actions.push({
    id: 'close',
    actor: 'vmm',
    kind: 'close',
    enabled: (w) => w.handles.gmemOpen,
    step: () => ({ call: 'gmem.close' }),
    after: (w, o) => {
      if (o.kind === 'ok') w.handles.gmemOpen = false;
    },
  });
  actions.push({
    id: 'mmap',
    actor: 'vmm',
    kind: 'mmap',
    enabled: (w) => w.handles.mappingState !== 'live',
    step: () => ({ call: 'gmem.mmap', length: config.pages * P, as: 'mapping' }),
    after: (w, o) => {
      // As in a scenario, a step that fails leaves its name unbound: the VMM no longer has a mapping to pass.
      if (o.kind === 'ok') {
        w.handles.mapping = o.value as HostMapping;
        w.handles.mappingState = 'live';
      } else {
        w.handles.mapping = undefined;
        w.handles.mappingState = 'none';
      }
    },
  });
  actions.push({
    id: 'munmap',
    actor: 'vmm',
    kind: 'munmap',
    enabled: (w) => w.handles.mappingState === 'live',
    step: () => ({ call: 'mapping.munmap' }),
    after: (w, o) => {
      if (o.kind === 'ok') w.handles.mappingState = 'dead';
    },
  });
  for (const page of pages) {
    actions.push({
      id: `pin:${page}`,
      actor: 'vmm',
      kind: 'pin',
      page,
      enabled: (w) => w.handles.pins[page] === undefined,
      step: () => ({ call: 'gmem.pin', offset: page * P, length: P, as: `pin${page}` }),
      after: (w, o) => {
        if (o.kind === 'ok') w.handles.pins[page] = o.value as Pin;
      },
    });
    actions.push({
      id: `unpin:${page}`,
      actor: 'vmm',
      kind: 'unpin',
      page,
      enabled: (w) => w.handles.pins[page] !== undefined,
      step: () => ({ call: 'pin.unpin', on: `pin${page}` }),
      after: (w) => {
        // unpin() cannot fail; the VMM no longer holds the pin either way.
        w.handles.pins[page] = undefined;
      },
    });
  }
  for (const page of pages) {
    for (const to of ['private', 'shared'] as const) {
      actions.push({
        id: `to-${to}:${page}`,
        actor: 'vmm',
        kind: to === 'private' ? 'to-private' : 'to-shared',
        page,
        enabled: () => true,
        step: () => ({
          call: 'gmem.setMemoryAttributes2',
          offset: page * P,
          size: P,
          attributes: to === 'private' ? 'KVM_MEMORY_ATTRIBUTE_PRIVATE' : 0,
        }),
      });
    }
  }
  for (const page of pages) {
    for (const write of [false, true]) {
      actions.push({
        id: `host-${write ? 'write' : 'read'}:${page}`,
        actor: 'vmm',
        kind: 'host-access',
        page,
        write,
        enabled: (w) => w.handles.mappingState === 'live',
        step: () =>
          write
            ? { call: 'mapping.write', offset: page * P, length: 1, data: DATA }
            : { call: 'mapping.read', offset: page * P, length: 1 },
      });
    }
  }

  // --- the guest ---
  for (const page of pages) {
    for (const intent of ['private', 'shared'] as const) {
      actions.push({
        id: `guest:${page}:${intent}`,
        actor: 'guest',
        kind: 'guest-access',
        page,
        intent,
        enabled: () => true,
        step: () => ({ call: 'vm.guestRead', gpa: page * P, length: 1, intent }),
      });
    }
  }
  for (const page of pages) {
    for (const intent of ['private', 'shared'] as const) {
      actions.push({
        id: `resolve:${page}:${intent}`,
        actor: 'guest',
        kind: 'resolve',
        page,
        intent,
        enabled: (w) => w.handles.pending === undefined,
        step: () => ({ call: 'vm.resolveGuestFault', gpa: page * P, intent, as: 'fault' }),
        after: (w, o) => {
          w.handles.pending = o.kind === 'ok' ? { fault: o.value as PendingGuestFault, page, intent } : undefined;
        },
      });
    }
  }
  actions.push({
    id: 'install',
    actor: 'guest',
    kind: 'install',
    enabled: (w) => w.handles.pending !== undefined,
    step: () => ({ call: 'fault.install' }),
    after: (w) => {
      w.handles.pending = undefined;
    },
  });

  // --- the device ---
  for (const slot of slots) {
    for (const write of [false, true]) {
      actions.push({
        id: `dma-${write ? 'write' : 'read'}:${slot}`,
        actor: 'device',
        kind: 'dma',
        slot,
        write,
        enabled: (w) => w.handles.device !== undefined,
        step: () =>
          write
            ? { call: 'device.dmaWrite', iova: hex(iovaOf(slot)), length: 1, data: DATA }
            : { call: 'device.dmaRead', iova: hex(iovaOf(slot)), length: 1 },
      });
    }
  }

  // --- the second VM ---
  for (let page = 0; page < config.vm2Pages; page++) {
    actions.push({
      id: `vm2:${page}`,
      actor: 'vm2',
      kind: 'vm2-access',
      page,
      intent: 'private',
      enabled: () => true,
      step: () => ({ call: 'vm.guestRead', on: 'vm2', gpa: page * P, length: 1, intent: 'private' }),
    });
  }
  // Try first what usually leaves the world where it was (a faulting access, a refused call), last what always
  // moves it: a state is replayed again after each action that moved it, so this saves a replay per state.
  const order: ActionKind[] = [
    'dma',
    'host-access',
    'to-private',
    'to-shared',
    'guest-access',
    'resolve',
    'pin',
    'vm2-access',
    'punch',
    'attach',
    'map-file',
    'map-user',
    'copy',
    'mmap',
    'unpin',
    'munmap',
    'close',
    'unmap',
    'install',
  ];
  return actions
    .map((action, i) => ({ action, i }))
    .sort((x, y) => order.indexOf(x.action.kind) - order.indexOf(y.action.kind) || x.i - y.i)
    .map(({ action }) => action);
}

function addArea(world: World, area: World['handles']['areas'][number]): void {
  world.handles.areas.push(area);
  world.handles.areas.sort((a, b) => a.iova - b.iova);
}

const hex = (n: number): string => `0x${n.toString(16)}`;
