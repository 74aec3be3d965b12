// The image store behind the CRI ImageService: pull (deduplicated), status, list, remove with
// garbage collection of unreferenced blobs and boot files, and filesystem usage.
// Layout under <root> (default /var/lib/vmlet/images):
//   sha256/<hex>        content-addressed blobs (manifests, configs, compressed layers)
//   tmp/                downloads and extractions in progress (wiped at start)
//   disks/<hex>.qcow2   containerDisk bases, read-only      (hex = image id)
//   kernels/<hex>/      kernel-boot files
//   index.json          the image index
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { RegistriesConfig } from '../config.js';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import { mountPointOf, treeUsage } from '../util/fs-usage.js';
import { BlobStore } from './blob-store.js';
import { prepareBoot } from './boot.js';
import { ImageIndex, type ImageRecord } from './image-index.js';
import { Puller } from './pull.js';
import { formatReference, parseReference } from './reference.js';
import type { Credentials } from './registry.js';

export interface FsUsage {
  timestampNs: bigint;
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

export interface ImageStoreOptions {
  /** Tells whether a container uses the image (RemoveImage refuses then). */
  inUse?: (imageId: string) => boolean;
  maxEntryBytes?: number;
  maxImageBytes?: number;
}

const TiB = 1024 ** 4;
/** Free space kept back so a big image cannot fill the filesystem vmlet's state lives on. */
const RESERVE_BYTES = 512 * 1024 ** 2;

export class ImageStore {
  readonly blobs: BlobStore;
  readonly index: ImageIndex;
  private readonly puller: Puller;
  private pulls = new Map<string, Promise<ImageRecord>>();
  private preparing = new Map<string, Promise<ImageRecord>>();
  private pendingGc = false;

  constructor(
    readonly root: string,
    registries: RegistriesConfig,
    private readonly log: Logger,
    private readonly opts: ImageStoreOptions = {},
  ) {
    this.blobs = new BlobStore(root);
    this.index = new ImageIndex(root, log);
    this.puller = new Puller(this.blobs, registries, log);
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await this.blobs.init();
    await this.index.load();
  }

  /** Pulls (or re-uses a pull in flight of the same reference and credentials). */
  pull(reference: string, creds: Credentials = {}): Promise<ImageRecord> {
    const key = `${formatReference(parseReference(reference))}\0${JSON.stringify(creds)}`;
    let p = this.pulls.get(key);
    if (!p) {
      p = this.doPull(reference, creds).finally(() => {
        this.pulls.delete(key);
        if (this.pulls.size === 0 && this.pendingGc) void this.gc();
      });
      this.pulls.set(key, p);
    }
    return p;
  }

