// The index of pulled images: one JSON file rewritten atomically on every change, so it is
// never half-written and survives restarts. Lookups accept what kubelet and crictl pass:
// the id (sha256:…), its bare hex or a unique hex prefix, a tag, a digest reference, a short name.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite } from '../util/atomic-write.js';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import { formatReference, parseReference, repoName } from './reference.js';
import type { RunConfig } from './image-config.js';

export type BootKind = 'containerdisk' | 'kernel' | 'rootfs';

export interface BootInfo {
  kind: BootKind;
  /** containerDisk: the read-only base disk. */
  disk?: { path: string; format: 'qcow2' | 'raw'; virtualSize: number };
  /** kernel boot: extracted files and the image's command line. */
  kernel?: {
    kernel: string;
    initrd?: string;
    cmdline?: string;
    /** The ELF unpacked from a bzImage kernel, booted through PVH (image/kernel-pvh.ts). */
    pvh?: string;
    /** Why there is none, for a kernel that is a bzImage (said at the pull and by verbose image status). */
    pvhNot?: string;
  };
}

export interface LayerInfo {
  digest: string;
  size: number;
  mediaType: string;
}

export interface ImageRecord {
  /** sha256 digest of the image config. */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Bytes of content as pulled: config + compressed layers. */
  size: number;
  pinned: boolean;
  /** Digest of the platform manifest (the index digest, when any, is in repoDigests). */
  manifestDigest: string;
  /** Blobs this image holds in the store: manifests (index and platform), config, layers. */
  blobs: string[];
  layers: LayerInfo[];
  /** config.User, as written in the image. */
  user: string;
  labels: Record<string, string>;
  /** How to run it as a container (image-config.ts). Absent on records written before vmlet kept it: ImageStore.runConfig reads the config blob then. */
  runConfig?: RunConfig;
  boot: BootInfo;
  pulledAt: string;
}

interface IndexFile {
  version: 1;
  images: ImageRecord[];
}

export class ImageIndex {
  private images = new Map<string, ImageRecord>();
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly root: string,
    private readonly log: Logger,
  ) {}

  private get file(): string {
    return join(this.root, 'index.json');
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      const doc = JSON.parse(text) as IndexFile;
      for (const rec of doc.images) this.images.set(rec.id, rec);
    } catch (err) {
      // Writes are atomic, so this is damage from outside: say so and start empty rather than die.
      this.log.error({ file: this.file, err: (err as Error).message }, 'image index unreadable; starting with no images');
    }
  }

  /** Bumped by every save: the store's cached usage (fsUsage) is stale once it moved. */
  generation = 0;

  /** Persists the current state; calls are serialised so the file always holds a whole state. */
  save(): Promise<void> {
    this.generation++;
    const next = this.saving.then(() =>
      atomicWrite(this.file, JSON.stringify({ version: 1, images: [...this.images.values()] } satisfies IndexFile, null, 1) + '\n'),
    );
    this.saving = next.catch(() => undefined);
    return next;
  }

  all(): ImageRecord[] {
    return [...this.images.values()];
  }

  get(id: string): ImageRecord | undefined {
    return this.images.get(id);
  }

  /** Adds or merges an image; a tag moves here from whichever image had it before. */
  put(rec: ImageRecord): ImageRecord {
    for (const other of this.images.values()) {
      if (other.id === rec.id) continue;
      other.repoTags = other.repoTags.filter((t) => !rec.repoTags.includes(t));
    }
    const existing = this.images.get(rec.id);
    if (existing) {
      existing.repoTags = [...new Set([...existing.repoTags, ...rec.repoTags])];
      existing.repoDigests = [...new Set([...existing.repoDigests, ...rec.repoDigests])];
      existing.blobs = [...new Set([...existing.blobs, ...rec.blobs])];
      existing.pinned ||= rec.pinned;
      if (!existing.runConfig && rec.runConfig) existing.runConfig = rec.runConfig;
      return existing;
    }
    this.images.set(rec.id, rec);
    return rec;
  }

  delete(id: string): void {
    this.images.delete(id);
  }

  /**
   * Finds an image by id, hex id or unique hex prefix (≥ 6), tag, digest reference or short
   * name. Undefined when nothing matches; InvalidArgument when a prefix is ambiguous.
   */
  find(name: string): ImageRecord | undefined {
    const hex = name.startsWith('sha256:') ? name.slice(7) : name;
    if (/^[a-f0-9]{64}$/.test(hex)) {
      const hit = this.images.get(`sha256:${hex}`);
      if (hit) return hit;
    } else if (/^[a-f0-9]{6,63}$/.test(hex)) {
      const hits = this.all().filter((r) => r.id.slice(7).startsWith(hex));
      if (hits.length > 1) throw new VmletError('invalid-argument', `image id prefix ${hex} is ambiguous: matches ${hits.length} images`);
      if (hits.length === 1) return hits[0];
    }
    let ref;
    try {
      ref = parseReference(name);
    } catch {
      return undefined;
    }
    if (ref.digest) {
      const wanted = `${repoName(ref)}@${ref.digest}`;
      return this.all().find((r) => r.repoDigests.includes(wanted));
    }
    const tag = formatReference(ref);
    return this.all().find((r) => r.repoTags.includes(tag));
  }
}
