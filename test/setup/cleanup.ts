// After each test file, pass or fail: the temp dirs it made through tempDir() are removed, so a
// run does not leave hundreds of vmlet-* dirs (VM disks, image stores) behind; one with a mount
// point under it is kept and named (removeTempDirs, test/helpers/vmlet.ts).
import { afterAll } from 'vitest';
import { removeTempDirs } from '../helpers/vmlet.js';

afterAll(() => removeTempDirs());
