// PullImage: the image store pulls (src/image/store.ts); this records how long the pull took and
// how many bytes the image has, for vmlet_image_pull_duration_seconds and _bytes_total. A
// kubelet's pull names its pod: one whose kind is still open boots its VM as soon as the image
// looks like a container image (podvm-ahead.ts).
import type { ImageStore } from '../image/store.js';
import type { ImageRecord } from '../image/image-index.js';
import type { Credentials } from '../image/registry.js';
import type { PullSnapshot } from '../image/pull-progress.js';
import { observePull } from '../metrics/vmlet.js';
import type { PodSandboxConfig } from './configs.js';
import type { PodManager } from './manager.js';
import { bootPodVmAtPull, podOfPull } from './podvm-ahead.js';

export async function pullImage(
  images: ImageStore,
  name: string,
  creds: Credentials,
  watch?: (s: PullSnapshot) => void,
  forPod?: { pods: PodManager; config: PodSandboxConfig | null | undefined },
): Promise<ImageRecord> {
  const t0 = performance.now();
  const pod = forPod && podOfPull(forPod.pods, forPod.config);
  const rec = await images.pull(name, creds, watch, pod && ((looks) => looks === 'container' && bootPodVmAtPull(forPod.pods, pod)));
  observePull(rec.size, (performance.now() - t0) / 1000);
  return rec;
}
