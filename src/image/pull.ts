// One pull: resolve the reference on a mirror or the registry, pick linux/amd64 from an index,
// store config and layers (digest-checked), then make the image ready for a VM (boot.ts).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { RegistriesConfig } from '../config.js';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import type { BlobStore } from './blob-store.js';
import type { PullProgress } from './pull-progress.js';
import type { ImageRecord, LayerInfo } from './image-index.js';
import { runConfigOf, type ImageConfig } from './image-config.js';
import { MANIFEST_TYPES, RegistrySession, endpointsFor, type Credentials } from './registry.js';
import { formatReference, isDigest, parseReference, repoName, tagReference, type ImageRef } from './reference.js';
import { LayerFeed } from './layer-feed.js';
import { isSmallImage } from './layer-tar.js';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

interface Manifest {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

export type { ImageConfig } from './image-config.js';

export interface Pulled {
  ref: ImageRef;
  record: Omit<ImageRecord, 'boot' | 'pulledAt'>;
  config: ImageConfig;
  /** `ready` settles when that layer is stored, so a reader can start on layer 0 while later ones download; `feed` gives its bytes as they arrive (layer-feed.ts). */
  layers: Array<LayerInfo & { diffId?: string; ready: Promise<void>; feed: LayerFeed }>;
  /** Settles when every download has finished; rejects with the first failure. Always await it. */
  downloads: Promise<void>;
}

const INDEX_TYPES = new Set<string>([MANIFEST_TYPES.ociIndex, MANIFEST_TYPES.dockerList]);
const MANIFEST_KINDS = new Set<string>([MANIFEST_TYPES.ociManifest, MANIFEST_TYPES.dockerManifest]);
// As skopeo and podman (6); containerd defaults to 3. A layer download costs a socket and a 256 KiB batch.
const LAYER_CONCURRENCY = 6;

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function parseManifest(body: Buffer, where: string): Manifest {
  try {
    return JSON.parse(body.toString('utf8')) as Manifest;
  } catch {
    throw new VmletError('internal', `${where}: manifest is not valid JSON`);
  }
}

function checkDescriptor(d: Descriptor | undefined, where: string): Descriptor {
  if (!d || !isDigest(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new VmletError('internal', `${where}: malformed descriptor ${JSON.stringify(d)}`);
  }
  return d;
}

/** linux/amd64, preferring an entry without a variant (amd64 has none, or v1). */
export function pickPlatform(manifests: Descriptor[]): Descriptor | undefined {
  const amd64 = manifests.filter((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64');
  return amd64.find((m) => !m.platform?.variant || m.platform.variant === 'v1') ?? amd64[0];
}

export class Puller {
  constructor(
    private readonly blobs: BlobStore,
    private readonly registries: RegistriesConfig,
    private readonly log: Logger,
  ) {}

  async pull(reference: string, creds: Credentials, progress?: PullProgress): Promise<Pulled> {
    const ref = parseReference(reference);
    const name = formatReference(ref);
    const { session, top } = await this.resolve(ref, creds);
    const where = `${name} from ${session.endpoint.url}`;
    const topDigest = sha256(top.body);
    if (ref.digest && topDigest !== ref.digest) {
      throw new VmletError('internal', `${where}: manifest digest is ${topDigest}, not the ${ref.digest} asked for`);
    }
    const blobs: string[] = [topDigest];
    await this.blobs.put(topDigest, top.body);
    let doc = parseManifest(top.body, where);
    let manifestDigest = topDigest;
    const topType = doc.mediaType ?? top.mediaType;
    if (INDEX_TYPES.has(topType) || (!doc.config && Array.isArray(doc.manifests))) {
      const chosen = pickPlatform(doc.manifests ?? []);
      if (!chosen) {
        const have = (doc.manifests ?? []).map((m) => `${m.platform?.os}/${m.platform?.architecture}`).join(', ');
        throw new VmletError('not-found', `${where}: no linux/amd64 image in the index (has: ${have || 'nothing'})`);
      }
      checkDescriptor(chosen, where);
      const m = await session.manifest(chosen.digest);
      if (sha256(m.body) !== chosen.digest) throw new VmletError('internal', `${where}: manifest ${chosen.digest} does not match its digest`);
      await this.blobs.put(chosen.digest, m.body);
      blobs.push(chosen.digest);
      doc = parseManifest(m.body, where);
      manifestDigest = chosen.digest;
      if (doc.mediaType && !MANIFEST_KINDS.has(doc.mediaType)) throw new VmletError('internal', `${where}: unsupported manifest type ${doc.mediaType}`);
    } else if (!MANIFEST_KINDS.has(topType) && doc.schemaVersion !== 2) {
      throw new VmletError('invalid-argument', `${where}: unsupported manifest type ${topType || 'unknown'} (Docker schema 1 images are not supported)`);
    }
    const configDesc = checkDescriptor(doc.config, where);
    const layerDescs = (doc.layers ?? []).map((l) => checkDescriptor(l, where));

    await this.blobs.ensure(configDesc.digest, configDesc.size, () => this.open(session, configDesc.digest));
    let config: ImageConfig;
    try {
      config = JSON.parse((await this.blobs.read(configDesc.digest)).toString('utf8')) as ImageConfig;
    } catch {
      throw new VmletError('internal', `${where}: image config ${configDesc.digest} is not valid JSON`);
    }
    const diffIds = config.rootfs?.diff_ids ?? [];
    progress?.setLayers(layerDescs);
    const { ready, feeds, all: downloads } = this.fetchLayers(session, layerDescs, name, progress);
    blobs.push(configDesc.digest, ...layerDescs.map((l) => l.digest));

    const repoTag = tagReference(ref);
    return {
      ref,
      config,
      layers: layerDescs.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, ready: ready[i]!, feed: feeds[i]!, ...(diffIds[i] ? { diffId: diffIds[i] } : {}) })),
      downloads,
      record: {
        id: configDesc.digest,
        repoTags: repoTag && !ref.digest ? [repoTag] : [],
        repoDigests: [`${repoName(ref)}@${topDigest}`],
        size: configDesc.size + layerDescs.reduce((a, l) => a + l.size, 0),
        pinned: false,
        manifestDigest,
        blobs: [...new Set(blobs)],
        layers: layerDescs.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
        user: config.config?.User ?? '',
        labels: config.config?.Labels ?? {},
        runConfig: runConfigOf(config),
      },
    };
  }

  /** First endpoint (mirrors, then the registry) that has the manifest. */
  private async resolve(ref: ImageRef, creds: Credentials) {
    let lastErr: unknown;
    for (const endpoint of endpointsFor(ref.registry, this.registries)) {
      const session = new RegistrySession(ref, endpoint, creds);
      try {
        const top = await session.manifest(ref.digest ?? ref.tag!);
        return { session, top };
      } catch (err) {
        lastErr = err;
        if (!endpoint.mirror) break;
        this.log.warn({ image: formatReference(ref), mirror: endpoint.url, err: (err as Error).message }, 'mirror failed; trying the next endpoint');
      }
    }
    throw lastErr;
  }

  private async open(session: RegistrySession, digest: string): Promise<Readable> {
    return (await session.blob(digest)).body;
  }

  /**
   * Downloads layers, a few at a time, in manifest order. After a failure no new layer is
   * started, and `all` rejects only once every download under way has finished or failed:
   * nothing of this pull is still being written when the caller cleans up.
   */
  private fetchLayers(session: RegistrySession, layers: Descriptor[], image: string, progress?: PullProgress): { ready: Promise<void>[]; feeds: LayerFeed[]; all: Promise<void> } {
    const feeds = layers.map(() => new LayerFeed());
    const small = isSmallImage(layers.map((l) => l.size));
    const settle = layers.map(() => {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const p = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      p.catch(() => undefined); // a reader may never wait on it: not an unhandled rejection
      return { p, resolve, reject };
    });
    let next = 0;
    let failed: unknown;
    const worker = async () => {
      while (next < layers.length && failed === undefined) {
        const i = next++;
        const layer = layers[i]!;
        const started = Date.now();
        try {
          // Downloaded, hashed and written in the blob download worker, so a large pull's bytes
          // never pass through the thread that answers the kubelet; a small image's here, as the
          // worker's start would cost more (layer-tar.ts, SMALL_IMAGE_BYTES).
          const on = { progress: (done: number) => progress?.layer(layer.digest, done), feed: feeds[i]! };
          const stored = small
            ? this.blobs.ensure(layer.digest, layer.size, () => this.open(session, layer.digest), on.progress, on.feed)
            : this.blobs.fetch(layer.digest, layer.size, (t) => session.storeBlob(layer.digest, t, on));
          await stored.finally(() => feeds[i]!.finish());
          progress?.layerDone(layer.digest);
          settle[i]!.resolve();
          this.log.debug({ image, layer: layer.digest, bytes: layer.size, ms: Date.now() - started }, 'layer stored');
        } catch (err) {
          failed ??= err;
          settle[i]!.reject(err);
        }
      }
    };
    const all = Promise.all(Array.from({ length: Math.min(LAYER_CONCURRENCY, layers.length) }, worker)).then(() => {
      if (failed !== undefined) {
        // Layers never started: tell their readers too.
        for (const s of settle) s.reject(failed);
        for (const f of feeds) f.finish();
        // eslint-disable-next-line @typescript-eslint/only-throw-error -- what the first failed download threw, as it was
        throw failed;
      }
    });
    all.catch(() => undefined);
    return { ready: settle.map((s) => s.p), feeds, all };
  }
}
