import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // The heavy tests (fork.test.ts's property runs, range-map's 131,072 runs) carry their own timeouts; this floor
    // keeps the rest from failing on a busy machine, where vitest's 5 s default is too short (issue 17).
    testTimeout: 30_000,
    typecheck: { enabled: true, include: ['src/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
  },
});
