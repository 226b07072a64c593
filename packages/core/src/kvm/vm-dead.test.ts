/**
 * Vm.dead is the model's record of kvm_vm_dead, read-only to a client: a client that could set it would kill a
 * live VM (every ioctl EIO) or bring a dead one back, neither of which the kernel allows.
 */
import { describe, expect, it } from 'vitest';
import { createHost } from '../host.js';

describe('Vm.dead', () => {
  it('cannot be written from outside: assigning throws (strict mode) and the VM stays as it was', () => {
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    expect(vm.dead).toBeUndefined();
    const writable = vm as { dead: string | undefined };
    expect(() => {
      writable.dead = 'killed by a client';
    }).toThrow(TypeError);
    expect(vm.dead).toBeUndefined();
    // Still alive: an ioctl on the VM fd is not EIO.
    expect(() => vm.createGuestMemfd({ size: 4096 })).not.toThrow();
    expect((host.snapshot() as { vms: Array<{ dead: unknown }> }).vms.map((v) => v.dead)).toEqual([null]);
  });
});
