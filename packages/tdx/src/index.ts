/**
 * @gmemlab/tdx: the Intel TDX policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { tdx } from '@gmemlab/tdx';
 *     createHost({ backend: tdx });                          // plain TDX
 *     createHost({ backend: tdx({ variant: 'connect' }) });  // 'tdx:connect'
 */
import { defineBackendFactory, type BackendFactory } from '@gmemlab/core';
import { createTdxBackend, type TdxOptions } from './tdx.js';

export { createTdxBackend, TDX_STEPS, type TdxOptions, type TdxVariant } from './tdx.js';

/** A factory that is also the ready backend: call it with options for a variant. */
export type TdxFactory = BackendFactory<TdxOptions>;

/** Intel TDX, ready to pass to createHost; call it with options for a variant. */
export const tdx: TdxFactory = defineBackendFactory(createTdxBackend);

export default tdx;
