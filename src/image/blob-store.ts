// Content-addressed blobs under <root>/sha256/<hex>. A blob is streamed to a temp file while its
// digest and size are checked, and renamed into place only when both match: a failed or
// interrupted download never leaves a visible file. Concurrent fetches of one digest share one.
import { mkdir, open as openFile, rename, rm, stat, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { VmletError } from '../errors.js';
import { isDigest } from './reference.js';
import type { LayerFeed } from './layer-feed.js';

export class DigestMismatch extends VmletError {
  constructor(msg: string) {
    super('internal', msg);
  }
}

export interface Progress {
  (bytesDone: number): void;
}

/** Bytes gathered before a write to the blob's temp file. */
const WRITE_BATCH = 256 * 1024;

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
  async ensure(digest: string, size: number, open: () => Promise<Readable>, progress?: Progress, feed?: LayerFeed): Promise<string> {
    const final = this.path(digest);
    if (await this.has(digest, size)) return final;
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.write(digest, size, open, progress, feed).finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  /** Stores bytes already in memory (manifests, configs), after checking them. */
  async put(digest: string, data: Buffer): Promise<string> {
    return this.ensure(digest, data.length, async () => Readable.from([data]));
  }

  /** `feed` learns how far the temp file has grown, so the layer scan can read it meanwhile (layer-feed.ts). */
  private async write(digest: string, size: number, open: () => Promise<Readable>, progress?: Progress, feed?: LayerFeed): Promise<string> {
    const final = this.path(digest);
    const tmp = join(this.tmpDir, `${digest.slice(7, 19)}.${randomBytes(4).toString('hex')}`);
    const hash = createHash('sha256');
    let done = 0;
    const src = await open();
    const idle = setTimeout(() => src.destroy(new VmletError('unavailable', `blob ${digest}: no data for ${this.idleMs / 1000} s; download abandoned`)), this.idleMs);
    let fh: FileHandle | undefined;
    let writing: Promise<unknown> = Promise.resolve();
    let reading = false;
    try {
      fh = await openFile(tmp, 'wx', 0o444);
      feed?.started(tmp, final);
      let stored = 0;
      // The network's 16-64 KiB chunks are copied into one of two WRITE_BATCH buffers, one written
      // while the other fills: a chunk dies as soon as it is hashed and copied, instead of living
      // until its batch is written. Fresh buffers pressing on V8 make it mark the whole heap
      // (bench/README.md, pull.ts); this copy alone did not end those storms in the bench: the
      // scan's buffers did most of it (now in the scan worker).
      const batches = [Buffer.allocUnsafeSlow(WRITE_BATCH), Buffer.allocUnsafeSlow(WRITE_BATCH)];
      let fill = 0;
      const flush = async () => {
        await writing; // the write of the other buffer: it may be filled next
        const [buf, bytes] = [batches[0]!, fill];
        writing = fh!.write(buf, 0, bytes).then(({ bytesWritten }) => {
          // A short write (a full disk says so only on the next call) must not leave a truncated blob.
          if (bytesWritten !== bytes) throw new VmletError('resource-exhausted', `blob ${digest}: wrote ${bytesWritten} of ${bytes} bytes to ${tmp}`);
          feed?.wrote((stored += bytes));
        });
        writing.catch(() => undefined); // awaited by the next flush or below; not unhandled if the download fails first
        batches.reverse();
        fill = 0;
      };
      // Whether an error comes from the download's stream (reading it), not from what is done with it.
      reading = true;
      for await (const chunk of src as AsyncIterable<Buffer>) {
        reading = false;
        idle.refresh();
        done += chunk.length;
        if (done > size) throw new DigestMismatch(`blob ${digest}: more than the ${size} bytes the manifest declares`);
        hash.update(chunk);
        progress?.(done);
        for (let off = 0; off < chunk.length; ) {
          const n = chunk.copy(batches[0]!, fill, off);
          off += n;
          fill += n;
          if (fill === WRITE_BATCH) await flush();
        }
        reading = true;
      }
      reading = false;
      if (fill) await flush();
      await writing;
      feed?.end();
      await fh.close();
      fh = undefined;
      if (done !== size) throw new DigestMismatch(`blob ${digest}: got ${done} bytes, the manifest declares ${size}`);
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== digest) throw new DigestMismatch(`blob ${digest}: content digest is ${got}: corrupted or tampered`);
      await rename(tmp, final);
      return final;
    } catch (caught) {
      // A connection that breaks off mid-body (reset, closed early) is the registry or the
      // network failing: UNAVAILABLE (retried), not INTERNAL. The store's own write errors keep
      // their code (ENOSPC, …).
      const err = reading && !(caught instanceof VmletError) ? new VmletError('unavailable', `blob ${digest}: the download broke off after ${done} of ${size} bytes: ${(caught as Error).message}`, { cause: caught }) : caught;
      src.destroy();
      feed?.failed(err as Error);
      await writing.catch(() => undefined);
      await fh?.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    } finally {
      clearTimeout(idle);
    }
  }

  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  async list(): Promise<string[]> {
    return (await readdir(join(this.root, 'sha256'))).filter((h) => /^[a-f0-9]{64}$/.test(h)).map((h) => `sha256:${h}`);
  }
}
