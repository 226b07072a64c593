/**
 * @gmemlab/pkvm: the pKVM policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { pkvm } from '@gmemlab/pkvm';
 *     createHost({ backend: pkvm });                            // Android pKVM (hypervisor-owned IOMMU)
 *     createHost({ backend: pkvm({ variant: 'upstream' }) });   // 'pkvm:upstream'
 *     createHost({ backend: pkvm(pkvm.variants.upstream) });    // the same, by the variant's key
 *     pkvm.rules;                                               // what it does, each rule with its source
 */
import { defineBackendFactory, type BackendFactory } from '@gmemlab/core';
import { createPkvmBackend, type PkvmOptions } from './pkvm.js';

export { createPkvmBackend, PKVM_STEPS, type PkvmOptions, type PkvmVariant } from './pkvm.js';

/** A factory that is also the ready backend: call it with options for a variant. */
export type PkvmFactory = BackendFactory<PkvmOptions>;

/**
 * The published variants, by the key their id ends with ('pkvm:upstream'): `pkvm(pkvm.variants['hyp-bug'])`.
 * Other combinations of options are built the same way; their ids list every non-default option.
 */
const variants = {
  upstream: { variant: 'upstream' },
  'refuse-dma-mapped': { unshare: 'refuse-dma-mapped' },
  'hyp-bug': { hostAbort: 'hyp-bug' },
} satisfies Record<string, PkvmOptions>;

/** Android pKVM (hypervisor-owned IOMMU), ready to pass to createHost; call it with options for a variant. */
export const pkvm: PkvmFactory = defineBackendFactory(createPkvmBackend, variants);

export default pkvm;
