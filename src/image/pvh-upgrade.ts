// Kernel-boot images pulled by a vmlet from before PVH boot (their record says neither `pvh` nor
// `pvhNot`): their bzImage is unpacked once, in the background after the store loads, so they
// boot through PVH from then on as freshly pulled ones do. VMs created meanwhile boot the bzImage.
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { ImageIndex } from './image-index.js';
import { unpackPvhKernel, type PvhResult } from './kernel-pvh.js';

/** Unpacks what older records lack; returns how many records it completed. */
export async function upgradeToPvh(index: ImageIndex, log: Logger): Promise<number> {
  let done = 0;
  for (const rec of index.all()) {
    const k = rec.boot.kernel;
    if (!k || k.pvh !== undefined || k.pvhNot !== undefined || !existsSync(k.kernel)) continue;
    const r: PvhResult = await unpackPvhKernel(k.kernel, join(dirname(k.kernel), 'vmlinux')).catch((err: unknown) => ({ not: `cannot unpack it: ${(err as Error).message}` }));
    // Removed (or pulled again) meanwhile: what was unpacked is not the record's any more.
    const now = index.get(rec.id);
    if (!now?.boot.kernel || now.boot.kernel.kernel !== k.kernel || now.boot.kernel.pvh !== undefined || now.boot.kernel.pvhNot !== undefined) {
      if ('path' in r && now?.boot.kernel?.pvh !== r.path) await rm(r.path, { force: true });
      continue;
    }
    // The record itself (put() merges tags and digests into an existing one, never its boot).
    now.boot = { ...now.boot, kernel: { ...now.boot.kernel, ...('path' in r ? { pvh: r.path } : { pvhNot: r.not }) } };
    await index.save();
    done++;
    log.info({ image: rec.repoTags[0] ?? rec.id, id: rec.id, pvh: 'path' in r, ...('not' in r ? { pvhNot: r.not } : {}) }, 'kernel-boot image pulled before PVH boot: its kernel checked for it');
  }
  return done;
}
