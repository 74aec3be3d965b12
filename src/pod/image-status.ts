// ImageStatus: an image's record from the image store (undefined when unknown: CRI answers an
// empty status then, not an error) and, verbose, what the record holds beyond CRI's Image: how
// it boots, its manifest and layers, labels, user, when it was pulled. Pull, list and remove are
// the store's own calls (image/store.ts).
import type { ImageRecord } from '../image/image-index.js';
import type { ImageStore } from '../image/store.js';

export interface ImageStatusResult {
  image: ImageRecord | undefined;
  /** Verbose only (and only for a known image): `info`, a JSON object; empty otherwise. */
  info: Record<string, string>;
}

export function imageStatus(images: Pick<ImageStore, 'status'>, name: string, verbose: boolean): ImageStatusResult {
  const rec = images.status(name);
  const info: Record<string, string> = {};
  if (rec && verbose) {
    info.info = JSON.stringify({
      boot: rec.boot,
      manifestDigest: rec.manifestDigest,
      layers: rec.layers,
      labels: rec.labels,
      user: rec.user,
      pulledAt: rec.pulledAt,
    });
  }
  return { image: rec, info };
}
