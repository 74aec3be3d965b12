// The main thread's side of the blob download worker (blob-fetch-worker.ts; one thread for the
// process: util/worker-thread.ts). A download's feed events reach the pull's LayerFeed (and so
// the layer scan) and its progress here; its error arrives as it was thrown there.
import { WorkerThread, fromWire } from '../util/worker-thread.js';
import type { BlobTarget, Progress } from './blob-write.js';
import type { LayerFeed } from './layer-feed.js';
import type { GetOptions } from './registry-get.js';
import type { FetchReply, FetchRequest } from './blob-fetch-protocol.js';

const thread = new WorkerThread<FetchRequest, FetchReply>(import.meta.url, 'blob-fetch-worker', 'blob download worker', (m) => String(m.id));
let nextId = 1;

/** The worker thread, while there is one (tests end it to check what its death does). */
export function blobFetchWorker() {
  return thread.thread;
}

/** What the registry answered: stored (checked, in place), or an error status with nothing written. */
export type FetchOutcome = { stored: true } | { stored: false; status: number; statusText: string; challenge?: string };

/** GETs `url` in the worker (following redirects) into `target`. */
export function fetchBlobInWorker(url: string, get: GetOptions, target: BlobTarget, on: { progress?: Progress; feed?: LayerFeed } = {}): Promise<FetchOutcome> {
  const id = nextId++;
  return new Promise<FetchOutcome>((resolve, reject) => {
    const post = thread.talk(
      String(id),
      (m) => {
        if (m.t === 'feed') {
          on.feed?.apply(m.ev);
          if (m.ev.e === 'wrote') on.progress?.(m.ev.total);
          return false;
        }
        if (m.t === 'stored') resolve({ stored: true });
        else if (m.t === 'status') resolve({ stored: false, status: m.status, statusText: m.statusText, ...(m.challenge !== undefined ? { challenge: m.challenge } : {}) });
        else reject(fromWire(m.error));
        return true;
      },
      (err) => {
        on.feed?.failed(err); // a scan following the download would wait for bytes that never come
        reject(err);
      },
    );
    post({ id, url, get, target });
  });
}
