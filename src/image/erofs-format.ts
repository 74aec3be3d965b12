// EROFS (Linux's read-only file system) on-disk format, uncompressed: what a sandboxed pod's
// guest mounts as an image's root file system (docs/sandboxed-pods.md). Only what vmlet writes:
// 4 KiB blocks, extended (64-byte) inodes, no xattrs, file data in whole blocks (FLAT_PLAIN),
// directories and symlinks inline after their inode when they fit (FLAT_INLINE).
// Layout (linux/fs/erofs/erofs_fs.h): block 0 holds the superblock at byte 1024; file data
// follows from block 1, in each layer's regions as the layers were read (erofs-layer-read.ts:
// unused blocks there are holes); then directory and symlink blocks too large to go
// inline; then the inodes (the metadata area, `meta_blkaddr`), a node's nid being its offset
// there / 32. The root comes first, so its nid fits the superblock's 16 bits.
import { writeSync } from 'node:fs';

export const BLOCK = 4096;
const SUPER_OFFSET = 1024;
const MAGIC = 0xe0f5e1e2;
const INODE = 64;
const SLOT = 32;
const DIRENT = 12;
const PLAIN = 0;
const INLINE = 2;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;

/** A file, directory, symlink or FIFO of the image; a hard link is the same node under two names. */
export interface ErofsNode {
  /** Type and permission bits (st_mode). */
  mode: number;
  uid: number;
  gid: number;
  /** Milliseconds since the epoch. */
  mtimeMs: number;
  /** Regular files: data at `blk` (whole blocks), `size` bytes. */
  blk?: number;
  size?: number;
  /** Symlinks: the target. */
  target?: string;
  /** Directories: name → node. */
  children?: Map<string, ErofsNode>;
}

const FILE_TYPE: Record<number, number> = { [S_IFREG]: 1, [S_IFDIR]: 2, [S_IFIFO]: 5, [S_IFLNK]: 7 };

export const blocksFor = (bytes: number) => Math.ceil(bytes / BLOCK);

interface Placed {
  node: ErofsNode;
  nid: number;
  nlink: number;
  layout: number;
  size: number;
  /** raw_blkaddr (PLAIN data, or the whole blocks before an INLINE tail). */
  blkaddr: number;
  /** Directory entries in order, their blocks, or the symlink target: the node's data. */
  data?: Buffer;
}

/** The directory's entries ('.' and '..' too), sorted as the kernel's binary search expects: by bytes. */
function dirEntries(dir: ErofsNode, parent: ErofsNode): Array<[Buffer, ErofsNode]> {
  const out: Array<[Buffer, ErofsNode]> = [[Buffer.from('.'), dir], [Buffer.from('..'), parent]];
  for (const [name, node] of dir.children!) out.push([Buffer.from(name), node]);
  return out.sort((a, b) => Buffer.compare(a[0], b[0]));
}

/**
 * Splits sorted entries into blocks: each block is its dirents (12 bytes each) then their names;
 * every block but the last is zero-padded to BLOCK. Returns the blocks' bytes (size = the
 * directory's i_size) with the nids left to fill (fillDirents).
 */
