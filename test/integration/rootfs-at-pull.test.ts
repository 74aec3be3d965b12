// A pull of a container image builds its EROFS rootfs in the same read of its layers as the
// pull's own checks (erofs-scan.ts), so a sandboxed pod's first container finds it made: real
// registry on loopback, real layers (made here: random files past the 32 MiB that sends a pull's
// reads to the scan worker), the image read back through the host kernel's erofs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ImageStore } from '../../src/image/store.js';
import { SMALL_IMAGE_BYTES } from '../../src/image/layer-tar.js';
import { resolveUser } from '../../src/image/users.js';
import { scanWorker } from '../../src/image/scan-client.js';
import { corruptBlob, ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { pushLayers, tarOf } from '../helpers/oci-push.js';
import { HOST_EROFS, mountErofs, unmountErofs } from '../helpers/erofs-mount.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

interface LogLine {
  msg: string;
  id?: string;
  atPull?: boolean;
  err?: string;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const work = tempDir('vmlet-rootfs-at-pull-');
let reg: TestRegistry;

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
}, 120_000);

afterAll(async () => {
  unmountErofs();
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** A store of its own under `work`, with its log lines kept, pulling from `registry` (default: the shared one). */
async function newStore(name: string, opts: { rootfsAtPull?: boolean; registry?: TestRegistry } = {}) {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  const root = join(work, name);
  const { registry = reg, ...storeOpts } = opts;
  const store = new ImageStore(root, { insecure: [registry.host], mirrors: {} }, pino({ level: 'info' }, sink), { rootfsFormat: 'erofs', ...storeOpts });
  await store.init();
  const builds = (id: string) => lines.filter((l) => l.msg === 'image rootfs unpacked' && l.id === id);
  /** The store's rootfs/ entries of image `id`, and everything in its tmp/. */
  const leftovers = (id: string) => ({
    rootfs: existsSync(store.rootfsRoot) ? readdirSync(store.rootfsRoot).filter((n) => n.startsWith(id.slice(7))).sort() : [],
    tmp: readdirSync(join(root, 'tmp')),
  });
  return { store, lines, builds, leftovers };
}

describe.skipIf(!HOST_EROFS)('a pull builds the EROFS rootfs of a container image', () => {
  it('past 32 MiB (in the scan worker): whiteouts, hard links, symlinks and owners as the first container would build them, and that container builds nothing', async () => {
    const app = randomBytes(20 * 1024 * 1024);
    const blob = randomBytes(14 * 1024 * 1024);
    const { reference: ref } = await pushLayers(
      reg,
      'vmlet/at-pull-big',
      [
        tarOf([
          { path: 'bin/', type: 'Directory' },
          { path: 'bin/app', mode: 0o755, data: app },
          { path: 'bin/app-again', type: 'Link', linkpath: 'bin/app', mode: 0o755 }, // tar writes the inode's mode in a link's header
          { path: 'bin/sh', type: 'SymbolicLink', linkpath: 'app' },
          { path: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n' },
          { path: 'etc/group', data: 'root:x:0:\napp:x:1001:\n' },
          { path: 'home/app/', type: 'Directory', uid: 1000, gid: 1001, mode: 0o750 },
          { path: 'opt/gone', data: 'lower layer\n' },
        ]),
        tarOf([
          { path: 'opt/.wh.gone', data: '' },
          { path: 'data/blob', data: blob },
          // A file the pull's check keeps (the kernel's directory): copied out of the image.
          { path: 'boot/config-6.1', data: 'CONFIG_EROFS_FS=y\n' },
        ]),
      ],
      { Cmd: ['/bin/app'], User: 'app' },
    );
    const { store, builds, leftovers } = await newStore('big');
    const rec = await store.pull(ref);
    expect(rec.boot.kind).toBe('rootfs');
    expect(rec.size).toBeGreaterThan(SMALL_IMAGE_BYTES);
    expect(scanWorker()).toBeDefined(); // read in the worker, not on the calling thread
    // In place without anyone asking for it, logged as the pull's.
    await waitFor('the rootfs the pull built', () => builds(rec.id).length === 1);
    expect(builds(rec.id)[0]!.atPull).toBe(true);
    const hex = rec.id.slice(7);
    await waitFor('its data on disk (the marker gone)', () => !existsSync(join(store.rootfsRoot, `${hex}.unsynced`)));
    expect(leftovers(rec.id)).toEqual({ rootfs: [`${hex}.erofs`, `${hex}.ids`], tmp: [] });

    // The first container's ensureRootfs takes it as it is: no second build.
    const r = await store.ensureRootfs(rec.id);
    expect(r).toEqual({ dir: join(store.rootfsRoot, `${hex}.ids`), name: `${hex}.erofs` });
    expect(builds(rec.id)).toHaveLength(1);
    expect(await resolveUser(r.dir, { imageUser: 'app' })).toEqual({ uid: 1000, gid: 1001, groups: [1001] });

    const files = mountErofs(join(work, 'big-view'), join(store.rootfsRoot, r.name));
    expect(sha(readFileSync(join(files, 'bin/app')))).toBe(sha(app));
    expect(sha(readFileSync(join(files, 'data/blob')))).toBe(sha(blob));
    const [a, b] = [statSync(join(files, 'bin/app')), statSync(join(files, 'bin/app-again'))];
    expect([b.ino, a.nlink, a.mode & 0o7777]).toEqual([a.ino, 2, 0o755]);
    expect(readlinkSync(join(files, 'bin/sh'))).toBe('app');
    const home = statSync(join(files, 'home/app'));
    expect([home.uid, home.gid, home.mode & 0o7777]).toEqual([1000, 1001, 0o750]);
    expect(existsSync(join(files, 'opt/gone'))).toBe(false);
    expect(readFileSync(join(files, 'boot/config-6.1'), 'utf8')).toBe('CONFIG_EROFS_FS=y\n');
  });

  it('of a small image too (on the calling thread)', async () => {
    const { reference } = await pushImage(reg, 'busybox-app', 'vmlet/at-pull-small:v1');
    const { store, builds, leftovers } = await newStore('small');
    const rec = await store.pull(reference);
    await waitFor('the rootfs the pull built', () => builds(rec.id).length === 1);
    expect(builds(rec.id)[0]!.atPull).toBe(true);
    const r = await store.ensureRootfs(rec.id);
    expect(builds(rec.id)).toHaveLength(1);
    const files = mountErofs(join(work, 'small-view'), join(store.rootfsRoot, r.name));
    expect(statSync(join(files, 'bin/sh')).ino).toBe(statSync(join(files, 'bin/busybox')).ino);
    expect(leftovers(rec.id).tmp).toEqual([]);
  });

  it('not of images that name no command (a containerDisk), nor with imageRootfsAtPull: false', async () => {
    const { store, builds, leftovers } = await newStore('none');
    const disk = await store.pull((await pushImage(reg, 'containerdisk', 'vmlet/at-pull-disk:v1')).reference);
    expect(disk.boot.kind).toBe('containerdisk');
    expect(builds(disk.id)).toEqual([]);
    expect(leftovers(disk.id)).toEqual({ rootfs: [], tmp: [] });

    const off = await newStore('off', { rootfsAtPull: false });
    const rec = await off.store.pull((await pushImage(reg, 'busybox-app', 'vmlet/at-pull-off:v1')).reference);
    expect(off.leftovers(rec.id)).toEqual({ rootfs: [], tmp: [] });
    await off.store.ensureRootfs(rec.id);
    expect(off.builds(rec.id).map((l) => l.atPull)).toEqual([undefined]); // built by its first container
  });

  it('not on a store with less room than its blobs and four times more: its first container builds it', async () => {
    // A tmpfs of 600 MiB: 88 MiB writable past the store's 512 MiB reserve, against 34 MiB of
    // random (incompressible) layers, of which the rule wants room for five times as much.
    const dir = join(work, 'tight');
    mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=600m', 'tmpfs', dir]);
    try {
      const data = randomBytes(34 * 1024 * 1024);
      const { reference: ref } = await pushLayers(reg, 'vmlet/at-pull-tight', [tarOf([{ path: 'data', data }])], { Cmd: ['/data'] });
      const { store, builds, leftovers } = await newStore('tight/images');
      const rec = await store.pull(ref);
      expect(leftovers(rec.id)).toEqual({ rootfs: [], tmp: [] });
      const r = await store.ensureRootfs(rec.id);
      expect(builds(rec.id).map((l) => l.atPull)).toEqual([undefined]);
      expect(statSync(join(store.rootfsRoot, r.name)).size).toBeGreaterThan(data.length);
      // Its sync (placeErofs) holds the filesystem until it ends: the umount waits for it.
      await waitFor('its data on disk (the marker gone)', () => !existsSync(join(store.rootfsRoot, `${rec.id.slice(7)}.unsynced`)));
    } finally {
      execFileSync('umount', [dir]);
    }
  });

  it('an image that names a command yet boots a kernel: its kernel and initrd come out of the read whole, and no rootfs stays', async () => {
    const kernel = randomBytes(1024 * 1024);
    const initrd = randomBytes(33 * 1024 * 1024);
    const { reference: ref } = await pushLayers(reg, 'vmlet/at-pull-kernel', [tarOf([{ path: 'boot/vmlinuz', data: kernel }, { path: 'boot/initrd.img', data: initrd }])], { Cmd: ['/init'] });
    const { store, lines, builds, leftovers } = await newStore('kernel');
    const rec = await store.pull(ref);
    expect(rec.boot.kind).toBe('kernel');
    // It was read as a container image (it names a command), then found to be a kernel image.
    expect(lines.filter((l) => l.id === rec.id && l.msg === 'the image boots a VM of its own: the rootfs its pull built is dropped')).toHaveLength(1);
    expect(sha(readFileSync(rec.boot.kernel!.kernel))).toBe(sha(kernel));
    expect(sha(readFileSync(rec.boot.kernel!.initrd!))).toBe(sha(initrd));
    expect(builds(rec.id)).toEqual([]);
    expect(leftovers(rec.id)).toEqual({ rootfs: [], tmp: [] });
  });

  it('a hostile layer fails the pull once, and nothing of the build stays', async () => {
    const { reference: ref } = await pushLayers(reg, 'vmlet/at-pull-hostile', [tarOf([{ path: 'big', data: randomBytes(33 * 1024 * 1024) }]), tarOf([{ path: '../escape', data: 'out\n' }])], { Cmd: ['/big'] });
    const { store, leftovers } = await newStore('hostile');
    await expect(store.pull(ref)).rejects.toMatchObject({ kind: 'invalid-argument', message: expect.stringContaining(`path "../escape" contains '..'`) as unknown });
    expect(leftovers('sha256:').tmp).toEqual([]);
    expect(existsSync(store.rootfsRoot) ? readdirSync(store.rootfsRoot) : []).toEqual([]);
  });

  it('a layer whose blob does not match its digest fails the pull (in the scan worker), and nothing of the build stays', async () => {
    // A registry of its own: its copy of the layer is corrupted on its disk.
    const own = await startRegistry();
    try {
      const tars = [tarOf([{ path: 'big', data: randomBytes(20 * 1024 * 1024) }]), tarOf([{ path: 'more', data: randomBytes(14 * 1024 * 1024) }])];
      const { reference, layers } = await pushLayers(own, 'vmlet/at-pull-corrupt', tars, { Cmd: ['/big'] });
      corruptBlob(own, layers[1]!);
      const { store, lines } = await newStore('corrupt', { registry: own });
      await expect(store.pull(reference)).rejects.toMatchObject({ message: expect.stringMatching(new RegExp(`${layers[1]!}.*digest|digest.*${layers[1]!}`)) as unknown });
      expect(readdirSync(join(work, 'corrupt', 'tmp'))).toEqual([]);
      expect(existsSync(store.rootfsRoot) ? readdirSync(store.rootfsRoot) : []).toEqual([]);
      expect(lines.filter((l) => l.msg === 'image rootfs unpacked')).toEqual([]);
    } finally {
      await own.stop();
    }
  });

  it('a rule only the rootfs has (a hard link to nothing): the pull succeeds, the first container gets the error, nothing stays', async () => {
    const { reference: ref } = await pushLayers(reg, 'vmlet/at-pull-dangling', [tarOf([{ path: 'bin/', type: 'Directory' }, { path: 'bin/ln', type: 'Link', linkpath: 'bin/missing' }])], { Cmd: ['/bin/ln'] });
    const { store, lines, leftovers } = await newStore('dangling');
    const rec = await store.pull(ref);
    expect(rec.boot.kind).toBe('rootfs');
    await expect(store.ensureRootfs(rec.id)).rejects.toMatchObject({ kind: 'invalid-argument', message: expect.stringContaining(`hard link "bin/ln" to "bin/missing", which is not in the image`) as unknown });
    expect(lines.some((l) => l.msg === 'the image rootfs built during the pull failed; building it again' && l.id === rec.id && l.err?.includes('bin/missing'))).toBe(true);
    await waitFor('the store emptied of the failed builds', () => leftovers(rec.id).tmp.length === 0 && leftovers(rec.id).rootfs.length === 0);
  });
});

describe.skipIf(!HOST_EROFS)('a rootfs placed before its data reached the disk', () => {
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  /** A store whose rootfs/ holds busybox-app's EROFS rootfs, marked unsynced by boot `boot`. */
  const marked = async (name: string, boot: string) => {
    const { reference } = await pushImage(reg, 'busybox-app', `vmlet/unsynced-${name}:v1`);
    const first = await newStore(`unsynced-${name}`);
    const rec = await first.store.pull(reference);
    const r = await first.store.ensureRootfs(rec.id);
    const hex = rec.id.slice(7);
    await waitFor('its data on disk (the marker gone)', () => !existsSync(join(first.store.rootfsRoot, `${hex}.unsynced`)));
    // As a vmlet killed (or a node powered off) between the renames and the sync leaves it.
    writeFileSync(join(first.store.rootfsRoot, `${hex}.unsynced`), `${boot} 0123456789abcdef\n`);
    return { rec, r, hex };
  };

  it('written in an earlier boot (a power loss may have torn it): removed at start, built again by its next container', async () => {
    const { rec, hex } = await marked('reboot', 'a0a0a0a0-0000-4000-8000-000000000000');
    const again = await newStore('unsynced-reboot');
    expect(again.lines.filter((l) => l.msg === 'removed an image rootfs placed before a reboot and never synced (it may be torn); its next container builds it again')).toHaveLength(1);
    expect(again.leftovers(rec.id).rootfs).toEqual([]);
    const r = await again.store.ensureRootfs(rec.id);
    expect(again.builds(rec.id)).toHaveLength(1);
    expect(existsSync(join(again.store.rootfsRoot, r.name))).toBe(true);
    expect(hex).toBe(r.name.slice(0, 64));
  });

  it('written in this boot (vmlet restarted): kept, synced, the marker gone', async () => {
    const { rec, r } = await marked('restart', bootId);
    const before = statSync(join(work, 'unsynced-restart', 'rootfs', r.name));
    const again = await newStore('unsynced-restart');
    expect(again.leftovers(rec.id).rootfs).toEqual([r.name, basename(r.dir)]);
    expect(statSync(join(again.store.rootfsRoot, r.name)).ino).toBe(before.ino);
    expect(await again.store.ensureRootfs(rec.id)).toEqual(r);
    expect(again.builds(rec.id)).toEqual([]);
  });
});
