// The image store's usage (ImageFsInfo) is a walk of the tree, kept 10 s as containerd keeps its
// snapshotter usage; walked again at once when an image is added or removed (the index saved).
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ImageStore } from '../../src/image/store.js';
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
});
