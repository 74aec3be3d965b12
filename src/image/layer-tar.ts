// What a layer read needs on either side of the scan worker (scan-worker.ts): the layer's
// description, the scan's limits and shared totals, what one layer's read found, the hostile-layer
// errors, and the streams that turn a stored blob into its tar.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { PassThrough, Transform, type Duplex, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { VmletError } from '../errors.js';
import type { LayerFeed } from './layer-feed.js';
import { zstdDecompressor } from './zstd.js';

export interface LayerRef {
  digest: string;
  mediaType: string;
  /** Path of the stored (compressed) blob. */
  path: string;
  /** Expected digest of the uncompressed tar (config rootfs.diff_ids[i]). */
  diffId?: string;
  /** Settles once the blob is in place (it may still be downloading when the scan starts). */
  ready?: Promise<void>;
  /** Its bytes while this pull downloads it (layer-feed.ts). */
  feed?: LayerFeed;
  /** Its compressed size (the manifest's), when known: small images are read on the calling thread. */
  size?: number;
}

/**
 * Images whose layers add up to at most this many (compressed) bytes are downloaded and read on
 * the main thread: starting the two worker threads (blob-fetch-worker.ts, scan-worker.ts) and
 * compiling their code costs ~0.4 s on a 2-core machine when they are not running already (they
 * end after a quiet minute), where a 23 MiB kernel image takes ~0.3 s to pull. Larger ones go
 * to the workers, whose start is then small against the pull, and keep their bytes off the
 * thread that answers the kubelet.
 */
export const SMALL_IMAGE_BYTES = 32 * 1024 * 1024;

/** Whether layers of these sizes make a small image (SMALL_IMAGE_BYTES); an unknown size is not small. */
export function isSmallImage(sizes: Array<number | undefined>): boolean {
  let total = 0;
  for (const s of sizes) {
    if (s === undefined) return false;
    total += s;
  }
  return total <= SMALL_IMAGE_BYTES;
}

export interface ScanLimits {
  /** Largest single file an image may carry. */
  maxEntryBytes: number;
  /**
   * Largest total of uncompressed layer bytes read for one image (gzip bombs), and of the bytes
   * its files (hard links counted at their target's size) take once kept or unpacked.
   */
  maxImageBytes: number;
  /** Bytes that may still be written to the store's filesystem. */
  writableBytes: number;
}

/**
 * Which in-image regular files a scan keeps: those starting with one of `prefixes`, and those at
 * or under one of `dirs`. Data, not a function, so the scan worker can be told.
 */
export interface Wanted {
  prefixes?: string[];
  dirs?: string[];
}

export function wantedBy(w: Wanted): (path: string) => boolean {
  const prefixes = w.prefixes ?? [];
  const dirs = w.dirs ?? [];
  return (p) => prefixes.some((x) => p.startsWith(x)) || dirs.some((d) => p === d || p.startsWith(d + '/'));
}

/**
 * Totals of one image's scan, shared by its layers read side by side in the worker and by the
 * in-order pass on the main thread (a kept hard link is a copy): limits hold for the image,
 * whatever the order. Kept in shared memory, added to atomically.
 */
export class ScanBudget {
  private readonly cells: BigInt64Array;
  constructor(readonly memory = new SharedArrayBuffer(16)) {
    this.cells = new BigInt64Array(memory);
  }
  /** Uncompressed layer bytes read: returns the new total. */
  read(bytes: number): number {
    return Number(Atomics.add(this.cells, 0, BigInt(bytes))) + bytes;
  }
  /** Bytes of kept files (and their copies): returns the new total. */
  write(bytes: number): number {
    return Number(Atomics.add(this.cells, 1, BigInt(bytes))) + bytes;
  }
}

export class HostileLayerError extends VmletError {
  constructor(layer: string, msg: string) {
    super('invalid-argument', `image layer ${layer} rejected: ${msg}`);
  }
}

/** A layer that needs more than the image store may still write: the node's disk, not the image, is short (RESOURCE_EXHAUSTED). */
export class StoreFullError extends VmletError {
  constructor(layer: string, msg: string) {
    super('resource-exhausted', `image layer ${layer} rejected: ${msg}`);
  }
}

