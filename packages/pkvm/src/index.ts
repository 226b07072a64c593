/**
 * @gmemlab/pkvm: the pKVM policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { pkvm } from '@gmemlab/pkvm';
 *     createHost({ backend: pkvm });                            // Android pKVM (hypervisor-owned IOMMU)
 *     createHost({ backend: pkvm({ variant: 'upstream' }) });   // 'pkvm:upstream'
 */
import { defineBackendFactory, type BackendFactory } from '@gmemlab/core';
import { createPkvmBackend, type PkvmOptions } from './pkvm.js';

export { createPkvmBackend, PKVM_STEPS, type PkvmOptions, type PkvmVariant } from './pkvm.js';

/** A factory that is also the ready backend: call it with options for a variant. */
export type PkvmFactory = BackendFactory<PkvmOptions>;

/** Android pKVM (hypervisor-owned IOMMU), ready to pass to createHost; call it with options for a variant. */
export const pkvm: PkvmFactory = defineBackendFactory(createPkvmBackend);

export default pkvm;
