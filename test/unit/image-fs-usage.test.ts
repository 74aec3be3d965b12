// The image store's usage (ImageFsInfo) is a walk of the tree, kept 10 s as containerd keeps its
// snapshotter usage; walked again at once when an image is added or removed (the index saved).
import { describe, expect, it } from 'vitest';
import { linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ImageStore } from '../../src/image/store.js';
import { treeUsage } from '../../src/util/fs-usage.js';
import { tempDir } from '../helpers/vmlet.js';

describe('image store usage', () => {
  it('is served from one walk until the index changes', async () => {
    const root = tempDir('vmlet-usage-');
    const store = new ImageStore(root, { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
    const [a, b] = await Promise.all([store.fsUsage(), store.fsUsage()]);
    expect(b).toBe(a); // concurrent callers share the walk
    writeFileSync(join(root, 'blob'), Buffer.alloc(1 << 20));
    expect((await store.fsUsage()).usedBytes).toBe(a.usedBytes); // kept: nothing said the store changed
    await store.index.save();
    expect((await store.fsUsage()).usedBytes).toBeGreaterThanOrEqual(a.usedBytes + (1 << 20)); // walked again
  });
  it('keeps another dir\'s usage too (the containers\' state dir), apart from the store\'s', async () => {
    const store = new ImageStore(tempDir('vmlet-usage-'), { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
    const other = tempDir('vmlet-usage-other-');
    const first = await store.fsUsage(other);
    writeFileSync(join(other, 'f'), Buffer.alloc(4096));
    expect(await store.fsUsage(other)).toBe(first);
    expect(await store.fsUsage()).not.toBe(first);
  });
  it('walks each complete rootfs tree once (they never change), the rest of the store each time, and a tree made again anew', async () => {
    const root = tempDir('vmlet-usage-');
    const store = new ImageStore(root, { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
    const tree = join(store.rootfsRoot, 'a'.repeat(64));
    mkdirSync(join(tree, 'etc'), { recursive: true });
    writeFileSync(join(tree, 'etc/big'), Buffer.alloc(1 << 20, 1));
    await store.index.save(); // its file is there in every walk below
    const first = await store.fsUsage();
    expect(first.usedBytes).toBeGreaterThanOrEqual(1 << 20);
    // Behind vmlet's back: a file in the tree (never done: trees are read-only) and one elsewhere.
    writeFileSync(join(tree, 'etc/sneaked'), Buffer.alloc(2 << 20, 1));
    writeFileSync(join(root, 'blob'), Buffer.alloc(1 << 20, 1));
    await store.index.save(); // the store changed: walked again, but not the tree
    const second = await store.fsUsage();
    expect(second.usedBytes - first.usedBytes).toBeGreaterThanOrEqual(1 << 20);
    expect(second.usedBytes - first.usedBytes).toBeLessThan(2 << 20);
    expect(second.inodesUsed).toBe(first.inodesUsed + 1);
    // Removed and made again (a new inode: an image pulled and unpacked again): walked anew.
    rmSync(tree, { recursive: true });
    mkdirSync(tree);
    writeFileSync(join(tree, 'only'), Buffer.alloc(4 << 20, 1));
    await store.index.save();
    const third = await store.fsUsage();
    expect(third.usedBytes - second.usedBytes).toBeGreaterThanOrEqual((3 << 20) - 8192);
    expect(third.inodesUsed).toBe(second.inodesUsed - 1); // etc/ and etc/big gone, only added
  });

  it('treeUsage counts a file of many names once, and lets other work run between its slices', async () => {
    const dir = tempDir('vmlet-usage-walk-');
    writeFileSync(join(dir, 'one'), Buffer.alloc(1 << 20, 1));
    linkSync(join(dir, 'one'), join(dir, 'two'));
    const linked = await treeUsage(dir);
    expect(linked.inodes).toBe(2); // the dir and the file
    expect(linked.bytes).toBeLessThan(2 << 20);
    for (let d = 0; d < 50; d++) {
      mkdirSync(join(dir, `d${d}`));
      for (let f = 0; f < 100; f++) writeFileSync(join(dir, `d${d}`, `f${f}`), 'x');
    }
    // Other work gets the thread between slices (none before the first: the walk starts at once),
    // with 0 ms slices after about every entry; a walk that never yielded would leave turns at 0.
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const big = await treeUsage(dir, { sliceMs: 0 });
    ticking = false;
    expect(big.inodes).toBe(2 + 50 + 5000);
    expect(turns).toBeGreaterThan(100);
    // The default slices (2 ms) count the same.
    expect(await treeUsage(dir)).toEqual(big);
  });
});
