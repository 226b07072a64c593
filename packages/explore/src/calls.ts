/**
 * The explorer's calls: a scenario step (the demo's format — `call`, arguments by the core API's names, handles by
 * the names the setup and earlier steps bind, flags by their uAPI names) run on a world. An action is written once,
 * as the step a scenario file holds (actions.ts); this table makes the call from that step, so the move the
 * search makes and the step `gmemlab run` replays cannot drift apart (issue 22: explore's actions were written
 * twice, as `step` and `call`). The names and arguments are those of the demo's call table
 * (apps/demo/src/scenario/calls.ts), for the calls the explorer's actors make; the demo's test replays every
 * counterexample and witness through its own table and checks each step's outcome against the one recorded here.
 */
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  type Device,
  type HostMapping,
  type Pin,
  type Vm,
} from '@gmemlab/core';
import type { ScenarioStep, World } from './world.js';

/** The flag names the explorer's steps use, with their values (the uAPI's). */
const FLAGS: Readonly<Record<string, number>> = Object.freeze({
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
});

const parsedFlags = new Map<string, number>();

/** A flags argument: a number, or flag names OR'ed with '|' (as a scenario file writes them). */
function flags(value: unknown, field: string): number {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') throw new TypeError(`step field '${field}': flags must be a number or flag names, not ${String(value)}`);
  let n = parsedFlags.get(value);
  if (n === undefined) {
    n = 0;
    for (const name of value.split('|')) {
      const flag = FLAGS[name.trim()];
      if (flag === undefined) throw new TypeError(`step field '${field}': unknown flag '${name.trim()}'`);
      n |= flag;
    }
    parsedFlags.set(value, n);
  }
  return n;
}

/** A number argument: a number or a '0x…' string (IOVAs are written in hex). */
function num(value: unknown, field: string): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new TypeError(`step field '${field}': a number is needed, not ${String(value)}`);
  return n;
}

const bytes = new Map<string, Uint8Array>();
/** The data a write writes: `length` bytes of `data` (the demo's `byte` argument). Shared per value: the model copies it. */
function data(step: ScenarioStep): Uint8Array {
  const length = num(step.length, 'length');
  const value = num(step.data ?? 0, 'data');
  const key = `${value}/${length}`;
  let out = bytes.get(key);
  if (!out) bytes.set(key, (out = new Uint8Array(length).fill(value)));
  return out;
}

/** A handle the actors hold, by the name the scenario binds it to. */
function handle(world: World, name: unknown): unknown {
  switch (name) {
    case 'vm':
      return world.vm;
    case 'vm2':
      return world.vm2;
    case 'gmem':
      return world.gmem;
    case 'ioas':
      return world.ioas;
    case 'mapping':
      return world.handles.mapping;
    case 'device':
      return world.handles.device;
    case 'fault':
      return world.handles.pending?.fault;
  }
  if (typeof name === 'string' && name.startsWith('pin')) return world.handles.pins[Number(name.slice(3))];
  return undefined;
}

/** The receiver of a step: `on`, or the handle its call's kind is bound to ('ioas.map' → 'ioas'). */
function receiver<T>(world: World, step: ScenarioStep): T {
  const name = step.on ?? (step.call as string).slice(0, (step.call as string).indexOf('.'));
  const value = handle(world, name);
  if (value === undefined) throw new TypeError(`step '${String(step.call)}': the actors hold no '${String(name)}'`);
  return value as T;
}

type Call = (world: World, step: ScenarioStep) => unknown;

/** The calls the explorer's actions make, by the demo's names. */
export const CALLS: Readonly<Record<string, Call>> = Object.freeze({
  'ioas.mapFile': (w, s) => w.ioas.mapFile({ fd: handle(w, s.fd) as never, start: num(s.start, 'start'), length: num(s.length, 'length'), flags: flags(s.flags, 'flags') }),
  'ioas.map': (w, s) => w.ioas.map({ mapping: handle(w, s.mapping) as HostMapping, offset: num(s.offset, 'offset'), length: num(s.length, 'length'), flags: flags(s.flags, 'flags') }),
  'ioas.unmap': (w, s) => w.ioas.unmap({ iova: num(s.iova, 'iova'), length: num(s.length, 'length') }),
  'ioas.copy': (w, s) => w.ioas.copy({ srcIova: num(s.srcIova, 'srcIova'), length: num(s.length, 'length'), flags: flags(s.flags, 'flags') }),
  'ioas.attachDevice': (w, s) => w.ioas.attachDevice(s.name as string),
  'gmem.fallocate': (w, s) => w.gmem.fallocate(flags(s.mode, 'mode'), num(s.offset, 'offset'), num(s.length, 'length')),
  'gmem.close': (w) => w.gmem.close(),
  'gmem.mmap': (w, s) => w.gmem.mmap({ length: num(s.length, 'length'), shared: (s.shared as boolean | undefined) ?? true }),
  'gmem.pin': (w, s) => w.gmem.pin(num(s.offset, 'offset'), num(s.length, 'length')),
  'gmem.setMemoryAttributes2': (w, s) => w.gmem.setMemoryAttributes2({ offset: num(s.offset, 'offset'), size: num(s.size, 'size'), attributes: flags(s.attributes, 'attributes') }),
  'mapping.munmap': (w, s) => receiver<HostMapping>(w, s).munmap(),
  'mapping.read': (w, s) => receiver<HostMapping>(w, s).read(num(s.offset, 'offset'), num(s.length, 'length')),
  'mapping.write': (w, s) => receiver<HostMapping>(w, s).write(num(s.offset, 'offset'), data(s)),
  'pin.unpin': (w, s) => receiver<Pin>(w, s).unpin(),
  'vm.guestRead': (w, s) => receiver<Vm>(w, s).guestRead(num(s.gpa, 'gpa'), num(s.length, 'length'), s.intent === undefined ? undefined : { intent: s.intent as 'shared' | 'private' }),
  'vm.resolveGuestFault': (w, s) => receiver<Vm>(w, s).resolveGuestFault(num(s.gpa, 'gpa'), s.intent === undefined ? undefined : { intent: s.intent as 'shared' | 'private' }),
  'fault.install': (w, s) => receiver<{ install(): unknown }>(w, s).install(),
  'device.dmaRead': (w, s) => receiver<Device>(w, s).dmaRead(num(s.iova, 'iova'), num(s.length, 'length')),
  'device.dmaWrite': (w, s) => receiver<Device>(w, s).dmaWrite(num(s.iova, 'iova'), data(s)),
} satisfies Record<string, Call>);

/** Make the call a step describes, on the world's objects: its return value (errors are thrown, faults returned). */
export function execute(world: World, step: ScenarioStep): unknown {
  const call = CALLS[step.call as string];
  if (!call) throw new TypeError(`the explorer has no call '${String(step.call)}'`);
  return call(world, step);
}
