// The image store behind the CRI ImageService: pull (deduplicated), status, list, remove with
// garbage collection of unreferenced blobs and boot files, and filesystem usage.
// Layout under <root> (default /var/lib/vmlet/images):
//   sha256/<hex>        content-addressed blobs (manifests, configs, compressed layers)
//   tmp/                downloads and extractions in progress (wiped at start)
//   disks/<hex>.qcow2   containerDisk bases, read-only      (hex = image id)
//   kernels/<hex>/      kernel-boot files (kernel, initrd, vmlinux: a bzImage's ELF for PVH)
//   rootfs/<hex>.erofs  a rootfs image's layers as one EROFS image (0755: shared read-only into
//                       guests, which mount it), and <hex>.ids/etc/{passwd,group} from it, and
//                       <hex>.unsynced until its data is on disk (rootfs-erofs.ts placeErofs); or
//   rootfs/<hex>/       the layers unpacked as a tree (config imageRootfs: tree)
//   index.json          the image index
import { ROOT, qemuDirs, type QemuIdentity } from '../vm/qemu-user.js';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, statfs } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { defaults as configDefaults, type RegistriesConfig } from '../config.js';
import type { Logger } from '../log.js';
import { isNoSpace, VmletError } from '../errors.js';
import { mountPointOf, treeUsage } from '../util/fs-usage.js';
import { BlobStore } from './blob-store.js';
import { prepareBoot } from './boot.js';
import { upgradeToPvh } from './pvh-upgrade.js';
import { ALREADY_ELF } from './kernel-pvh.js';
import { ImageIndex, type ImageRecord } from './image-index.js';
import { runConfigOf, type ImageConfig, type RunConfig } from './image-config.js';
import type { LayerRef, ScanLimits } from './layer-scan.js';
import { unpackRootfsOffThread } from './rootfs-client.js';
import { erofsPaths, placeErofs, recoverUnsynced } from './rootfs-erofs.js';
import { parseImageLabels } from '../vm/image-labels.js';
import type { RootfsFormat } from './rootfs-protocol.js';
import { Puller } from './pull.js';
import { PullProgress, type ImageLooks, type PullSnapshot } from './pull-progress.js';
import { formatReference, parseReference } from './reference.js';
import type { Credentials } from './registry.js';

/** How often a pull under way logs its progress. */
const PROGRESS_LOG_MS = 3_000;

