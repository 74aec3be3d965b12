// Writes one blob from a stream to its temp file while its size and digest are checked, then
// renames it into place (blob-store.ts owns the names and shares a download among its callers).
// Runs where the bytes arrive: the blob download worker (blob-fetch-worker.ts) for layers, the
// main thread for what is in memory already.
import { open as openFile, rename, rm, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { VmletError } from '../errors.js';

export class DigestMismatch extends VmletError {
  constructor(msg: string) {
    super('internal', msg);
  }
}

/** Where a blob goes: `tmp` while it is written, `final` once checked. */
export interface BlobTarget {
  digest: string;
  size: number;
  tmp: string;
  final: string;
  /** A download that sends nothing for this long is given up. */
  idleMs: number;
}

/** What a layer scan following the download learns (layer-feed.ts's download side). */
export interface FeedSink {
  started(path: string, final: string): void;
  wrote(total: number): void;
  end(): void;
  failed(err: Error): void;
}

export interface Progress {
  (bytesDone: number): void;
}

/** Bytes gathered before a write to the blob's temp file. */
const WRITE_BATCH = 256 * 1024;

export async function writeBlob(src: Readable, t: BlobTarget, progress?: Progress, feed?: FeedSink): Promise<void> {
  const { digest, size, tmp, final } = t;
  const hash = createHash('sha256');
  let done = 0;
  const idle = setTimeout(() => src.destroy(new VmletError('unavailable', `blob ${digest}: no data for ${t.idleMs / 1000} s; download abandoned`)), t.idleMs);
  let fh: FileHandle | undefined;
  let writing: Promise<unknown> = Promise.resolve();
  let reading = false;
  try {
    fh = await openFile(tmp, 'wx', 0o444);
    feed?.started(tmp, final);
    let stored = 0;
    // The network's 16-64 KiB chunks are copied into one of two WRITE_BATCH buffers, one written
    // while the other fills: a chunk dies as soon as it is hashed and copied, instead of living
    // until its batch is written (fresh buffers pressing on V8 make it mark the whole heap:
    // bench/README.md, pull.ts).
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
