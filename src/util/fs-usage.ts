// Real filesystem figures for ImageFsInfo: the mount a directory lives on, and the bytes and
// inodes a directory tree uses.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountPoints, mountsUnder } from './mountinfo.js';

/** The longest the walk holds the thread at a time. */
const SLICE_MS = 2;

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
 * The walk is synchronous, in slices of `sliceMs` between which other calls run: a walk through
 * fs.promises cost ~80 µs of CPU per entry (2 s for a 25k-file image tree), this ~7 µs.
 */
export async function treeUsage(dir: string, { skip = new Set<string>(), sliceMs = SLICE_MS }: { skip?: ReadonlySet<string>; sliceMs?: number } = {}): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  const links = new Set<string>(); // files with more than one name: each counted once
  const mounts = new Set(mountsUnder(dir).filter((p) => p !== dir));
  const stack = [dir];
  let slice = performance.now();
  while (stack.length > 0) {
    const p = stack.pop()!;
    if (skip.has(p) || mounts.has(p)) continue;
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) continue; // removed while we walked
    if (st.nlink > 1 && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (links.has(key)) continue;
      links.add(key);
    }
    inodes++;
    bytes += st.blocks * 512;
    if (st.isDirectory()) {
      try {
        for (const n of readdirSync(p)) stack.push(join(p, n));
      } catch {
        // removed or unreadable meanwhile
      }
    }
    if (performance.now() - slice > sliceMs) {
      await new Promise((r) => setImmediate(r));
      slice = performance.now();
    }
  }
  return { bytes, inodes };
}