export interface FsUsage {
  timestampNs: bigint;
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

export interface ImageStoreOptions {
  /** Tells whether a container uses the image (RemoveImage refuses then). */
  inUse?: (imageId: string) => boolean;
  /** Largest single file; default maxImageBytes (no file is larger than its image). */
  maxEntryBytes?: number;
  /** Largest image (ScanLimits.maxImageBytes); default the config's imageMaxGiB default. */
  maxImageBytes?: number;
  /** QEMU's user: it opens the boot files and containerDisks under the store's root (vm/qemu-user.ts). */
  qemuUser?: QemuIdentity;
  /** What a sandboxed image's rootfs is made as (config imageRootfs; default erofs). */
  rootfsFormat?: RootfsFormat;
  /** false: a pull never builds the EROFS rootfs, its first container does (config imageRootfsAtPull; default true). */
  rootfsAtPull?: boolean;
}

const GiB = 1024 ** 3;

/** ensureRootfs's answer for the rootfs of `base` (`<rootfsRoot>/<hex>`) made as `format`. */
const rootfsAt = (base: string, format: RootfsFormat) => (format === 'tree' ? { dir: base, name: basename(base) } : { dir: erofsPaths(base).ids, name: basename(erofsPaths(base).image) });

/** Which rootfs of `base` is in place, if any: a tree an older vmlet (or imageRootfs: tree) made, or the EROFS file. */
const rootfsThere = (base: string): RootfsFormat | undefined => (existsSync(base) ? 'tree' : existsSync(erofsPaths(base).image) ? 'erofs' : undefined);

/** The ImageStoreOptions limits a config asks for (serve.ts passes them). */
export function imageLimitsOf(config: { imageMaxGiB: number }): Pick<ImageStoreOptions, 'maxImageBytes'> {
  return { maxImageBytes: config.imageMaxGiB * GiB };
}

/** Free space kept back so a big image cannot fill the filesystem vmlet's state lives on. */
const RESERVE_BYTES = 512 * 1024 ** 2;

/**
 * What an image's config says it is, before its layers are read: a container image names a
 * command to run; VM images (containerDisks, kernels) name none, and a kernel label says so
 * outright. A guess: only the layers tell (boot.ts).
 */
export function looksLike(config: ImageConfig, labels: Record<string, string>): ImageLooks {
  if (parseImageLabels(labels).kernel !== undefined) return 'vm';
  return (config.config?.Cmd?.length ?? 0) + (config.config?.Entrypoint?.length ?? 0) > 0 ? 'container' : 'vm';
}

/** A pull builds a container image's rootfs only with room for its blobs and this many times more (buildsRootfsAtPull). */
const ROOTFS_ROOM_FACTOR = 5;

/** How long a walked usage (fsUsage) is served before the tree is walked again. */
export const USAGE_TTL_MS = 10_000;

export class ImageStore {
  readonly blobs: BlobStore;
  readonly index: ImageIndex;
  private readonly puller: Puller;
  private pulls = new Map<string, Promise<ImageRecord>>();
  private progress = new Map<string, PullProgress>();
  private preparing = new Map<string, Promise<ImageRecord>>();
  private unpacking = new Map<string, Promise<{ dir: string; name: string }>>();
  private pendingGc = false;
  /** `<root>/rootfs`: each rootfs image unpacked in `<hex>/`, shared read-only into guests. */
  readonly rootfsRoot: string;
  /** Older kernel-boot records brought to PVH boot (pvh-upgrade.ts), started by init: how many. */
  pvhUpgrade: Promise<number> = Promise.resolve(0);

