// A layer's tar, entry by entry (the stored blob, or this pull's download as it grows):
// decompressed, counted against the image's uncompressed cap, its diff_id checked at the end.
// Both rootfs builders read layers this way: the tree (rootfs.ts) and the EROFS image
// (erofs-layer-read.ts), also when the pull builds it (erofs-scan.ts).
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import { VmletError } from '../errors.js';
import { HostileLayerError, decompressor, layerSource, tarCounter, type LayerRef, type ScanLimits } from './layer-tar.js';

/**
 * Hands each entry of `layer` to `each`, one at a time in tar order (a body stays buffered, and
 * the parser applies backpressure, until its turn comes). The first error, from `each` or the
 * stream, ends the read; fs errors (ENOSPC, ENAMETOOLONG…) become INTERNAL errors saying which
 * layer and entry (`doing`: what `each` was at, for that message).
 */
export async function eachLayerEntry(layer: LayerRef, limits: ScanLimits, budget: { imageBytes: number }, doing: string, each: (entry: ReadEntry) => Promise<void>): Promise<void> {
  const bad = (why: string) => new HostileLayerError(layer.digest, why);
  let chain: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  let current: ReadEntry | undefined;
  const parser = new Parser({
    strict: true,
    noResume: true,
    // The stream is already decompressed: no second guess at its format.
    zstd: false,
    brotli: false,
    onReadEntry: (entry: ReadEntry) => {
      chain = chain.then(async () => {
        if (failure) return void entry.resume();
        current = entry;
        try {
          await each(entry);
        } catch (err) {
          failure ??= err instanceof VmletError ? err : new VmletError('internal', `image layer ${layer.digest}: ${doing} ${JSON.stringify(entry.path)}: ${(err as Error).message}`);
          entry.resume();
          parser.abort(failure);
        } finally {
          current = undefined;
        }
      });
    },
  });
  // The last entries may fail after the parser has ended (and the pipeline stopped listening).
  parser.on('error', () => undefined);
  const count = tarCounter((n) => (budget.imageBytes += n), limits.maxImageBytes, bad);
  try {
    await pipeline(await layerSource(layer), decompressor(layer.mediaType, layer.digest), count.stream, parser);
  } catch (err) {
    failure ??= err instanceof VmletError ? err : bad((err as Error).message);
    // A body cut short by a broken stream would never end: end it so its reader stops (destroy
    // would not wake a reader that has not started iterating yet).
    current?.end();
  }
  await chain;
  // A download that failed mid-way fails the read with its own error (e.g. UNAVAILABLE), not as
  // a bad layer; and bytes read live are trusted only once the blob's digest checked out.
  await layer.ready;
  if (failure) throw failure;
  count.checkDiffId(layer);
}
