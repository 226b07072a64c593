/**
 * The per-VM memory attributes and KVM_SET_MEMORY_ATTRIBUTES on the VM fd: today's production path, where
 * guest_memfd holds only the private side of guest memory, the shared side is the VMM's own memory at the
 * memslot's userspace address, and a conversion changes what KVM believes about a gfn, not any file
 * (kernel-contract §4.4). The model reaches this path with `createHost({ conversion: 'separate' })`.
 *
 * Source: torvalds/linux virt/kvm/kvm_main.c `kvm_vm_ioctl_set_mem_attributes`, `kvm_vm_set_mem_attributes`,
 * `kvm_supported_mem_attributes`, `kvm_pre_set_memory_attributes` (read in the Linux 6.12-6.18 form, where
 * `kvm_vm_set_mem_attributes` zaps through `kvm_handle_gfn_range`); arch/x86/kvm/mmu/mmu.c
 * `kvm_arch_pre_set_memory_attributes` (the zap filter: the side that goes away).
 */
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SHIFT, PAGE_SIZE } from '../constants.js';
import { fail } from '../errors.js';
import * as door from '../arch/door.js';
import type { Kernel } from '../kernel.js';
import { fieldsOf, parseOptionalU64, parseStruct, parseU64 } from '../util/args.js';
import { RangeMap } from '../util/range-map.js';
import type { Memslot } from './memslot.js';

/** struct kvm_memory_attributes: { __u64 address; __u64 size; __u64 attributes; __u64 flags; }. */
export interface MemoryAttributesArgs {
  /** Guest physical address of the first byte. */
  address: number | bigint;
  size: number | bigint;
  /** 0 (shared) or KVM_MEMORY_ATTRIBUTE_PRIVATE. */
  attributes: number | bigint;
  /** Must be 0. */
  flags?: number | bigint;
}

const MEMORY_ATTRIBUTES_FIELDS = fieldsOf<MemoryAttributesArgs>({
  address: true,
  size: true,
  attributes: true,
  flags: true,
});
const U64_MAX = (1n << 64n) - 1n;

/**
 * kvm->mem_attr_array: which gfns KVM holds as private. Absent means shared (the xarray stores NULL for 0), so a
 * new VM is all shared until the VMM says otherwise. Runs of gfns, never per page.
 */
export class VmMemoryAttributes {
  /** @internal gfn runs whose attribute is KVM_MEMORY_ATTRIBUTE_PRIVATE. */
  readonly private = new RangeMap<true>();

  isPrivate(gfn: number): boolean {
    return this.private.runCount > 0 && this.private.has(gfn);
  }

  /** kvm_range_has_memory_attributes(kvm, start, end, ~0, attributes). */
  holds(start: number, end: number, to: 'shared' | 'private'): boolean {
    return to === 'private' ? this.private.covers(start, end) : !this.private.intersects(start, end);
  }
}

/**
 * kvm_supported_mem_attributes: PRIVATE for a VM with private memory (kvm_arch_has_private_mem), nothing for
 * any other. With in-place conversion on (CONV8 24/46, kernel-contract §4.1) the per-VM attributes are off
 * (`vm_memory_attributes` false): privacy lives in guest_memfd, and the VM ioctl offers no attribute.
 */
