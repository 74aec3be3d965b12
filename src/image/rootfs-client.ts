// The main thread's side of the rootfs unpack's worker (rootfs-worker.ts, one thread for the
// process while it is used: util/worker-thread.ts). A small image (SMALL_IMAGE_BYTES of layers)
// is unpacked on this thread, as its scan is: starting the thread would cost more than it saves.
import { WorkerThread, fromWire } from '../util/worker-thread.js';
import { isSmallImage, type LayerRef, type ScanLimits } from './layer-tar.js';
import { buildTree, unpackRootfs, type TreeBuilder } from './rootfs.js';
import { buildErofs, unpackErofs } from './rootfs-erofs.js';
import type { FromWorker, RootfsFormat, ToWorker } from './rootfs-protocol.js';

const thread = new WorkerThread<ToWorker, FromWorker>(import.meta.url, 'rootfs-worker', 'rootfs unpack worker', (m) => String(m.job));
let nextJob = 1;

/** The worker thread, while there is one (tests end it to check what its death does). */
export function rootfsWorker() {
  return thread.thread;
}

/** buildTree or buildErofs in the worker: its errors keep their kind (a hostile layer is INVALID_ARGUMENT there and here). */
const buildInWorker = (format: RootfsFormat): TreeBuilder => (root, layers, limits) =>
  new Promise<void>((resolve, reject) => {
    const job = nextJob++;
    const post = thread.talk(
      String(job),
      (m) => {
        if (m.t === 'built') resolve();
        else reject(fromWire(m.error));
        return true;
      },
      reject,
    );
    post({ t: 'unpack', job, format, root, limits, layers: layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, path: l.path, ...(l.diffId ? { diffId: l.diffId } : {}) })) });
  });

/**
 * unpackRootfs (the tree at `dest`) or unpackErofs (`dest`.erofs) of complete layers (no download
 * in flight), in the worker unless the image is small. Resolves once the rootfs is in place;
 * `synced` once its data is on disk (a tree's is before it is in place).
 */
export async function unpackRootfsOffThread(layers: LayerRef[], dest: string, tmpDir: string, limits: ScanLimits, format: RootfsFormat = 'tree'): Promise<{ synced: Promise<void> }> {
  const here = isSmallImage(layers.map((l) => l.size));
  if (format === 'erofs') return unpackErofs(layers, dest, tmpDir, limits, here ? buildErofs : buildInWorker(format));
  await unpackRootfs(layers, dest, tmpDir, limits, here ? buildTree : buildInWorker(format));
  return { synced: Promise.resolve() };
}
