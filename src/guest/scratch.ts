// The pod's scratch disk: a sparse raw file holding an ext4 filesystem, made on the host with
// mkfs.ext4 on the file itself (no loop device, no mount). Containers' writable layers live on it,
// in the guest. No journal: the disk lives and dies with the pod's VM, and a VM that crashed
// takes its containers with it. lazy_itable_init: the inode tables are never written, so the
// file stays sparse (the guest mounts it with noinit_itable).
import { rm, truncate, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { VmletError } from '../errors.js';

export async function createScratch(path: string, bytes: number): Promise<void> {
  try {
    await writeFile(path, '', { mode: 0o600, flag: 'wx' });
    await truncate(path, bytes);
    await execa('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'lazy_itable_init=1,nodiscard', '-L', 'vmlet-scratch', path]);
  } catch (err) {
    await rm(path, { force: true });
    throw new VmletError('internal', `cannot make the pod's scratch disk ${path}: ${(err as Error).message}`);
  }
}
