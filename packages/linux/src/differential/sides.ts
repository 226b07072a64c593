/**
 * The two sides a step list runs on: the model (@gmemlab/core) and the kernel (LinuxHost). Each turns a step
 * into an Outcome and never throws for a kernel error; a helper crash does throw (it is not an outcome).
 */
import { GmemError, type Host, type HostMapping } from '@gmemlab/core';
import { HelperError, KernelError } from '../errors.js';
import { LinuxGuestMemfd, LinuxHost, LinuxMapping, LinuxMemfd, LinuxVm, type AccessResult } from '../host.js';
import { hex, materialize, type Address, type Outcome, type Step } from './steps.js';

/** An fd number no process has open: a name that was never bound, or was closed, resolves to it (EBADF). */
export const CLOSED_FD = 1_000_000;

export interface Side {
  run(step: Step): Promise<Outcome>;
}

function fromAccess(result: {
  ok: boolean;
  data?: Uint8Array;
  fault?: string;
  address?: number;
  done?: number;
}): Outcome {
  if (result.ok) return result.data ? { status: 'ok', value: hex(result.data) } : { status: 'ok' };
  return { status: 'fault', fault: result.fault!, address: result.address!, done: result.done! };
}

type Named = { kind: 'vm' | 'file' | 'map'; object: unknown; closed: boolean };

abstract class Names {
  protected readonly names = new Map<string, Named>();

  protected bind(name: string, kind: Named['kind'], object: unknown): void {
    this.names.set(name, { kind, object, closed: false });
  }

  protected lookup<T>(name: string, kind: Named['kind']): T | undefined {
    const entry = this.names.get(name);
    return entry && entry.kind === kind ? (entry.object as T) : undefined;
  }

  protected markClosed(name: string): void {
    const entry = this.names.get(name);
    if (entry) entry.closed = true;
  }

  protected isClosed(name: string): boolean {
    return this.names.get(name)?.closed ?? false;
  }
}

const missing = (name: string): Outcome => ({ status: 'skipped', reason: `${name} is not bound on this side` });

export class ModelSide extends Names implements Side {
  constructor(readonly host: Host) {
    super();
  }

  private fdOf(name: string | number | undefined): number {
    if (name === undefined) return 0;
    if (typeof name === 'number') return name;
    if (name === 'kvm') return this.host.fd;
    const entry = this.names.get(name);
    if (!entry || entry.closed || entry.kind === 'map') return CLOSED_FD;
    return (entry.object as { fd: number }).fd;
  }

  private address(value: Address | undefined): number | bigint {
    if (value === undefined) return 0;
    if (typeof value === 'object') {
      const map = this.lookup<HostMapping>(value.map, 'map');
      return map ? map.address + (value.offset ?? 0) : 0;
    }
    return value;
  }

  async run(step: Step): Promise<Outcome> {
    try {
      return this.exec(step);
    } catch (error) {
      if (GmemError.isInstance(error)) return { status: 'error', errno: error.errno, message: error.message };
      return { status: 'error', errno: 'THROWN', message: String(error) };
    }
  }

