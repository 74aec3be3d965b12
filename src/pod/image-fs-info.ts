// ImageFsInfo: the usage of the filesystem holding the image store, and of the one holding the
// containers' writable state (the pods' state dir: the same mount the container stats name for
// the writable layer, stats-layer.ts).
import type { FsUsage, ImageStore } from '../image/store.js';

export async function imageFsInfo(images: Pick<ImageStore, 'fsUsage'>, containerDir: string): Promise<{ images: FsUsage; containers: FsUsage }> {
  const imagesUsage = await images.fsUsage();
  return { images: imagesUsage, containers: await images.fsUsage(containerDir) };
}
