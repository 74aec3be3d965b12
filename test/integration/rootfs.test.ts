// Unpacking images into a rootfs tree for sandboxed pods: the project's test images pulled from
// a real registry into an ImageStore (ensureRootfs, runConfig, users), and hostile layers fed
// to unpackRootfs directly (built here, byte by byte) to show nothing lands outside the tree.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, constants, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { tarOf, type TarEntry } from '../helpers/oci-push.js';
import { HOST_EROFS, mountErofs, unmountErofs } from '../helpers/erofs-mount.js';
import { ImageStore } from '../../src/image/store.js';
import { unpackRootfs } from '../../src/image/rootfs.js';
import { rootfsWorker, unpackRootfsOffThread } from '../../src/image/rootfs-client.js';
import { unpackErofs } from '../../src/image/rootfs-erofs.js';
import { SMALL_IMAGE_BYTES } from '../../src/image/layer-tar.js';
import type { LayerRef, ScanLimits } from '../../src/image/layer-scan.js';
import { resolveUser } from '../../src/image/users.js';
import { containerArgs, containerEnv } from '../../src/image/image-config.js';
import { ensureTestImages, pushImage, startRegistry, testImages, type TestImageName, type TestRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const BIG: ScanLimits = { maxEntryBytes: 2 ** 40, maxImageBytes: 2 ** 40, writableBytes: 2 ** 40 };
const dirs: string[] = [];
const mkTemp = (prefix: string) => {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
};

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

afterAll(unmountErofs);
if (!HOST_EROFS) console.warn('rootfs.test: this kernel has no erofs: the EROFS variants are skipped');

describe.each(HOST_EROFS ? (['erofs', 'tree'] as const) : (['tree'] as const))('ImageStore.ensureRootfs with the test images (imageRootfs: %s)', (format) => {
  let reg: TestRegistry;
  let store: ImageStore;
  let root: string;
  const logLines: Array<{ msg: string; id?: string; ms?: number }> = [];
  const refs = {} as Record<string, string>;

  beforeAll(async () => {
    await ensureTestImages();
    reg = await startRegistry();
    root = join(mkTemp('vmlet-rootfs-store-'), 'images');
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as { msg: string });
        cb();
      },
    });
    store = new ImageStore(root, { insecure: [reg.host], mirrors: {} }, pino({ level: 'info' }, sink), { rootfsFormat: format });
    await store.init();
    // busybox-app is not in TestImageName (test/helpers/registry.ts) yet.
    for (const name of ['rootfs', 'rootfs-named-user', 'containerdisk', 'busybox-app'] satisfies TestImageName[]) {
      refs[name] = (await pushImage(reg, name, `vmlet/${name}:v1`)).reference;
    }
  }, 120_000);

  afterAll(async () => {
    await reg?.stop();
  });

  const unpacks = (id: string) => logLines.filter((l) => l.msg === 'image rootfs unpacked' && l.id === id);
  /** Where an image's rootfs is in the store: its tree, or its EROFS file. */
  const rootfsOf = (id: string) => join(store.rootfsRoot, format === 'erofs' ? `${id.slice(7)}.erofs` : id.slice(7));
  /** The image's files, for reading here: the tree, or the EROFS image loop-mounted. */
  const filesOf = (r: { dir: string; name: string }) => (format === 'tree' ? r.dir : mountErofs(join(mkTemp('vmlet-rootfs-view-'), 'view'), join(store.rootfsRoot, r.name)));

  it('unpacks the two-layer rootfs image once, applying whiteouts, owners and modes', async () => {
    const img = testImages().rootfs;
    const rec = await store.pull(refs.rootfs!);
    expect(rec.id).toBe(img.configDigest);
    expect(rec.boot.kind).toBe('rootfs');
    expect(statSync(store.rootfsRoot).mode & 0o777).toBe(0o755);

    const { dir, name } = await store.ensureRootfs(rec.id);
    const hex = img.configDigest.slice(7);
    if (format === 'tree') expect([dir, name]).toEqual([join(root, 'rootfs', hex), hex]);
    // The EROFS file, and beside it the image's passwd and group for users.ts (once synced: placeErofs).
    else await waitFor('its data on disk (the marker gone)', () => !existsSync(join(root, 'rootfs', `${hex}.unsynced`)));
    if (format === 'erofs') expect([dir, name, readdirSync(join(root, 'rootfs')).sort()]).toEqual([join(root, 'rootfs', `${hex}.ids`), `${hex}.erofs`, [`${hex}.erofs`, `${hex}.ids`]]);
    const [first] = unpacks(rec.id);
    console.log(`rootfs test image unpacked in ${first?.ms} ms (${format})`);
    const files = filesOf({ dir, name });

    expect(readFileSync(join(files, 'etc/motd'), 'utf8')).toBe('vmlet rootfs test image: layer 2\n');
    expect(existsSync(join(files, 'etc/remove-me'))).toBe(false);
    expect(readdirSync(join(files, 'opt/old'))).toEqual(['b.txt']);
    const home = statSync(join(files, 'home/app'));
    expect([home.uid, home.gid, home.mode & 0o7777]).toEqual([1234, 1234, 0o755]);
    expect(lstatSync(join(files, 'usr/bin/env')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(files, 'usr/bin/env'))).toBe('/bin/busybox');
    expect(readlinkSync(join(files, 'bin/sh'))).toBe('busybox');
    const bb = statSync(join(files, 'bin/busybox'));
    expect(bb.mode & 0o7777).toBe(0o755);
    expect(bb.mtimeMs).toBe(0); // SOURCE_DATE_EPOCH
    expect(statSync(join(files, 'tmp')).mode & 0o7777).toBe(0o1777);
    expect(statSync(join(files, 'root')).mode & 0o7777).toBe(0o700);
    expect(statSync(join(files, 'etc')).mtimeMs).toBe(0); // directory mtimes survive their children being written
    // Nothing left in tmp/.
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);

    // Present: returns at once, same tree or image.
    const before = statSync(rootfsOf(rec.id));
    const again = await store.ensureRootfs(rec.id);
    expect(again).toEqual({ dir, name });
    const after = statSync(rootfsOf(rec.id));
    expect([after.ino, after.mtimeMs, after.ctimeMs]).toEqual([before.ino, before.mtimeMs, before.ctimeMs]);
    expect(unpacks(rec.id)).toHaveLength(1);

    // The image's user resolves against the unpacked /etc/passwd.
    expect(await resolveUser(dir, { imageUser: (await store.runConfig(rec.id)).user })).toEqual({ uid: 1234, gid: 1234, groups: [1234] });
  });

  it('unpacks once for concurrent callers, and keeps the run config', async () => {
    const rec = await store.pull(refs['rootfs-named-user']!);
    const results = await Promise.all([store.ensureRootfs(rec.id), store.ensureRootfs(rec.id.slice(7)), store.ensureRootfs(rec.id)]);
    expect(new Set(results.map((r) => r.dir)).size).toBe(1);
    expect(unpacks(rec.id)).toHaveLength(1);
    const dir = results[0].dir;
    const files = filesOf(results[0]);
    expect(readdirSync(join(files, 'opt/old'))).toEqual(['b.txt']);
    expect(existsSync(join(files, 'etc/remove-me'))).toBe(false);

    const rc = await store.runConfig(rec.id);
    expect(rc).toEqual({ entrypoint: [], cmd: ['/bin/sh'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], workingDir: '/', user: 'app', exposedPorts: [] });
    expect(await resolveUser(dir, { imageUser: rc.user })).toEqual({ uid: 1234, gid: 1234, groups: [1234] });
    await expect(resolveUser(dir, { imageUser: rc.user, runAsUsername: 'nobody' })).rejects.toThrow('unable to find user nobody: no matching entries in passwd file');

    // A record written by an older vmlet has no runConfig: read from the config blob.
    delete store.index.get(rec.id)!.runConfig;
    expect(await store.runConfig(rec.id)).toEqual(rc);
  });

  it('unpacks busybox-app with its hard-linked applets, and runs its Cmd', async () => {
    const rec = await store.pull(refs['busybox-app']!);
    const r = await store.ensureRootfs(rec.id);
    const dir = r.dir;
    const files = filesOf(r);
    console.log(`busybox-app unpacked in ${unpacks(rec.id)[0]?.ms} ms (${format})`);
    const bb = lstatSync(join(files, 'bin/busybox'));
    expect(bb.mode & 0o7777).toBe(0o755); // the links' headers say 0755 too: each one sets the inode's mode
    for (const applet of ['bin/sh', 'bin/wget', 'usr/bin/env']) expect(lstatSync(join(files, applet)).ino, applet).toBe(bb.ino);
    expect(bb.nlink).toBeGreaterThan(40);
    expect(statSync(join(files, 'home/app/hello.txt')).uid).toBe(1234);
    const rc = await store.runConfig(rec.id);
    expect(containerArgs(rc, [], [])).toEqual(['sh']);
    expect(containerArgs(rc, [], ['-c', 'echo $APP'])).toEqual(['-c', 'echo $APP']);
    expect(containerEnv(rc.env, [{ key: 'APP', value: '2' }])).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP=2']);
    expect(rc.workingDir).toBe('/home/app');
    expect(await resolveUser(dir, { imageUser: rc.user })).toEqual({ uid: 0, gid: 0, groups: [0] });
    expect(await resolveUser(dir, { imageUser: rc.user, runAsUser: 1234, supplementalGroups: [5] })).toEqual({ uid: 1234, gid: 1234, groups: [1234, 5] });
  });

  it('refuses a containerDisk image (it is a VM of its own)', async () => {
    const rec = await store.pull(refs.containerdisk!);
    await expect(store.ensureRootfs(rec.id)).rejects.toMatchObject({ kind: 'failed-precondition' });
    expect(readdirSync(store.rootfsRoot).filter((n) => n.startsWith(rec.id.slice(7)))).toEqual([]);
    await expect(store.ensureRootfs('sha256:' + '0'.repeat(64))).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('removes the rootfs with the image, and makes it again after a new pull', async () => {
    const rec = store.status(refs.rootfs!)!;
    const hex = rec.id.slice(7);
    const ofImage = () => readdirSync(store.rootfsRoot).filter((n) => n.startsWith(hex)).sort();
    await waitFor('its data on disk (the marker gone)', () => !existsSync(join(store.rootfsRoot, `${hex}.unsynced`)));
    expect(ofImage()).toEqual(format === 'tree' ? [hex] : [`${hex}.erofs`, `${hex}.ids`]);
    await store.remove(rec.id);
    expect(ofImage()).toEqual([]);
    // The named-user image is still there.
    expect(existsSync(rootfsOf(store.status(refs['rootfs-named-user']!)!.id))).toBe(true);

    await store.pull(refs.rootfs!);
    const files = filesOf(await store.ensureRootfs(rec.id));
    expect(unpacks(rec.id)).toHaveLength(2);
    expect(readFileSync(join(files, 'etc/motd'), 'utf8')).toContain('layer 2');
  });

  it('does not leave a rootfs behind for an image removed while it unpacks', async () => {
    const rec = store.status(refs['rootfs-named-user']!)!;
    const hex = rec.id.slice(7);
    for (const n of readdirSync(store.rootfsRoot)) if (n.startsWith(hex)) rmSync(join(store.rootfsRoot, n), { recursive: true });
    const pending = store.ensureRootfs(rec.id);
    await store.remove(rec.id);
    await expect(pending).rejects.toMatchObject({ kind: 'not-found' });
    expect(readdirSync(store.rootfsRoot).filter((n) => n.startsWith(hex))).toEqual([]);
  });
});

