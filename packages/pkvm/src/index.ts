/**
 * @gmemlab/pkvm: the pKVM policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { pkvm } from '@gmemlab/pkvm';
 *     createHost({ backend: pkvm });                            // Android pKVM (hypervisor-owned IOMMU)
 *     createHost({ backend: pkvm({ variant: 'upstream' }) });   // 'pkvm:upstream'
 */
import type { ArchBackend } from '@gmemlab/core';
import { createPkvmBackend, type PkvmOptions } from './pkvm.js';

export { createPkvmBackend, PKVM_STEPS, type PkvmOptions, type PkvmVariant } from './pkvm.js';

/** A factory that is also the ready backend: `pkvm` is Android pKVM (hypervisor-owned IOMMU), `pkvm(options)` builds a variant. */
export type PkvmFactory = ((options?: PkvmOptions) => ArchBackend) & ArchBackend;

function callableBackend(ready: ArchBackend): PkvmFactory {
  const factory = (options?: PkvmOptions) => createPkvmBackend(options);
  for (const key of Object.keys(ready) as Array<keyof ArchBackend>) {
    Object.defineProperty(factory, key, { value: ready[key], enumerable: true });
  }
  return Object.freeze(factory) as unknown as PkvmFactory;
}

/** Android pKVM (hypervisor-owned IOMMU), ready to pass to createHost; call it with options for a variant. */
export const pkvm: PkvmFactory = callableBackend(createPkvmBackend());

export default pkvm;
