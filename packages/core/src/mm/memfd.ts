/**
 * A plain shmem memfd (memfd_create): ordinary host memory. It is a DMA source (IOMMU_IOAS_MAP_FILE of a memfd
 * is upstream, kernel-contract §5.2) and the "not a guest_memfd" fd of the negative cases (B5).
 */
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MAX_RW_COUNT, PAGE_SIZE } from '../constants.js';
import { fail } from '../errors.js';
import { KernelFile } from '../files.js';
import type { Kernel } from '../kernel.js';
import { MappingRegistry } from '../registry/registry.js';
import { hex, parseBytes, parseFallocate, parseLoff, parseRwCount } from '../util/args.js';
import { HostMapping, parseMmap, reserveAddress, type MappedFile, type MmapArgs } from './host-mapping.js';
import { ShmemInode } from './inode.js';

export class Memfd extends KernelFile {
  readonly kind = 'memfd' as const;
  readonly fd: number;
  /** @internal */
  readonly inode: ShmemInode;
  readonly refusesCollapse = false;
  /** Host mappings of the file, zapped on hole punching. */
  private readonly mappings = new MappingRegistry();
  /** The file position read(2) and write(2) use (f_pos). */
  private position = 0;

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(
    private readonly kernel: Kernel,
    size: number,
  ) {
    super();
    this.inode = new ShmemInode(kernel.phys, kernel.nextIno(), size);
    this.fd = kernel.files.install(this);
  }

  private checkOpen(op: string): void {
    this.kernel.checkAlive(op);
    if (this.kernel.files.lookup(this.fd) !== this) fail('EBADF', op, `fd ${this.fd} is not open`, { argument: 'fd' });
  }

  stat(): { size: number; blksize: number; ino: number } {
    this.checkOpen('fstat');
    return { size: this.inode.size, blksize: PAGE_SIZE, ino: this.inode.ino };
  }

  /**
   * read(2) at the file position, which advances by the bytes read (shmem_file_read_iter). A count above
   * MAX_RW_COUNT is truncated to it (vfs_read), so one read returns at most MAX_RW_COUNT bytes.
   */
  read(length: number | bigint): Uint8Array {
    const op = 'read';
    this.kernel.checkAlive(op);
    const len = parseRwCount(op, 'length', length);
    this.checkOpen(op);
    const out = this.pread(len, this.position);
    this.position += out.length;
    return out;
  }

  /** write(2) at the file position, which advances by the bytes written. */
  write(data: Uint8Array): number {
    const op = 'write';
    this.kernel.checkAlive(op);
    const bytes = parseBytes(op, 'data', data);
    this.checkOpen(op);
    const n = this.pwrite(bytes, this.position);
    this.position += n;
    return n;
  }

  /** pread(2): reads up to EOF and at most MAX_RW_COUNT bytes (vfs_read); returns the bytes read. */
  pread(length: number | bigint, offset: number | bigint): Uint8Array {
    const op = 'pread';
    this.kernel.checkAlive(op);
    const len = parseRwCount(op, 'length', length);
    const off = parseLoff(op, 'offset', offset);
    if (off < 0) fail('EINVAL', op, `pos ${off} is negative`, { argument: 'offset' });
    this.checkOpen(op);
    const n = Math.max(0, Math.min(len, this.inode.size - off));
    const out = new Uint8Array(n);
    this.inode.readAt(off, out, 0, n);
    return out;
  }

  /**
   * pwrite(2) inside the file (the model's memfd does not grow); returns the bytes written: at most
   * MAX_RW_COUNT, the rest of a larger buffer is not written (vfs_write truncates the count).
   */
  pwrite(data: Uint8Array, offset: number | bigint): number {
    const op = 'pwrite';
    this.kernel.checkAlive(op);
    const bytes = parseBytes(op, 'data', data);
    const off = parseLoff(op, 'offset', offset);
    if (off < 0) fail('EINVAL', op, `pos ${off} is negative`, { argument: 'offset' });
    this.checkOpen(op);
    // generic_write_checks: an empty write returns 0 before any size check, wherever it lands.
    if (bytes.length === 0) return 0;
    const count = Math.min(bytes.length, MAX_RW_COUNT);
    if (off + count > this.inode.size)
      fail('EFBIG', op, 'the model does not grow memfds; write inside the size given to memfdCreate', {
        argument: 'offset',
      });
    this.inode.writeAt(off, bytes, 0, count);
    return count;
  }

