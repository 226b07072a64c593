/**
 * The shape every backend package exports (vercel/ai's `createMistral` / `mistral` pair, folded into one value):
 * a factory that is also the ready backend. `tdx` can be passed to createHost as it is; `tdx({ variant })` builds
 * a variant. The function carries the ready backend's fields, so a loader that imports the package's default
 * export gets an ArchBackend either way.
 */
import type { ArchBackend } from './backend.js';

export type BackendFactory<Options> = ((options?: Options) => ArchBackend) & ArchBackend;

export function defineBackendFactory<Options>(create: (options?: Options) => ArchBackend): BackendFactory<Options> {
  const ready = create();
  const factory = (options?: Options) => create(options);
  for (const key of Object.keys(ready) as Array<keyof ArchBackend>) {
    Object.defineProperty(factory, key, { value: ready[key], enumerable: true });
  }
  return Object.freeze(factory) as unknown as BackendFactory<Options>;
}
