/**
 * The running kernel behind @gmemlab/core's method names: a LinuxHost owns one gmem-helper process, and
 * LinuxVm, LinuxGuestMemfd, LinuxMemfd and LinuxMapping mirror core's Vm, GuestMemfd, Memfd and HostMapping.
 * Every call is async (it is a round trip to the helper). Failed calls throw a KernelError carrying the errno
 * name; memory accesses return an AccessResult, faults included, exactly as core does.
 */
import { HelperError, KernelError } from './errors.js';
import { fromHex, Helper, toHex, type HelperOptions, type Response } from './helper.js';
import { ensureHelper } from './native.js';

/** Core's AccessResult, restated so that this package works without @gmemlab/core. */
export type AccessResult =
  | { ok: true; data?: Uint8Array }
  | { ok: false; fault: string; address: number; fatal: boolean; logged: boolean; mechanism: string; done: number };

export type U64 = number | bigint;

const U64_LIMIT = 1n << 64n;
const S64_LIMIT = 1n << 63n;

function integer(op: string, name: string, value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  throw new KernelError('EINVAL', op, `${name}=${String(value)} is not an integer`);
}

/** A value for a u64 field; one the field cannot hold is EINVAL, as core's parseU64 says. */
function u64(op: string, name: string, value: unknown): string {
  const v = integer(op, name, value);
  if (v < 0n || v >= U64_LIMIT) throw new KernelError('EINVAL', op, `${name}=${v} is not a u64`);
  return v.toString();
}

/** A value for a loff_t / s64 argument. */
function s64(op: string, name: string, value: unknown): string {
  const v = integer(op, name, value);
  if (v < -S64_LIMIT || v >= S64_LIMIT) throw new KernelError('EINVAL', op, `${name}=${v} is not an s64`);
  return v.toString();
}

/** A value for a C int argument (fallocate mode, madvise advice). */
function int(op: string, name: string, value: unknown): string {
  const v = integer(op, name, value);
  if (v < -(1n << 31n) || v >= 1n << 31n) throw new KernelError('EINVAL', op, `${name}=${v} is not an int`);
  return v.toString();
}

function bytes(op: string, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  throw new KernelError('EFAULT', op, 'data is not a Uint8Array');
}

function expectOk(op: string, response: Response): string[] {
  if ('fault' in response) throw new KernelError('EFAULT', op, `unexpected ${response.fault} fault`);
  if (!response.ok) throw new KernelError(response.errno, op);
  return response.words;
}

const MECHANISMS: Record<string, string> = {
  sigbus: 'SIGBUS caught by gmem-helper',
  sigsegv: 'SIGSEGV: no VMA at this address',
  mmio: 'KVM_EXIT_MMIO',
  efault: 'KVM_RUN returned EFAULT',
};

function access(op: string, response: Response): AccessResult {
  if ('fault' in response) {
    return {
      ok: false,
      fault: response.fault,
      address: response.address,
      done: response.done,
      fatal: false,
      logged: false,
      mechanism: MECHANISMS[response.fault] ?? response.fault,
    };
  }
  if (!response.ok) throw new KernelError(response.errno, op);
  return response.words.length > 0 ? { ok: true, data: fromHex(response.words[0]) } : { ok: true };
}

/** A file the helper holds: something with an fd that can be closed and passed to ioctls. */
abstract class LinuxFile {
  constructor(
    protected readonly host: LinuxHost,
    /** The helper's handle for this file ('h<n>'); the kernel's fd number is not exposed, as it may be reused. */
    readonly handle: string,
  ) {}

  /** The fd, for ioctl arguments (an fd-like value core's parseFdArgument also accepts). */
  get fd(): string {
    return this.handle;
  }

  /** close(2). */
  async close(): Promise<void> {
    expectOk('close', await this.host.helper.request('close', this.handle));
  }
}

export interface GuestMemfdStat {
  size: number;
  blksize: number;
  ino: number;
}

/** fstat/pread/pwrite/fallocate/mmap: what a guest_memfd and a memfd share. */
abstract class LinuxMappableFile extends LinuxFile {
  async stat(): Promise<GuestMemfdStat> {
    const [size, blksize, ino] = expectOk('fstat', await this.host.helper.request('fstat', this.handle));
    return { size: Number(size), blksize: Number(blksize), ino: Number(ino) };
  }

