// Reads an image's layers in order (decompressing, checking each diff_id) and keeps only what a
// VM needs: regular files under /disk/ (containerDisk) and under the kernel/initrd directories.
// Nothing is ever written to an entry's own path: wanted files go to temp files named by us, so
// a hostile layer cannot write outside the store. Hostile layers still get a clear error:
// '..' in paths or hard-link targets, entries reached through a symlink, device nodes, and
// entry or image sizes past the limits (a kept hard link is a copy and is charged as one).
// Each layer is read in the scan worker (layer-read.ts, scan-worker.ts), or here for a small
// image (layer-tar.ts, SMALL_IMAGE_BYTES); what depends on the layers below is applied here, in order.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { HostileLayerError, ScanBudget, StoreFullError, isSmallImage, normalizeEntryPath, wantedBy, type LayerRead, type LayerRef, type ScanLimits, type Wanted } from './layer-tar.js';
import { readLayersInWorker } from './scan-client.js';
import { readOneLayer } from './layer-read.js';
import { scanIntoErofs } from './erofs-scan.js';

export { HostileLayerError, StoreFullError, type LayerRef, type ScanLimits, type Wanted } from './layer-tar.js';

export interface ScanResult {
  /** In-image path (no leading slash) → temp file holding its content, for wanted regular files. */
  files: Map<string, string>;
  /** In-image path → symlink target, for every symlink in the image. */
  symlinks: Map<string, string>;
  /** Regular files under disk/ in the final image. */
  diskFiles: string[];
  /** With `erofsRoot`: settles when the image's EROFS rootfs is complete there (erofs-scan.ts), or failed. */
  built?: Promise<void>;
}

/**
 * Layers are read side by side (decompression, diff_id, tar walk, wanted files written), each as
 * it downloads (layer-feed.ts); what each found is applied in layer order, as the image's
 * filesystem is built (whiteouts, symlink checks, hard links). A layer that fails fails the scan
 * once the layers below it are applied, with nothing left behind.
 * @param wanted   which in-image regular files to keep (e.g. under disk/ or boot/)
 * @param tmpDir   where kept files are written (same filesystem as their final place)
 * @param erofsRoot with it, the layers are read into the image's EROFS rootfs built there, the
 *                  scan's findings taken from that read (erofs-scan.ts): `built` says when it is done
 */
export async function scanLayers(layers: LayerRef[], wanted: Wanted, tmpDir: string, limits: ScanLimits, erofsRoot?: string): Promise<ScanResult> {
  const files = new Map<string, string>();
  const symlinks = new Map<string, string>();
  /** Temp file → its size, so a hard link to it is charged what its copy writes. */
  const sizes = new Map<string, number>();
  const budget = new ScanBudget();
  const here = isSmallImage(layers.map((l) => l.size));
  const { reads, built } = here
    ? erofsRoot === undefined
      ? { reads: layers.map((l) => readOneLayer(l, wantedBy(wanted), tmpDir, limits, budget)), built: undefined }
      : scanIntoErofs(erofsRoot, layers, wantedBy(wanted), tmpDir, limits, budget)
    : readLayersInWorker(layers, wanted, tmpDir, limits, budget, erofsRoot);
  for (const r of reads) r.catch(() => undefined); // awaited in order below; not unhandled meanwhile
  built?.catch(() => undefined); // the caller's (ScanResult.built)
  const removals: Promise<void>[] = [];
  try {
    for (const [i, layer] of layers.entries()) {
      const read = await reads[i]!;
      await applyLayer(layer, read, { files, symlinks, sizes, removals, budget, wanted: wantedBy(wanted), tmpDir, limits });
    }
  } catch (err) {
    // Every read has ended (no write in flight) before its files go.
    for (const r of await Promise.allSettled(reads)) if (r.status === 'fulfilled') for (const tmp of r.value.tmps) await rm(tmp, { force: true });
    for (const tmp of files.values()) await rm(tmp, { force: true });
    await Promise.allSettled(removals);
    await built?.catch(() => undefined); // nothing of the build still writes when the caller cleans up
    throw err;
  }
  await Promise.all(removals);
  const diskFiles = [...files.keys()].filter((p) => p.startsWith('disk/')).sort();
  return { files, symlinks, diskFiles, ...(built ? { built } : {}) };
}

