// The host side of read-only virtiofs shares, with real bind mounts (root): a VM-image
// container's read-only share is a read-only bind under its dir, removed with the dir without
// touching the volume; the image tree's read-only view is made once however many VMs ask at once.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { bindReadOnlyShares } from '../../src/pod/share-binds.js';
import { readOnlyView, removeUnmounted } from '../../src/guest/shared-mounts.js';
import { tempDir } from '../helpers/vmlet.js';

const mountsAt = (p: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === p);

describe('read-only share binds', () => {
  it('binds a read-only virtiofs share read-only under the container dir; the dir goes without the volume', async () => {
    const top = tempDir('vmlet-binds-');
    const vol = join(top, 'volume');
    mkdirSync(vol);
    writeFileSync(join(vol, 'keep'), 'data\n');
    const cdir = join(top, 'container');
    mkdirSync(cdir);
    const virtiofs = { binary: '/usr/lib/qemu/virtiofsd' };
    const shares = await bindReadOnlyShares(cdir, [
      { source: vol, tag: 'a', readonly: true, virtiofs },
      { source: vol, tag: 'b', readonly: false, virtiofs },
      { source: vol, tag: 'c', readonly: true }, // 9p: QEMU enforces it
    ]);
    expect(shares.map((s) => s.source)).toEqual([join(cdir, 'ro-shares', '0'), vol, vol]);
    expect(mountsAt(join(cdir, 'ro-shares', '0'))[0]?.split(' ')[5]).toMatch(/^ro(,|$)/);
    const w = spawnSync('sh', ['-c', `echo x > ${join(cdir, 'ro-shares', '0', 'new')}`], { encoding: 'utf8' });
    expect(w.status).not.toBe(0);
    expect(w.stderr).toMatch(/Read-only file system/);
    await removeUnmounted(cdir);
    expect(existsSync(cdir)).toBe(false);
    expect(mountsAt(join(cdir, 'ro-shares', '0'))).toEqual([]);
    expect(readFileSync(join(vol, 'keep'), 'utf8')).toBe('data\n');
  });

  it('makes the image tree\'s read-only view once, however many VMs ask at once, and shows later entries', async () => {
    const top = tempDir('vmlet-view-');
    const tree = join(top, 'rootfs');
    mkdirSync(tree);
    const view = join(top, 'images-ro');
    try {
      expect(await Promise.all([readOnlyView(tree, view), readOnlyView(tree, view), readOnlyView(tree, view)])).toEqual([view, view, view]);
      expect(mountsAt(view)).toHaveLength(1);
      mkdirSync(join(tree, 'sha-of-a-new-image'));
      expect(existsSync(join(view, 'sha-of-a-new-image'))).toBe(true);
      await readOnlyView(tree, view);
      expect(mountsAt(view)).toHaveLength(1);
    } finally {
      spawnSync('umount', ['-l', view]);
    }
  });
});