function dirBlocks(entries: Array<[Buffer, ErofsNode]>): { size: number; blocks: Array<Array<[Buffer, ErofsNode]>> } {
  const blocks: Array<Array<[Buffer, ErofsNode]>> = [];
  let cur: Array<[Buffer, ErofsNode]> = [];
  let used = 0;
  for (const e of entries) {
    const need = DIRENT + e[0].length;
    if (used + need > BLOCK) {
      blocks.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(e);
    used += need;
  }
  blocks.push(cur);
  return { size: (blocks.length - 1) * BLOCK + used, blocks };
}

function fillDirents(blocks: Array<Array<[Buffer, ErofsNode]>>, size: number, nidOf: (n: ErofsNode) => number): Buffer {
  const buf = Buffer.alloc(size);
  blocks.forEach((entries, b) => {
    const base = b * BLOCK;
    let nameoff = entries.length * DIRENT;
    entries.forEach(([name, node], i) => {
      const at = base + i * DIRENT;
      buf.writeBigUInt64LE(BigInt(nidOf(node)), at);
      buf.writeUInt16LE(nameoff, at + 8);
      buf.writeUInt8(FILE_TYPE[node.mode & S_IFMT] ?? 0, at + 10);
      name.copy(buf, base + nameoff);
      nameoff += name.length;
    });
  });
  return buf;
}

/**
 * Writes the directories, inodes and superblock of the tree under `root` to `fd`, whose file
 * data already fills blocks 1..nextBlk-1. Returns the image's size in bytes.
 */
export function writeErofsMeta(fd: number, root: ErofsNode, nextBlk: number): number {
  // Every node once (hard links share one), parents before children, the root first.
  const order: ErofsNode[] = [];
  const parentOf = new Map<ErofsNode, ErofsNode>([[root, root]]);
  const links = new Map<ErofsNode, number>();
  const seen = new Set<ErofsNode>();
  const queue = [root];
  for (let q = 0; q < queue.length; q++) {
    const node = queue[q]!;
    if (seen.has(node)) continue;
    seen.add(node);
    order.push(node);
    for (const child of node.children?.values() ?? []) {
      links.set(child, (links.get(child) ?? 0) + 1);
      if (child.children) parentOf.set(child, node);
      queue.push(child);
    }
  }

  let blk = nextBlk;
  const placed = new Map<ErofsNode, Placed>();
  const dirLayouts = new Map<ErofsNode, ReturnType<typeof dirBlocks>>();
  let cursor = 0; // bytes into the metadata area
  for (const node of order) {
    const type = node.mode & S_IFMT;
    let layout = PLAIN;
    let size = 0;
    let blkaddr = 0;
    let inline = 0;
    let nlink = links.get(node) ?? 1;
    if (type === S_IFREG) {
      size = node.size ?? 0;
      blkaddr = size ? node.blk! : 0;
    } else if (type === S_IFDIR) {
      const l = dirBlocks(dirEntries(node, parentOf.get(node)!));
      dirLayouts.set(node, l);
      size = l.size;
      nlink = 2 + [...node.children!.values()].filter((c) => c.children).length;
    } else if (type === S_IFLNK) {
      size = Buffer.byteLength(node.target!);
    }
    if (type === S_IFDIR || type === S_IFLNK) {
      // Inline when the whole of it fits in a block after the inode; else in blocks of its own.
      if (size > 0 && INODE + size <= BLOCK) {
        layout = INLINE;
        inline = size;
      } else if (size > 0) {
        blkaddr = blk;
        blk += blocksFor(size);
      }
    }
    const need = INODE + inline;
    if ((cursor % BLOCK) + need > BLOCK) cursor = Math.ceil(cursor / BLOCK) * BLOCK; // an inode and its inline data never cross a block
    placed.set(node, { node, nid: cursor / SLOT, nlink, layout, size, blkaddr });
    cursor += Math.ceil(need / SLOT) * SLOT;
  }
  const nidOf = (n: ErofsNode) => placed.get(n)!.nid;
  if (nidOf(root) > 0xffff) throw new RangeError('erofs: the root inode does not fit the superblock');

  const metaBlk = blk;
  const meta = Buffer.alloc(Math.ceil(cursor / BLOCK) * BLOCK);
  let ino = 0;
  for (const p of placed.values()) {
    const { node } = p;
    const type = node.mode & S_IFMT;
    let data: Buffer | undefined;
    if (type === S_IFDIR) {
      const l = dirLayouts.get(node)!;
      data = fillDirents(l.blocks, l.size, nidOf);
    } else if (type === S_IFLNK) {
      data = Buffer.from(node.target!);
    }
    const at = p.nid * SLOT;
    meta.writeUInt16LE(1 | (p.layout << 1), at); // extended inode
    meta.writeUInt16LE(0, at + 2); // no xattrs
    meta.writeUInt16LE(node.mode & 0xffff, at + 4);
    meta.writeBigUInt64LE(BigInt(p.size), at + 8);
    meta.writeUInt32LE(p.blkaddr, at + 16);
    meta.writeUInt32LE(++ino, at + 20);
    meta.writeUInt32LE(node.uid >>> 0, at + 24);
    meta.writeUInt32LE(node.gid >>> 0, at + 28);
    const ms = Math.max(0, node.mtimeMs);
    meta.writeBigUInt64LE(BigInt(Math.floor(ms / 1000)), at + 32);
    meta.writeUInt32LE(Math.floor(ms % 1000) * 1_000_000, at + 40);
    meta.writeUInt32LE(p.nlink, at + 44);
    if (data && p.layout === INLINE) data.copy(meta, at + INODE);
    else if (data && data.length) writeAll(fd, data, p.blkaddr * BLOCK);
  }
  writeAll(fd, meta, metaBlk * BLOCK);

  const total = metaBlk + meta.length / BLOCK;
  const sb = Buffer.alloc(128);
  sb.writeUInt32LE(MAGIC, 0);
  sb.writeUInt8(12, 12); // blkszbits
  sb.writeUInt16LE(nidOf(root), 14);
  sb.writeBigUInt64LE(BigInt(placed.size), 16); // inos
  sb.writeUInt32LE(total, 36); // blocks
  sb.writeUInt32LE(metaBlk, 40);
  writeAll(fd, sb, SUPER_OFFSET);
  return total * BLOCK;
}

export function writeAll(fd: number, buf: Buffer, position: number): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off, position + off);
}
