// The main thread's side of the layer scan's worker (scan-worker.ts, one thread for the process:
// util/worker-thread.ts). Each layer's read settles with what the worker found, or with its error
// as it was thrown there: a VmletError keeps its kind, an fs error its code; a read that failed
// because its download did gets the download's own error, as a read on this thread did.
import { WorkerThread, fromWire } from '../util/worker-thread.js';
import type { LayerRead, LayerRef, ScanBudget, ScanLimits, Wanted } from './layer-tar.js';
import { BUILT, type FromWorker, type ToWorker } from './scan-protocol.js';

const thread = new WorkerThread<ToWorker, FromWorker>(import.meta.url, 'scan-worker', 'layer scan worker', (m) => `${m.job}:${m.i}`);
let nextJob = 1;

/** The worker thread, while there is one (tests end it to check what its death does). */
export function scanWorker() {
  return thread.thread;
}

/**
 * Reads `layers` side by side in the worker: one promise per layer, in order; with `erofsRoot`,
 * the image's EROFS rootfs is built there in the same read (erofs-scan.ts), and `built` settles
 * when it is.
 */
export function readLayersInWorker(layers: LayerRef[], wanted: Wanted, tmpDir: string, limits: ScanLimits, budget: ScanBudget, erofsRoot?: string): { reads: Array<Promise<LayerRead>>; built?: Promise<void> } {
  if (layers.length === 0) return { reads: [] }; // no answer would come to let the worker go quiet
  const job = nextJob++;
  let post!: (m: ToWorker) => void;
  const built =
    erofsRoot === undefined
      ? undefined
      : new Promise<void>((resolve, reject) => {
          post = thread.talk(
            `${job}:${BUILT}`,
            (m) => {
              if (m.t === 'built') {
                if (m.error === undefined) resolve();
                else reject(fromWire(m.error));
              }
              return true;
            },
            reject,
          );
        });
  const reads = layers.map(
    (layer, i) =>
      new Promise<LayerRead>((resolve, reject) => {
        post = thread.talk(
          `${job}:${i}`,
          (m) => {
            if (m.t === 'read') {
              if (m.live && layer.feed) layer.feed.live = true;
              resolve(m.read);
            } else if (m.t === 'failed') {
              // A read that failed because its download did fails with the download's error.
              Promise.resolve(layer.ready).then(() => reject(fromWire(m.error)), reject);
            }
            return true;
          },
          reject,
        );
      }),
  );
  post({
    t: 'scan',
    job,
    layers: layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, path: l.path, ...(l.diffId ? { diffId: l.diffId } : {}), feed: l.feed !== undefined, ready: l.ready !== undefined })),
    wanted,
    tmpDir,
    limits,
    budget: budget.memory,
    ...(erofsRoot !== undefined ? { erofsRoot } : {}),
  });
  layers.forEach((l, i) => {
    const stop = l.feed?.watch((ev) => post({ t: 'feed', job, i, ev }));
    l.ready?.then(
      () => post({ t: 'ready', job, i }),
      (err: unknown) => post({ t: 'ready', job, i, error: (err as Error).message ?? String(err) }),
    );
    if (stop) void reads[i]!.catch(() => undefined).finally(stop);
  });
  return built ? { reads, built } : { reads };
}