export function supportedMemoryAttributes(
  kernel: Pick<Kernel, 'inPlaceConversion'>,
  vmType: 'default' | 'coco',
): number {
  if (kernel.inPlaceConversion) return 0;
  return vmType === 'coco' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

/**
 * What KVM_SET_MEMORY_ATTRIBUTES needs of its VM (the model's Vm, kept narrow so this file stays a leaf). `Plan`
 * is the VM's own record of what a private zap will end, opaque here.
 */
export interface AttributeTarget<Plan> {
  readonly type: 'default' | 'coco';
  readonly memoryAttributes: VmMemoryAttributes;
  memslots(): readonly Memslot[];
  mmuInvalidateBegin(): void;
  unmapGfnRange(start: number, end: number, cause: 'to-private' | 'to-shared'): void;
  /**
   * Where the backend ends the hardware-private state at the zap of private entries (ArchBackend.privateRemovalAt
   * 'zap'): what the zap of [start, end) will end, with the backend's removal steps, asked before anything changes.
   */
  planPrivateZap(start: number, end: number): Plan;
  /** The zap ends what planPrivateZap found. */
  zapPrivateHardware(plan: Plan, zero: boolean): void;
  mmuInvalidateEnd(): void;
}

/**
 * KVM_SET_MEMORY_ATTRIBUTES on the VM fd, after the fd checks (kernel-contract §4.4). The checks, in the
 * kernel's order, each EINVAL: flags ≠ 0; an attribute bit the VM does not support; size 0 or address + size
 * wrapping; address or size not page aligned. Then, under slots_lock: a range already holding the attribute is a
 * no-op (no invalidation); otherwise invalidate_begin over every memslot the range meets (none: no invalidation
 * at all, only the attributes change), zap the stage-2 side that goes away, store, invalidate_end. Nothing here
 * touches guest_memfd or the VMM's shared memory: the VMM discards the side it no longer uses itself.
 */
export function setVmMemoryAttributes<Plan>(
  kernel: Kernel,
  vm: AttributeTarget<Plan>,
  op: string,
  args: unknown,
): { start: number; end: number; to: 'shared' | 'private'; changed: boolean } {
  const a = parseStruct(op, args, MEMORY_ATTRIBUTES_FIELDS);
  const address = parseU64(op, 'address', a.address);
  const size = parseU64(op, 'size', a.size);
  const attributes = parseU64(op, 'attributes', a.attributes);
  const flags = parseOptionalU64(op, 'flags', a.flags);
  // "flags is currently not used."
  if (flags !== 0n) fail('EINVAL', op, `flags 0x${flags.toString(16)} must be 0`, { argument: 'flags' });
  const supported = BigInt(supportedMemoryAttributes(kernel, vm.type));
  if (attributes & ~supported) {
    const why = kernel.inPlaceConversion
      ? 'with in-place conversion on, the per-VM attributes are off: convert with KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd'
      : vm.type === 'coco'
        ? 'KVM_MEMORY_ATTRIBUTE_PRIVATE is the only attribute'
        : "a VM without private memory (type 'default') supports no attribute";
    fail(
      'EINVAL',
      op,
      `attributes 0x${attributes.toString(16)} include bits KVM_CAP_MEMORY_ATTRIBUTES (0x${supported.toString(16)}) does not offer: ${why}`,
      { argument: 'attributes' },
    );
  }
  if (size === 0n) fail('EINVAL', op, 'size is 0', { argument: 'size' });
  // `attrs->address + attrs->size < attrs->address` in u64: the true sum reaches 2^64.
  if (address + size > U64_MAX)
    fail('EINVAL', op, `address 0x${address.toString(16)} + size ${size} wraps`, { argument: 'size' });
  const page = BigInt(PAGE_SIZE);
  if (address % page !== 0n)
    fail('EINVAL', op, `address 0x${address.toString(16)} is not page aligned`, { argument: 'address' });
  if (size % page !== 0n) fail('EINVAL', op, `size ${size} is not page aligned`, { argument: 'size' });
  const start = Number(address >> BigInt(PAGE_SHIFT));
  const end = Number((address + size) >> BigInt(PAGE_SHIFT));
  const to = attributes & BigInt(KVM_MEMORY_ATTRIBUTE_PRIVATE) ? 'private' : 'shared';

  // "Nothing to do if the entire range has the desired attributes."
  if (vm.memoryAttributes.holds(start, end, to)) return { start, end, to, changed: false };
  // kvm_handle_gfn_range(pre_set_range): on_lock (invalidate_begin) runs at the first memslot met; each overlap is
  // added to the invalidation range and its SPTEs of the old attribute zapped (x86: attr_filter is the shared
  // side when going private, the private side when going shared).
  const overlaps: Array<[number, number]> = [];
  for (const slot of vm.memslots()) {
    if (slot.asId !== 0) continue;
    const first = Math.max(start, slot.baseGfn);
    const last = Math.min(end, slot.baseGfn + slot.npages);
    if (first < last) overlaps.push([first, last]);
  }
  // Where the zap ends the hardware-private state, the contents rule and the removal steps are asked before
  // anything changes, so a backend's broken answer fails the call with EIO and the model as it was (door.ts).
  const zapZero =
    to === 'shared' && overlaps.length > 0 && kernel.backend.privateRemovalAt === 'zap'
      ? door.contentsOnConversion(kernel, op, { to }) === 'zero'
      : undefined;
  const zaps = zapZero !== undefined ? overlaps.map(([first, last]) => vm.planPrivateZap(first, last)) : undefined;
  if (overlaps.length > 0) vm.mmuInvalidateBegin();
  for (let i = 0; i < overlaps.length; i++) {
    const [first, last] = overlaps[i]!;
    vm.unmapGfnRange(first, last, to === 'private' ? 'to-private' : 'to-shared');
    // Going shared, the zap of the private side is where TDX removes the page from the S-EPT and CCA unmaps and
    // undelegates the granule; SEV-SNP's RMP entry waits for guest_memfd's free (ArchBackend.privateRemovalAt).
    if (zaps !== undefined) vm.zapPrivateHardware(zaps[i]!, zapZero!);
  }
  // xa_store over the range (xa_reserve made it unable to fail); post_set_range's on_lock is invalidate_end.
  if (to === 'private') vm.memoryAttributes.private.set(start, end, true);
  else vm.memoryAttributes.private.delete(start, end);
  if (overlaps.length > 0) vm.mmuInvalidateEnd();
  return { start, end, to, changed: true };
}
