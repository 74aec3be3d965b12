// EROFS images vmlet built, read here through the host kernel's own erofs (a loop mount), as the
// guests' kernels read them; CI's kernel and this machine's have it.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';

export const HOST_EROFS = readFileSync('/proc/filesystems', 'utf8').includes('\terofs\n') || spawnSync('modprobe', ['erofs']).status === 0;

const mounts: string[] = [];

/** Loop-mounts `image` (default `dest`.erofs) read-only at the new dir `dest`; returns `dest`. */
export function mountErofs(dest: string, image = `${dest}.erofs`): string {
  mkdirSync(dest);
  execFileSync('mount', ['-t', 'erofs', '-o', 'loop,ro', image, dest]);
  mounts.push(dest);
  return dest;
}

/** Unmounts every mountErofs of this file (its afterAll). */
export function unmountErofs(): void {
  for (const d of mounts.splice(0)) execFileSync('umount', [d]);
}
