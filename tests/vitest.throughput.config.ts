import { defineConfig } from 'vitest/config';

/** `pnpm bench` only (bench/src/benchmarks/property.ts): the property tests' calls per second. */
export default defineConfig({
  test: {
    include: ['property/**/*.throughput.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: (Number(process.env.GMEMLAB_BENCH_BUDGET ?? 5) + 120) * 1000,
    reporters: ['dot'],
  },
});
