/**
 * @gmemlab/tdx: the Intel TDX policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { tdx } from '@gmemlab/tdx';
 *     createHost({ backend: tdx });                          // plain TDX
 *     createHost({ backend: tdx({ variant: 'connect' }) });  // 'tdx:connect'
 *     createHost({ backend: tdx(tdx.variants.connect) });    // the same, by the variant's key
 *     tdx.rules;                                             // what it does, each rule with its source
 */
import { defineBackendFactory, type BackendFactory } from '@gmemlab/core';
import { createTdxBackend, type TdxOptions } from './tdx.js';

export { createTdxBackend, TDX_STEPS, type TdxOptions, type TdxVariant } from './tdx.js';

/** A factory that is also the ready backend: call it with options for a variant. */
export type TdxFactory = BackendFactory<TdxOptions>;

/**
 * The published variants, by the key their id ends with ('tdx:connect'): `tdx(tdx.variants['dma-poison'])`.
 * Other combinations of options are built the same way; their ids list every non-default option.
 */
const variants = {
  connect: { variant: 'connect' },
  'dma-poison': { dmaToPrivate: 'poison' },
  'no-erratum': { pwMceErratum: false },
} satisfies Record<string, TdxOptions>;

/** Intel TDX, ready to pass to createHost; call it with options for a variant. */
export const tdx: TdxFactory = defineBackendFactory(createTdxBackend, variants);

export default tdx;