  /** fallocate(2): the model supports allocation and PUNCH_HOLE | KEEP_SIZE. */
  fallocate(mode: number | bigint, offset: number | bigint, length: number | bigint): void {
    this.allocate(parseFallocate(this.kernel, mode, offset, length, () => this.checkOpen('fallocate')));
  }

  /**
   * @internal MADV_REMOVE's hole punch (madvise_remove -> vfs_fallocate): through the mapping's own file
   * reference, so a closed fd is no EBADF.
   */
  punchHoleForMapping(offset: number, length: number): void {
    this.allocate(parseFallocate(this.kernel, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, undefined));
  }

  /** fallocate past the checks every file shares (parseFallocate): shmem_fallocate's modes. */
  private allocate({ mode: m, offset: off, length: len }: { mode: number; offset: number; length: number }): void {
    const op = 'fallocate';
    if (m !== 0 && m !== FALLOC_FL_KEEP_SIZE && m !== (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
      fail('EOPNOTSUPP', op, `mode ${hex(m)} is not modelled for memfds`, { argument: 'mode' });
    }
    const first = Math.ceil(off / PAGE_SIZE);
    const end = Math.min(this.inode.npages, Math.floor((off + len) / PAGE_SIZE));
    if (m & FALLOC_FL_PUNCH_HOLE) {
      // shmem_truncate_range zeroes the partial pages at either end in place (mappings of them see the zeros)
      // and removes the whole pages between, unmapping them first (COW copies stay: even_cows is 0).
      this.zeroPartial(off, Math.min(off + len, first * PAGE_SIZE));
      this.zeroPartial(Math.max(off, end * PAGE_SIZE, first * PAGE_SIZE), off + len);
      if (first < end) {
        for (const consumer of this.mappings.overlapping(first, end))
          consumer.invalidateBegin({ id: 0, cause: 'truncate', start: first, end });
        this.inode.removePages(first, end);
      }
      return;
    }
    // shmem_fallocate: with KEEP_SIZE the pages past EOF are allocated but i_size stays (nothing shows them).
    if (m === 0 && off + len > this.inode.size)
      fail('EFBIG', op, 'the model does not grow memfds', { argument: 'len' });
    this.inode.populate(Math.floor(off / PAGE_SIZE), Math.min(this.inode.npages, Math.ceil((off + len) / PAGE_SIZE)));
  }

  /** Zero the bytes [from, to) of the pages present, within EOF; holes already read as zeros. */
  private zeroPartial(from: number, to: number): void {
    const stop = Math.min(to, this.inode.size);
    for (let at = from; at < stop;) {
      const next = Math.min(stop, (Math.floor(at / PAGE_SIZE) + 1) * PAGE_SIZE);
      if (this.inode.lookup(Math.floor(at / PAGE_SIZE)) !== undefined)
        this.inode.writeAt(at, new Uint8Array(next - at), 0, next - at);
      at = next;
    }
  }

  mmap(args: MmapArgs): HostMapping {
    const op = 'mmap';
    this.kernel.checkAlive(op);
    const { length: rounded, offset, shared } = parseMmap(op, args, () => this.checkOpen(op));
    const address = reserveAddress(this.kernel, op, rounded);
    return new HostMapping(this.kernel, this, address, rounded, offset, shared, this.mappings);
  }

  close(): void {
    this.kernel.checkAlive('close');
    this.kernel.files.close('close', this.fd);
  }

  protected release(): void {
    this.inode.removePages(0, this.inode.npages);
    this.inode.evicted = true;
  }
}
