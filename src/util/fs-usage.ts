// Real filesystem figures for ImageFsInfo: the mount a directory lives on, and the bytes and
// inodes a directory tree uses.
import { readFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** The mount point holding `path` (longest matching mount in /proc/self/mountinfo). */
export function mountPointOf(path: string, mountinfo = '/proc/self/mountinfo'): string {
  let best = '/';
  for (const line of readFileSync(mountinfo, 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const m = mp.replace(/\\040/g, ' ');
    if ((path === m || path.startsWith(m.endsWith('/') ? m : m + '/')) && m.length > best.length) best = m;
  }
  return best;
}

/**
 * Bytes (allocated blocks, so sparse files count what they use) and inodes under `dir`; the
 * paths in `skip` (and what is below them) are left out.
 */
export async function treeUsage(dir: string, skip: ReadonlySet<string> = new Set()): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  const seen = new Set<string>();
  const walk = async (p: string): Promise<void> => {
    if (skip.has(p)) return;
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
