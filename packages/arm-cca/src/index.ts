/**
 * @gmemlab/arm-cca: the Arm CCA policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { armCca } from '@gmemlab/arm-cca';
 *     createHost({ backend: armCca });                            // Arm CCA
 *     createHost({ backend: armCca({ variant: 'da' }) });   // 'arm-cca:da'
 *     createHost({ backend: armCca(armCca.variants.da) });  // the same, by the variant's key
 *     createHost({ backend: armCca({ mapFile: 'rely-on-gpt' }) }); // 'arm-cca:rely-on-gpt': MAP_FILE maps private pages too
 *     armCca.rules;                                          // what it does, each rule with its source
 */
import { defineBackendFactory, type BackendFactory } from '@gmemlab/core';
import { createArmCcaBackend, type ArmCcaOptions } from './arm-cca.js';

export {
  createArmCcaBackend,
  ARM_CCA_STEPS,
  type ArmCcaMapFile,
  type ArmCcaOptions,
  type ArmCcaVariant,
} from './arm-cca.js';

/** A factory that is also the ready backend: call it with options for a variant. */
export type ArmCcaFactory = BackendFactory<ArmCcaOptions>;

/** Arm CCA, ready to pass to createHost; call it with options for a variant (`armCca.variants.da`). */
export const armCca: ArmCcaFactory = defineBackendFactory(createArmCcaBackend, {
  da: { variant: 'da' },
  'rely-on-gpt': { mapFile: 'rely-on-gpt' },
});

export default armCca;
