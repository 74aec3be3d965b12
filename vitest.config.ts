import { configDefaults, defineConfig } from 'vitest/config';
import { SERIAL_FILES } from './test/serial-files.js';

export default defineConfig({
  test: {
    // Integration tests boot real VMs under TCG on a 2-core machine: generous per-test limits,
    // while each test still waits on conditions with its own deadline.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two integration test files at a time; the unit tests first, one file at a time (some time
    // their own steps in ms: a VM booting beside them broke two such bounds), then SERIAL_FILES
    // (node-wide state) and the faults alone.
    maxWorkers: 2,
    // Each file's temp dirs are removed after it, pass or fail; the test bridges after the run,
    // and the kernel's lines about daemons that crashed during it are printed.
    setupFiles: ['test/setup/cleanup.ts'],
    globalSetup: ['test/setup/bridges.ts', 'test/setup/daemon-crashes.ts'],
    reporters: ['default'],
    // The fault-injection suite restarts daemons every VM on the node shares (libvirtd,
    // virtlogd): it runs after the other files, one file at a time.
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, 'test/unit/**', 'test/faults/**', ...SERIAL_FILES], sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: 'serial', include: SERIAL_FILES, fileParallelism: false, sequence: { groupOrder: 2 } } },
      { extends: true, test: { name: 'faults', include: ['test/faults/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 3 } } },
    ],
  },
});
