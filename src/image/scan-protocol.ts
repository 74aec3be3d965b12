// Messages between the layer scan's client (scan-client.ts, main thread) and its worker
// (scan-worker.ts). A job is one image's scan: its layers are read side by side in the worker.
import type { FeedEvent } from './layer-feed.js';
import type { LayerRead, ScanLimits, Wanted } from './layer-tar.js';
import type { WireError } from '../util/worker-thread.js';

export interface JobLayer {
  digest: string;
  mediaType: string;
  path: string;
  diffId?: string;
  /** The main thread forwards this pull's download of it (feed messages). */
  feed: boolean;
  /** The main thread says when its blob is checked (ready messages). */
  ready: boolean;
}

export type ToWorker =
  /** `erofsRoot`: also build the image's EROFS rootfs there, in the same read (erofs-scan.ts). */
  | { t: 'scan'; job: number; layers: JobLayer[]; wanted: Wanted; tmpDir: string; limits: ScanLimits; budget: SharedArrayBuffer; erofsRoot?: string }
  | { t: 'feed'; job: number; i: number; ev: FeedEvent }
  | { t: 'ready'; job: number; i: number; error?: string };

export type FromWorker =
  | { t: 'read'; job: number; i: number; read: LayerRead; live: boolean }
  | { t: 'failed'; job: number; i: number; error: WireError }
  /** The EROFS build's end (i is BUILT), with its error if it failed. */
  | { t: 'built'; job: number; i: typeof BUILT; error?: WireError };

/** The conversation of a job's EROFS build (its layers' are 0, 1, …). */
export const BUILT = -1;
