/**
 * Kernel steps derived from @gmemlab/core's call table (`CALLS`, packages/core/src/calls.ts), so that a client
 * describing calls by the model's names (the demo's scenarios, the explorer's actions) gets the step the helper
 * runs without translating each call by hand. The derivation, for a call `receiver.method`:
 * - the op is the method's name (`vm.createGuestMemfd` -> `createGuestMemfd`), except where the helper's protocol
 *   names it otherwise (OP_NAMES);
 * - the receiver becomes the step's `vm`, `fd` or `map` field by its kind (RECEIVER_FIELDS), and `fd` for close;
 * - arguments keep their names; optional ones left out take the table's default; a `byte` argument becomes the
 *   step's `data`, that byte repeated over the call's `length`;
 * - a call that returns a VM, file or mapping binds it: the caller's name, else `<kind>@<where>`.
 * What the helper cannot do is refused with the reason (`unsupportedReason`), before anything runs.
 */
import { CALLS, type CallSpec } from '@gmemlab/core';
import type { Address, Num, Step } from './steps.js';

/**
 * Every op of the Step union, once: `satisfies` makes the compiler refuse this object when an op is added to Step
 * and not here, or named here and not in Step, so the list cannot drift from the union (it once left out
 * setMemoryAttributes, which both sides and the C helper run).
 */
const OPS = {
  checkExtension: true,
  createVm: true,
  setMemoryAttributes: true,
  createGuestMemfd: true,
  memfdCreate: true,
  stat: true,
  read: true,
  write: true,
  pread: true,
  pwrite: true,
  fallocate: true,
  mmap: true,
  mapRead: true,
  mapWrite: true,
  munmap: true,
  madvise: true,
  setUserMemoryRegion: true,
  setUserMemoryRegion2: true,
  guestRead: true,
  guestWrite: true,
  close: true,
} as const satisfies Record<Step['op'], true>;

/** The helper's ops (the Step union's `op`s), for the derivation to check a derived op exists. */
export const STEP_OPS: ReadonlySet<Step['op']> = new Set(Object.keys(OPS) as Array<Step['op']>);

/** Where the helper's op name is not the core method's name. */
const OP_NAMES: Readonly<Record<string, Step['op']>> = { 'mapping.read': 'mapRead', 'mapping.write': 'mapWrite' };

/** The step field that names the receiver, by the receiver's kind; a kind absent here has no kernel step. */
const RECEIVER_FIELDS: Readonly<Record<string, 'vm' | 'fd' | 'map'>> = {
  vm: 'vm',
  gmem: 'fd',
  memfd: 'fd',
  mapping: 'map',
};

/** The name a created object is bound under when the caller gives none: `<kind>@<where>`. */
const BIND_PREFIX: Readonly<Record<string, string>> = { vm: 'vm', gmem: 'gmem', memfd: 'memfd', mapping: 'map' };

/** A call's arguments as a kernel step takes them: numbers, a mapping-relative address, handle names, strings. */
export type CallArgs = Record<string, Num | Address | string | boolean | undefined>;

/**
 * Why the helper cannot run this call with these arguments, or undefined when it can. The reasons are the
 * machine's: a default VM only (coco VM types need TDX or SEV-SNP hardware), no guest intent (it needs private
 * memory), no iommufd in the helper, no in-place conversion (no KVM_CAP_MEMORY_ATTRIBUTES on a guest_memfd) on the
 * kernels it runs on.
 */
export function unsupportedReason(call: string, args: CallArgs): string | undefined {
  const spec = CALLS[call];
  if (!spec) return 'the helper has no such call';
  const [receiver] = call.split('.');
  if (receiver === 'ioas' || receiver === 'iommufd' || receiver === 'device' || call === 'host.openIommufd')
    return 'the helper has no iommufd';
  if (call === 'gmem.setMemoryAttributes2')
    return 'this kernel reports no KVM_CAP_MEMORY_ATTRIBUTES (no in-place conversion)';
  if (!STEP_OPS.has(opOf(call)) || (spec.receiver !== 'host' && RECEIVER_FIELDS[spec.receiver] === undefined))
    return 'the helper has no such call';
  if (call === 'host.createVm' && withDefault(spec, 'type', args.type) !== 'default')
    return "only a default VM ('type: default'): coco VM types need TDX or SEV-SNP hardware";
  if ('intent' in spec.args && args.intent !== undefined) return 'a guest intent needs a VM with private memory';
  return undefined;
}

/** The helper's op for a call: its method's name, or the helper's own name for it. */
export function opOf(call: string): Step['op'] {
  return OP_NAMES[call] ?? (call.slice(call.indexOf('.') + 1) as Step['op']);
}

const withDefault = (spec: CallSpec, name: string, value: unknown): unknown => {
  const arg = spec.args[name];
  return value !== undefined || arg === undefined || !('default' in arg) ? value : arg.default;
};

/**
 * The kernel step for a call of the table: `on` names the receiver (absent for the host's calls), `args` are the
 * call's arguments by the table's names, evaluated, `as` the name its result is bound under, `where` what an
 * unnamed result is called after (a scenario step's path). Throws a TypeError naming the reason when the helper
 * cannot run it (check `unsupportedReason` first).
 */
export function stepOfCall(
  call: string,
  on: string | undefined,
  args: CallArgs,
  options: { as?: string; where?: string } = {},
): Step {
  const reason = unsupportedReason(call, args);
  if (reason !== undefined) throw new TypeError(`${call}: ${reason}`);
  const spec = CALLS[call]!;
  const op = opOf(call);
  const step: Record<string, unknown> = { op };
  // close(2) takes any open object as `fd`; the other calls name their receiver by its kind.
  if (spec.receiver !== 'host') step[op === 'close' ? 'fd' : RECEIVER_FIELDS[spec.receiver]!] = on;
  const byteArg = Object.keys(spec.args).find((name) => spec.args[name]!.type === 'byte');
  // The helper makes one kind of VM (a default one: `type` was checked above), and `vcpus` only feeds the model's
  // IPI counts: createVm takes no arguments. A guest intent was refused above.
  const copied =
    op === 'createVm'
      ? []
      : Object.keys(spec.args).filter(
          (name) => name !== byteArg && name !== 'intent' && !(byteArg !== undefined && name === 'length'),
        );
  for (const name of copied) {
    const value = withDefault(spec, name, args[name]);
    if (value !== undefined) step[name] = value;
  }
  if (byteArg !== undefined)
    step.data = { fill: args[byteArg] === undefined ? 0 : Number(args[byteArg]), length: Number(args.length) };
  if (spec.returns !== undefined && BIND_PREFIX[spec.returns] !== undefined)
    step.as = options.as ?? `${BIND_PREFIX[spec.returns]}@${options.where ?? call}`;
  return step as unknown as Step;
}
