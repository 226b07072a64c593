/**
 * @gmemlab/sev-snp: the AMD SEV-SNP policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { sevSnp } from '@gmemlab/sev-snp';
 *     createHost({ backend: sevSnp });                       // plain SEV-SNP
 *     createHost({ backend: sevSnp({ variant: 'tio' }) });   // 'sev-snp:tio'
 */
import type { ArchBackend } from '@gmemlab/core';
import { createSevSnpBackend, type SevSnpOptions } from './sev-snp.js';

export { createSevSnpBackend, SEV_SNP_STEPS, type SevSnpOptions, type SevSnpVariant } from './sev-snp.js';

/** A factory that is also the ready backend: `sevSnp` is plain SEV-SNP, `sevSnp(options)` builds a variant. */
export type SevSnpFactory = ((options?: SevSnpOptions) => ArchBackend) & ArchBackend;

function callableBackend(ready: ArchBackend): SevSnpFactory {
  const factory = (options?: SevSnpOptions) => createSevSnpBackend(options);
  for (const key of Object.keys(ready) as Array<keyof ArchBackend>) {
    Object.defineProperty(factory, key, { value: ready[key], enumerable: true });
  }
  return Object.freeze(factory) as unknown as SevSnpFactory;
}

/** AMD SEV-SNP, ready to pass to createHost; call it with options for a variant. */
export const sevSnp: SevSnpFactory = callableBackend(createSevSnpBackend());

export default sevSnp;
