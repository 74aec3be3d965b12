// Messages between the blob download's client (blob-fetch.ts, main thread) and its worker
// (blob-fetch-worker.ts). One conversation per download, keyed by its id.
import type { BlobTarget } from './blob-write.js';
import type { FeedEvent } from './layer-feed.js';
import type { GetOptions } from './registry-get.js';
import type { WireError } from '../util/worker-thread.js';

export interface FetchRequest {
  id: number;
  url: string;
  get: GetOptions;
  target: BlobTarget;
}

export type FetchReply =
  /** The download's progress, as a layer scan following it needs it (started, wrote, end, failed). */
  | { t: 'feed'; id: number; ev: FeedEvent }
  /** Stored, checked and renamed into place. */
  | { t: 'stored'; id: number }
  /** The registry answered with an error status (a 401 carries its challenge): nothing written. */
  | { t: 'status'; id: number; status: number; statusText: string; challenge?: string }
  | { t: 'failed'; id: number; error: WireError };