// --- hostile and tricky layers, built here ------------------------------------------------

type Entry = TarEntry;

let layerDir: string;
let n = 0;
/** zstd -3 by the zstd program (node-install installs it), as a registry's zstd layer. */
const zstdOf = (tar: Buffer) => execFileSync('zstd', ['-q', '-c', '-3'], { input: tar });

function layer(entries: Entry[], opts: { gzip?: boolean; zstd?: boolean; diffId?: string; body?: (tar: Buffer) => Buffer } = {}): LayerRef {
  const tar = tarOf(entries);
  const body = (opts.body ?? (opts.zstd ? zstdOf : opts.gzip === false ? (t: Buffer) => t : gzipSync))(tar);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const path = join(layerDir, `layer-${n++}`);
  writeFileSync(path, body);
  return {
    digest,
    path,
    mediaType: opts.zstd ? 'application/vnd.oci.image.layer.v1.tar+zstd' : opts.gzip === false ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip',
    diffId: opts.diffId ?? `sha256:${createHash('sha256').update(tar).digest('hex')}`,
  };
}

/** Layers with a size past SMALL_IMAGE_BYTES: unpackRootfsOffThread builds their tree in its worker thread. */
const large = (layers: LayerRef[]) => layers.map((l) => ({ ...l, size: SMALL_IMAGE_BYTES + 1 }));

