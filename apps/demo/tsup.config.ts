import { defineConfig } from 'tsup';

export default defineConfig([
  {
    entry: { index: 'src/index.ts', bin: 'src/bin.ts' },
    format: ['esm'],
    dts: { entry: { index: 'src/index.ts' } },
    sourcemap: true,
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
