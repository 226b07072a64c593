import { defineConfig } from 'tsup';

// GMEMLAB_JS_ONLY=1 (`pnpm gmemlab`, `pnpm example`, `pnpm fuzz`, `pnpm bench`): JavaScript only, for running.
// Declarations are built where they are needed: typecheck, `pnpm test`, pack and publish (turbo keys its cache on it).
const jsOnly = process.env.GMEMLAB_JS_ONLY === '1';
// Source maps name src/ without carrying a copy of it (no sourcesContent): smaller files, the same stack traces.
const esbuildOptions = (options: { sourcesContent?: boolean }) => {
  options.sourcesContent = false;
};

export default defineConfig([
  {
    // serve-worker: one comparison of `gmemlab serve`, run in a worker thread (src/serve/worker.ts).
    entry: { index: 'src/index.ts', bin: 'src/bin.ts', 'serve-worker': 'src/serve/worker.ts' },
    format: ['esm'],
    dts: jsOnly ? false : { entry: { index: 'src/index.ts' } },
    sourcemap: true,
    esbuildOptions,
    // dist/web is the browser build's (the second entry); both builds run at once.
    clean: ['!web/**'],
    target: 'node20',
    external: [/^@gmemlab\//],
  },
  {
    // The web view, for the browser: one classic script, served by `gmemlab serve` and inlined into html reports.
    entry: { app: 'src/web/main.ts' },
    outDir: 'dist/web',
    format: ['iife'],
    platform: 'browser',
    target: 'es2020',
    minify: true,
    clean: true,
    outExtension: () => ({ js: '.js' }),
  },
]);
