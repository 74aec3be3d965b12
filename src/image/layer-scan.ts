// Reads an image's layers in order (decompressing, checking each diff_id) and keeps only what a
// VM needs: regular files under /disk/ (containerDisk) and under the kernel/initrd directories.
// Nothing is ever written to an entry's own path: wanted files go to temp files named by us, so
// a hostile layer cannot write outside the store. Hostile layers still get a clear error:
// '..' in paths or hard-link targets, entries reached through a symlink, device nodes, and
// entry or image sizes past the limits (a kept hard link is a copy and is charged as one).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { Decompress } from 'fzstd';
import { VmletError } from '../errors.js';
import type { LayerFeed } from './layer-feed.js';

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

export interface ScanResult {
  /** In-image path (no leading slash) → temp file holding its content, for wanted regular files. */
  files: Map<string, string>;
  /** In-image path → symlink target, for every symlink in the image. */
  symlinks: Map<string, string>;
  /** Regular files under disk/ in the final image. */
  diskFiles: string[];
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

/** The stream that turns a stored layer blob of `mediaType` into its tar. */
export function decompressor(mediaType: string, layer: string): Transform | PassThrough {
  if (/tar\+gzip$|tar\.gzip$|tar\.gz$/.test(mediaType) || mediaType.endsWith('.diff.tar.gzip')) return createGunzip({ chunkSize: INFLATE_CHUNK });
  if (/tar\+zstd$/.test(mediaType)) return zstdStream();
  if (/\.tar$|layer\.v1\.tar$|diff\.tar$/.test(mediaType)) return new PassThrough();
  throw new VmletError('invalid-argument', `image layer ${layer}: unsupported media type ${mediaType}`);
}

function zstdStream(): Transform {
  let out: Transform;
  const d = new Decompress((chunk: Uint8Array) => out.push(Buffer.from(chunk)));
  out = new Transform({
    transform(chunk: Buffer, _e, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  return out;
}

/**
 * A layer's tar as it passes: its bytes counted against the image's uncompressed cap (gzip bombs;
 * `budget` is shared by the image's layers) and hashed, for the config's diff_id.
 */
export function tarCounter(budget: { imageBytes: number }, maxImageBytes: number, bad: (why: string) => Error): { stream: Transform; checkDiffId: (layer: LayerRef) => void } {
  const hash = createHash('sha256');
  const stream = new Transform({
    transform(chunk: Buffer, _e, cb) {
      budget.imageBytes += chunk.length;
      if (budget.imageBytes > maxImageBytes) return cb(bad(`uncompressed layers exceed ${maxImageBytes} bytes`));
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
type Op =
  | { kind: 'opaque' | 'whiteout' | 'dir' | 'other'; raw: string; path: string }
  | { kind: 'symlink' | 'link'; raw: string; path: string; target: string }
  | { kind: 'file'; raw: string; path: string; tmp: string; size: number };

interface LayerRead {
  ops: Op[];
  /** Temp files it wrote (the wanted regular files' contents). */
  tmps: string[];
}

/** Totals shared by the layers read side by side: limits hold for the image, whatever the order. */
interface Budget {
  imageBytes: number;
  written: number;
}

/**
 * Layers are read side by side (decompression, diff_id, tar walk, wanted files written), each as
 * it downloads (layer-feed.ts); what each found is applied in layer order, as the image's
 * filesystem is built (whiteouts, symlink checks, hard links). A layer that fails fails the scan
 * once the layers below it are applied, with nothing left behind.
 * @param wanted   decides which in-image regular files to keep (e.g. under disk/ or boot/)
 * @param tmpDir   where kept files are written (same filesystem as their final place)
 */
export async function scanLayers(layers: LayerRef[], wanted: (path: string) => boolean, tmpDir: string, limits: ScanLimits): Promise<ScanResult> {
  const files = new Map<string, string>();
  const symlinks = new Map<string, string>();
  /** Temp file → its size, so a hard link to it is charged what its copy writes. */
  const sizes = new Map<string, number>();
  const budget: Budget = { imageBytes: 0, written: 0 };
  const reads = layers.map((layer) => readOneLayer(layer, wanted, tmpDir, limits, budget));
  for (const r of reads) r.catch(() => undefined); // awaited in order below; not unhandled meanwhile
  const removals: Promise<void>[] = [];
  try {
    for (const [i, layer] of layers.entries()) {
      const read = await reads[i]!;
      await applyLayer(layer, read, { files, symlinks, sizes, removals, budget, wanted, tmpDir, limits });
    }
  } catch (err) {
    // Every read has ended (no write in flight) before its files go.
    for (const r of await Promise.allSettled(reads)) if (r.status === 'fulfilled') for (const tmp of r.value.tmps) await rm(tmp, { force: true });
    for (const tmp of files.values()) await rm(tmp, { force: true });
    await Promise.allSettled(removals);
    throw err;
  }
  await Promise.all(removals);
  const diskFiles = [...files.keys()].filter((p) => p.startsWith('disk/')).sort();
  return { files, symlinks, diskFiles };
}

/** One layer read whole: its checks that need no other layer, its wanted files written, its diff_id checked. */
async function readOneLayer(layer: LayerRef, wanted: (path: string) => boolean, tmpDir: string, limits: ScanLimits, budget: Budget): Promise<LayerRead> {
  // This pull's download as it grows; else the stored blob, once checked. A layer whose download
  // never starts (an earlier one failed) has its `ready` rejected: that ends the wait too.
  const live = layer.feed && (await Promise.race([layer.feed.source(), layer.ready?.then(() => layer.feed!.source())].filter((p) => p !== undefined)));
  const source = live ?? (await layer.ready, readLayer(layer.path));
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
    const dir = posix.dirname(path) === '.' ? '' : posix.dirname(path);
    if (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice') throw bad(`device node ${JSON.stringify(raw)}`);
    if (entry.size > limits.maxEntryBytes) throw bad(`entry ${JSON.stringify(raw)} is ${entry.size} bytes (limit ${limits.maxEntryBytes})`);
    const target = entry.type === 'Link' ? normalizeEntryPath(entry.linkpath ?? '', bad) : undefined;
    if (base === '.wh..wh..opq') ops.push({ kind: 'opaque', raw, path: dir });
    else if (base.startsWith('.wh.')) ops.push({ kind: 'whiteout', raw, path: posix.join(dir, base.slice(4)) });
    else if (entry.type === 'SymbolicLink') ops.push({ kind: 'symlink', raw, path, target: entry.linkpath ?? '' });
    else if (entry.type === 'Link') ops.push({ kind: 'link', raw, path, target: target! });
    else if (entry.type === 'Directory') ops.push({ kind: 'dir', raw, path });
    else if ((entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') && wanted(path)) {
      budget.written += entry.size;
      if (budget.written > limits.writableBytes) throw full(`needs more than the ${limits.writableBytes} bytes free in the image store`);
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
  const count = tarCounter(budget, limits.maxImageBytes, bad);
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

interface ImageState {
  files: Map<string, string>;
  symlinks: Map<string, string>;
  sizes: Map<string, number>;
  removals: Promise<void>[];
  budget: Budget;
  wanted: (path: string) => boolean;
  tmpDir: string;
  limits: ScanLimits;
}

/** One layer's entries onto the image built so far, in tar order: what depends on the layers below. */
async function applyLayer(layer: LayerRef, read: LayerRead, st: ImageState): Promise<void> {
  const { files, symlinks, sizes, limits } = st;
  const bad = (why: string) => new HostileLayerError(layer.digest, why);
  const full = (why: string) => new StoreFullError(layer.digest, why);
  const dirsOfSymlinks = (p: string): string | undefined => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (symlinks.has(prefix)) return prefix;
    }
    return undefined;
  };
  const drop = (p: string, opts: { children: boolean; keep?: Set<string> }) => {
    for (const map of [files, symlinks]) {
      for (const k of [...map.keys()]) {
        const hit = k === p || (opts.children && (p === '' || k.startsWith(p + '/')));
        if (hit && !opts.keep?.has(k)) {
          if (map === files) st.removals.push(rm(map.get(k)!, { force: true }));
          map.delete(k);
        }
      }
    }
  };
  const addedHere = new Set<string>();
  const copies: Array<[src: string, dst: string]> = [];
  // Temp files of this layer not (or no longer) in the image: removed once it is applied.
  const unclaimed = new Set(read.tmps);
  for (const op of read.ops) {
    const entryPath = op.kind === 'opaque' || op.kind === 'whiteout' ? normalizeEntryPath(op.raw, bad) : op.path;
    const through = dirsOfSymlinks(entryPath);
    if (through !== undefined) throw bad(`entry ${JSON.stringify(op.raw)} goes through symlink ${JSON.stringify(through)}`);
    if (op.kind === 'opaque') {
      // Opaque dir: hide what lower layers put there, keep this layer's own entries.
      drop(op.path, { children: true, keep: addedHere });
      continue;
    }
    if (op.kind === 'whiteout') {
      drop(op.path, { children: true });
      continue;
    }
    addedHere.add(op.path);
    // A directory entry keeps what lower layers put inside it; anything else replaces the path.
    drop(op.path, { children: op.kind !== 'dir' });
    if (op.kind === 'symlink') {
      symlinks.set(op.path, op.target);
    } else if (op.kind === 'link' && st.wanted(op.path)) {
      const src = files.get(op.target);
      if (src) {
        // A kept link is a copy: its bytes are written like a file's (five links to a 1 MiB
        // file write 6 MiB), so they count against the same limits.
        st.budget.written += sizes.get(src) ?? 0;
        if (st.budget.written > limits.writableBytes) throw full(`needs more than the ${limits.writableBytes} bytes free in the image store (hard link ${JSON.stringify(op.raw)} counts as a copy)`);
        if (st.budget.written > limits.maxImageBytes) throw bad(`kept files total more than ${limits.maxImageBytes} bytes (hard link ${JSON.stringify(op.raw)} counts as a copy)`);
        const tmp = join(st.tmpDir, `scan-${randomBytes(6).toString('hex')}`);
        copies.push([src, tmp]);
        sizes.set(tmp, sizes.get(src) ?? 0);
        files.set(op.path, tmp);
      }
    } else if (op.kind === 'file') {
      sizes.set(op.tmp, op.size);
      files.set(op.path, op.tmp);
      unclaimed.delete(op.tmp);
    }
  }
  for (const [src, dst] of copies) await pipeline(createReadStream(src), createWriteStream(dst, { mode: 0o600 }));
  for (const tmp of unclaimed) st.removals.push(rm(tmp, { force: true }));
}

/** Resolves an in-image path through the image's symlinks, staying inside the image root. */
export function resolveInImage(path: string, symlinks: Map<string, string>, maxHops = 40): string | undefined {
  let parts = normalizeEntryPath(path, (why) => new VmletError('invalid-argument', why)).split('/');
  for (let hops = 0; hops <= maxHops; hops++) {
    let changed = false;
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const target = symlinks.get(prefix);
      if (target === undefined) continue;
      // Absolute targets are relative to the image root; '..' stops at the root.
      const base = target.startsWith('/') ? [] : parts.slice(0, i - 1);
      const joined: string[] = [];
      for (const p of [...base, ...target.split('/'), ...parts.slice(i)]) {
        if (p === '' || p === '.') continue;
        if (p === '..') joined.pop();
        else joined.push(p);
      }
      parts = joined;
      changed = true;
      break;
    }
    if (!changed) return parts.join('/');
  }
  return undefined;
}