  /** read(2) at the file position (guest_memfd has no read file operation: EINVAL). */
  async read(length: U64): Promise<Uint8Array> {
    const op = 'read';
    return fromHex(expectOk(op, await this.host.helper.request('read', this.handle, u64(op, 'length', length)))[0]);
  }

  /** write(2) at the file position (guest_memfd: EINVAL). */
  async write(data: Uint8Array): Promise<number> {
    const op = 'write';
    return Number(expectOk(op, await this.host.helper.request('write', this.handle, toHex(bytes(op, data))))[0]);
  }

  async pread(length: U64, offset: U64): Promise<Uint8Array> {
    const op = 'pread';
    const words = expectOk(
      op,
      await this.host.helper.request('pread', this.handle, u64(op, 'length', length), s64(op, 'offset', offset)),
    );
    return fromHex(words[0]);
  }

  async pwrite(data: Uint8Array, offset: U64): Promise<number> {
    const op = 'pwrite';
    const words = expectOk(
      op,
      await this.host.helper.request('pwrite', this.handle, toHex(bytes(op, data)), s64(op, 'offset', offset)),
    );
    return Number(words[0]);
  }

  async fallocate(mode: number, offset: U64, length: U64): Promise<void> {
    const op = 'fallocate';
    expectOk(
      op,
      await this.host.helper.request(
        'fallocate',
        this.handle,
        int(op, 'mode', mode),
        s64(op, 'offset', offset),
        s64(op, 'len', length),
      ),
    );
  }

  /** mmap(2) with PROT_READ|PROT_WRITE; `shared` picks MAP_SHARED or MAP_PRIVATE. */
  async mmap(args: { length: U64; shared: boolean; offset?: U64 }): Promise<LinuxMapping> {
    const op = 'mmap';
    if (typeof args !== 'object' || args === null) throw new KernelError('EFAULT', op, 'args is not an object');
    if (typeof args.shared !== 'boolean') throw new KernelError('EINVAL', op, 'shared must be a boolean');
    const length = u64(op, 'length', args.length);
    const words = expectOk(
      op,
      await this.host.helper.request(
        'mmap',
        this.handle,
        length,
        s64(op, 'offset', args.offset ?? 0),
        args.shared ? 1 : 0,
      ),
    );
    return new LinuxMapping(this.host, words[0]!, BigInt(length), BigInt(args.offset ?? 0), args.shared);
  }
}

export class LinuxGuestMemfd extends LinuxMappableFile {}

export class LinuxMemfd extends LinuxMappableFile {}

/** A host mapping; reads and writes go page by page and a SIGBUS or SIGSEGV ends them as a fault. */
export class LinuxMapping {
  constructor(
    private readonly host: LinuxHost,
    /** The helper's handle; a memslot's userspace address may name it as `${handle}+offset`. */
    readonly handle: string,
    readonly length: bigint,
    readonly fileOffset: bigint,
    readonly shared: boolean,
  ) {}

  async read(offset: U64, length: U64): Promise<AccessResult> {
    const op = 'host read';
    return access(
      op,
      await this.host.helper.request('hread', this.handle, u64(op, 'offset', offset), u64(op, 'length', length)),
    );
  }

  async write(offset: U64, data: Uint8Array): Promise<AccessResult> {
    const op = 'host write';
    return access(
      op,
      await this.host.helper.request('hwrite', this.handle, u64(op, 'offset', offset), toHex(bytes(op, data))),
    );
  }

  /** munmap(2) of the whole mapping; unmapping twice is not an error. */
  async munmap(): Promise<void> {
    expectOk('munmap', await this.host.helper.request('munmap', this.handle));
  }

  async madvise(offset: U64, length: U64, advice: number): Promise<void> {
    const op = 'madvise';
    expectOk(
      op,
      await this.host.helper.request(
        'madvise',
        this.handle,
        u64(op, 'offset', offset),
        u64(op, 'length', length),
        int(op, 'advice', advice),
      ),
    );
  }

