/**
 * Open files and the fd table. A file is released when its last reference goes: the fd, and every mmap and
 * iommufd area that holds it (an IOMMU_IOAS_MAP_FILE area keeps a struct file reference, kernel-contract §5.1).
 */
import { fail } from './errors.js';

export type FileKind = 'kvm' | 'kvm-vm' | 'guest_memfd' | 'memfd' | 'iommufd';

export abstract class KernelFile {
  abstract readonly kind: FileKind;
  private refs = 0;
  private gone = false;

  get released(): boolean {
    return this.gone;
  }

  get refCount(): number {
    return this.refs;
  }

  get(): void {
    this.refs++;
  }

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

/** One process's fd table. 0-2 are stdio, as in any process. */
export class FdTable {
  private readonly table = new Map<number, KernelFile>();

  /** Told of every close, for the event stream. */
  constructor(private readonly onClose: (fd: number, file: KernelFile) => void = () => {}) {}

  install(file: KernelFile): number {
    let fd = 3;
    while (this.table.has(fd)) fd++;
    this.table.set(fd, file);
    file.get();
    return fd;
  }

  lookup(fd: number): KernelFile | undefined {
    return this.table.get(fd);
  }

  /** fget(): EBADF for an fd that is not open. */
  get(op: string, argument: string, fd: number): KernelFile {
    const file = this.table.get(fd);
    if (!file) fail('EBADF', op, `${argument}=${fd} is not an open fd`, { argument });
    return file;
  }

  close(op: string, fd: number): void {
    const file = this.table.get(fd);
    if (!file) fail('EBADF', op, `fd ${fd} is not open`, { argument: 'fd' });
    this.table.delete(fd);
    this.onClose(fd, file);
    file.put();
  }

  entries(): Array<[number, KernelFile]> {
    return [...this.table.entries()].sort((a, b) => a[0] - b[0]);
  }
}
