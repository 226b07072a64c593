/**
 * The build every published library package shares (each package's tsup.config.ts passes its entries): ESM for
 * Node 20, declarations, source maps, the other @gmemlab packages left external. tsup bundles each config with
 * this file, so it imports nothing (the root has no tsup); the package's `defineConfig` checks the result's type.
 */

// GMEMLAB_JS_ONLY=1 (`pnpm gmemlab`, `pnpm example`, `pnpm fuzz`, `pnpm bench`): JavaScript only, for running.
// Declarations are built where they are needed: typecheck, `pnpm test`, pack and publish (turbo keys its cache on it).
const jsOnly = process.env.GMEMLAB_JS_ONLY === '1';

// Source maps name src/ without carrying a copy of it (no sourcesContent): smaller files, the same stack traces.
const esbuildOptions = (options: { sourcesContent?: boolean }) => {
  options.sourcesContent = false;
};

export interface LibraryBuild {
  /** The package's entry points, by output name: `{ index: 'src/index.ts' }`. */
  entry: Record<string, string>;
  /** More modules to leave external, beside the @gmemlab packages (core: 'vitest', for its testing kit). */
  external?: string[];
  /**
   * The entries that get declarations, when not all of them (explore's worker is loaded by URL from dist, never
   * imported, so it has no types to publish).
   */
  declarations?: Record<string, string>;
}

export function libraryBuild({ entry, external = [], declarations }: LibraryBuild) {
  return {
    entry,
    format: ['esm' as const],
    // stripInternal: members and declarations marked @internal are not published (ARCHITECTURE.md: the Kernel and
    // the objects' internals are off the surface); tests/architecture/public-surface.test.ts checks every published
    // package's result.
    dts: jsOnly
      ? (false as const)
      : { ...(declarations ? { entry: declarations } : {}), compilerOptions: { stripInternal: true } },
    sourcemap: true,
    esbuildOptions,
    clean: true,
    target: 'node20',
    external: [...external, /^@gmemlab\//],
  };
}
