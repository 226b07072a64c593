import { defineConfig } from 'tsup';

export default defineConfig({
  // The worker is its own entry: `new Worker(new URL('./worker.js', import.meta.url))` loads it from dist.
  entry: { index: 'src/index.ts', worker: 'src/worker.ts' },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: [/^@gmemlab\//],
});
