/**
 * @gmemlab/tdx: the Intel TDX policy for gmemlab.
 *
 *     import { createHost } from '@gmemlab/core';
 *     import { tdx } from '@gmemlab/tdx';
 *     createHost({ backend: tdx });                          // plain TDX
 *     createHost({ backend: tdx({ variant: 'connect' }) });  // 'tdx:connect'
 */
import type { ArchBackend } from '@gmemlab/core';
import { createTdxBackend, type TdxOptions } from './tdx.js';

export { createTdxBackend, TDX_STEPS, type TdxOptions, type TdxVariant } from './tdx.js';

/** A factory that is also the ready backend: `tdx` is plain TDX, `tdx(options)` builds a variant. */
export type TdxFactory = ((options?: TdxOptions) => ArchBackend) & ArchBackend;

function callableBackend(ready: ArchBackend): TdxFactory {
  const factory = (options?: TdxOptions) => createTdxBackend(options);
  for (const key of Object.keys(ready) as Array<keyof ArchBackend>) {
    Object.defineProperty(factory, key, { value: ready[key], enumerable: true });
  }
  return Object.freeze(factory) as unknown as TdxFactory;
}

/** Intel TDX, ready to pass to createHost; call it with options for a variant. */
export const tdx: TdxFactory = callableBackend(createTdxBackend());

export default tdx;
