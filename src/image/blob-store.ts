// Content-addressed blobs under <root>/sha256/<hex>. A blob is streamed to a temp file while its
// digest and size are checked, and renamed into place only when both match (blob-write.ts): a
// failed or interrupted download never leaves a visible file. Concurrent fetches of one digest
// share one.
import { mkdir, rm, stat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { VmletError } from '../errors.js';
import { isDigest } from './reference.js';
import { writeBlob, type BlobTarget, type FeedSink, type Progress } from './blob-write.js';

/** A download that sends nothing for this long is given up (the registry or network stalled). */
const IDLE_MS = 60_000;

export class BlobStore {
  private inflight = new Map<string, Promise<string>>();

  constructor(
    readonly root: string,
    private readonly idleMs = IDLE_MS,
  ) {}

  get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  async init(): Promise<void> {
    await mkdir(join(this.root, 'sha256'), { recursive: true });
    // Leftovers of a run that died mid-download: never referenced, safe to drop.
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  path(digest: string): string {
    if (!isDigest(digest)) throw new VmletError('invalid-argument', `not a sha256 digest: ${digest}`);
    return join(this.root, 'sha256', digest.slice('sha256:'.length));
  }

  async has(digest: string, size?: number): Promise<boolean> {
    try {
      const st = await stat(this.path(digest));
      return size === undefined || st.size === size;
    } catch {
      return false;
    }
  }

  async read(digest: string): Promise<Buffer> {
    return readFile(this.path(digest));
  }

  /**
   * Stores a blob from `open()` unless present. Returns its path. `open` is called at most once
   * per concurrent set of callers for the same digest.
   */
  async ensure(digest: string, size: number, open: () => Promise<Readable>, progress?: Progress, feed?: FeedSink): Promise<string> {
    return this.once(digest, size, async (t) => writeBlob(await open(), t, progress, feed));
  }

  /** Stores bytes already in memory (manifests, configs), after checking them. */
  async put(digest: string, data: Buffer): Promise<string> {
    return this.ensure(digest, data.length, async () => Readable.from([data]));
  }

  /**
   * Stores a blob that another thread downloads: `download` writes it to the target's temp file,
   * checks it and renames it into place (blob-write.ts), or fails. The temp file is removed here
   * too, as a thread that died mid-write could not.
   */
  async fetch(digest: string, size: number, download: (t: BlobTarget) => Promise<void>): Promise<string> {
    return this.once(digest, size, async (t) => {
      try {
        await download(t);
      } catch (err) {
        await rm(t.tmp, { force: true });
        throw err;
      }
    });
  }

  /** The blob's path once `make` stored it, unless present; one `make` per digest at a time. */
  private async once(digest: string, size: number, make: (t: BlobTarget) => Promise<void>): Promise<string> {
    const final = this.path(digest);
    if (await this.has(digest, size)) return final;
    let p = this.inflight.get(digest);
    if (!p) {
      const t: BlobTarget = { digest, size, tmp: join(this.tmpDir, `${digest.slice(7, 19)}.${randomBytes(4).toString('hex')}`), final, idleMs: this.idleMs };
      p = make(t)
        .then(() => final)
        .finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  async list(): Promise<string[]> {
    return (await readdir(join(this.root, 'sha256'))).filter((h) => /^[a-f0-9]{64}$/.test(h)).map((h) => `sha256:${h}`);
  }
}
