// Messages between the rootfs unpack's client (rootfs-client.ts, main thread) and its worker
// (rootfs-worker.ts). A job is one image's tree or EROFS image (`format`), built in a directory
// the main thread made.
import type { ScanLimits } from './layer-tar.js';
import type { WireError } from '../util/worker-thread.js';

export interface UnpackLayer {
  digest: string;
  mediaType: string;
  path: string;
  diffId?: string;
}

export type RootfsFormat = 'erofs' | 'tree';

export type ToWorker = { t: 'unpack'; job: number; format: RootfsFormat; root: string; layers: UnpackLayer[]; limits: ScanLimits };

export type FromWorker = { t: 'built'; job: number } | { t: 'failed'; job: number; error: WireError };
