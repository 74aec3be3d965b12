// Layer scanning on tar layers built here byte by byte (node-tar's Header), so hostile entries
// can be written exactly; the files are real, on disk, gzip'd or not.
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header, type HeaderData } from 'tar';
import { pino } from 'pino';
import { scanLayers, type LayerRef, type ScanLimits, type Wanted } from '../../src/image/layer-scan.js';
import { keptFile } from '../../src/image/boot.js';
import { LayerFeed } from '../../src/image/layer-feed.js';
import { scanWorker } from '../../src/image/scan-client.js';
import { SMALL_IMAGE_BYTES } from '../../src/image/layer-tar.js';
import { ImageStore, imageLimitsOf } from '../../src/image/store.js';
import { defaults } from '../../src/config.js';
import { tempDir } from '../helpers/vmlet.js';

type Entry = HeaderData & { body?: string };

function tar(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const h = new Header({ mode: 0o644, mtime: new Date(0), type: 'File', ...e, size: e.size ?? body.length });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    blocks.push(block);
    if (body.length) blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const LIMITS: ScanLimits = { maxEntryBytes: 1024 ** 3, maxImageBytes: 10 * 1024 ** 3, writableBytes: 1024 ** 3 };

function layer(dir: string, entries: Entry[], gzip = true): LayerRef {
  const raw = tar(entries);
  const data = gzip ? gzipSync(raw) : raw;
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const path = join(dir, digest.slice(7));
  writeFileSync(path, data);
  return {
    digest,
    path,
    mediaType: gzip ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar',
    diffId: `sha256:${createHash('sha256').update(raw).digest('hex')}`,
  };
}

const wantAll: Wanted = { prefixes: ['disk/', 'boot/'] };

describe('layer scan', () => {
  it('keeps wanted files across layers, applying whiteouts and opaque dirs', async () => {
    const dir = tempDir('vmlet-scan-');
    const l1 = layer(dir, [
      { path: 'disk/', type: 'Directory', mode: 0o755 },
      { path: 'disk/old.qcow2', body: 'old' },
      { path: 'boot/', type: 'Directory' },
      { path: 'boot/vmlinuz-6.1', body: 'kernel-v1' },
      { path: 'boot/vmlinuz', type: 'SymbolicLink', linkpath: 'vmlinuz-6.1' },
      { path: 'boot/extra', body: 'x' },
      { path: 'etc/hostname', body: 'ignored' },
    ]);
    const l2 = layer(dir, [
      { path: 'disk/.wh.old.qcow2', body: '' },
      { path: 'disk/new.qcow2', body: 'new disk' },
      { path: './boot/.wh..wh..opq', body: '' },
      { path: 'boot/initrd.img', body: 'initrd' },
    ], false);
    const tmp = tempDir('vmlet-scan-tmp-');
    const r = await scanLayers([l1, l2], wantAll, tmp, LIMITS);
    expect(r.diskFiles).toEqual(['disk/new.qcow2']);
    expect(readFileSync(r.files.get('disk/new.qcow2')!, 'utf8')).toBe('new disk');
    expect([...r.files.keys()].sort()).toEqual(['boot/initrd.img', 'disk/new.qcow2']);
    expect(r.symlinks.has('boot/vmlinuz')).toBe(false); // hidden by the opaque whiteout
    // Only the kept files remain in the temp dir: whited-out ones were deleted.
    expect(readdirSync(tmp).length).toBe(2);
  });

  it('finds a kept file through the image\'s symlinks, inside the image root', async () => {
    const symlinks = new Map([
      ['vmlinuz', 'boot/vmlinuz-6.1'],
      ['boot/vmlinuz', '../../../boot/vmlinuz-6.1'],
      ['boot/abs', '/boot/vmlinuz-6.1'],
      ['boot/dir', '/boot'],
      ['loop', 'loop'],
    ]);
    const scan = { symlinks, files: new Map([['boot/vmlinuz-6.1', '/tmp/scan-k']]) };
    expect(await keptFile('vmlinuz', scan)).toBe('/tmp/scan-k');
    expect(await keptFile('/boot/vmlinuz', scan)).toBe('/tmp/scan-k');
    expect(await keptFile('boot/abs', scan)).toBe('/tmp/scan-k');
    expect(await keptFile('boot/dir/vmlinuz-6.1', scan)).toBe('/tmp/scan-k');
    expect(await keptFile('boot/vmlinuz-6.1/x', scan)).toBeUndefined(); // a file is no directory
    expect(await keptFile('loop', scan)).toBeUndefined();
    expect(await keptFile('boot/missing', scan)).toBeUndefined();
  });

  it.each<[string, Entry[], RegExp]>([
    ['path traversal', [{ path: '../../../tmp/escape', body: 'x' }], /contains '\.\.'/],
    ['a file through a symlink', [{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'etc/escape', body: 'x' }], /goes through symlink "etc"/],
    ['a hard link out of the root', [{ path: 'disk/x', type: 'Link', linkpath: '../../outside' }], /contains '\.\.'/],
    ['a device node', [{ path: 'dev/mem', type: 'CharacterDevice', devmaj: 1, devmin: 1 }], /device node "dev\/mem"/],
    ['an absurd size', [{ path: 'disk/huge', size: 2 * 1024 ** 4 }], /2199023255552 bytes \(limit/],
  ])('rejects %s without writing it', async (_name, entries, why) => {
    const dir = tempDir('vmlet-scan-');
    const tmp = tempDir('vmlet-scan-tmp-');
    const l = layer(dir, entries);
    const err = await scanLayers([l], { prefixes: [''] }, tmp, LIMITS).then(
      () => undefined,
      (e: Error & { kind?: string }) => e,
    );
    expect(err?.message).toMatch(why);
    expect(err?.kind).toBe('invalid-argument');
    expect(readdirSync(tmp)).toEqual([]);
    expect(existsSync('/tmp/escape')).toBe(false);
  });

  it('reads layers side by side but applies them in order: a lower layer\'s symlink still guards an upper layer\'s file, and a bad upper layer leaves nothing', async () => {
    const dir = tempDir('vmlet-scan-');
    const lower = layer(dir, [
      { path: 'boot/', type: 'Directory' },
      { path: 'boot/k', type: 'SymbolicLink', linkpath: '/etc' },
      { path: 'disk/a.img', body: 'a'.repeat(100_000) },
    ]);
    // Read at the same time as `lower`, its file under boot/k must still be refused once `lower` is applied.
    const upper = layer(dir, [{ path: 'boot/k/passwd', body: 'x' }]);
    const tmp = tempDir('vmlet-scan-tmp-');
    await expect(scanLayers([lower, upper], wantAll, tmp, LIMITS)).rejects.toThrow(/entry "boot\/k\/passwd" goes through symlink "boot\/k"/);
    expect(readdirSync(tmp)).toEqual([]);
    // A layer that is not gzip at all, above a good one whose file was already written: the bad
    // layer is named, and no temp file stays.
    const broken: LayerRef = { ...upper, path: join(dir, 'broken'), digest: 'sha256:' + 'b'.repeat(64), diffId: undefined };
    writeFileSync(broken.path, 'not gzip at all');
    await expect(scanLayers([lower, broken], wantAll, tmp, LIMITS)).rejects.toThrow(new RegExp(`image layer sha256:${'b'.repeat(64)} rejected`));
    expect(readdirSync(tmp)).toEqual([]);
    // In order, an upper layer's whiteout removes a lower layer's file even when both were read at once.
    const wh = layer(dir, [{ path: 'disk/.wh.a.img', body: '' }, { path: 'disk/b.img', body: 'b' }]);
    const r = await scanLayers([lower, wh], wantAll, tmp, LIMITS);
    expect(r.diskFiles).toEqual(['disk/b.img']);
    expect(readdirSync(tmp)).toHaveLength(1);
  });

  it('a layer whose download never starts (an earlier one failed) ends the scan with that failure, not a hang', async () => {
    const dir = tempDir('vmlet-scan-');
    const ok = layer(dir, [{ path: 'disk/a.img', body: 'a' }]);
    const never: LayerRef = { ...layer(dir, [{ path: 'disk/b.img', body: 'b' }]), feed: new LayerFeed(), ready: Promise.reject(new Error('layer 0 download failed')) };
    await expect(scanLayers([ok, never], wantAll, tempDir('vmlet-scan-tmp-'), LIMITS)).rejects.toThrow('layer 0 download failed');
  });

  it('refuses to fill the store and checks diff_ids', async () => {
    const dir = tempDir('vmlet-scan-');
    const big = layer(dir, [{ path: 'disk/d.img', body: 'x'.repeat(2000) }]);
    await expect(scanLayers([big], wantAll, tempDir(), { ...LIMITS, writableBytes: 1000 })).rejects.toThrow(/bytes free in the image store/);
    await expect(scanLayers([{ ...big, diffId: 'sha256:' + '0'.repeat(64) }], wantAll, tempDir(), LIMITS)).rejects.toThrow(/does not match the config's diff_id/);
  });

  it('charges kept hard links as the copies they are: a 1 MiB file and 5 links do not pass a 1.5 MiB cap', async () => {
    const MiB = 1024 * 1024;
    const dir = tempDir('vmlet-scan-');
    const links: Entry[] = [1, 2, 3, 4, 5].map((i) => ({ path: `boot/link${i}`, type: 'Link', linkpath: 'boot/vmlinuz' }));
    const l = layer(dir, [{ path: 'boot/vmlinuz', body: 'k'.repeat(MiB) }, ...links]);
    const tmp = tempDir('vmlet-scan-tmp-');
    await expect(scanLayers([l], wantAll, tmp, { ...LIMITS, writableBytes: 1.5 * MiB })).rejects.toThrow(
      /needs more than the 1572864 bytes free in the image store \(hard link "boot\/link1" counts as a copy\)/,
    );
    expect(readdirSync(tmp)).toEqual([]);
    // Under the image cap too, which bounds what is kept whatever the free space.
    await expect(scanLayers([l], wantAll, tempDir(), { ...LIMITS, maxImageBytes: 3 * MiB })).rejects.toThrow(/kept files total more than 3145728 bytes \(hard link "boot\/link3" counts as a copy\)/);
    // With room for all six copies, each is whole.
    const r = await scanLayers([l], wantAll, tempDir(), { ...LIMITS, writableBytes: 6 * MiB });
    expect(readFileSync(r.files.get('boot/link5')!, 'utf8')).toHaveLength(MiB);
  });

  it('has limits by default: the image cap (and so the largest file) is the config\'s imageMaxGiB, 32 GiB', async () => {
    const GiB = 1024 ** 3;
    expect(defaults.imageMaxGiB).toBe(32);
    const store = new ImageStore(tempDir('vmlet-store-'), { insecure: [], mirrors: {} }, pino({ level: 'silent' }));
    await store.init();
    expect(await store.limits()).toMatchObject({ maxImageBytes: 32 * GiB, maxEntryBytes: 32 * GiB });
    const small = new ImageStore(tempDir('vmlet-store-'), { insecure: [], mirrors: {} }, pino({ level: 'silent' }), imageLimitsOf({ imageMaxGiB: 2 }));
    await small.init();
    expect(await small.limits()).toMatchObject({ maxImageBytes: 2 * GiB, maxEntryBytes: 2 * GiB });
  });

  it('reads a layer in the worker as it downloads, from a feed on this thread', async () => {
    const dir = tempDir('vmlet-scan-');
    const body = randomBytes(150_000).toString('hex'); // gzips to ~160 KB: the writes below land mid-layer
    const whole = layer(dir, [{ path: 'disk/d.img', body }]);
    const data = readFileSync(whole.path);
    const tmpBlob = join(dir, 'downloading');
    writeFileSync(tmpBlob, data.subarray(0, 1000));
    const feed = new LayerFeed();
    feed.started(tmpBlob, whole.path);
    feed.wrote(1000);
    let checked!: () => void;
    const ready = new Promise<void>((r) => (checked = r));
    const scan = scanLayers([{ ...whole, feed, ready }], wantAll, tempDir('vmlet-scan-tmp-'), LIMITS);
    // The rest lands in two writes while the worker reads; then the digest check.
    await new Promise((r) => setTimeout(r, 50));
    appendFileSync(tmpBlob, data.subarray(1000, 60_000));
    feed.wrote(60_000);
    appendFileSync(tmpBlob, data.subarray(60_000));
    feed.wrote(data.length);
    feed.end();
    checked();
    feed.finish();
    const r = await scan;
    expect(feed.live).toBe(true);
    expect(readFileSync(r.files.get('disk/d.img')!, 'utf8')).toBe(body);
  });

  it('a worker that dies fails the reads it had with INTERNAL, and the next scan gets a new one', async () => {
    const dir = tempDir('vmlet-scan-');
    const l = layer(dir, [{ path: 'disk/a.img', body: 'a' }]);
    // A download that never ends keeps the read waiting in the worker.
    const feed = new LayerFeed();
    writeFileSync(join(dir, 'stuck'), '');
    feed.started(join(dir, 'stuck'), l.path);
    const stuck = scanLayers([{ ...l, feed, ready: new Promise<void>(() => undefined) }], wantAll, tempDir('vmlet-scan-tmp-'), LIMITS);
    await scanWorker()!.terminate();
    await expect(stuck).rejects.toMatchObject({ kind: 'internal', message: expect.stringMatching(/layer scan worker: exited/) as unknown });
    const r = await scanLayers([l], wantAll, tempDir('vmlet-scan-tmp-'), LIMITS);
    expect([...r.files.keys()]).toEqual(['disk/a.img']);
  });

  it('reads a small image (sizes known, SMALL_IMAGE_BYTES in all) on this thread: no worker starts; a large one goes to the worker', async () => {
    await scanWorker()?.terminate();
    const dir = tempDir('vmlet-scan-');
    const l = layer(dir, [{ path: 'disk/a.img', body: 'a' }]);
    const small = await scanLayers([{ ...l, size: statSync(l.path).size }], wantAll, tempDir('vmlet-scan-tmp-'), LIMITS);
    expect([...small.files.keys()]).toEqual(['disk/a.img']);
    expect(scanWorker()).toBeUndefined();
    const large = await scanLayers([{ ...l, size: SMALL_IMAGE_BYTES + 1 }], wantAll, tempDir('vmlet-scan-tmp-'), LIMITS);
    expect([...large.files.keys()]).toEqual(['disk/a.img']);
    expect(scanWorker()).toBeDefined();
  });
});
