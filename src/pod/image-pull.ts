// PullImage: the image store pulls (src/image/store.ts); this records how long the pull took and
// how many bytes the image has, for vmlet_image_pull_duration_seconds and _bytes_total.
import type { ImageStore } from '../image/store.js';
import type { ImageRecord } from '../image/image-index.js';
import type { Credentials } from '../image/registry.js';
import type { PullSnapshot } from '../image/pull-progress.js';
import { observePull } from '../metrics/vmlet.js';

export async function pullImage(images: ImageStore, name: string, creds: Credentials, watch?: (s: PullSnapshot) => void): Promise<ImageRecord> {
  const t0 = performance.now();
  const rec = await images.pull(name, creds, watch);
  observePull(rec.size, (performance.now() - t0) / 1000);
  return rec;
}
