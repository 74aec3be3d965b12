// ImageService: wire ↔ internal mapping only. Behaviour lives in image/store.ts.
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
import { unary, withUnimplemented } from './rpc.js';

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

export function imageService(log: Logger, images: ImageStore, containerDir: string, definition: ServiceDefinition): UntypedServiceImplementation {
  const impl: Partial<ImageServiceHandlers> = {
    PullImage: unary(log, 'PullImage', async (req) => {
      const rec = await images.pull(imageName(req.image, 'image.image'), credentials(req.auth));
      return { image_ref: rec.id };
    }),

    ImageStatus: unary(log, 'ImageStatus', async (req) => {
      const rec = images.status(imageName(req.image, 'image.image'));
      // CRI: an unknown image is an empty answer, not an error.
      if (!rec) return { image: null, info: {} };
      const info: Record<string, string> = {};
      if (req.verbose) {
        info.info = JSON.stringify({
          boot: rec.boot,
          manifestDigest: rec.manifestDigest,
          layers: rec.layers,
          labels: rec.labels,
          user: rec.user,
          pulledAt: rec.pulledAt,
        });
      }
      return { image: toWireImage(rec), info };
    }),

    ListImages: unary(log, 'ListImages', async (req) => ({
      images: images.list(req.filter?.image?.image || undefined).map(toWireImage),
    })),

    RemoveImage: unary(log, 'RemoveImage', async (req) => {
      await images.remove(imageName(req.image, 'image.image'));
      return {};
    }),

    ImageFsInfo: unary(log, 'ImageFsInfo', async () => ({
      image_filesystems: [wireUsage(await images.fsUsage())],
      container_filesystems: [wireUsage(await images.fsUsage(containerDir))],
    })),
  };
  return withUnimplemented(log, 'ImageService', definition, impl as UntypedServiceImplementation);
}