  /** This mapping as a memslot userspace address, `offset` bytes in. */
  address(offset: U64 = 0): UserspaceAddress {
    return { mapping: this, offset: BigInt(offset) };
  }
}

/** A userspace address inside a mapping the helper made (the helper knows the real pointer). */
export interface UserspaceAddress {
  mapping: LinuxMapping;
  offset: bigint;
}

export interface UserMemoryRegionArgs {
  slot: U64;
  flags: U64;
  guestPhysAddr: U64;
  memorySize: U64;
  /** A raw address, or a place in a LinuxMapping (LinuxMapping.address()). */
  userspaceAddr?: U64 | UserspaceAddress;
}

export interface UserMemoryRegion2Args extends UserMemoryRegionArgs {
  /** A file of this host (any LinuxFile, the VM itself, the host for /dev/kvm) or a raw fd number. */
  guestMemfd?: LinuxFile | LinuxVm | LinuxHost | number;
  guestMemfdOffset?: U64;
}

function fdToken(value: UserMemoryRegion2Args['guestMemfd']): string {
  if (value === undefined) return '0';
  if (value instanceof LinuxHost) return 'kvm';
  if (value instanceof LinuxFile || value instanceof LinuxVm) return value.handle;
  return String(value);
}

function uaddrToken(op: string, value: UserMemoryRegionArgs['userspaceAddr']): string {
  if (value === undefined) return '0';
  if (typeof value === 'object') return `${value.mapping.handle}+${u64(op, 'userspaceAddr', value.offset)}`;
  return u64(op, 'userspaceAddr', value);
}

export class LinuxVm {
  constructor(
    private readonly host: LinuxHost,
    readonly handle: string,
  ) {}

  get fd(): string {
    return this.handle;
  }

  async checkExtension(capability: number): Promise<number> {
    return Number(
      expectOk(
        'KVM_CHECK_EXTENSION',
        await this.host.helper.request('check', this.handle, int('KVM_CHECK_EXTENSION', 'capability', capability)),
      )[0],
    );
  }

  async createGuestMemfd(args: { size: U64; flags?: U64 }): Promise<LinuxGuestMemfd> {
    const op = 'KVM_CREATE_GUEST_MEMFD';
    if (typeof args !== 'object' || args === null) throw new KernelError('EFAULT', op, 'args is not an object');
    const words = expectOk(
      op,
      await this.host.helper.request(
        'create_gmem',
        this.handle,
        u64(op, 'size', args.size),
        u64(op, 'flags', args.flags ?? 0),
      ),
    );
    return new LinuxGuestMemfd(this.host, words[0]!);
  }

  /** KVM_SET_MEMORY_ATTRIBUTES on the VM fd (kernel-contract §4.4): needs a kernel with private-memory VM types. */
  async setMemoryAttributes(args: { address: U64; size: U64; attributes: U64; flags?: U64 }): Promise<void> {
    const op = 'KVM_SET_MEMORY_ATTRIBUTES';
    expectOk(
      op,
      await this.host.helper.request(
        'attrs',
        this.handle,
        u64(op, 'address', args.address),
        u64(op, 'size', args.size),
        u64(op, 'attributes', args.attributes),
        u64(op, 'flags', args.flags ?? 0),
      ),
    );
  }

  async setUserMemoryRegion(args: UserMemoryRegionArgs): Promise<void> {
    const op = 'KVM_SET_USER_MEMORY_REGION';
    const a = args;
    expectOk(
      op,
      await this.host.helper.request(
        'region',
        this.handle,
        u64(op, 'slot', a.slot),
        u64(op, 'flags', a.flags),
        u64(op, 'guestPhysAddr', a.guestPhysAddr),
        u64(op, 'memorySize', a.memorySize),
        uaddrToken(op, a.userspaceAddr),
      ),
    );
  }

  async setUserMemoryRegion2(args: UserMemoryRegion2Args): Promise<void> {
    const op = 'KVM_SET_USER_MEMORY_REGION2';
    const a = args;
    expectOk(
      op,
      await this.host.helper.request(
        'region2',
        this.handle,
        u64(op, 'slot', a.slot),
        u64(op, 'flags', a.flags),
        u64(op, 'guestPhysAddr', a.guestPhysAddr),
        u64(op, 'memorySize', a.memorySize),
        uaddrToken(op, a.userspaceAddr),
        fdToken(a.guestMemfd),
        u64(op, 'guestMemfdOffset', a.guestMemfdOffset ?? 0),
      ),
    );
  }

