/** The public types users write against: checked by the compiler (vitest --typecheck), not at run time. */
import { describe, expectTypeOf, it } from 'vitest';
import {
  createHost,
  defineBackendFactory,
  GmemError,
  swProtected,
  type AccessResult,
  type ArchBackend,
  type BackendFactory,
  type Errno,
  type GmemEvent,
  type MappingConsumer,
  type Violation,
} from './index.js';

describe('public types', () => {
  it('accesses return AccessResult; only ok results carry data', () => {
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const result = vm.guestRead(0, 1);
    expectTypeOf(result).toEqualTypeOf<AccessResult>();
    if (result.ok) expectTypeOf(result.data).toEqualTypeOf<Uint8Array | undefined>();
    else expectTypeOf(result.done).toBeNumber();
  });

  it('errors carry a typed errno', () => {
    const error = new GmemError('EINVAL', 'fallocate', 'bad');
    expectTypeOf(error.errno).toEqualTypeOf<Errno>();
    expectTypeOf(error.errorOffset).toEqualTypeOf<number | undefined>();
    expectTypeOf(GmemError.isInstance).guards.toEqualTypeOf<GmemError>();
  });

  it('fd arguments take a number or an object with .fd; flags take a number or a bigint', () => {
    const host = createHost();
    const vm = host.createVm();
    const gmem = vm.createGuestMemfd({ size: 4096, flags: 1n << 60n });
    vm.setUserMemoryRegion2({ slot: 0, flags: 4, guestPhysAddr: 0, memorySize: 4096, guestMemfd: gmem });
    vm.setUserMemoryRegion2({ slot: 1, flags: 4, guestPhysAddr: 4096, memorySize: 4096, guestMemfd: gmem.fd });
    expectTypeOf(host.openIommufd().createIoas().mapFile).parameter(0).toHaveProperty('fd').toEqualTypeOf<number | { fd: number }>();
  });

  it('a backend factory is both a function and a backend', () => {
    const factory = defineBackendFactory((options?: { variant?: 'x' }) => ({ ...swProtected, id: options?.variant ? 'n:x' : 'n' }));
    expectTypeOf(factory).toEqualTypeOf<BackendFactory<{ variant?: 'x' }>>();
    expectTypeOf(factory).toMatchTypeOf<ArchBackend>();
    expectTypeOf(factory({ variant: 'x' })).toEqualTypeOf<ArchBackend>();
    expectTypeOf(createHost).parameter(0).exclude<undefined>().toHaveProperty('backend').toEqualTypeOf<ArchBackend | undefined>();
  });

  it('consumers, events and violations are plain data', () => {
    expectTypeOf<MappingConsumer['invalidateBegin']>().parameter(0).toHaveProperty('cause').toEqualTypeOf<'truncate' | 'to-private' | 'to-shared' | 'release' | 'memory-failure'>();
    expectTypeOf<GmemEvent['type']>().toEqualTypeOf<'invalidate-begin' | 'invalidate-end' | 'zap' | 'revoke' | 'call' | 'access' | 'pipeline' | 'hardware' | 'crash' | 'observer-error'>();
    expectTypeOf<Violation['kind']>().toEqualTypeOf<'stale-iopte' | 'stale-spte' | 'stale-host-pte' | 'unsafe-iopte' | 'attributes' | 'hardware-state'>();
  });
});