  constructor(
    readonly root: string,
    registries: RegistriesConfig,
    private readonly log: Logger,
    private readonly opts: ImageStoreOptions = {},
  ) {
    this.blobs = new BlobStore(root);
    this.index = new ImageIndex(root, log);
    this.puller = new Puller(this.blobs, registries, log);
    this.rootfsRoot = join(root, 'rootfs');
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    // Searchable by QEMU's group (disks/ and kernels/ below are 0755; libvirt chowns the files it gives a VM).
    await qemuDirs([this.root], this.opts.qemuUser ?? ROOT);
    await this.blobs.init();
    await mkdir(this.rootfsRoot, { recursive: true, mode: 0o755 });
    await chmod(this.rootfsRoot, 0o755);
    for (const image of await recoverUnsynced(this.rootfsRoot)) {
      this.log.warn({ rootfs: image }, 'removed an image rootfs placed before a reboot and never synced (it may be torn); its next container builds it again');
    }
    await this.index.load();
    this.pvhUpgrade = upgradeToPvh(this.index, this.log).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message }, 'cannot bring older kernel-boot images to PVH boot');
      return 0;
    });
  }

  /** The limits a pull or an unpack runs under. */
  async limits(): Promise<ScanLimits> {
    const free = await this.freeBytes();
    const maxImageBytes = this.opts.maxImageBytes ?? configDefaults.imageMaxGiB * GiB;
    return { maxEntryBytes: this.opts.maxEntryBytes ?? maxImageBytes, maxImageBytes, writableBytes: Math.max(0, free - RESERVE_BYTES) };
  }

  /**
   * The image's layers made into its rootfs once per image: an EROFS image `<rootfsRoot>/<hex>.erofs`
   * (rootfs-erofs.ts) or a tree `<rootfsRoot>/<hex>/` (rootfs.ts), as `opts.rootfsFormat` says;
   * one of either kind already there is used as it is. `name` is the guest's name for it; `dir`
   * a tree holding the image's /etc/passwd and /etc/group (users.ts). Later calls return at
   * once, concurrent ones share one unpack (or join the build its pull began: adoptRootfs); the
   * rootfs appears only complete (renamed into place).
   */
  ensureRootfs(imageId: string): Promise<{ dir: string; name: string }> {
    const rec = this.index.find(imageId);
    if (!rec) return Promise.reject(new VmletError('not-found', `image ${imageId} not found; pull it first`));
    let p = this.unpacking.get(rec.id);
    if (!p) {
      p = this.unpack(rec).finally(() => this.unpacking.delete(rec.id));
      this.unpacking.set(rec.id, p);
    }
    return p;
  }

  private async unpack(rec: ImageRecord): Promise<{ dir: string; name: string }> {
    if (rec.boot.kind !== 'rootfs') {
      throw new VmletError('failed-precondition', `image ${rec.repoTags[0] ?? rec.id} is a ${rec.boot.kind} image: it boots a VM of its own and cannot run as a container of a sandboxed pod`);
    }
    const base = this.rootfsBase(rec.id);
    const there = rootfsThere(base);
    if (there) return rootfsAt(base, there);
    const format = this.opts.rootfsFormat ?? 'erofs';
    const started = Date.now();
    const diffIds = (await this.config(rec)).rootfs?.diff_ids ?? [];
    const layers: LayerRef[] = rec.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, path: this.blobs.path(l.digest), size: l.size, ...(diffIds[i] ? { diffId: diffIds[i] } : {}) }));
    for (const l of layers) {
      if (!(await this.blobs.has(l.digest))) throw new VmletError('failed-precondition', `image ${rec.id}: layer ${l.digest} is missing from the image store; pull the image again`);
    }
    const { synced } = await unpackRootfsOffThread(layers, base, this.blobs.tmpDir, await this.limits(), format);
    this.whenSynced(rec, synced);
    return this.placed(rec, format, started, false);
  }

  /** `<rootfsRoot>/<hex>`: the image's tree, or with a suffix its EROFS files (erofsPaths). */
  private rootfsBase(id: string): string {
    return join(this.rootfsRoot, id.slice('sha256:'.length));
  }

  /** A rootfs's data reaching the disk after it was placed (placeErofs): only a failure is news. */
  private whenSynced(rec: ImageRecord, synced: Promise<void>): void {
    synced.catch((err: unknown) => this.log.warn({ id: rec.id, err: (err as Error).message }, 'cannot sync the image rootfs to disk; vmlet syncs it at its next start'));
  }

  /** The rootfs just renamed into place, unless its image went meanwhile. */
  private async placed(rec: ImageRecord, format: RootfsFormat, started: number, atPull: boolean): Promise<{ dir: string; name: string }> {
    const base = this.rootfsBase(rec.id);
    const erofs = erofsPaths(base);
    if (!this.index.get(rec.id)) {
      // Removed while we unpacked (gc ran before the rename): do not leave the rootfs behind.
      for (const p of [base, erofs.image, erofs.ids, erofs.unsynced]) await rm(p, { recursive: true, force: true });
      throw new VmletError('not-found', `image ${rec.id} was removed while its rootfs was unpacked`);
    }
    const out = rootfsAt(base, format);
    this.log.info({ id: rec.id, format, rootfs: join(this.rootfsRoot, out.name), ms: Date.now() - started, ...(atPull ? { atPull } : {}) }, 'image rootfs unpacked');
    return out;
  }

  /**
   * Whether a pull builds the image's EROFS rootfs in its own read of the layers (erofs-scan.ts),
   * so a sandboxed pod's first container of it waits for nothing: when the store makes EROFS
   * rootfs and the image looks like a container image (looksLike).
   */
  private buildsRootfsAtPull(id: string, config: ImageConfig, labels: Record<string, string>, compressedBytes: number, limits: ScanLimits): boolean {
    if ((this.opts.rootfsFormat ?? 'erofs') !== 'erofs' || this.opts.rootfsAtPull === false) return false;
    // Room for the blobs and a rootfs four times their size (images compress ~3:1): else the
    // pull keeps to its blobs, and the first container finds out whether the rootfs fits.
    if (limits.writableBytes < ROOTFS_ROOM_FACTOR * compressedBytes) return false;
    if (this.unpacking.has(id) || rootfsThere(this.rootfsBase(id))) return false;
    return looksLike(config, labels) === 'container';
  }

  /** The rootfs a pull is building (in `root`): ensureRootfs's until it is in place; built again by unpack if that build failed. */
  private adoptRootfs(rec: ImageRecord, root: string, built: Promise<void>, started: number): void {
    const base = this.rootfsBase(rec.id);
    const p = (async () => {
      try {
        await built;
        this.whenSynced(rec, (await placeErofs(root, base)).synced);
      } catch (err) {
        this.log.warn({ id: rec.id, err: (err as Error).message }, 'the image rootfs built during the pull failed; building it again');
        return this.unpack(rec);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
      return this.placed(rec, 'erofs', started, true);
    })().finally(() => this.unpacking.delete(rec.id));
    p.catch(() => undefined); // ensureRootfs's callers get it; nobody may ask
    this.unpacking.set(rec.id, p);
  }

  private async config(rec: ImageRecord): Promise<ImageConfig> {
    try {
      return JSON.parse((await this.blobs.read(rec.id)).toString('utf8')) as ImageConfig;
    } catch (err) {
      throw new VmletError('failed-precondition', `image ${rec.id}: its config blob is unreadable (${(err as Error).message}); pull the image again`);
    }
  }

  /** How to run the image as a container: from the index, or (records of older vmlet) its config blob. */
  async runConfig(imageId: string): Promise<RunConfig> {
    const rec = this.index.find(imageId);
    if (!rec) throw new VmletError('not-found', `image ${imageId} not found; pull it first`);
    if (!rec.runConfig) {
      rec.runConfig = runConfigOf(await this.config(rec));
      await this.index.save();
    }
    return rec.runConfig;
  }

  /**
   * Pulls (or re-uses a pull in flight of the same reference and credentials). `watch` sees the
   * pull's progress (the one in flight's, when shared) until it settles.
   */
  pull(reference: string, creds: Credentials = {}, watch?: (s: PullSnapshot) => void, onLooks?: (l: ImageLooks) => void): Promise<ImageRecord> {
    const name = formatReference(parseReference(reference));
    const key = `${name}\0${JSON.stringify(creds)}`;
    let p = this.pulls.get(key);
    if (!p) {
      const progress = new PullProgress(name);
      this.progress.set(key, progress);
      p = this.doPull(reference, creds, progress).finally(() => {
        this.pulls.delete(key);
        this.progress.delete(key);
        if (this.pulls.size === 0 && this.pendingGc) void this.gc();
      });
      this.pulls.set(key, p);
    }
    const progress = this.progress.get(key);
    if (onLooks) void progress?.looks.then((l) => l && onLooks(l));
    if (!watch || !progress) return p;
    watch(progress.snapshot());
    const unsubscribe = progress.subscribe(watch);
    return p.finally(unsubscribe);
  }

  private async doPull(reference: string, creds: Credentials, progress: PullProgress): Promise<ImageRecord> {
    // A long pull says how far it has got every few seconds, as containerd does.
    const ticker = setInterval(() => {
      const s = progress.snapshot();
      if (s.phase === 'downloading' || s.phase === 'preparing') {
        this.log.info({ image: s.image, phase: s.phase, bytesDone: s.bytesDone, bytesTotal: s.bytesTotal, layersDone: s.layersDone, layersTotal: s.layersTotal, bytesPerSecond: Math.round(s.rate), etaSeconds: s.etaSeconds === undefined ? undefined : Math.ceil(s.etaSeconds) }, 'pull progress');
      }
    }, PROGRESS_LOG_MS);
    try {
      const rec = await this.pullSteps(reference, creds, progress);
      progress.setPhase('done');
      return rec;
    } catch (err) {
      progress.setPhase('failed');
      throw err;
    } finally {
      clearInterval(ticker);
    }
  }

  private async pullSteps(reference: string, creds: Credentials, progress: PullProgress): Promise<ImageRecord> {
    const started = Date.now();
    let pulled;
    try {
      pulled = await this.puller.pull(reference, creds, progress);
    } catch (err) {
      // Blobs this pull stored are referenced by no image: collect them once no pull runs.
      this.pendingGc = true;
      throw await this.spaceError(reference, err);
    }
    pulled.downloads.then(() => progress.setPhase('preparing'), () => undefined);
    const id = pulled.record.id;
    let rec = this.index.get(id);
    // An image pulled before is known; a new one is guessed from its config, before its layers.
    progress.setLooks(rec ? (rec.boot.kind === 'rootfs' ? 'container' : 'vm') : looksLike(pulled.config, pulled.record.labels));
    try {
      if (!rec || !this.bootFilesPresent(rec)) {
        let prep = this.preparing.get(id);
        if (!prep) {
          // Reads each layer as it downloads (layer-feed.ts), in order, while later ones download too.
          prep = (async () => {
            const limits = await this.limits();
            const compressed = pulled.layers.reduce((a, l) => a + l.size, 0);
            const rootfs = this.buildsRootfsAtPull(id, pulled.config, pulled.record.labels, compressed, limits) ? await mkdtemp(join(this.blobs.tmpDir, 'rootfs-')) : undefined;
            let built: Promise<void> | undefined;
            try {
              const prepared = await prepareBoot(
                id,
                pulled.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, path: this.blobs.path(l.digest), ready: l.ready, feed: l.feed, size: l.size, ...(l.diffId ? { diffId: l.diffId } : {}) })),
                pulled.record.labels,
                { disks: join(this.root, 'disks'), kernels: join(this.root, 'kernels'), tmp: this.blobs.tmpDir, ...(rootfs ? { rootfs } : {}) },
                limits,
              );
              built = prepared.rootfsBuilt;
              await pulled.downloads;
              const made = this.index.put({ ...pulled.record, boot: prepared.boot, pulledAt: new Date().toISOString() });
              if (rootfs && built) this.adoptRootfs(made, rootfs, built, started);
              else if (rootfs && made.boot.kind !== 'rootfs') this.log.info({ id, boot: made.boot.kind }, 'the image boots a VM of its own: the rootfs its pull built is dropped');
              return made;
            } catch (err) {
              await built?.catch(() => undefined);
              if (rootfs) await rm(rootfs, { recursive: true, force: true });
              throw err;
            } finally {
              // A rootfs image's build is adoptRootfs's now; any other kind's ended in prepareBoot.
              if (rootfs && !built) await rm(rootfs, { recursive: true, force: true });
            }
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
      throw await this.spaceError(reference, err);
    }
    rec = this.index.put({ ...rec, ...pulled.record, boot: rec.boot, pulledAt: rec.pulledAt });
    await this.index.save();
    const ms = Date.now() - started;
    const fetched = progress.snapshot().bytesDone;
    const layersReadLive = pulled.layers.filter((l) => l.feed.live).length;
    const k = rec.boot.kernel;
    const pvh = k && (k.pvh ? { pvh: true } : k.pvhNot && k.pvhNot !== ALREADY_ELF ? { pvh: false, pvhNot: k.pvhNot } : {});
    this.log.info({ image: formatReference(pulled.ref), id, boot: rec.boot.kind, ...pvh, size: rec.size, ms, layersReadLive, ...(fetched > 0 ? { bytesPerSecond: Math.round((fetched * 1000) / Math.max(ms, 1)) } : {}) }, 'image pulled');
    return rec;
  }

  private bootFilesPresent(rec: ImageRecord): boolean {
    if (rec.boot.disk) return existsSync(rec.boot.disk.path);
    const k = rec.boot.kernel;
    if (k) return existsSync(k.kernel) && (!k.initrd || existsSync(k.initrd)) && (!k.pvh || existsSync(k.pvh));
    return true;
  }

  /** A pull that found the disk full: RESOURCE_EXHAUSTED saying where, how much is free and how much the store keeps back. */
  private async spaceError(reference: string, err: unknown): Promise<unknown> {
    if (!isNoSpace(err)) return err;
    const free = await this.freeBytes().catch(() => undefined);
    const mib = (n: number) => `${Math.floor(n / 1024 ** 2)} MiB`;
    return new VmletError(
      'resource-exhausted',
      `image ${reference}: not enough space for it in the image store ${this.root} (${free === undefined ? 'unknown' : mib(free)} free, of which vmlet keeps ${mib(RESERVE_BYTES)} for the node): ${(err as Error).message}`,
      { cause: err },
    );
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
    for (const sub of ['disks', 'kernels', 'rootfs']) {
      let names: string[] = [];
      try {
        names = await readdir(join(this.root, sub));
      } catch {
        continue;
      }
      for (const n of names) {
        // An unpack in flight renames its tree into rootfs/ when done: not garbage (unpack checks the index after).
        const hex = n.split('.')[0]!;
        if (!liveHex.has(hex) && !(sub === 'rootfs' && this.unpacking.has(`sha256:${hex}`))) {
          await rm(join(this.root, sub, n), { recursive: true, force: true });
          removed++;
        }
      }
    }
    if (removed) this.log.info({ removed }, 'image garbage collected');
  }

  /**
   * What `dir` (the store by default) uses. A walk of the tree, so it is kept USAGE_TTL_MS, as
   * containerd's CRI keeps its snapshotter usage (collected every 10 s): the kubelet asks for it
   * often (ImageFsInfo, eviction). The store's own is walked again as soon as an image is added
   * or removed (the index's generation moved); concurrent callers share one walk.
   */
  fsUsage(dir = this.root): Promise<FsUsage> {
    const gen = dir === this.root ? this.index.generation : -1;
    const hit = this.usage.get(dir);
    if (hit && hit.gen === gen && performance.now() - hit.at < USAGE_TTL_MS) return hit.p;
    const p = (async () => {
      await mkdir(dir, { recursive: true });
      const { bytes, inodes } = dir === this.root ? await this.storeUsage() : await treeUsage(dir);
      return { timestampNs: BigInt(Date.now()) * 1_000_000n, mountpoint: mountPointOf(dir), usedBytes: bytes, inodesUsed: inodes };
    })();
    this.usage.set(dir, { gen, at: performance.now(), p });
    p.catch(() => this.usage.get(dir)?.p === p && this.usage.delete(dir)); // a failed walk is not kept
    return p;
  }

  private readonly usage = new Map<string, { gen: number; at: number; p: Promise<FsUsage> }>();

  /**
   * The store's usage: a walk of all but its rootfs trees, plus each tree's own, walked once. A
   * tree never changes once renamed into place (it is shared read-only), and walking them all
   * every time made each walk visit every file of every sandboxed pod's image (25k for a 550 MB
   * image). A tree is known by its path, inode and ctime (an inode is soon reused, but the rename
   * that puts a tree in place sets its ctime): one removed and unpacked again is walked again.
   * Trees being unpacked are in tmp/, walked each time.
   */
  private async storeUsage(): Promise<{ bytes: number; inodes: number }> {
    const trees = new Map<string, string>(); // path → which tree it is
    for (const name of await readdir(this.rootfsRoot).catch(() => [] as string[])) {
      const path = join(this.rootfsRoot, name);
      const st = await lstat(path).catch(() => undefined);
      if (st?.isDirectory()) trees.set(path, `${st.ino}:${st.ctimeMs}`);
    }
    const total = await treeUsage(this.root, { skip: new Set(trees.keys()) });
    for (const [path, known] of this.treeUsages) if (trees.get(path) !== known.id) this.treeUsages.delete(path);
    for (const [path, id] of trees) {
      let known = this.treeUsages.get(path);
      if (!known) {
        const entry = { id, p: treeUsage(path) };
        entry.p.catch(() => this.treeUsages.get(path) === entry && this.treeUsages.delete(path)); // a failed walk is not kept
        this.treeUsages.set(path, entry);
        known = entry;
      }
      const u = await known.p;
      total.bytes += u.bytes;
      total.inodes += u.inodes;
    }
    return total;
  }

  private readonly treeUsages = new Map<string, { id: string; p: Promise<{ bytes: number; inodes: number }> }>();
}
