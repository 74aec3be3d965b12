// The sandboxed pod's shared dir on the host: real bind mounts (root), read-only where the CRI
// mount is, and removal that never reaches into a host directory still bound there.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/vmlet.js';
import { bindContainerMounts, preparePodShare, releasePodShare, unbindContainerMounts } from '../../src/guest/shared-mounts.js';
import { mountsUnder } from '../../src/util/mountinfo.js';
import { treeUsage } from '../../src/util/fs-usage.js';

const dir = tempDir('vmlet-share-');
const share = join(dir, 'pod', 'shared');

afterAll(async () => {
  await releasePodShare(share).catch(() => undefined);
});

describe('pod shared dir', () => {
  it('binds host dirs and files, read-only when asked; unbinding keeps the host data', async () => {
    await preparePodShare(share);
    expect(mountsUnder(share)).toEqual([share]);
    const vol = join(dir, 'volume');
    mkdirSync(vol);
    writeFileSync(join(vol, 'data.txt'), 'kept');
    const file = join(dir, 'hosts');
    writeFileSync(file, '127.0.0.1 localhost\n');
    const missing = join(dir, 'made', 'by', 'vmlet');
    const { symlinkSync } = await import('node:fs');
    symlinkSync(vol, join(dir, 'vol-link')); // a host path that is a symlink to a directory
    const paths = await bindContainerMounts(share, 'c1', [
      { hostPath: vol, readonly: false },
      { hostPath: file, readonly: true },
      { hostPath: missing, readonly: false },
      { hostPath: join(dir, 'vol-link'), readonly: false },
    ]);
    expect(paths).toEqual(['/run/vmlet/shared/c1/0', '/run/vmlet/shared/c1/1', '/run/vmlet/shared/c1/2', '/run/vmlet/shared/c1/3']);
    expect(readFileSync(join(share, 'c1', '3', 'data.txt'), 'utf8')).toBe('kept');
    writeFileSync(join(share, 'c1', '0', 'from-guest.txt'), 'hi');
    expect(readFileSync(join(vol, 'from-guest.txt'), 'utf8')).toBe('hi');
    expect(readFileSync(join(share, 'c1', '1'), 'utf8')).toBe('127.0.0.1 localhost\n');
    expect(() => writeFileSync(join(share, 'c1', '1'), 'changed')).toThrow(/EROFS|read-only/);
    expect(existsSync(missing)).toBe(true);
    await unbindContainerMounts(share, 'c1');
    expect(existsSync(join(share, 'c1'))).toBe(false);
    expect(readFileSync(join(vol, 'data.txt'), 'utf8')).toBe('kept');
    expect(readFileSync(file, 'utf8')).toBe('127.0.0.1 localhost\n');
    await releasePodShare(share);
    expect(mountsUnder(share)).toEqual([]);
    expect(existsSync(share)).toBe(false);
    expect(readFileSync(join(vol, 'data.txt'), 'utf8')).toBe('kept');
  });

  it('undoes the binds already made when one fails', async () => {
    await preparePodShare(share);
    const vol = join(dir, 'v2');
    mkdirSync(vol);
    await expect(bindContainerMounts(share, 'c2', [{ hostPath: vol, readonly: false }, { hostPath: '/proc/self/nope\0', readonly: false }])).rejects.toThrow();
    expect(mountsUnder(join(share, 'c2'))).toEqual([]);
    await releasePodShare(share);
  });

  it("leaves the pods' volumes out of the containers' usage (ImageFsInfo walks the pods' state dir)", async () => {
    const pods = join(dir, 'pods-state');
    const podShare = join(pods, 'pod-a', 'shared');
    await preparePodShare(podShare);
    try {
      writeFileSync(join(pods, 'pod-a', 'own-state'), Buffer.alloc(64 * 1024, 1));
      const before = await treeUsage(pods);
      const vol = join(dir, 'big-volume');
      mkdirSync(vol);
      writeFileSync(join(vol, 'data'), Buffer.alloc(8 << 20, 1));
      await bindContainerMounts(podShare, 'c3', [{ hostPath: vol, readonly: false }]);
      expect(readFileSync(join(podShare, 'c3', '0', 'data')).length).toBe(8 << 20); // it is there, through the bind
      const withVolume = await treeUsage(pods);
      expect(withVolume.bytes).toBeGreaterThanOrEqual(64 * 1024);
      expect(withVolume.bytes - before.bytes).toBeLessThan(1 << 20);
      // What is not under a mount point still counts.
      writeFileSync(join(pods, 'pod-a', 'more-state'), Buffer.alloc(2 << 20, 1));
      expect((await treeUsage(pods)).bytes - withVolume.bytes).toBeGreaterThanOrEqual(2 << 20);
    } finally {
      await releasePodShare(podShare); // a failed check leaves no bind mount behind
    }
  });
});