  private async doPull(reference: string, creds: Credentials): Promise<ImageRecord> {
    const started = Date.now();
    let pulled;
    try {
      pulled = await this.puller.pull(reference, creds);
    } catch (err) {
      // Blobs this pull stored are referenced by no image: collect them once no pull runs.
      this.pendingGc = true;
      throw err;
    }
    const id = pulled.record.id;
    let rec = this.index.get(id);
    try {
      if (!rec || !this.bootFilesPresent(rec)) {
        let prep = this.preparing.get(id);
        if (!prep) {
          // Reads each layer as soon as it is stored, while later ones still download.
          prep = (async () => {
            const free = await this.freeBytes();
            const boot = await prepareBoot(
              id,
              pulled.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, path: this.blobs.path(l.digest), ready: l.ready, ...(l.diffId ? { diffId: l.diffId } : {}) })),
              pulled.record.labels,
              { disks: join(this.root, 'disks'), kernels: join(this.root, 'kernels'), tmp: this.blobs.tmpDir },
              { maxEntryBytes: this.opts.maxEntryBytes ?? TiB, maxImageBytes: this.opts.maxImageBytes ?? 4 * TiB, writableBytes: Math.max(0, free - RESERVE_BYTES) },
            );
            await pulled.downloads;
            return this.index.put({ ...pulled.record, boot, pulledAt: new Date().toISOString() });
          })().finally(() => this.preparing.delete(id));
          this.preparing.set(id, prep);
        }
        rec = await prep;
      }
      await pulled.downloads;
    } catch (err) {
      // Let every download of this pull end before reporting, then collect what it stored.
      await pulled.downloads.catch(() => undefined);
      this.pendingGc = true;
      throw err;
    }
    rec = this.index.put({ ...rec, ...pulled.record, boot: rec.boot, pulledAt: rec.pulledAt });
    await this.index.save();
    this.log.info({ image: formatReference(pulled.ref), id, boot: rec.boot.kind, size: rec.size, ms: Date.now() - started }, 'image pulled');
    return rec;
  }

  private bootFilesPresent(rec: ImageRecord): boolean {
    if (rec.boot.disk) return existsSync(rec.boot.disk.path);
    if (rec.boot.kernel) return existsSync(rec.boot.kernel.kernel) && (!rec.boot.kernel.initrd || existsSync(rec.boot.kernel.initrd));
    return true;
  }

  private async freeBytes(): Promise<number> {
    const s = await statfs(this.root);
    return s.bavail * s.bsize;
  }

  status(name: string): ImageRecord | undefined {
    return this.index.find(name);
  }

  list(filter?: string): ImageRecord[] {
    if (!filter) return this.index.all();
    const hit = this.index.find(filter);
    return hit ? [hit] : [];
  }

  /**
   * Removes an image by id (all its names), or one tag when the image has others. Unknown
   * names succeed (CRI: idempotent). Refused while a container uses the image.
   */
  async remove(name: string): Promise<void> {
    const rec = this.index.find(name);
    if (!rec) return;
    const byId = name === rec.id || rec.id.slice(7).startsWith(name.replace(/^sha256:/, ''));
    if (!byId) {
      const tag = formatReference(parseReference(name));
      if (rec.repoTags.includes(tag) && rec.repoTags.length > 1) {
        rec.repoTags = rec.repoTags.filter((t) => t !== tag);
        await this.index.save();
        this.log.info({ id: rec.id, tag }, 'image tag removed');
        return;
      }
    }
    if (this.opts.inUse?.(rec.id)) {
      throw new VmletError('failed-precondition', `image ${name} (${rec.id}) is in use by a container; remove the container first`);
    }
    this.index.delete(rec.id);
    await this.index.save();
    this.log.info({ id: rec.id, tags: rec.repoTags }, 'image removed');
    await this.gc();
  }

  /** Deletes blobs and boot files no image references. Deferred while pulls are in flight. */
  async gc(): Promise<void> {
    if (this.pulls.size > 0) {
      this.pendingGc = true;
      return;
    }
    this.pendingGc = false;
    const images = this.index.all();
    const live = new Set(images.flatMap((r) => r.blobs));
    let removed = 0;
    for (const digest of await this.blobs.list()) {
      if (!live.has(digest)) {
        await this.blobs.remove(digest);
        removed++;
      }
    }
    const liveHex = new Set(images.map((r) => r.id.slice(7)));
    for (const sub of ['disks', 'kernels']) {
      let names: string[] = [];
      try {
        names = await readdir(join(this.root, sub));
      } catch {
        continue;
      }
      for (const n of names) {
        if (!liveHex.has(n.split('.')[0]!)) {
          await rm(join(this.root, sub, n), { recursive: true, force: true });
          removed++;
        }
      }
    }
    if (removed) this.log.info({ removed }, 'image garbage collected');
  }

  async fsUsage(dir = this.root): Promise<FsUsage> {
    await mkdir(dir, { recursive: true });
    const { bytes, inodes } = await treeUsage(dir);
    return { timestampNs: BigInt(Date.now()) * 1_000_000n, mountpoint: mountPointOf(dir), usedBytes: bytes, inodesUsed: inodes };
  }
}
