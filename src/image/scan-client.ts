// The main thread's side of the layer scan's worker (scan-worker.ts, one thread for the process:
// util/worker-thread.ts). Each layer's read settles with what the worker found, or with its error
// as it was thrown there: a VmletError keeps its kind, an fs error its code; a read that failed
// because its download did gets the download's own error, as a read on this thread did.
import { WorkerThread, fromWire } from '../util/worker-thread.js';
import type { LayerRead, LayerRef, ScanBudget, ScanLimits, Wanted } from './layer-tar.js';
import type { FromWorker, ToWorker } from './scan-protocol.js';

const thread = new WorkerThread<ToWorker, FromWorker>(import.meta.url, 'scan-worker', 'layer scan worker', (m) => `${m.job}:${m.i}`);
let nextJob = 1;

/** The worker thread, while there is one (tests end it to check what its death does). */
export function scanWorker() {
  return thread.thread;
}

/** Reads `layers` side by side in the worker: one promise per layer, in order. */
export function readLayersInWorker(layers: LayerRef[], wanted: Wanted, tmpDir: string, limits: ScanLimits, budget: ScanBudget): Promise<LayerRead>[] {
  if (layers.length === 0) return []; // no answer would come to let the worker go quiet
  const job = nextJob++;
  let post!: (m: ToWorker) => void;
  const reads = layers.map(
    (layer, i) =>
      new Promise<LayerRead>((resolve, reject) => {
        post = thread.talk(
          `${job}:${i}`,
          (m) => {
            if (m.t === 'read') {
              if (m.live && layer.feed) layer.feed.live = true;
              resolve(m.read);
            } else {
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
  });
  layers.forEach((l, i) => {
    const stop = l.feed?.watch((ev) => post({ t: 'feed', job, i, ev }));
    l.ready?.then(
      () => post({ t: 'ready', job, i }),
      (err: unknown) => post({ t: 'ready', job, i, error: (err as Error).message ?? String(err) }),
    );
    if (stop) void reads[i]!.catch(() => undefined).finally(stop);
  });
  return reads;
}