  private exec(step: Step): Outcome {
    const host = this.host;
    type Vm = ReturnType<Host['createVm']>;
    type Gmem = ReturnType<Vm['createGuestMemfd']>;
    type Memfd = ReturnType<Host['memfdCreate']>;
    switch (step.op) {
      case 'checkExtension':
        return { status: 'ok', value: host.checkExtension(step.capability) };
      case 'createVm':
        this.bind(step.as, 'vm', host.createVm({ type: step.type === 'sw-protected' ? 'coco' : 'default' }));
        return { status: 'ok' };
      case 'setMemoryAttributes': {
        const vm = this.lookup<Vm>(step.vm, 'vm');
        if (!vm) return missing(step.vm);
        vm.setMemoryAttributes({
          address: step.address,
          size: step.size,
          attributes: step.attributes,
          ...(step.flags === undefined ? {} : { flags: step.flags }),
        });
        return { status: 'ok' };
      }
      case 'createGuestMemfd': {
        const vm = this.lookup<Vm>(step.vm, 'vm');
        if (!vm) return missing(step.vm);
        this.bind(step.as, 'file', vm.createGuestMemfd({ size: step.size, flags: step.flags ?? 0 }));
        return { status: 'ok' };
      }
      case 'memfdCreate':
        this.bind(step.as, 'file', host.memfdCreate(step.size));
        return { status: 'ok' };
      case 'close': {
        const fd = this.fdOf(step.fd);
        host.close(fd);
        this.markClosed(step.fd);
        return { status: 'ok' };
      }
      case 'guestRead':
      case 'guestWrite':
      case 'setUserMemoryRegion':
      case 'setUserMemoryRegion2': {
        const vm = this.lookup<Vm>(step.vm, 'vm');
        if (!vm) return missing(step.vm);
        if (step.op === 'guestRead') return fromAccess(vm.guestRead(step.gpa as number, step.length as number));
        if (step.op === 'guestWrite') return fromAccess(vm.guestWrite(step.gpa as number, materialize(step.data)));
        const common = {
          slot: step.slot as number,
          flags: step.flags as number,
          guestPhysAddr: step.guestPhysAddr,
          memorySize: step.memorySize,
          userspaceAddr: this.address(step.userspaceAddr),
        };
        if (step.op === 'setUserMemoryRegion') vm.setUserMemoryRegion(common);
        else
          vm.setUserMemoryRegion2({
            ...common,
            guestMemfd: this.fdOf(step.guestMemfd),
            guestMemfdOffset: step.guestMemfdOffset ?? 0,
          });
        return { status: 'ok' };
      }
      case 'mapRead':
      case 'mapWrite':
      case 'munmap':
      case 'madvise': {
        const map = this.lookup<HostMapping>(step.map, 'map');
        if (!map) return missing(step.map);
        if (step.op === 'mapRead') return fromAccess(map.read(step.offset as number, step.length as number));
        if (step.op === 'mapWrite') return fromAccess(map.write(step.offset as number, materialize(step.data)));
        if (step.op === 'munmap') map.munmap();
        else map.madvise(step.offset as number, step.length as number, step.advice);
        return { status: 'ok' };
      }
      default: {
        const file = this.lookup<Gmem | Memfd>(step.fd, 'file');
        if (!file) return missing(step.fd);
        switch (step.op) {
          case 'stat': {
            const st = file.stat();
            return { status: 'ok', value: { size: st.size, blksize: st.blksize } };
          }
          case 'read':
            return { status: 'ok', value: hex(file.read(step.length)) };
          case 'write':
            return { status: 'ok', value: file.write(materialize(step.data)) };
          case 'pread':
            return { status: 'ok', value: hex(file.pread(step.length, step.offset as number)) };
          case 'pwrite':
            return { status: 'ok', value: file.pwrite(materialize(step.data), step.offset as number) };
          case 'fallocate':
            file.fallocate(step.mode, step.offset as number, step.length as number);
            return { status: 'ok' };
          case 'mmap': {
            const args = {
              length: step.length as number,
              shared: step.shared,
              ...(step.offset === undefined ? {} : { offset: step.offset as number }),
            };
            this.bind(step.as, 'map', file.mmap(args));
            return { status: 'ok' };
          }
        }
      }
    }
  }
}

export class KernelSide extends Names implements Side {
  constructor(readonly host: LinuxHost) {
    super();
  }

  private fdOf(name: string | number | undefined): LinuxHost | LinuxVm | LinuxGuestMemfd | LinuxMemfd | number {
    if (name === undefined) return 0;
    if (typeof name === 'number') return name;
    if (name === 'kvm') return this.host;
    const entry = this.names.get(name);
    if (!entry || entry.closed || entry.kind === 'map') return CLOSED_FD;
    return entry.object as LinuxVm | LinuxGuestMemfd | LinuxMemfd;
  }

  private address(value: Address | undefined) {
    if (value === undefined) return 0;
    if (typeof value === 'object') {
      const map = this.lookup<LinuxMapping>(value.map, 'map');
      return map ? map.address(value.offset ?? 0) : 0;
    }
    return value;
  }

  async run(step: Step): Promise<Outcome> {
    try {
      return await this.exec(step);
    } catch (error) {
      if (KernelError.isInstance(error)) return { status: 'error', errno: error.errno, message: error.message };
      if (HelperError.isInstance(error)) throw error;
      return { status: 'error', errno: 'THROWN', message: String(error) };
    }
  }

