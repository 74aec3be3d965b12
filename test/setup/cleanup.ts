// After each test file, pass or fail: the temp dirs it made through tempDir() are removed, so a
// run does not leave hundreds of vmlet-* dirs (VM disks, image stores) behind. A dir with a mount
// point under it (a pod's shared dir still bound to a host path after a failure) is kept and
// named instead: removing through a bind mount would delete the host side's files.
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { afterAll } from 'vitest';
import { madeTempDirs } from '../helpers/vmlet.js';
import { mountsUnder } from '../../src/util/mountinfo.js';

afterAll(() => {
  for (const dir of madeTempDirs) {
    // The image tree's read-only view (<stateDir>/images-ro, for virtiofs) is vmlet's, made once
    // per state dir and left for its VMs: read-only, so unmounting it here is always safe.
    for (const p of mountsUnder(dir)) if (p.endsWith('/images-ro')) spawnSync('umount', ['-l', p]);
    const mounted = mountsUnder(dir);
    if (mounted.length) {
      console.warn(`test cleanup: kept ${dir}: still mounted under it: ${mounted.join(', ')}`);
      continue;
    }
    rmSync(dir, { recursive: true, force: true });
    madeTempDirs.delete(dir);
  }
});
