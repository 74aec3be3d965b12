import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests boot real VMs under TCG on a 2-core machine: generous per-test limits,
    // while each test still waits on conditions with its own deadline.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Each file's temp dirs are removed after it, pass or fail; the test bridges after the run.
    setupFiles: ['test/setup/cleanup.ts'],
    globalSetup: ['test/setup/bridges.ts'],
    reporters: ['default'],
  },
});