type UnpackWith = (layers: LayerRef[], dest: string, tmp: string, limits: ScanLimits) => Promise<void>;
describe.each<[string, UnpackWith]>([
  ['unpackRootfs (on the calling thread)', unpackRootfs],
  ['unpackRootfsOffThread (a large image: in the worker thread)', async (layers: LayerRef[], dest: string, tmp: string, limits: ScanLimits) => void (await unpackRootfsOffThread(large(layers), dest, tmp, limits))],
  ...(HOST_EROFS
    ? ([
        ['unpackErofs (an EROFS image, on the calling thread)', async (layers: LayerRef[], dest: string, tmp: string, limits: ScanLimits) => {
          await (await unpackErofs(layers, dest, tmp, limits)).synced;
          mountErofs(dest);
        }],
        ['unpackRootfsOffThread erofs (a large image: in the worker thread)', async (layers: LayerRef[], dest: string, tmp: string, limits: ScanLimits) => {
          await (await unpackRootfsOffThread(large(layers), dest, tmp, limits, 'erofs')).synced;
          mountErofs(dest);
        }],
      ] satisfies Array<[string, UnpackWith]>)
    : []),
])('%s', (_name, unpackWith) => {
  let work: string;
  let tmp: string;
  let outside: string;
  let dest: string;
  let k = 0;

  beforeAll(() => {
    work = mkTemp('vmlet-unpack-');
    layerDir = join(work, 'layers');
    tmp = join(work, 'tmp');
    outside = join(work, 'outside');
    for (const d of [layerDir, tmp, outside]) mkdirSync(d);
    writeFileSync(join(outside, 'victim'), 'untouched\n');
  });

  const unpack = async (layers: LayerRef[], limits: ScanLimits = BIG) => {
    dest = join(work, `dest-${k++}`);
    await unpackWith(layers, dest, tmp, limits);
    return dest;
  };
  /** The layers are refused with `msg`, nothing is in dest, tmp/ or outside/. */
  const refused = async (layers: LayerRef[], msg: string | RegExp, limits: ScanLimits = BIG) => {
    await expect(unpack(layers, limits)).rejects.toThrow(msg);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.erofs`)).toBe(false);
    expect(readdirSync(tmp)).toEqual([]);
    expect(readdirSync(outside).sort()).toEqual(['victim']);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('untouched\n');
  };

  it('unpacks zstd layers (through the zstd program), and refuses a truncated one leaving nothing behind', async () => {
    const entries: Entry[] = [
      { path: 'etc/', type: 'Directory' },
      { path: 'etc/motd', data: 'zstd layer\n'.repeat(5000) },
      { path: 'bin/tool', data: Buffer.alloc(300_000, 7), mode: 0o755 },
    ];
    const d = await unpack([layer(entries, { zstd: true })]);
    expect(readFileSync(join(d, 'etc/motd'), 'utf8')).toBe('zstd layer\n'.repeat(5000));
    expect(readFileSync(join(d, 'bin/tool')).equals(Buffer.alloc(300_000, 7))).toBe(true);
    expect(statSync(join(d, 'bin/tool')).mode & 0o777).toBe(0o755);
    const cut = layer(entries, { zstd: true, body: (t) => zstdOf(t).subarray(0, Math.floor(zstdOf(t).length / 2)) });
    await refused([cut], new RegExp(`^image layer ${cut.digest} rejected: zstd: .*(premature end|unexpected end)`));
  });

  it('keeps owners, modes (setuid, sticky), mtimes, fifos, hard links and symlinks as written', async () => {
    const d = await unpack([
      layer([
        { path: 'usr/', type: 'Directory' },
        { path: 'usr/bin/', type: 'Directory' },
        { path: 'usr/bin/su', data: 'su', mode: 0o4755, uid: 0, gid: 0 },
        { path: 'usr/bin/wall', data: 'wall', mode: 0o2755, uid: 0, gid: 5 },
        { path: 'scratch/', type: 'Directory', mode: 0o1777 },
        { path: 'home/u/', type: 'Directory', mode: 0o750, uid: 1000, gid: 2000 },
        { path: 'home/u/f', data: 'x', mode: 0o600, uid: 1000, gid: 2000, mtime: new Date(1234567890000) },
        { path: 'run/fifo', type: 'FIFO', mode: 0o620, uid: 7, gid: 8 },
        { path: 'usr/bin/su-again', type: 'Link', linkpath: 'usr/bin/su', mode: 0o4755 },
        // As containerd unpacks it: a link's header sets the shared inode's mode and owner.
        { path: 'usr/bin/tool', data: 'tool', mode: 0o644 },
        { path: 'usr/bin/tool-x', type: 'Link', linkpath: 'usr/bin/tool', mode: 0o755, uid: 0, gid: 9 },
        { path: 'link-out', type: 'SymbolicLink', linkpath: outside + '/victim', uid: 3, gid: 4 },
        { path: '/abs.txt', data: 'absolute paths are inside the rootfs' },
      ]),
    ]);
    const mode = (p: string) => lstatSync(join(d, p)).mode & 0o7777;
    expect(mode('usr/bin/su')).toBe(0o4755);
    expect(mode('usr/bin/tool')).toBe(0o755);
    expect(lstatSync(join(d, 'usr/bin/tool')).gid).toBe(9);
    expect(mode('usr/bin/wall')).toBe(0o2755);
    expect(lstatSync(join(d, 'usr/bin/wall')).gid).toBe(5);
    expect(mode('scratch')).toBe(0o1777);
    const home = lstatSync(join(d, 'home/u'));
    expect([home.uid, home.gid, home.mode & 0o7777]).toEqual([1000, 2000, 0o750]);
    expect(mode('home')).toBe(0o755); // made for its child: containerd's default
    const f = lstatSync(join(d, 'home/u/f'));
    expect([f.uid, f.gid, f.mode & 0o7777, f.mtimeMs]).toEqual([1000, 2000, 0o600, 1234567890000]);
    expect(home.mtimeMs).toBe(1_000_000_000_000);
    const fifo = lstatSync(join(d, 'run/fifo'));
    expect([fifo.isFIFO(), fifo.uid, fifo.gid, fifo.mode & 0o7777]).toEqual([true, 7, 8, 0o620]);
    expect(lstatSync(join(d, 'usr/bin/su-again')).ino).toBe(lstatSync(join(d, 'usr/bin/su')).ino);
    const l = lstatSync(join(d, 'link-out'));
    expect([l.isSymbolicLink(), l.uid, l.gid]).toEqual([true, 3, 4]);
    expect(readlinkSync(join(d, 'link-out'))).toBe(outside + '/victim');
    expect(readFileSync(join(d, 'abs.txt'), 'utf8')).toContain('absolute');
    expect(mode('.')).toBe(0o755);
  });

  it('keeps large directories (names of every length, sorted bytewise), long symlinks and files of block-edge sizes', async () => {
    // In an EROFS image a directory past one block spans several, found by binary search on
    // their first names: every name must be found, and listed once.
    const names = Array.from({ length: 700 }, (_, i) => `${'-+#!~_aZ'[i % 8]}${i}`.padEnd(1 + (i % 200), 'x'));
    names.push('y'.repeat(255), ' space', '.hidden', '..dots', 'é-utf8');
    const target = (n: number) => 'd/'.repeat(n / 2);
    const sizes = [0, 1, 4095, 4096, 4097, 3 * 4096 + 5];
    const d = await unpack([
      layer([
        { path: 'big/', type: 'Directory' },
        ...names.map((n, i) => ({ path: `big/${n}`, data: `${i}` })),
        { path: 'ln-3000', type: 'SymbolicLink', linkpath: target(3000) },
        { path: 'ln-4094', type: 'SymbolicLink', linkpath: target(4094) },
        ...sizes.map((n) => ({ path: `size-${n}`, data: Buffer.alloc(n, n % 251) })),
      ]),
    ]);
    expect(readdirSync(join(d, 'big')).sort()).toEqual([...names].sort());
    names.forEach((n, i) => expect(readFileSync(join(d, 'big', n), 'utf8')).toBe(`${i}`));
    expect(existsSync(join(d, 'big', 'not-there'))).toBe(false);
    expect(readlinkSync(join(d, 'ln-3000'))).toBe(target(3000));
    expect(readlinkSync(join(d, 'ln-4094'))).toBe(target(4094));
    for (const n of sizes) expect(readFileSync(join(d, `size-${n}`)).equals(Buffer.alloc(n, n % 251))).toBe(true);
  });

  it('applies whiteouts and opaque dirs, keeping the opaque layer\'s entries before and after the marker', async () => {
    const d = await unpack([
      layer([
        { path: 'a/', type: 'Directory' },
        { path: 'a/old1', data: '1' },
        { path: 'a/sub/', type: 'Directory' },
        { path: 'a/sub/old2', data: '2' },
        { path: 'gone/', type: 'Directory' },
        { path: 'gone/x', data: 'x' },
        { path: 'file', data: 'f' },
        { path: 'keep', data: 'k' },
      ]),
      layer([
        { path: 'a/new-before', data: 'nb' },
        { path: 'a/sub/new-deep', data: 'nd' },
        { path: 'a/.wh..wh..opq', data: '' },
        { path: 'a/new-after', data: 'na' },
        { path: '.wh.gone', data: '' },
        { path: '.wh.file', data: '' },
        { path: '.wh.never-existed', data: '' },
      ]),
      layer([{ path: 'gone/', type: 'Directory' }, { path: 'gone/back', data: 'b' }], { gzip: false }),
    ]);
    expect(readdirSync(join(d, 'a')).sort()).toEqual(['new-after', 'new-before', 'sub']);
    expect(readdirSync(join(d, 'a/sub'))).toEqual(['new-deep']);
    expect(readdirSync(d).sort()).toEqual(['a', 'gone', 'keep']);
    expect(readdirSync(join(d, 'gone'))).toEqual(['back']);
  });

  it('replaces a symlink of a lower layer instead of writing through it', async () => {
    const d = await unpack([
      layer([{ path: 'f', type: 'SymbolicLink', linkpath: join(outside, 'victim') }]),
      layer([{ path: 'f', data: 'replaced' }]),
    ]);
    expect(lstatSync(join(d, 'f')).isFile()).toBe(true);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('untouched\n');
  });

  it('refuses a file written through a symlink of the same layer', async () => {
    await refused([layer([{ path: 'evil', type: 'SymbolicLink', linkpath: outside }, { path: 'evil/x', data: 'escaped' }])], 'goes through symlink "evil"');
  });

  it('refuses a file written through a symlink dir of a lower layer', async () => {
    await refused([layer([{ path: 'etc', type: 'SymbolicLink', linkpath: outside }]), layer([{ path: 'etc/passwd', data: 'escaped' }])], 'goes through symlink "etc"');
    await refused([layer([{ path: 'up', type: 'SymbolicLink', linkpath: '../../../../../..' + outside }]), layer([{ path: 'up/y/z', data: 'escaped' }])], 'goes through symlink "up"');
  });

  it('refuses whiteouts and hard-link targets reached through a symlink', async () => {
    await refused([layer([{ path: 's', type: 'SymbolicLink', linkpath: outside }]), layer([{ path: 's/.wh.victim', data: '' }])], 'goes through symlink "s"');
    await refused([layer([{ path: 's', type: 'SymbolicLink', linkpath: outside }]), layer([{ path: 's/.wh..wh..opq', data: '' }])], 'goes through symlink "s"');
    await refused([layer([{ path: 's', type: 'SymbolicLink', linkpath: outside }, { path: 'h', type: 'Link', linkpath: 's/victim' }])], 'goes through symlink "s"');
  });

  it('makes a hard link to a symlink a link to the symlink, never to what it points at', async () => {
    const d = await unpack([layer([{ path: 'ln', type: 'SymbolicLink', linkpath: '/etc/shadow' }, { path: 'hl', type: 'Link', linkpath: 'ln' }])]);
    expect(lstatSync(join(d, 'hl')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(d, 'hl'))).toBe('/etc/shadow');
  });

  it('refuses ".." in paths and hard-link targets, and hard links to nothing', async () => {
    await refused([layer([{ path: 'ok/../../x', data: 'escaped' }])], "contains '..'");
    await refused([layer([{ path: '../../../' + outside + '/x', data: 'escaped' }])], "contains '..'");
    await refused([layer([{ path: 'pw', type: 'Link', linkpath: '../../etc/passwd' }])], "contains '..'");
    // Absolute target: inside the rootfs, where there is no /etc/passwd.
    await refused([layer([{ path: 'pw', type: 'Link', linkpath: '/etc/passwd' }])], 'which is not in the image');
  });

  it('refuses device nodes', async () => {
    await refused([layer([{ path: 'dev/', type: 'Directory' }, { path: 'dev/mem', type: 'CharacterDevice', devmaj: 1, devmin: 1 }])], 'device node');
  });

  it('refuses the project\'s hostile test images', async () => {
    const images = testImages();
    const fromLayout = (name: TestImageName): LayerRef[] => {
      const img = images[name];
      return img.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, path: join(img.layout, 'blobs/sha256', l.digest.slice(7)) }));
    };
    await refused(fromLayout('hostile-traversal'), "contains '..'");
    await refused(fromLayout('hostile-symlink'), 'goes through symlink "etc"');
    await refused(fromLayout('hostile-hardlink'), "contains '..'");
    await refused(fromLayout('hostile-device'), 'device node');
    await refused(fromLayout('hostile-size'), 'is 2199023255552 bytes (limit', { ...BIG, maxEntryBytes: 2 ** 40 });
    await refused(fromLayout('hostile-size'), /truncated|Truncated/, { maxEntryBytes: 2 ** 42, maxImageBytes: 2 ** 42, writableBytes: 2 ** 42 });
  });

  it('counts hard links at their target\'s size: a hard-link storm cannot pass the size cap', async () => {
    const big = Buffer.alloc(1024 * 1024, 7);
    const storm: Entry[] = [{ path: 'big', data: big }];
    for (let i = 0; i < 64; i++) storm.push({ path: `l${i}`, type: 'Link', linkpath: 'big' });
    const limits = { maxEntryBytes: 2 * 1024 * 1024, maxImageBytes: 32 * 1024 * 1024, writableBytes: 32 * 1024 * 1024 };
    await refused([layer(storm)], 'hard links count at their target\'s size', limits);
    // Under the cap it unpacks (the links share one inode).
    const d = await unpack([layer(storm.slice(0, 20))], limits);
    expect(statSync(join(d, 'l18')).nlink).toBe(20);
  });

  it('enforces entry, uncompressed and writable limits', async () => {
    const l = layer([{ path: 'a', data: Buffer.alloc(4096) }, { path: 'b', data: Buffer.alloc(4096) }]);
    await refused([l], 'is 4096 bytes (limit 4000)', { ...BIG, maxEntryBytes: 4000 });
    await refused([l], 'uncompressed layers exceed 8192 bytes', { ...BIG, maxImageBytes: 8192 });
    await refused([l], 'needs more than the 6000 bytes free', { ...BIG, writableBytes: 6000 });
  });

  it('checks each layer\'s diff_id', async () => {
    await refused([layer([{ path: 'a', data: 'a' }], { diffId: 'sha256:' + '1'.repeat(64) })], "does not match the config's diff_id");
  });

  it('refuses a corrupt layer among many (read side by side for EROFS) and one after a hostile one, leaving nothing', async () => {
    const layers = Array.from({ length: 7 }, (_, i) => layer([{ path: `l${i}/`, type: 'Directory' }, { path: `l${i}/data`, data: Buffer.alloc(300_000, i) }]));
    const cut = layers[4]!;
    const body = readFileSync(cut.path);
    writeFileSync(cut.path, body.subarray(0, body.length / 2));
    await refused(layers, /unexpected end of file|Truncated|truncated/);
    // Layer 1 is hostile (applied in order): its error, whatever the later layers (the cut one too) do.
    const hostile = [layers[0]!, layer([{ path: 'l0/data/x', data: 'below a file' }]), ...layers.slice(2)];
    await refused(hostile, 'is below "l0/data", which is not a directory');
  }, 30_000);

  it('refuses a corrupt layer without hanging', async () => {
    const good = layer([{ path: 'a', data: Buffer.alloc(200_000, 1) }]);
    const body = readFileSync(good.path);
    writeFileSync(good.path, body.subarray(0, body.length / 2));
    await refused([good], /unexpected end of file|Truncated|truncated/);
  }, 20_000);
});

describe('the rootfs unpack worker thread', () => {
  let work: string;
  let tmp: string;

  beforeAll(() => {
    work = mkTemp('vmlet-unpack-worker-');
    layerDir = join(work, 'layers');
    tmp = join(work, 'tmp');
    for (const d of [layerDir, tmp]) mkdirSync(d);
  });

  it('unpacks a small image on the calling thread (no worker starts) and a large one in the worker', async () => {
    await rootfsWorker()?.terminate();
    const l = layer([{ path: 'etc/hostname', data: 'small\n' }]);
    const small = join(work, 'small');
    await unpackRootfsOffThread([{ ...l, size: statSync(l.path).size }], small, tmp, BIG);
    expect(readFileSync(join(small, 'etc/hostname'), 'utf8')).toBe('small\n');
    expect(rootfsWorker()).toBeUndefined();
    const big = join(work, 'big');
    await unpackRootfsOffThread(large([l]), big, tmp, BIG);
    expect(readFileSync(join(big, 'etc/hostname'), 'utf8')).toBe('small\n');
    expect(rootfsWorker()).toBeDefined();
  });

  it('a worker that dies mid-unpack fails it with INTERNAL and leaves no tree; the next unpack gets a new worker', async () => {
    // The layer is a FIFO the test writes: the unpack waits in the worker for bytes that only come when the test says.
    const fifo = join(work, 'layer-fifo');
    execFileSync('mkfifo', [fifo]);
    let writer = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      const whole = tarOf([{ path: 'first', data: 'written\n' }, { path: 'second', data: Buffer.alloc(64 * 1024, 1) }]);
      writeSync(writer, whole.subarray(0, 512 * 3 + 1000)); // 'first' whole, then part of 'second'
      const dest = join(work, 'dead');
      const pending = unpackRootfsOffThread(large([{ digest: 'sha256:' + '2'.repeat(64), mediaType: 'application/vnd.oci.image.layer.v1.tar', path: fifo }]), dest, tmp, BIG);
      pending.catch(() => undefined);
      await waitFor('the worker to write the first file', () => readdirSync(tmp).some((d) => existsSync(join(tmp, d, 'first'))), { intervalMs: 5 });
      // The worker's loop ends only once its read in the thread pool returns: EOF after the end began.
      const ended = rootfsWorker()!.terminate();
      closeSync(writer);
      writer = -1;
      await ended;
      await expect(pending).rejects.toMatchObject({ kind: 'internal', message: expect.stringMatching(/rootfs unpack worker: exited/) as unknown });
      expect(existsSync(dest)).toBe(false);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      if (writer >= 0) closeSync(writer);
    }
    const l = layer([{ path: 'again', data: 'yes\n' }]);
    const next = join(work, 'next');
    await unpackRootfsOffThread(large([l]), next, tmp, BIG);
    expect(readFileSync(join(next, 'again'), 'utf8')).toBe('yes\n');
  });
});
