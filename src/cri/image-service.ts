// ImageService: wire ↔ internal mapping only, one call per RPC. Pull (timed by pod/image-pull.ts),
// list and remove are the image store's (image/store.ts); ImageStatus and ImageFsInfo are pod/image-status.ts and
// pod/image-fs-info.ts; docs/design.md ("RPC → file") names the file for every RPC.
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { invalidArgument } from '../errors.js';
import type { ImageStore, FsUsage } from '../image/store.js';
import type { ImageRecord } from '../image/image-index.js';
import type { Credentials } from '../image/registry.js';
import type { ImageServiceHandlers } from '../gen/runtime/v1/ImageService.js';
import type { Image } from '../gen/runtime/v1/Image.js';
import type { AuthConfig__Output } from '../gen/runtime/v1/AuthConfig.js';
import type { FilesystemUsage } from '../gen/runtime/v1/FilesystemUsage.js';
import type { ImageSpec__Output } from '../gen/runtime/v1/ImageSpec.js';
import { imageStatus } from '../pod/image-status.js';
import { imageFsInfo } from '../pod/image-fs-info.js';
import { pullImage } from '../pod/image-pull.js';
import type { PodManager } from '../pod/manager.js';
import { listStream, unary, withUnimplemented } from './rpc.js';

/** CRI: `uid` when the config's User is numeric (before any ':group'), `username` otherwise. */
export function imageUser(user: string): Pick<Image, 'uid' | 'username'> {
  const name = user.split(':')[0] ?? '';
  if (/^\d+$/.test(name)) return { uid: { value: name }, username: '' };
  return { uid: null, username: name };
}

export function toWireImage(r: ImageRecord): Image {
  return {
    id: r.id,
    repo_tags: r.repoTags,
    repo_digests: r.repoDigests,
    size: String(r.size),
    ...imageUser(r.user),
    spec: { image: r.id, annotations: {} },
    pinned: r.pinned,
  };
}

function credentials(auth: AuthConfig__Output | null): Credentials {
  if (!auth) return {};
  const c: Credentials = {};
  if (auth.username) c.username = auth.username;
  if (auth.password) c.password = auth.password;
  if (auth.auth) c.auth = auth.auth;
  if (auth.identity_token) c.identityToken = auth.identity_token;
  if (auth.registry_token) c.registryToken = auth.registry_token;
  return c;
}

function imageName(spec: ImageSpec__Output | null, field: string): string {
  const name = spec?.image ?? '';
  if (!name) throw invalidArgument(`${field} is required`);
  return name;
}

function wireUsage(u: FsUsage): FilesystemUsage {
  return {
    timestamp: u.timestampNs.toString(),
    fs_id: { mountpoint: u.mountpoint },
    used_bytes: { value: String(u.usedBytes) },
    inodes_used: { value: String(u.inodesUsed) },
  };
}

export function imageService(log: Logger, images: ImageStore, pods: PodManager, containerDir: string, definition: ServiceDefinition): UntypedServiceImplementation {
  // The list once, for ListImages and StreamImages.
  const imageItems = async (req: { filter?: { image?: { image?: string } | null } | null }) => images.list(req.filter?.image?.image || undefined).map(toWireImage);
  const impl: Partial<ImageServiceHandlers> = {
    PullImage: unary(log, 'PullImage', async (req) => {
      const rec = await pullImage(images, imageName(req.image, 'image.image'), credentials(req.auth), undefined, { pods, config: req.sandbox_config });
      return { image_ref: rec.id };
    }),

    ImageStatus: unary(log, 'ImageStatus', async (req) => {
      const st = imageStatus(images, imageName(req.image, 'image.image'), req.verbose);
      // CRI: an unknown image is an empty answer, not an error.
      return { image: st.image ? toWireImage(st.image) : null, info: st.info };
    }),

    ListImages: unary(log, 'ListImages', async (req) => ({ images: await imageItems(req) })),
    StreamImages: listStream(log, 'StreamImages', 'images', imageItems),

    RemoveImage: unary(log, 'RemoveImage', async (req) => {
      await images.remove(imageName(req.image, 'image.image'));
      return {};
    }),

    ImageFsInfo: unary(log, 'ImageFsInfo', async () => {
      const u = await imageFsInfo(images, containerDir);
      return { image_filesystems: [wireUsage(u.images)], container_filesystems: [wireUsage(u.containers)] };
    }),
  };
  return withUnimplemented(log, 'ImageService', definition, impl as UntypedServiceImplementation);
}
