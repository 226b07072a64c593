import { defineConfig } from 'vitest/config';

/** `pnpm fuzz` only (scripts/fuzz.mjs): the time-budgeted property run. `pnpm test` uses vitest.config.ts. */
export default defineConfig({
  test: {
    include: ['property/**/*.fuzz.ts'],
    exclude: ['**/node_modules/**'],
    // The budget, plus room for shrinking a failure.
    testTimeout: (Number(process.env.GMEMLAB_FUZZ_BUDGET ?? 60) + 600) * 1000,
    reporters: ['default'],
  },
});
