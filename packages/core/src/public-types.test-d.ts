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
  type ObserverError,
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
    expectTypeOf(host.openIommufd().createIoas().mapFile)
      .parameter(0)
      .toHaveProperty('fd')
      .toEqualTypeOf<number | bigint | { fd: number }>();
  });

  it('every integer argument takes a number or a bigint', () => {
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 4096 });
    const mapping = gmem.mmap({ length: 4096n, shared: true, offset: 0n });
    const device = host.openIommufd().createIoas().attachDevice();
    type Int = number | bigint;
    expectTypeOf(gmem.fallocate).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(gmem.fallocate).parameter(1).toEqualTypeOf<Int>();
    expectTypeOf(gmem.fallocate).parameter(2).toEqualTypeOf<Int>();
    expectTypeOf(gmem.mmap).parameter(0).toHaveProperty('length').toEqualTypeOf<Int>();
    expectTypeOf(gmem.pin).parameters.toEqualTypeOf<[Int, Int]>();
    expectTypeOf(gmem.memoryFailure).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(gmem.directMapRead).parameters.toEqualTypeOf<[Int, Int]>();
    expectTypeOf(vm.guestRead).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(vm.guestRead).parameter(1).toEqualTypeOf<Int>();
    expectTypeOf(vm.guestWrite).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(vm.checkExtension).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(host.checkExtension).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(mapping.read).parameters.toEqualTypeOf<[Int, Int]>();
    expectTypeOf(mapping.madvise).parameters.toEqualTypeOf<[Int, Int, Int]>();
    expectTypeOf(device.dmaRead).parameters.toEqualTypeOf<[Int, Int]>();
    expectTypeOf(device.dmaWrite).parameter(0).toEqualTypeOf<Int>();
    expectTypeOf(host.memfdCreate).parameter(0).toEqualTypeOf<Int>();
  });

  it('observer errors (listeners, consumers, backends) are one list of one plain-data shape', () => {
    const host = createHost();
    expectTypeOf(host.observerErrors()).toEqualTypeOf<readonly ObserverError[]>();
    expectTypeOf(host.observerErrors()[0]!).toEqualTypeOf<ObserverError>();
    expectTypeOf<ObserverError>().toEqualTypeOf<{ source: string; hook: string; message: string }>();
    expectTypeOf(host.observerErrorCount).toBeNumber();
    expectTypeOf(host.events).not.toHaveProperty('listenerErrors');
    expectTypeOf(host.events).not.toHaveProperty('clearListenerErrors');
  });

  it('a backend factory is both a function and a backend', () => {
    const factory = defineBackendFactory((options?: { variant?: 'x' }) => ({
      ...swProtected,
      id: options?.variant ? 'n:x' : 'n',
    }));
    expectTypeOf(factory).toEqualTypeOf<BackendFactory<{ variant?: 'x' }>>();
    expectTypeOf(factory).toMatchTypeOf<ArchBackend>();
    expectTypeOf(factory({ variant: 'x' })).toEqualTypeOf<ArchBackend>();
    expectTypeOf(createHost)
      .parameter(0)
      .exclude<undefined>()
      .toHaveProperty('backend')
      .toEqualTypeOf<ArchBackend | undefined>();
  });

  it('consumers, events and violations are plain data', () => {
    expectTypeOf<MappingConsumer['invalidateBegin']>()
      .parameter(0)
      .toHaveProperty('cause')
      .toEqualTypeOf<'truncate' | 'to-private' | 'to-shared' | 'release' | 'memory-failure'>();
    expectTypeOf<GmemEvent['type']>().toEqualTypeOf<
      | 'invalidate-begin'
      | 'invalidate-end'
      | 'zap'
      | 'revoke'
      | 'remap'
      | 'call'
      | 'access'
      | 'pipeline'
      | 'hardware'
      | 'crash'
      | 'observer-error'
    >();
    expectTypeOf<Violation['kind']>().toEqualTypeOf<
      'stale-iopte' | 'stale-spte' | 'stale-host-pte' | 'unsafe-iopte' | 'attributes' | 'hardware-state'
    >();
  });
});
