// The pull's layer scan (layer-scan.ts) and the image's EROFS rootfs (rootfs-erofs.ts) in one read
// of each layer, for an image the store expects to run as a sandboxed container (store.ts says
// which): each layer is decompressed, hashed and walked once, as it downloads, where the scan and
// later the first container's build each did it, one after the other. The scan's findings come
// from the EROFS read's: each entry's op, and a wanted file's bytes copied out of the image.
import { randomBytes } from 'node:crypto';
import { read } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { VmletError } from '../errors.js';
import { BLOCK, S_IFLNK, S_IFMT, S_IFREG, type ErofsNode } from './erofs-format.js';
import { readErofsLayer, type ErofsOp } from './erofs-layer-read.js';
import { StoreFullError, parentOf, type LayerRead, type LayerRef, type Op, type ScanBudget, type ScanLimits } from './layer-tar.js';
import { buildErofsWith } from './rootfs-erofs.js';

const readAt = promisify(read);
const COPY_CHUNK = 1 << 20;

export interface ScanAndBuild {
  /** Each layer's scan read, in order, as readOneLayer (layer-read.ts) gives it. */
  reads: Array<Promise<LayerRead>>;
  /** Settles once `<root>/image.erofs` and `<root>/ids` are complete (placeErofs moves them), or the build failed. */
  built: Promise<void>;
}

/**
 * Reads every layer at once (each as it downloads) into the EROFS image in `root`, giving the
 * scan each layer's read as it ends; the build then applies them in order. A layer's failure
 * fails its read and the build; the build may also fail alone (a rule only the tree has), which
 * leaves the scan's verdict to the scan.
 */
export function scanIntoErofs(root: string, layers: LayerRef[], wanted: (path: string) => boolean, tmpDir: string, limits: ScanLimits, budget: ScanBudget): ScanAndBuild {
  const scans = layers.map(() => {
    let resolve!: (r: LayerRead) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<LayerRead>((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  });
  // The layers' blobs are being written beside the image: its free space is what they leave.
  const imageLimits = { ...limits, writableBytes: limits.writableBytes - layers.reduce((a, l) => a + (l.size ?? 0), 0) };
  const built = buildErofsWith(
    root,
    layers,
    imageLimits,
    async (fd, blocks, layer, i, erofsBudget) => {
      try {
        const ops = await readErofsLayer(fd, blocks, layer, imageLimits, erofsBudget);
        scans[i]!.resolve(await scanRead(fd, ops, layer, wanted, tmpDir, limits, budget));
        return ops;
      } catch (err) {
        scans[i]!.reject(err);
        throw err;
      }
    },
    layers.length,
  );
  // A layer whose read never started (the image file could not be made) fails with the build.
  built.catch((err: unknown) => {
    for (const s of scans) s.reject(err);
  });
  return { reads: scans.map((s) => s.promise), built };
}

/** A layer's EROFS ops as the scan's ops; each wanted regular file copied from the image to a temp file. */
async function scanRead(fd: number, ops: ErofsOp[], layer: LayerRef, wanted: (path: string) => boolean, tmpDir: string, limits: ScanLimits, budget: ScanBudget): Promise<LayerRead> {
  const out: Op[] = [];
  const tmps: string[] = [];
  const kept = async (path: string, raw: string, node: ErofsNode): Promise<Op> => {
    const size = node.size ?? 0;
    if (budget.write(size) > limits.writableBytes) throw new StoreFullError(layer.digest, `needs more than the ${limits.writableBytes} bytes free in the image store`);
    const tmp = join(tmpDir, `scan-${randomBytes(6).toString('hex')}`);
    tmps.push(tmp);
    await copyOut(fd, (node.blk ?? 0) * BLOCK, size, tmp);
    return { kind: 'file', raw, path, tmp, size };
  };
  try {
    for (const op of ops) {
      const { path, raw } = op;
      const dir = parentOf(path);
      switch (op.kind) {
        case 'opaque':
          out.push({ kind: 'opaque', raw, path: dir });
          break;
        case 'whiteout':
          out.push({ kind: 'whiteout', raw, path: posix.join(dir, posix.basename(path).slice(4)) });
          break;
        case 'dir':
          out.push({ kind: 'dir', raw, path });
          break;
        case 'link':
          out.push({ kind: 'link', raw, path, target: op.target });
          break;
        case 'node': {
          const type = op.node.mode & S_IFMT;
          if (type === S_IFLNK) out.push({ kind: 'symlink', raw, path, target: op.node.target ?? '' });
          else if (type === S_IFREG && wanted(path)) out.push(await kept(path, raw, op.node));
          else out.push({ kind: 'other', raw, path }); // a file not kept, a fifo: it replaces what was at its path
        }
      }
    }
  } catch (err) {
    for (const tmp of tmps) await rm(tmp, { force: true });
    throw err;
  }
  return { ops: out, tmps };
}

/** `size` bytes of the image at `pos` into a new file `dest`. */
async function copyOut(fd: number, pos: number, size: number, dest: string): Promise<void> {
  const fh = await open(dest, 'wx', 0o600);
  try {
    const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(size, 1)));
    for (let done = 0; done < size; ) {
      const { bytesRead } = await readAt(fd, buf, 0, Math.min(buf.length, size - done), pos + done);
      if (bytesRead === 0) throw new VmletError('internal', `${dest}: the EROFS image being built ends before byte ${pos + size}`);
      await fh.write(buf, 0, bytesRead);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
}
