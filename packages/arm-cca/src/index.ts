/**
 * @gmemlab/arm-cca: the Arm CCA policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { armCca } from '@gmemlab/arm-cca';
 *     createHost({ backend: armCca });                            // Arm CCA
 *     createHost({ backend: armCca({ variant: 'da' }) });   // 'arm-cca:da'
 */
import type { ArchBackend } from '@gmemlab/core';
import { createArmCcaBackend, type ArmCcaOptions } from './arm-cca.js';

export { createArmCcaBackend, ARM_CCA_STEPS, type ArmCcaOptions, type ArmCcaVariant } from './arm-cca.js';

/** A factory that is also the ready backend: `armCca` is Arm CCA, `armCca(options)` builds a variant. */
export type ArmCcaFactory = ((options?: ArmCcaOptions) => ArchBackend) & ArchBackend;

function callableBackend(ready: ArchBackend): ArmCcaFactory {
  const factory = (options?: ArmCcaOptions) => createArmCcaBackend(options);
  for (const key of Object.keys(ready) as Array<keyof ArchBackend>) {
    Object.defineProperty(factory, key, { value: ready[key], enumerable: true });
  }
  return Object.freeze(factory) as unknown as ArmCcaFactory;
}

/** Arm CCA, ready to pass to createHost; call it with options for a variant. */
export const armCca: ArmCcaFactory = callableBackend(createArmCcaBackend());

export default armCca;