/** The directory holding in-image path `p` ('' for the root and its entries). */
export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

/** Normalises a tar path to in-image form: no leading '/' or './', no trailing '/'. Throws on '..'. */
export function normalizeEntryPath(raw: string, onBad: (why: string) => Error): string {
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw onBad(`path ${JSON.stringify(raw)} contains '..'`);
  return parts.join('/');
}

/**
 * Chunk sizes of a layer read: each zlib chunk is a round trip to the thread pool and each read
 * one to the disk, and with Node's defaults (16 KiB, 64 KiB) a 200 MB image's scan spent most of
 * its 1.5-1.9 s waiting on them; with these it takes 0.46-0.53 s (4 gzip layers of random data,
 * a script timing scanLayers on the stored blobs; bench/pull.ts shows it in a pull).
 */
const INFLATE_CHUNK = 256 * 1024;
const READ_CHUNK = 1 << 20;

/** A stored layer blob, read in READ_CHUNK pieces. */
export function readLayer(path: string): Readable {
  return createReadStream(path, { highWaterMark: READ_CHUNK });
}

/**
 * A layer's compressed bytes: this pull's download as it grows (layer-feed.ts), else the stored
 * blob once checked. A layer whose download never starts (an earlier one failed) has its `ready`
 * rejected: that ends the wait too. Live bytes are trusted only once `ready` settles (the blob's
 * digest): the reader awaits it before its verdict.
 */
export async function layerSource(layer: LayerRef): Promise<Readable> {
  const live = layer.feed && (await Promise.race([layer.feed.source(), layer.ready?.then(() => layer.feed!.source())].filter((p) => p !== undefined)));
  return live ?? (await layer.ready, readLayer(layer.path));
}

/** The stream that turns a stored layer blob of `mediaType` into its tar. */
export function decompressor(mediaType: string, layer: string): Duplex {
  if (/tar\+gzip$|tar\.gzip$|tar\.gz$/.test(mediaType) || mediaType.endsWith('.diff.tar.gzip')) return createGunzip({ chunkSize: INFLATE_CHUNK });
  if (/tar\+zstd$/.test(mediaType)) return zstdDecompressor((why) => new HostileLayerError(layer, why));
  if (/\.tar$|layer\.v1\.tar$|diff\.tar$/.test(mediaType)) return new PassThrough();
  throw new VmletError('invalid-argument', `image layer ${layer}: unsupported media type ${mediaType}`);
}

/**
 * A layer's tar as it passes: its bytes counted against the image's uncompressed cap (gzip bombs;
 * `charge` adds them to a total shared by the image's layers, returning it) and hashed, for the
 * config's diff_id.
 */
export function tarCounter(charge: (bytes: number) => number, maxImageBytes: number, bad: (why: string) => Error): { stream: Transform; checkDiffId: (layer: LayerRef) => void } {
  const hash = createHash('sha256');
  const stream = new Transform({
    transform(chunk: Buffer, _e, cb) {
      if (charge(chunk.length) > maxImageBytes) return cb(bad(`uncompressed layers exceed ${maxImageBytes} bytes`));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const checkDiffId = (layer: LayerRef) => {
    const diffId = `sha256:${hash.digest('hex')}`;
    if (layer.diffId && diffId !== layer.diffId) {
      throw new VmletError('invalid-argument', `image layer ${layer.digest}: uncompressed digest ${diffId} does not match the config's diff_id ${layer.diffId}`);
    }
  };
  return { stream, checkDiffId };
}

/**
 * What reading one layer found, in tar order, for the in-order pass (applyLayer): each entry's
 * path and kind, and the temp file of each wanted regular file.
 */
export type Op =
  | { kind: 'opaque' | 'whiteout' | 'dir' | 'other'; raw: string; path: string }
  | { kind: 'symlink' | 'link'; raw: string; path: string; target: string }
  | { kind: 'file'; raw: string; path: string; tmp: string; size: number };

export interface LayerRead {
  ops: Op[];
  /** Temp files it wrote (the wanted regular files' contents). */
  tmps: string[];
}