  private async exec(step: Step): Promise<Outcome> {
    const host = this.host;
    const access = (result: AccessResult) => fromAccess(result);
    switch (step.op) {
      case 'checkExtension':
        return { status: 'ok', value: await host.checkExtension(step.capability) };
      case 'createVm':
        // KVM_X86_SW_PROTECTED_VM is type 1 (arch/x86/include/uapi/asm/kvm.h).
        this.bind(step.as, 'vm', await host.createVm(step.type === 'sw-protected' ? { type: 1 } : {}));
        return { status: 'ok' };
      case 'setMemoryAttributes': {
        const vm = this.lookup<LinuxVm>(step.vm, 'vm');
        if (!vm) return missing(step.vm);
        await vm.setMemoryAttributes({
          address: step.address,
          size: step.size,
          attributes: step.attributes,
          ...(step.flags === undefined ? {} : { flags: step.flags }),
        });
        return { status: 'ok' };
      }
      case 'createGuestMemfd': {
        const vm = this.lookup<LinuxVm>(step.vm, 'vm');
        if (!vm) return missing(step.vm);
        this.bind(step.as, 'file', await vm.createGuestMemfd({ size: step.size, flags: step.flags ?? 0 }));
        return { status: 'ok' };
      }
      case 'memfdCreate':
        this.bind(step.as, 'file', await host.memfdCreate(step.size));
        return { status: 'ok' };
      case 'close': {
        const target = this.fdOf(step.fd);
        if (target instanceof LinuxHost || typeof target === 'number') {
          const errno = 'EBADF';
          return { status: 'error', errno, message: `close: ${step.fd} is not an fd this side may close` };
        }
        await target.close();
        this.markClosed(step.fd);
        return { status: 'ok' };
      }
      case 'guestRead':
      case 'guestWrite':
      case 'setUserMemoryRegion':
      case 'setUserMemoryRegion2': {
        const vm = this.lookup<LinuxVm>(step.vm, 'vm');
        if (!vm) return missing(step.vm);
        if (step.op === 'guestRead') return access(await vm.guestRead(step.gpa, step.length));
        if (step.op === 'guestWrite') return access(await vm.guestWrite(step.gpa, materialize(step.data)));
        const common = {
          slot: step.slot,
          flags: step.flags,
          guestPhysAddr: step.guestPhysAddr,
          memorySize: step.memorySize,
          userspaceAddr: this.address(step.userspaceAddr),
        };
        if (step.op === 'setUserMemoryRegion') await vm.setUserMemoryRegion(common);
        else
          await vm.setUserMemoryRegion2({
            ...common,
            guestMemfd: this.fdOf(step.guestMemfd),
            guestMemfdOffset: step.guestMemfdOffset ?? 0,
          });
        return { status: 'ok' };
      }
      case 'mapRead':
      case 'mapWrite':
      case 'munmap':
      case 'madvise': {
        const map = this.lookup<LinuxMapping>(step.map, 'map');
        if (!map) return missing(step.map);
        if (step.op === 'mapRead') return access(await map.read(step.offset, step.length));
        if (step.op === 'mapWrite') return access(await map.write(step.offset, materialize(step.data)));
        if (step.op === 'munmap') await map.munmap();
        else await map.madvise(step.offset, step.length, step.advice);
        return { status: 'ok' };
      }
      default: {
        const file = this.lookup<LinuxGuestMemfd | LinuxMemfd>(step.fd, 'file');
        if (!file) return missing(step.fd);
        switch (step.op) {
          case 'stat': {
            const st = await file.stat();
            return { status: 'ok', value: { size: st.size, blksize: st.blksize } };
          }
          case 'read':
            return { status: 'ok', value: hex(await file.read(step.length)) };
          case 'write':
            return { status: 'ok', value: await file.write(materialize(step.data)) };
          case 'pread':
            return { status: 'ok', value: hex(await file.pread(step.length, step.offset)) };
          case 'pwrite':
            return { status: 'ok', value: await file.pwrite(materialize(step.data), step.offset) };
          case 'fallocate':
            await file.fallocate(step.mode, step.offset, step.length);
            return { status: 'ok' };
          case 'mmap':
            this.bind(
              step.as,
              'map',
              await file.mmap({ length: step.length, shared: step.shared, offset: step.offset ?? 0 }),
            );
            return { status: 'ok' };
        }
      }
    }
  }
}
