/**
 * The explorer's calls: a scenario step (the demo's format — `call`, arguments by the core API's names, handles by
 * the names the setup and earlier steps bind, flags by their uAPI names) run on a world. An action is written once,
 * as the step a scenario file holds (actions.ts), and core's call table (`CALLS`, the one the demo's scenarios and
 * the kernel oracle use) makes the call from that step, so the move the search makes and the step `gmemlab run`
 * replays cannot drift apart (issue 22: explore's actions were written twice, as `step` and `call`, and its calls
 * were a third vocabulary). This module only resolves a step's arguments to what the table's `run` takes: flags by
 * their uAPI names, numbers written in hex, handles by the names the world binds.
 */
import {
  CALLS as MODEL_CALLS,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  type CallSpec,
  type ResolvedArgs,
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
  if (typeof value !== 'string')
    throw new TypeError(`step field '${field}': flags must be a number or flag names, not ${String(value)}`);
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
  if (typeof n !== 'number' || !Number.isSafeInteger(n))
    throw new TypeError(`step field '${field}': a number is needed, not ${String(value)}`);
  return n;
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

/** The calls the explorer's actions make: names of core's call table (a test checks each action's call is here). */
export const CALLS: readonly string[] = Object.freeze([
  'ioas.mapFile',
  'ioas.map',
  'ioas.unmap',
  'ioas.copy',
  'ioas.attachDevice',
  'gmem.fallocate',
  'gmem.close',
  'gmem.mmap',
  'gmem.pin',
  'gmem.setMemoryAttributes2',
  'mapping.munmap',
  'mapping.read',
  'mapping.write',
  'pin.unpin',
  'vm.guestRead',
  'vm.resolveGuestFault',
  'fault.install',
  'device.dmaRead',
  'device.dmaWrite',
]);
const CALL_SET = new Set(CALLS);

/** A step's arguments, resolved as the table's spec types them; an optional one absent takes its default. */
function resolve(world: World, spec: CallSpec, step: ScenarioStep): ResolvedArgs {
  const args: ResolvedArgs = {};
  for (const name in spec.args) {
    const arg = spec.args[name]!;
    const value = step[name];
    if (value === undefined) {
      if (!arg.optional) throw new TypeError(`step '${String(step.call)}': field '${name}' is needed`);
      if ('default' in arg && arg.default !== undefined) args[name] = arg.default;
      continue;
    }
    switch (arg.type) {
      case 'num':
      case 'byte':
        args[name] = num(value, name);
        break;
      case 'flags':
        args[name] = flags(value, name);
        break;
      case 'handle':
        args[name] = handle(world, value);
        if (args[name] === undefined)
          throw new TypeError(`step '${String(step.call)}': the actors hold no '${String(value)}'`);
        break;
      default:
        args[name] = value;
    }
  }
  return args;
}

/** Make the call a step describes, on the world's objects: its return value (errors are thrown, faults returned). */
export function execute(world: World, step: ScenarioStep): unknown {
  const name = step.call as string;
  const spec = CALL_SET.has(name) ? MODEL_CALLS[name] : undefined;
  if (!spec) throw new TypeError(`the explorer has no call '${String(step.call)}'`);
  return spec.run(spec.receiver === 'host' ? world.host : receiver(world, step), resolve(world, spec, step));
}
