// Reads an image's layers in order (decompressing, checking each diff_id) and keeps only what a
// VM needs: regular files under /disk/ (containerDisk) and under the kernel/initrd directories.
// Nothing is ever written to an entry's own path: wanted files go to temp files named by us, so
// a hostile layer cannot write outside the store. Hostile layers still get a clear error:
// '..' in paths or hard-link targets, entries reached through a symlink, device nodes, and
// entry or image sizes past the limits (a kept hard link is a copy and is charged as one).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
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
 * @param wanted   decides which in-image regular files to keep (e.g. under disk/ or boot/)
 * @param tmpDir   where kept files are written (same filesystem as their final place)
 */
export async function scanLayers(layers: LayerRef[], wanted: (path: string) => boolean, tmpDir: string, limits: ScanLimits): Promise<ScanResult> {
  const files = new Map<string, string>();
  const symlinks = new Map<string, string>();
  /** Temp file → its size, so a hard link to it is charged what its copy writes. */
  const sizes = new Map<string, number>();
  const dirsOfSymlinks = (p: string): string | undefined => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (symlinks.has(prefix)) return prefix;
    }
    return undefined;
  };
  const removals: Promise<void>[] = [];
  // Map changes happen synchronously in tar order (later checks depend on them); only file
  // contents arrive asynchronously, and are awaited at the end of each layer.
  const drop = (p: string, opts: { children: boolean; keep?: Set<string> }) => {
    for (const map of [files, symlinks]) {
      for (const k of [...map.keys()]) {
        const hit = k === p || (opts.children && (p === '' || k.startsWith(p + '/')));
        if (hit && !opts.keep?.has(k)) {
          if (map === files) removals.push(rm(map.get(k)!, { force: true }));
          map.delete(k);
        }
      }
    }
  };
  let imageBytes = 0;
  let written = 0;
  try {
    for (const layer of layers) {
      // This pull's download as it grows; else the stored blob, once checked.
      const source = (await layer.feed?.source()) ?? (await layer.ready, readLayer(layer.path));
      const bad = (why: string) => new HostileLayerError(layer.digest, why);
      const full = (why: string) => new StoreFullError(layer.digest, why);
      const addedHere = new Set<string>();
      const writes: Promise<void>[] = [];
      const copies: Array<[src: string, dst: string]> = [];
      const diffHash = createHash('sha256');
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
        const path = normalizeEntryPath(entry.path, bad);
        const base = posix.basename(path);
        const dir = posix.dirname(path) === '.' ? '' : posix.dirname(path);
        const through = dirsOfSymlinks(path);
        if (through !== undefined) throw bad(`entry ${JSON.stringify(entry.path)} goes through symlink ${JSON.stringify(through)}`);
        if (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice') throw bad(`device node ${JSON.stringify(entry.path)}`);
        if (entry.size > limits.maxEntryBytes) throw bad(`entry ${JSON.stringify(entry.path)} is ${entry.size} bytes (limit ${limits.maxEntryBytes})`);
        if (entry.type === 'Link' && entry.linkpath !== undefined) normalizeEntryPath(entry.linkpath, bad);
        if (base === '.wh..wh..opq') {
          // Opaque dir: hide what lower layers put there, keep this layer's own entries.
          drop(dir, { children: true, keep: addedHere });
          entry.resume();
          return;
        }
        if (base.startsWith('.wh.')) {
          drop(posix.join(dir, base.slice(4)), { children: true });
          entry.resume();
          return;
        }
        addedHere.add(path);
        // A directory entry keeps what lower layers put inside it; anything else replaces the path.
        drop(path, { children: entry.type !== 'Directory' });
        if (entry.type === 'SymbolicLink') {
          symlinks.set(path, entry.linkpath ?? '');
        } else if (entry.type === 'Link' && wanted(path)) {
          const src = files.get(normalizeEntryPath(entry.linkpath ?? '', bad));
          if (src) {
            // A kept link is a copy: its bytes are written like a file's (five links to a 1 MiB
            // file write 6 MiB), so they count against the same limits.
            written += sizes.get(src) ?? 0;
            if (written > limits.writableBytes) throw full(`needs more than the ${limits.writableBytes} bytes free in the image store (hard link ${JSON.stringify(entry.path)} counts as a copy)`);
            if (written > limits.maxImageBytes) throw bad(`kept files total more than ${limits.maxImageBytes} bytes (hard link ${JSON.stringify(entry.path)} counts as a copy)`);
            const tmp = join(tmpDir, `scan-${randomBytes(6).toString('hex')}`);
            copies.push([src, tmp]);
            sizes.set(tmp, sizes.get(src) ?? 0);
            files.set(path, tmp);
          }
        } else if ((entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') && wanted(path)) {
          written += entry.size;
          if (written > limits.writableBytes) throw full(`needs more than the ${limits.writableBytes} bytes free in the image store`);
          const tmp = join(tmpDir, `scan-${randomBytes(6).toString('hex')}`);
          sizes.set(tmp, entry.size);
          const ws = createWriteStream(tmp, { mode: 0o600 });
          writes.push(
            new Promise<void>((resolve, reject) => {
              ws.once('close', resolve);
              ws.once('error', reject);
            }),
          );
          files.set(path, tmp);
          entry.pipe(ws);
          return;
        }
        entry.resume();
      };
      const count = new Transform({
        transform(chunk: Buffer, _e, cb) {
          imageBytes += chunk.length;
          if (imageBytes > limits.maxImageBytes) return cb(bad(`uncompressed layers exceed ${limits.maxImageBytes} bytes`));
          diffHash.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(source, decompressor(layer.mediaType, layer.digest), count, parser);
      } catch (err) {
        // A download that failed mid-way fails the feed: its own error (e.g. UNAVAILABLE), not a bad layer.
        await layer.ready;
        throw failure ?? (err instanceof VmletError ? err : bad((err as Error).message));
      }
      // Live bytes are trusted only once the blob's digest checked out.
      await layer.ready;
      if (failure) throw failure;
      await Promise.all(writes);
      for (const [src, dst] of copies) await pipeline(createReadStream(src), createWriteStream(dst, { mode: 0o600 }));
      const diffId = `sha256:${diffHash.digest('hex')}`;
      if (layer.diffId && diffId !== layer.diffId) {
        throw new VmletError('invalid-argument', `image layer ${layer.digest}: uncompressed digest ${diffId} does not match the config's diff_id ${layer.diffId}`);
      }
    }
  } catch (err) {
    for (const tmp of files.values()) await rm(tmp, { force: true });
    await Promise.allSettled(removals);
    throw err;
  }
  await Promise.all(removals);
  const diskFiles = [...files.keys()].filter((p) => p.startsWith('disk/')).sort();
  return { files, symlinks, diskFiles };
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
