/**
 * Open files and the fd table. A file is released when its last reference goes: the fd, and every mmap and
 * iommufd area that holds it (an IOMMU_IOAS_MAP_FILE area keeps a struct file reference, kernel-contract §5.1).
 */
import { fail } from './errors.js';

export type FileKind = 'kvm' | 'kvm-vm' | 'guest_memfd' | 'memfd' | 'iommufd';

const KIND_NAMES: Record<FileKind, string> = {
  kvm: 'a /dev/kvm file',
  'kvm-vm': 'a KVM VM file',
  guest_memfd: 'a guest_memfd file',
  memfd: 'a memfd file',
  iommufd: 'an iommufd file',
};

/** "a guest_memfd file", "an iommufd file": a file kind with its article, for messages. */
export function kindName(kind: FileKind): string {
  return KIND_NAMES[kind];
}

export abstract class KernelFile {
  abstract readonly kind: FileKind;
  private refs = 0;
  private gone = false;
  /**
   * @internal The fd table (so the host) the file was installed in: an object belongs to one host for good. A
   * field rather than a side table, so that a forked host's copies belong to the fork.
   */
  owner: FdTable | undefined;

  get released(): boolean {
    return this.gone;
  }

  get refCount(): number {
    return this.refs;
  }

  /** @internal Take a reference (an fd, a mapping, a pages object). */
  get(): void {
    this.refs++;
  }

  /** @internal Drop a reference; the last one releases the file. */
  put(): void {
    this.refs--;
    if (this.refs === 0 && !this.gone) {
      this.gone = true;
      this.release();
    }
  }

  /** The last reference went (the file's ->release). */
  protected abstract release(): void;
}

/** Told of every close (the host, for its event stream). */
export interface CloseObserver {
  fileClosed(fd: number, file: KernelFile): void;
}

/** One process's fd table. 0-2 are stdio, as in any process. */
export class FdTable {
  private readonly table = new Map<number, KernelFile>();
  /**
   * The open fds in ascending order, for snapshots; dropped by install() and close(), the only two places that
   * change `table` (it is private), so it is never stale.
   */
  private ordered: number[] | undefined;

  /** `observer` is told of every close, for the event stream. */
  constructor(private readonly observer?: CloseObserver) {}

  install(file: KernelFile): number {
    let fd = 3;
    while (this.table.has(fd)) fd++;
    this.table.set(fd, file);
    this.ordered = undefined;
    file.owner = this;
    file.get();
    return fd;
  }

  lookup(fd: number): KernelFile | undefined {
    return this.table.get(fd);
  }

  /**
   * fget(): EBADF for an fd that is not open. `passed` is what the caller passed for the fd: a file object (a
   * GuestMemfd, a Memfd) stands for its own fd, so it must be that fd's file here. An object of another host, or
   * one whose fd was closed (and whose number may now name another file), is EBADF, the errno of an fd that does
   * not refer to the file meant: never the file that happens to hold the same number.
   */
  get(op: string, argument: string, fd: number, passed?: unknown): KernelFile {
    if (passed instanceof KernelFile) {
      if (passed.owner !== this) {
        fail('EBADF', op, `${argument} is ${kindName(passed.kind)} of another host; its fd ${fd} does not exist here`, {
          argument,
          hint: 'each createHost() is a separate machine: use objects only with the host that created them',
        });
      }
      const current = this.table.get(fd);
      if (current !== passed) {
        fail(
          'EBADF',
          op,
          `${argument}: fd ${fd} of this ${passed.kind} was closed${current ? ` (fd ${fd} is now ${kindName(current.kind)})` : ''}`,
          { argument },
        );
      }
    }
    const file = this.table.get(fd);
    if (!file) fail('EBADF', op, `${argument}=${fd} is not an open fd`, { argument });
    return file;
  }

  close(op: string, fd: number): void {
    const file = this.table.get(fd);
    if (!file) fail('EBADF', op, `fd ${fd} is not open`, { argument: 'fd' });
    this.table.delete(fd);
    this.ordered = undefined;
    this.observer?.fileClosed(fd, file);
    file.put();
  }

  entries(): Array<[number, KernelFile]> {
    return this.fds().map((fd) => [fd, this.table.get(fd)!]);
  }

  /** @internal The open fds in ascending order (the array is shared: do not change it). */
  fds(): readonly number[] {
    return (this.ordered ??= [...this.table.keys()].sort((a, b) => a - b));
  }
}
