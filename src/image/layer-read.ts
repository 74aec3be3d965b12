// One layer read whole, in the scan worker (scan-worker.ts): decompressed as it downloads
// (layer-feed.ts), walked as tar for what needs no other layer, its wanted files written to temp
// files, its diff_id checked. What depends on the layers below is applied in order afterwards, on
// the main thread (layer-scan.ts).
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import { VmletError } from '../errors.js';
import { HostileLayerError, StoreFullError, decompressor, layerSource, normalizeEntryPath, parentOf, tarCounter, type LayerRead, type LayerRef, type Op, type ScanBudget, type ScanLimits } from './layer-tar.js';

/** One layer read whole: its checks that need no other layer, its wanted files written, its diff_id checked. */
export async function readOneLayer(layer: LayerRef, wanted: (path: string) => boolean, tmpDir: string, limits: ScanLimits, budget: ScanBudget): Promise<LayerRead> {
  const source = await layerSource(layer);
  const bad = (why: string) => new HostileLayerError(layer.digest, why);
  const full = (why: string) => new StoreFullError(layer.digest, why);
  const ops: Op[] = [];
  const tmps: string[] = [];
  const writes: Promise<void>[] = [];
  const streams: WriteStream[] = [];
  let failure: Error | undefined;
  const parser = new Parser({
    strict: true,
    noResume: true,
    onReadEntry: (entry: ReadEntry) => {
      try {
        handle(entry);
      } catch (err) {
        failure ??= err as Error;
        entry.resume();
        parser.abort(err as Error);
      }
    },
  });
  const handle = (entry: ReadEntry) => {
    const raw = entry.path;
    const path = normalizeEntryPath(raw, bad);
    const base = posix.basename(path);
    const dir = parentOf(path);
    if (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice') throw bad(`device node ${JSON.stringify(raw)}`);
    if (entry.size > limits.maxEntryBytes) throw bad(`entry ${JSON.stringify(raw)} is ${entry.size} bytes (limit ${limits.maxEntryBytes})`);
    const target = entry.type === 'Link' ? normalizeEntryPath(entry.linkpath ?? '', bad) : undefined;
    if (base === '.wh..wh..opq') ops.push({ kind: 'opaque', raw, path: dir });
    else if (base.startsWith('.wh.')) ops.push({ kind: 'whiteout', raw, path: posix.join(dir, base.slice(4)) });
    else if (entry.type === 'SymbolicLink') ops.push({ kind: 'symlink', raw, path, target: entry.linkpath ?? '' });
    else if (entry.type === 'Link') ops.push({ kind: 'link', raw, path, target: target! });
    else if (entry.type === 'Directory') ops.push({ kind: 'dir', raw, path });
    else if ((entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') && wanted(path)) {
      if (budget.write(entry.size) > limits.writableBytes) throw full(`needs more than the ${limits.writableBytes} bytes free in the image store`);
      const tmp = join(tmpDir, `scan-${randomBytes(6).toString('hex')}`);
      tmps.push(tmp);
      ops.push({ kind: 'file', raw, path, tmp, size: entry.size });
      const ws = createWriteStream(tmp, { mode: 0o600 });
      streams.push(ws);
      writes.push(
        new Promise<void>((resolve, reject) => {
          ws.once('close', resolve);
          ws.once('error', reject);
        }),
      );
      entry.pipe(ws);
      return;
    } else ops.push({ kind: 'other', raw, path }); // a file not kept, a fifo: it replaces what was at its path
    entry.resume();
  };
  const count = tarCounter((n) => budget.read(n), limits.maxImageBytes, bad);
  try {
    try {
      await pipeline(source, decompressor(layer.mediaType, layer.digest), count.stream, parser);
    } catch (err) {
      // A download that failed mid-way fails the read: its own error (e.g. UNAVAILABLE), not a bad layer.
      await layer.ready;
      throw failure ?? (err instanceof VmletError ? err : bad((err as Error).message));
    }
    if (failure) throw failure;
    await Promise.all(writes);
    // Live bytes are trusted only once the blob's digest checked out.
    await layer.ready;
    count.checkDiffId(layer);
    return { ops, tmps };
  } catch (err) {
    // An aborted tar walk leaves its current entry's file half fed: closed here, then removed.
    for (const ws of streams) ws.destroy();
    await Promise.allSettled(writes);
    for (const tmp of tmps) await rm(tmp, { force: true });
    throw err;
  }
}
