/** An open /dev/iommu: a container of objects, here IOASes (kernel-contract §5.1). */
import { fail } from '../errors.js';
import { KernelFile } from '../files.js';
import type { Kernel } from '../kernel.js';
import { Ioas } from './ioas.js';

export class Iommufd extends KernelFile {
  readonly kind = 'iommufd' as const;
  readonly fd: number;
  private nextId = 1;
  private readonly ioases = new Set<Ioas>();

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(private readonly kernel: Kernel) {
    super();
    this.fd = kernel.files.install(this);
  }

  /** IOMMU_IOAS_ALLOC. */
  createIoas(): Ioas {
    this.kernel.checkAlive('IOMMU_IOAS_ALLOC');
    if (this.kernel.files.lookup(this.fd) !== this)
      fail('EBADF', 'IOMMU_IOAS_ALLOC', `fd ${this.fd} is not open`, { argument: 'fd' });
    const ioas = new Ioas(this.kernel, this.nextId++, this);
    this.ioases.add(ioas);
    this.kernel.ioases.add(ioas);
    return ioas;
  }

  close(): void {
    this.kernel.checkAlive('close');
    this.kernel.files.close('close', this.fd);
  }

  protected release(): void {
    for (const ioas of this.ioases) ioas.destroy();
    this.ioases.clear();
  }
}