  /**
   * The guest reads `length` bytes at `gpa`: a vCPU runs `cld; rep movsb; hlt` in 32-bit flat protected mode
   * from a memslot at GPA 0xc0000-0xfffff (slot 32000), so `gpa` must be below 4 GiB and the range must not
   * overlap that memslot. A KVM_EXIT_MMIO or an EFAULT from KVM_RUN is a fault result.
   */
  async guestRead(gpa: U64, length: U64): Promise<AccessResult> {
    const op = 'guest read';
    return access(
      op,
      await this.host.helper.request('gread', this.handle, u64(op, 'gpa', gpa), u64(op, 'length', length)),
    );
  }

  async guestWrite(gpa: U64, data: Uint8Array): Promise<AccessResult> {
    const op = 'guest write';
    return access(
      op,
      await this.host.helper.request('gwrite', this.handle, u64(op, 'gpa', gpa), toHex(bytes(op, data))),
    );
  }

  /** close(2) of the VM fd (the helper's vCPU, if a guest access made one, keeps the VM alive). */
  async close(): Promise<void> {
    expectOk('close', await this.host.helper.request('close', this.handle));
  }
}

export interface LinuxHostOptions extends HelperOptions {}

export class LinuxHost {
  /** @internal */
  readonly helper: Helper;
  /** KVM_GET_API_VERSION. */
  readonly apiVersion: number;

  private constructor(helper: Helper, apiVersion: number) {
    this.helper = helper;
    this.apiVersion = apiVersion;
  }

  /**
   * Start a helper with /dev/kvm open, building the helper first if it is not built yet. Throws HelperError if it
   * cannot be built (its message says why: no C compiler, compile error, no writable directory), KernelError if
   * /dev/kvm cannot be opened.
   */
  static async open(options: LinuxHostOptions = {}): Promise<LinuxHost> {
    const binary = await ensureHelper();
    if (!binary.ok) throw new HelperError(binary.problem);
    const helper = new Helper(binary.path, options);
    const hello = await helper.hello;
    if ('fault' in hello || !hello.ok) {
      await helper.close();
      throw new KernelError('fault' in hello ? 'EFAULT' : hello.errno, 'open("/dev/kvm")');
    }
    return new LinuxHost(helper, Number(hello.words[0]));
  }

  /** /dev/kvm, as an fd argument. */
  get fd(): string {
    return 'kvm';
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm. */
  async checkExtension(capability: number): Promise<number> {
    const op = 'KVM_CHECK_EXTENSION';
    return Number(expectOk(op, await this.helper.request('check', 'kvm', int(op, 'capability', capability)))[0]);
  }

  /** KVM_CREATE_VM; type 0 is the default VM (core's 'default'). */
  async createVm(options: { type?: number | 'default' } = {}): Promise<LinuxVm> {
    const op = 'KVM_CREATE_VM';
    const type = options.type === undefined || options.type === 'default' ? 0 : options.type;
    const words = expectOk(op, await this.helper.request('create_vm', u64(op, 'type', type)));
    return new LinuxVm(this, words[0]!);
  }

  /** memfd_create + ftruncate(size). */
  async memfdCreate(size: U64): Promise<LinuxMemfd> {
    const op = 'memfd_create';
    const words = expectOk(op, await this.helper.request('memfd', u64(op, 'size', size)));
    return new LinuxMemfd(this, words[0]!);
  }

  /** Close every fd and unmap every mapping this host made; the host stays usable for new objects. */
  async release(): Promise<void> {
    expectOk('release', await this.helper.request('release'));
  }

  /** Close every fd, unmap every mapping and end the helper. */
  async dispose(): Promise<void> {
    await this.helper.close();
  }
}

/** Open the running kernel as a host (LinuxHost.open). */
export function createLinuxHost(options?: LinuxHostOptions): Promise<LinuxHost> {
  return LinuxHost.open(options);
}

export { LinuxFile };
