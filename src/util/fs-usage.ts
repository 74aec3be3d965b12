// Real filesystem figures for ImageFsInfo: the mount a directory lives on, and the bytes and
// inodes a directory tree uses.
import { readFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { mountPoints, mountsUnder } from './mountinfo.js';

/** The mount point holding `path` (longest matching mount in /proc/self/mountinfo). */
export function mountPointOf(path: string, mountinfo = '/proc/self/mountinfo'): string {
  let best = '/';
  for (const m of mountPoints(readFileSync(mountinfo, 'utf8'))) {
    if ((path === m || path.startsWith(m.endsWith('/') ? m : m + '/')) && m.length > best.length) best = m;
  }
  return best;
}

/**
 * Bytes (allocated blocks, so sparse files count what they use) and inodes under `dir`; the
 * paths in `skip` and every mount point below `dir` (and what is below them) are left out. The
 * pods' state dir holds bind mounts of the pods' volumes (a sandboxed pod's share: emptyDirs,
 * hostPaths, even the node's /): they are not the containers' writable state, and walking
 * them every 10 s could mean walking the node's whole disk.
 */
export async function treeUsage(dir: string, skip: ReadonlySet<string> = new Set()): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  const seen = new Set<string>();
  const mounts = new Set((await mountsUnder(dir)).filter((p) => p !== dir));
  const walk = async (p: string): Promise<void> => {
    if (skip.has(p) || mounts.has(p)) return;
    let st;
    try {
      st = await lstat(p);
    } catch {
      return; // removed while we walked
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return; // hard links count once
    seen.add(key);
    inodes++;
    bytes += st.blocks * 512;
    if (st.isDirectory()) {
      let names: string[] = [];
      try {
        names = await readdir(p);
      } catch {
        return;
      }
      for (const n of names) await walk(join(p, n));
    }
  };
  await walk(dir);
  return { bytes, inodes };
}