interface ImageState {
  files: Map<string, string>;
  symlinks: Map<string, string>;
  sizes: Map<string, number>;
  removals: Promise<void>[];
  budget: ScanBudget;
  wanted: (path: string) => boolean;
  tmpDir: string;
  limits: ScanLimits;
}

/** One layer's entries onto the image built so far, in tar order: what depends on the layers below. */
async function applyLayer(layer: LayerRef, read: LayerRead, st: ImageState): Promise<void> {
  const { files, symlinks, sizes, limits } = st;
  const bad = (why: string) => new HostileLayerError(layer.digest, why);
  const full = (why: string) => new StoreFullError(layer.digest, why);
  const dirsOfSymlinks = (p: string): string | undefined => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (symlinks.has(prefix)) return prefix;
    }
    return undefined;
  };
  const drop = (p: string, opts: { children: boolean; keep?: Set<string> }) => {
    for (const map of [files, symlinks]) {
      for (const k of [...map.keys()]) {
        const hit = k === p || (opts.children && (p === '' || k.startsWith(p + '/')));
        if (hit && !opts.keep?.has(k)) {
          if (map === files) st.removals.push(rm(map.get(k)!, { force: true }));
          map.delete(k);
        }
      }
    }
  };
  const addedHere = new Set<string>();
  const copies: Array<[src: string, dst: string]> = [];
  // Temp files of this layer not (or no longer) in the image: removed once it is applied.
  const unclaimed = new Set(read.tmps);
  for (const op of read.ops) {
    const entryPath = op.kind === 'opaque' || op.kind === 'whiteout' ? normalizeEntryPath(op.raw, bad) : op.path;
    const through = dirsOfSymlinks(entryPath);
    if (through !== undefined) throw bad(`entry ${JSON.stringify(op.raw)} goes through symlink ${JSON.stringify(through)}`);
    if (op.kind === 'opaque') {
      // Opaque dir: hide what lower layers put there, keep this layer's own entries.
      drop(op.path, { children: true, keep: addedHere });
      continue;
    }
    if (op.kind === 'whiteout') {
      drop(op.path, { children: true });
      continue;
    }
    addedHere.add(op.path);
    // A directory entry keeps what lower layers put inside it; anything else replaces the path.
    drop(op.path, { children: op.kind !== 'dir' });
    if (op.kind === 'symlink') {
      symlinks.set(op.path, op.target);
    } else if (op.kind === 'link' && st.wanted(op.path)) {
      const src = files.get(op.target);
      if (src) {
        // A kept link is a copy: its bytes are written like a file's (five links to a 1 MiB
        // file write 6 MiB), so they count against the same limits.
        const written = st.budget.write(sizes.get(src) ?? 0);
        if (written > limits.writableBytes) throw full(`needs more than the ${limits.writableBytes} bytes free in the image store (hard link ${JSON.stringify(op.raw)} counts as a copy)`);
        if (written > limits.maxImageBytes) throw bad(`kept files total more than ${limits.maxImageBytes} bytes (hard link ${JSON.stringify(op.raw)} counts as a copy)`);
        const tmp = join(st.tmpDir, `scan-${randomBytes(6).toString('hex')}`);
        copies.push([src, tmp]);
        sizes.set(tmp, sizes.get(src) ?? 0);
        files.set(op.path, tmp);
      }
    } else if (op.kind === 'file') {
      sizes.set(op.tmp, op.size);
      files.set(op.path, op.tmp);
      unclaimed.delete(op.tmp);
    }
  }
  for (const [src, dst] of copies) await pipeline(createReadStream(src), createWriteStream(dst, { mode: 0o600 }));
  for (const tmp of unclaimed) st.removals.push(rm(tmp, { force: true }));
}
