/**
 * @gmemlab/sev-snp: the AMD SEV-SNP policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { sevSnp } from '@gmemlab/sev-snp';
 *     createHost({ backend: sevSnp });                       // plain SEV-SNP
 *     createHost({ backend: sevSnp({ variant: 'tio' }) });   // 'sev-snp:tio'
 *     createHost({ backend: sevSnp(sevSnp.variants.tio) });  // the same, by the variant's key
 *     sevSnp.rules;                                          // what it does, each rule with its source
 */
import { defineBackendFactory, type BackendFactory } from '@gmemlab/core';
import { createSevSnpBackend, type SevSnpOptions } from './sev-snp.js';

export { createSevSnpBackend, SEV_SNP_STEPS, type SevSnpOptions, type SevSnpVariant } from './sev-snp.js';

/** A factory that is also the ready backend: call it with options for a variant. */
export type SevSnpFactory = BackendFactory<SevSnpOptions>;

/** AMD SEV-SNP, ready to pass to createHost; call it with options for a variant (`sevSnp.variants.tio`). */
export const sevSnp: SevSnpFactory = defineBackendFactory(createSevSnpBackend, {
  tio: { variant: 'tio' },
  'iommu-hugepages': { iommuHugePages: true },
});

export default sevSnp;
