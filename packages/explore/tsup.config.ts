import { defineConfig } from 'tsup';
import { libraryBuild } from '../../tsup.base.js';

// The worker is its own entry: `new Worker(new URL('./worker.js', import.meta.url))` loads it from dist.
export default defineConfig(
  libraryBuild({ entry: { index: 'src/index.ts', worker: 'src/worker.ts' }, declarations: { index: 'src/index.ts' } }),
);
