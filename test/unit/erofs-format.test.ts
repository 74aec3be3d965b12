// The EROFS layout vmlet writes (src/image/erofs-format.ts), read back byte by byte here; the
// kernel reading such images is tested in test/integration/rootfs.test.ts (loop-mounted).
import { describe, expect, it } from 'vitest';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BLOCK, S_IFDIR, S_IFLNK, S_IFREG, writeErofsMeta, type ErofsNode } from '../../src/image/erofs-format.js';
import { tempDir } from '../helpers/vmlet.js';

const dir = (children: Record<string, ErofsNode>, mode = 0o755): ErofsNode => ({ mode: S_IFDIR | mode, uid: 0, gid: 0, mtimeMs: 0, children: new Map(Object.entries(children)) });
const file = (blk: number, size: number): ErofsNode => ({ mode: S_IFREG | 0o644, uid: 1000, gid: 2000, mtimeMs: 1_234_567_890_123, blk, size });

function build(root: ErofsNode, dataBlocks = 1): Buffer {
  const path = join(tempDir('vmlet-erofs-unit-'), 'img');
  const fd = openSync(path, 'w+');
  try {
    expect(writeErofsMeta(fd, root, 1 + dataBlocks) % BLOCK).toBe(0);
  } finally {
    closeSync(fd);
  }
  return readFileSync(path);
}

interface Inode {
  layout: number;
  mode: number;
  size: number;
  blkaddr: number;
  uid: number;
  gid: number;
  mtime: number;
  nsec: number;
  nlink: number;
  inline: Buffer;
}

function reader(img: Buffer) {
  const metaBlk = img.readUInt32LE(1024 + 40);
  const inode = (nid: number): Inode => {
    const at = metaBlk * BLOCK + nid * 32;
    const format = img.readUInt16LE(at);
    expect(format & 1).toBe(1); // extended
    const size = Number(img.readBigUInt64LE(at + 8));
    return {
      layout: format >> 1,
      mode: img.readUInt16LE(at + 4),
      size,
      blkaddr: img.readUInt32LE(at + 16),
      uid: img.readUInt32LE(at + 24),
      gid: img.readUInt32LE(at + 28),
      mtime: Number(img.readBigUInt64LE(at + 32)),
      nsec: img.readUInt32LE(at + 40),
      nlink: img.readUInt32LE(at + 44),
      inline: img.subarray(at + 64, at + 64 + size),
    };
  };
  /** A directory's entries in on-disk order: name, nid, file type. */
  const entries = (d: Inode): Array<[string, number, number]> => {
    const data = d.layout === 2 ? d.inline : img.subarray(d.blkaddr * BLOCK, d.blkaddr * BLOCK + d.size);
    const out: Array<[string, number, number]> = [];
    for (let b = 0; b < data.length; b += BLOCK) {
      const block = data.subarray(b, Math.min(data.length, b + BLOCK));
      const n = block.readUInt16LE(8) / 12;
      for (let i = 0; i < n; i++) {
        const off = block.readUInt16LE(i * 12 + 8);
        const end = i + 1 < n ? block.readUInt16LE((i + 1) * 12 + 8) : block.length;
        out.push([block.subarray(off, end).toString().replace(/\0+$/, ''), Number(block.readBigUInt64LE(i * 12)), block.readUInt8(i * 12 + 10)]);
      }
    }
    return out;
  };
  return { metaBlk, inode, entries, rootNid: img.readUInt16LE(1024 + 14) };
}

describe('EROFS metadata (writeErofsMeta)', () => {
  it('writes the superblock, the root first, and small directories and symlinks inline after their inode', () => {
    const f = file(1, 5000);
    const img = build(dir({ b: f, a: dir({}, 0o700), 'ln': { mode: S_IFLNK | 0o777, uid: 0, gid: 0, mtimeMs: 0, target: '/etc/passwd' } }), 2);
    expect(img.readUInt32LE(1024)).toBe(0xe0f5e1e2);
    expect(img.readUInt8(1024 + 12)).toBe(12);
    expect(img.readBigUInt64LE(1024 + 16)).toBe(4n); // inodes
    expect(img.readUInt32LE(1024 + 36)).toBe(img.length / BLOCK);
    const r = reader(img);
    expect(r.metaBlk).toBe(3); // after the superblock's block and the 2 data blocks
    expect(r.rootNid).toBe(0);
    const root = r.inode(r.rootNid);
    expect([root.layout, root.mode, root.nlink]).toEqual([2, S_IFDIR | 0o755, 3]);
    // Sorted by bytes, '.' and '..' included, the root its own parent.
    const ents = r.entries(root);
    expect(ents.map((e) => e[0])).toEqual(['.', '..', 'a', 'b', 'ln']);
    expect(ents.slice(0, 2).map((e) => e[1])).toEqual([0, 0]);
    expect(ents.map((e) => e[2])).toEqual([2, 2, 2, 1, 7]);
    const fi = r.inode(ents[3]![1]);
    expect(fi).toMatchObject({ layout: 0, mode: S_IFREG | 0o644, size: 5000, blkaddr: 1, uid: 1000, gid: 2000, mtime: 1_234_567_890, nsec: 123_000_000, nlink: 1 });
    const ln = r.inode(ents[4]![1]);
    expect([ln.layout, ln.mode, ln.inline.toString()]).toEqual([2, S_IFLNK | 0o777, '/etc/passwd']);
    const sub = r.inode(ents[2]![1]);
    expect(r.entries(sub).map((e) => [e[0], e[1]])).toEqual([['.', ents[2]![1]], ['..', 0]]);
  });

  it('spreads a large directory over whole blocks in the data area, names sorted across them; a hard link is one inode', () => {
    const shared = file(1, 10);
    const children: Record<string, ErofsNode> = { 'link-a': shared, 'link-b': shared };
    for (let i = 0; i < 600; i++) children[`name-${String(i).padStart(4, '0')}-${'x'.repeat(i % 40)}`] = file(1, 10);
    const img = build(dir(children));
    const r = reader(img);
    const root = r.inode(r.rootNid);
    expect(root.layout).toBe(0);
    expect(root.size).toBeGreaterThan(2 * BLOCK);
    expect(root.blkaddr).toBe(2); // after the data, before the inodes
    const names = r.entries(root).map((e) => e[0]);
    expect(names).toEqual([...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(names).toHaveLength(604);
    const byName = new Map(r.entries(root).map((e) => [e[0], e[1]]));
    expect(byName.get('link-a')).toBe(byName.get('link-b'));
    expect(r.inode(byName.get('link-a')!).nlink).toBe(2);
    expect(img.readBigUInt64LE(1024 + 16)).toBe(1n + 1n + 600n);
  });
});
