// One layer read for the EROFS image (erofs-tree.ts): decompressed, its diff_id checked, each
// entry's checks that need no other layer made, each file's data written to the image at
// blocks of its own; what the entries do to the tree comes back as ops, which the tree applies
// in layer order. So an image's layers are read side by side (their decompression on as many
// cores), which the in-order tree never waits for but the layer it applies.
import { posix } from 'node:path';
import type { ReadEntry } from 'tar';
import { BLOCK, S_IFIFO, S_IFLNK, S_IFREG, blocksFor, writeAll, type ErofsNode } from './erofs-format.js';
import { HostileLayerError, StoreFullError, normalizeEntryPath, type LayerRef, type ScanLimits } from './layer-tar.js';
import { eachLayerEntry } from './layer-entries.js';
import { chargeFile, type Budget } from './rootfs.js';

/** What an entry does to the tree; `raw` is its path as written, for messages. */
export type ErofsOp =
  | { kind: 'opaque' | 'whiteout'; path: string; raw: string }
  | { kind: 'dir'; path: string; raw: string; mode: number; uid: number; gid: number; mtimeMs?: number }
  | { kind: 'node'; path: string; raw: string; node: ErofsNode }
  | { kind: 'link'; path: string; raw: string; target: string; targetRaw: string; mode: number; uid: number; gid: number };

/** The image's data blocks, handed out to the layers being read. */
export class BlockAllocator {
  /** Next free block (block 0 holds the superblock). */
  next = 1;
}

/** A layer's files get blocks from a region of its own, so its writes stay in order (DataWriter). */
const REGION_BLOCKS = 1024;

/**
 * Files' data into one buffer written out a MiB at a time: a layer's files follow each other
 * block after block in its region, so its writes go out in order (the padding of each file's
 * last block as zeros). One write(2) per file and chunk cost the 550 MB image of
 * bench/rootfs-unpack.ts over a second of system time.
 */
class DataWriter {
  private readonly buf = Buffer.alloc(1 << 20);
  /** Image offset of buf[0], and bytes held. */
  private start = 0;
  private len = 0;

  constructor(private readonly fd: number) {}

  write(chunk: Buffer, pos: number): void {
    const end = this.start + this.len;
    if (this.len > 0 && pos >= end && pos - end + chunk.length <= this.buf.length - this.len) {
      this.buf.fill(0, this.len, this.len + (pos - end));
      chunk.copy(this.buf, pos - this.start);
      this.len = pos - this.start + chunk.length;
      return;
    }
    this.flush();
    if (chunk.length >= this.buf.length) return writeAll(this.fd, chunk, pos);
    this.start = pos;
    chunk.copy(this.buf, 0);
    this.len = chunk.length;
  }

  flush(): void {
    if (this.len > 0) writeAll(this.fd, this.buf.subarray(0, this.len), this.start);
    this.len = 0;
  }
}

/** Reads `layer` whole; its files' data is in the image (`fd`) once this resolves. */
export async function readErofsLayer(fd: number, blocks: BlockAllocator, layer: LayerRef, limits: ScanLimits, budget: Budget): Promise<ErofsOp[]> {
  const bad = (why: string) => new HostileLayerError(layer.digest, why);
  const data = new DataWriter(fd);
  let region = { next: 0, end: 0 };
  const alloc = (n: number): number => {
    if (n > REGION_BLOCKS / 4) {
      const at = blocks.next;
      blocks.next += n;
      return at;
    }
    if (region.next + n > region.end) {
      region = { next: blocks.next, end: blocks.next + REGION_BLOCKS };
      blocks.next += REGION_BLOCKS;
    }
    const at = region.next;
    region.next += n;
    return at;
  };
  const ops: ErofsOp[] = [];

  const read = async (entry: ReadEntry): Promise<void> => {
    const raw = entry.path;
    const path = normalizeEntryPath(raw, bad);
    const base = posix.basename(path);
    if (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice') throw bad(`device node ${JSON.stringify(raw)}`);
    if (entry.size > limits.maxEntryBytes) throw bad(`entry ${JSON.stringify(raw)} is ${entry.size} bytes (limit ${limits.maxEntryBytes})`);
    if (base === '.wh..wh..opq') return void ops.push({ kind: 'opaque', path, raw });
    if (base.startsWith('.wh..wh.')) return; // aufs metadata: nothing to apply
    if (base.startsWith('.wh.')) return void ops.push({ kind: 'whiteout', path, raw });
    if (path === '' && entry.type !== 'Directory') throw bad(`entry ${JSON.stringify(raw)} would replace the root directory`);
    const meta = { uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtimeMs: entry.mtime?.getTime() ?? 0 };
    const perm = (dflt: number) => (entry.mode ?? dflt) & 0o7777;
    switch (entry.type) {
      case 'Directory':
        return void ops.push({ kind: 'dir', path, raw, mode: perm(0o755), uid: meta.uid, gid: meta.gid, ...(entry.mtime ? { mtimeMs: meta.mtimeMs } : {}) });
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        chargeFile(entry.size, { budget, limits, bad, full: (why) => new StoreFullError(layer.digest, why) });
        const blk = alloc(blocksFor(entry.size));
        let got = 0;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          if (got + chunk.length > entry.size) throw bad(`entry ${JSON.stringify(raw)} is longer than its ${entry.size} bytes`);
          data.write(chunk, blk * BLOCK + got);
          got += chunk.length;
        }
        if (got !== entry.size) throw bad(`entry ${JSON.stringify(raw)} is truncated (${got} of ${entry.size} bytes)`);
        return void ops.push({ kind: 'node', path, raw, node: { mode: S_IFREG | perm(0o644), ...meta, blk, size: entry.size } });
      }
      case 'SymbolicLink':
        return void ops.push({ kind: 'node', path, raw, node: { mode: S_IFLNK | 0o777, ...meta, target: entry.linkpath ?? '' } });
      case 'Link': {
        const target = normalizeEntryPath(entry.linkpath ?? '', bad);
        if (target === '') throw bad(`hard link ${JSON.stringify(raw)} to the root directory`);
        return void ops.push({ kind: 'link', path, raw, target, targetRaw: entry.linkpath ?? '', mode: perm(0o644), uid: meta.uid, gid: meta.gid });
      }
      case 'FIFO':
        return void ops.push({ kind: 'node', path, raw, node: { mode: S_IFIFO | perm(0o644), ...meta } });
      default:
        // Other types (GNU dump dirs, sparse files of old tars…) are not in OCI layers.
        throw bad(`unsupported entry type ${entry.type} for ${JSON.stringify(raw)}`);
    }
  };

  try {
    // An entry without a body (or whose body `read` took) is resumed so the parser goes on.
    await eachLayerEntry(layer, limits, budget, 'reading', (entry) => read(entry).then(() => void entry.resume()));
  } finally {
    data.flush();
  }
  return ops;
}
