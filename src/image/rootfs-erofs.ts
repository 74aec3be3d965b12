// An image's rootfs as one EROFS image, `<rootfsRoot>/<hex>.erofs`, which the guest agent mounts
// through a loop device (docs/sandboxed-pods.md), and beside it `<hex>.ids/etc/{passwd,group}`:
// the image's own files, symlinks resolved inside the image, which users.ts reads on the host
// to resolve the container's user as it does in a tree.
import { closeSync, constants, mkdirSync, openSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rename, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { S_IFMT, S_IFREG } from './erofs-format.js';
import { ErofsTree } from './erofs-tree.js';
import { readErofsLayer, type BlockAllocator, type ErofsOp } from './erofs-layer-read.js';
import { HostileLayerError, StoreFullError, type LayerRef, type ScanLimits } from './layer-tar.js';
import type { Budget, TreeBuilder } from './rootfs.js';
import { MAX_ID_FILE_BYTES } from './users.js';

const run = promisify(execFile);
const IMAGE = 'image.erofs';
const IDS = 'ids';
const ID_FILES = ['etc/passwd', 'etc/group'];

/** The image's EROFS file and its ids dir, for the image whose tree would be `base` (`<rootfsRoot>/<hex>`). */
export const erofsPaths = (base: string) => ({
  image: `${base}.erofs`,
  ids: `${base}.ids`,
  /** Beside the image while its data may not be on disk yet: the id of the boot that wrote it (placeErofs). */
  unsynced: `${base}.unsynced`,
});

/** Layers read at once: one per core (their decompression runs beside the thread reading them), and one more. */
const READERS = availableParallelism() + 1;

/** Reads one layer into the image (`fd`, its data at blocks from `blocks`): what its entries do, for the tree. */
export type ErofsLayerReader = (fd: number, blocks: BlockAllocator, layer: LayerRef, i: number, budget: Budget) => Promise<ErofsOp[]>;

/**
 * Builds `<root>/image.erofs` and `<root>/ids/` from the layers: read side by side, `readers` at
 * a time, applied in order. After a failure no layer starts, and the image's fd is closed only
 * once every read under way has ended: none still writes to it.
 */
export async function buildErofsWith(root: string, layers: LayerRef[], limits: ScanLimits, read: ErofsLayerReader, readers = READERS): Promise<void> {
  const fd = openSync(join(root, IMAGE), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
  const tree = new ErofsTree(fd);
  const budget: Budget = { imageBytes: 0, apparentBytes: 0, written: 0 };
  const reads: Array<Promise<ErofsOp[]>> = [];
  let failed = false;
  // Layers start in order, `readers` at a time, the next as one ends: each is under way by the
  // time the loop below gets to it.
  const startNext = (): void => {
    if (failed || reads.length >= layers.length) return;
    const read1 = read(fd, tree.blocks, layers[reads.length]!, reads.length, budget);
    reads.push(read1);
    read1.then(startNext, () => (failed = true));
  };
  try {
    for (let i = 0; i < readers; i++) startNext();
    for (const [i, layer] of layers.entries()) {
      const ops = await reads[i]!;
      tree.apply(ops, { bad: (why) => new HostileLayerError(layer.digest, why), full: (why) => new StoreFullError(layer.digest, why), limits, budget, added: new Set(), keep: new Set() });
    }
    tree.finish();
    await writeIds(tree, join(root, IDS)); // placeErofs syncs the whole build (sync -f) after its renames, marked unsynced until then
  } catch (err) {
    failed = true;
    await Promise.allSettled(reads);
    throw err;
  } finally {
    closeSync(fd);
  }
}

/** The image built from stored layers (unpackErofs). */
export const buildErofs: TreeBuilder = (root, layers, limits) => buildErofsWith(root, layers, limits, (fd, blocks, layer, _i, budget) => readErofsLayer(fd, blocks, layer, limits, budget));

/**
 * A copy of what readRootfsFile would find at each id file: its bytes; a sparse file of its size
 * past MAX_ID_FILE_BYTES, and a directory for anything but a regular file, so that users.ts
 * refuses them as it refuses them in a tree.
 */
async function writeIds(tree: ErofsTree, dir: string): Promise<void> {
  mkdirSync(join(dir, 'etc'), { recursive: true, mode: 0o755 });
  for (const path of ID_FILES) {
    const node = await tree.resolve(path);
    if (!node) continue;
    const out = join(dir, path);
    if ((node.mode & S_IFMT) !== S_IFREG) mkdirSync(out);
    else if ((node.size ?? 0) > MAX_ID_FILE_BYTES) {
      writeFileSync(out, '');
      truncateSync(out, node.size);
    } else writeFileSync(out, tree.read(node), { mode: 0o644 });
  }
}

/**
 * Builds the image's EROFS file in a temp dir under `tmpDir`, then renames it (and its ids) into
 * place at `base`.erofs: a present image is a complete one (see placeErofs for after a power
 * loss). `build` runs here or in the unpack's worker thread (rootfs-client.ts). Resolves once the
 * image is in place; `synced` once its data is on disk.
 */
export async function unpackErofs(layers: LayerRef[], base: string, tmpDir: string, limits: ScanLimits, build: TreeBuilder = buildErofs): Promise<{ synced: Promise<void> }> {
  const root = await mkdtemp(join(tmpDir, 'rootfs-'));
  try {
    await build(root, layers, limits);
    return await placeErofs(root, base);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const BOOT_ID = '/proc/sys/kernel/random/boot_id';
const bootId = () => readFileSync(BOOT_ID, 'utf8').trim();

/**
 * An image built in `root` (buildErofsWith) moved to `base`.erofs and `base`.ids, usable at once:
 * its data is synced to disk after the renames (`synced`), not before, which cost a first
 * container ~0.3-0.5 s for a 550 MB image. Until then `base`.unsynced holds this boot's id: after
 * a power loss (another boot id) the image may be torn and recoverUnsynced removes it; after a
 * mere restart of vmlet the page cache had it whole, and a sync is all it needs.
 */
export async function placeErofs(root: string, base: string): Promise<{ synced: Promise<void> }> {
  const dest = erofsPaths(base);
  // Before the renames: ext4 commits the marker's creation with or before them. Its token: a
  // sync of an image removed and built again meanwhile leaves the new one's marker alone.
  const marker = `${bootId()} ${randomBytes(8).toString('hex')}\n`;
  writeFileSync(dest.unsynced, marker);
  await rm(dest.ids, { recursive: true, force: true }); // left by a crash between the two renames
  await rename(join(root, IDS), dest.ids);
  await rename(join(root, IMAGE), dest.image);
  const synced = run('sync', ['-f', dest.image]).then(async () => {
    if ((await readFile(dest.unsynced, 'utf8').catch(() => '')) === marker) await rm(dest.unsynced, { force: true });
  });
  synced.catch(() => undefined); // the caller's to report; the marker stays for the next start
  return { synced };
}

/**
 * At start: each image placed before its sync ended. Written in this boot (vmlet restarted), it
 * is whole in the page cache: synced now. Written in an earlier one, a power loss may have torn
 * it: removed, with its ids (its next container builds it again). Returns what it removed.
 */
export async function recoverUnsynced(rootfsRoot: string): Promise<string[]> {
  const removed: string[] = [];
  const now = bootId();
  const markers = (await readdir(rootfsRoot).catch(() => [] as string[])).filter((n) => n.endsWith('.unsynced'));
  // One sync of the filesystem serves every image of this boot.
  if (markers.length > 0) await run('sync', ['-f', rootfsRoot]).catch(() => undefined);
  for (const name of markers) {
    const { image, ids, unsynced } = erofsPaths(join(rootfsRoot, name.slice(0, -'.unsynced'.length)));
    const wrote = await readFile(unsynced, 'utf8').then((t) => t.split(' ')[0]!.trim(), () => '');
    if (wrote !== now) {
      for (const p of [image, ids]) await rm(p, { recursive: true, force: true });
      removed.push(image);
    }
    await rm(unsynced, { force: true });
  }
  return removed;
}
