import { defineConfig } from 'tsup';

// GMEMLAB_JS_ONLY=1 (`pnpm gmemlab`, `pnpm example`, `pnpm fuzz`, `pnpm bench`): JavaScript only, for running.
// Declarations are built where they are needed: typecheck, `pnpm test`, pack and publish (turbo keys its cache on it).
const jsOnly = process.env.GMEMLAB_JS_ONLY === '1';
// Source maps name src/ without carrying a copy of it (no sourcesContent): smaller files, the same stack traces.
const esbuildOptions = (options: { sourcesContent?: boolean }) => {
  options.sourcesContent = false;
};

export default defineConfig({
  entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' },
  format: ['esm'],
  // stripInternal: members and declarations marked @internal are not published (ARCHITECTURE.md: the Kernel and
  // the objects' internals are off the surface); tests/architecture/public-surface.test.ts checks the result.
  dts: jsOnly ? false : { compilerOptions: { stripInternal: true } },
  sourcemap: true,
  esbuildOptions,
  clean: true,
  target: 'node20',
  external: ['vitest', /^@gmemlab\//],
});
