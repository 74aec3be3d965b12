// The CRI ImageService over vmlet's socket, pulling the project's own test images from a real
// registry (Debian's docker-registry) on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, startVmlet, type VmletProcess } from '../helpers/vmlet.js';
import { corruptBlob, ensureTestImages, pushImage, startRegistry, testImages, type TestImageName, type TestRegistry } from '../helpers/registry.js';
import { startTokenProxy, type TokenProxy } from '../helpers/token-proxy.js';
import { GUEST_DIR } from '../helpers/guest.js';
import { waitFor } from '../helpers/wait.js';
import type { Image__Output } from '../../src/gen/runtime/v1/Image.js';
import type { ImageStatusResponse__Output } from '../../src/gen/runtime/v1/ImageStatusResponse.js';
import type { ListImagesResponse__Output } from '../../src/gen/runtime/v1/ListImagesResponse.js';
import type { PullImageResponse__Output } from '../../src/gen/runtime/v1/PullImageResponse.js';
import type { ImageFsInfoResponse__Output } from '../../src/gen/runtime/v1/ImageFsInfoResponse.js';


let reg: TestRegistry;
let v: VmletProcess;
const images = () => testImages();
const pull = (image: string, auth?: object) => call<object, PullImageResponse__Output>(v.image, 'PullImage', { image: { image }, ...(auth ? { auth } : {}) });
const status = (image: string, verbose = false) => call<object, ImageStatusResponse__Output>(v.image, 'ImageStatus', { image: { image }, verbose });
const list = (filter?: string) => call<object, ListImagesResponse__Output>(v.image, 'ListImages', filter ? { filter: { image: { image: filter } } } : {});
const remove = (image: string) => call<object, object>(v.image, 'RemoveImage', { image: { image } });
/** How often the registry served GET for a blob, from its request log. */
const blobGets = (digest: string) =>
  readFileSync(reg.logFile, 'utf8').split('\n').filter((l) => l.includes(`/blobs/${digest}`) && l.includes('GET') && l.includes('response completed')).length;
const storeBlobs = () => readdirSync(join(v.stateDir, 'images', 'sha256'));

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  v = await startVmlet({
    config: `registries:\n  insecure: ["${reg.host}"]\n  mirrors:\n    docker.io: ["${reg.url}"]\n`,
  });
});

afterAll(async () => {
  await v?.stop();
  await reg?.stop();
});

describe('PullImage and ImageStatus', () => {
  it('pulls a containerDisk and extracts its disk once, read-only', async () => {
    const img = images().containerdisk;
    const { reference, manifestDigest } = await pushImage(reg, 'containerdisk', 'vmlet/containerdisk:v1');
    const res = await pull(reference);
    expect(res.image_ref).toBe(img.configDigest);
    const st = await status(reference, true);
    expect(st.image!.id).toBe(img.configDigest);
    expect(st.image!.repo_tags).toEqual([`${reg.host}/vmlet/containerdisk:v1`]);
    expect(st.image!.repo_digests).toEqual([`${reg.host}/vmlet/containerdisk@${manifestDigest}`]);
    const info = JSON.parse(st.info.info!) as { boot: { kind: string; disk: { path: string; format: string; virtualSize: number } } };
    expect(info.boot.kind).toBe('containerdisk');
    expect(info.boot.disk.format).toBe('qcow2');
    expect(info.boot.disk.virtualSize).toBeGreaterThan(0);
    expect(info.boot.disk.path).toBe(join(v.stateDir, 'images', 'disks', `${img.configDigest.slice(7)}.qcow2`));
    expect(statSync(info.boot.disk.path).mode & 0o777).toBe(0o444);
  });

  it('keeps a raw containerDisk raw (overlays on it are as cheap as on qcow2)', async () => {
    const img = images()['containerdisk-raw'];
    const { reference } = await pushImage(reg, 'containerdisk-raw', 'vmlet/containerdisk-raw:v1');
    expect((await pull(reference)).image_ref).toBe(img.configDigest);
    const info = JSON.parse((await status(reference, true)).info.info!) as { boot: { kind: string; disk: { path: string; format: string; virtualSize: number } } };
    expect(info.boot).toMatchObject({ kind: 'containerdisk', disk: { format: 'raw', virtualSize: 8 * 1024 * 1024 } });
    expect(info.boot.disk.path.endsWith(`${img.configDigest.slice(7)}.raw`)).toBe(true);
  });

  it('finds an image by id, bare hex, hex prefix, tag and digest reference', async () => {
    const img = images().containerdisk;
    const hex = img.configDigest.slice(7);
    const digestRef = (await status(`${reg.host}/vmlet/containerdisk:v1`)).image!.repo_digests[0]!;
    for (const name of [img.configDigest, hex, hex.slice(0, 12), `${reg.host}/vmlet/containerdisk:v1`, digestRef]) {
      expect((await status(name)).image?.id, name).toBe(img.configDigest);
    }
  });

  it('answers an unknown image with an empty status, not an error', async () => {
    const st = await status(`${reg.host}/vmlet/absent:v9`);
    expect(st.image).toBeNull();
  });

  it('pulls a kernel-boot image and extracts kernel, initrd and cmdline', async () => {
    const { reference } = await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:v1');
    await pull(reference);
    const info = JSON.parse((await status(reference, true)).info.info!) as { boot: { kind: string; kernel: { kernel: string; initrd: string; cmdline: string } } };
    expect(info.boot.kind).toBe('kernel');
    const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    expect(sha(info.boot.kernel.kernel)).toBe(sha(join(GUEST_DIR, 'vmlinux')));
    expect(sha(info.boot.kernel.initrd)).toBe(sha(join(GUEST_DIR, 'initrd.img')));
    expect(info.boot.kernel.cmdline).toBe(readFileSync(join(GUEST_DIR, 'cmdline'), 'utf8').trim());
  });

  it('pulls a rootfs image: uid from a numeric User, username from a named one', async () => {
    const a = await pushImage(reg, 'rootfs', 'vmlet/rootfs:v1');
    await pull(a.reference);
    const st = await status(a.reference, true);
    expect(st.image!.uid?.value).toBe('1234');
    expect(st.image!.username).toBe('');
    expect((JSON.parse(st.info.info!) as { boot: { kind: string } }).boot.kind).toBe('rootfs');
    const b = await pushImage(reg, 'rootfs-named-user', 'vmlet/rootfs-named:v1');
    await pull(b.reference);
    const named = (await status(b.reference)).image!;
    expect(named.uid).toBeNull();
    expect(named.username).toBe('app');
  });

  it('picks linux/amd64 from a multi-arch index', async () => {
    const img = images().multiarch;
    const { reference, manifestDigest } = await pushImage(reg, 'multiarch', 'vmlet/multiarch:v1');
    const res = await pull(reference);
    expect(res.image_ref).toBe(img.configDigest);
    // The repo digest is the index's: what the tag points to.
    expect((await status(reference)).image!.repo_digests).toEqual([`${reg.host}/vmlet/multiarch@${manifestDigest}`]);
  });

  it('pulls Docker schema 2 manifests and uncompressed layers', async () => {
    const { reference } = await pushImage(reg, 'uncompressed', 'vmlet/uncompressed:docker', { format: 'v2s2' });
    const res = await pull(reference);
    expect(res.image_ref).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect((await status(reference)).image!.id).toBe(res.image_ref);
  });

  it('pulls zstd-compressed layers', async () => {
    // A registry of its own: skopeo would reuse a gzip copy of the layer it finds in a registry.
    const own = await startRegistry();
    try {
      const { reference } = await pushImage(own, 'rootfs-named-user', 'vmlet/zstd:v1', { compress: 'zstd' });
      const manifest = (await (await fetch(`${own.url}/v2/vmlet/zstd/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: { mediaType: string }[] };
      expect(manifest.layers[0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
      const vz = await startVmlet({ config: `registries:\n  insecure: ["${own.host}"]\n` });
      try {
        // Same uncompressed content, so the same config (diff_ids) and image id.
        const res = await call<object, PullImageResponse__Output>(vz.image, 'PullImage', { image: { image: reference } });
        expect(res.image_ref).toBe(images()['rootfs-named-user'].configDigest);
      } finally {
        await vz.stop();
      }
    } finally {
      await own.stop();
    }
  });

  it('pulls by digest without recording a tag', async () => {
    const { manifestDigest } = await pushImage(reg, 'uncompressed', 'vmlet/bydigest:v1');
    const ref = `${reg.host}/vmlet/bydigest@${manifestDigest}`;
    const res = await pull(ref);
    const st = (await status(ref)).image!;
    expect(st.id).toBe(res.image_ref);
    expect(st.repo_digests).toContain(ref);
    expect(st.repo_tags).not.toContain(`${reg.host}/vmlet/bydigest:v1`);
  });

  it('maps docker.io short names to the configured mirror', async () => {
    await pushImage(reg, 'rootfs', 'library/busybox:latest');
    const res = await pull('busybox');
    expect(res.image_ref).toBe(images().rootfs.configDigest);
    const st = (await status('busybox')).image!;
    expect(st.repo_tags).toContain('docker.io/library/busybox:latest');
    expect((await status('docker.io/library/busybox:latest')).image!.id).toBe(st.id);
  });

  it('shares one download between concurrent pulls of the same image', async () => {
    const { reference } = await pushImage(reg, 'rootfs-named-user', 'vmlet/concurrent:v1');
    await remove(reference).catch(() => undefined);
    await remove(images()['rootfs-named-user'].configDigest);
    const layer = images()['rootfs-named-user'].layers[0]!.digest;
    const before = blobGets(layer);
    const [a, b, c] = await Promise.all([pull(reference), pull(reference), pull(reference)]);
    expect(new Set([a.image_ref, b.image_ref, c.image_ref]).size).toBe(1);
    const after = blobGets(layer);
    expect(after - before).toBe(1);
  });
});

describe('pull failures', () => {
  it('rejects a bad reference with InvalidArgument naming it', async () => {
    const err = await failure(pull('Not/A Valid:ref'));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain('Not/A Valid:ref');
  });

  it('answers NotFound naming the registry for a missing image', async () => {
    const err = await failure(pull(`${reg.host}/vmlet/absent:v9`));
    expect(err.code).toBe(Status.NOT_FOUND);
    expect(err.details).toContain(reg.host);
    expect(err.details).toContain('404');
  });

  it('answers Unavailable when the registry cannot be reached', async () => {
    const err = await failure(pull('127.0.0.1:1/vmlet/x:v1'));
    expect(err.code).toBe(Status.UNAVAILABLE);
    expect(err.details).toContain('127.0.0.1:1');
  });

  it('refuses a corrupted blob and keeps nothing of it', async () => {
    const img = images().uncompressed;
    const { reference } = await pushImage(reg, 'uncompressed', 'vmlet/corrupt:v1');
    // A registry of its own, so corrupting a blob there leaves the shared one alone.
    const own = await startRegistry();
    try {
      const pushed = await pushImage(own, 'rootfs', 'vmlet/corrupt:v1');
      const layer = images().rootfs.layers[1]!.digest;
      corruptBlob(own, layer);
      const vm2 = await startVmlet({ config: `registries:\n  insecure: ["${own.host}"]\n` });
      try {
        const err = await failure(call(vm2.image, 'PullImage', { image: { image: pushed.reference } }));
        expect(err.details).toContain(layer);
        expect(err.details).toMatch(/digest/);
        const listed = await call<object, ListImagesResponse__Output>(vm2.image, 'ListImages', {});
        expect(listed.images).toEqual([]);
        expect(readdirSync(join(vm2.stateDir, 'images', 'sha256'))).not.toContain(layer.slice(7));
        expect(readdirSync(join(vm2.stateDir, 'images', 'tmp'))).toEqual([]);
        // What the failed pull did store (manifest, config, the good layer) is collected.
        await waitFor('the failed pull\'s blobs to be collected', () => readdirSync(join(vm2.stateDir, 'images', 'sha256')).length === 0);
      } finally {
        await vm2.stop();
      }
    } finally {
      await own.stop();
    }
    expect(reference).toContain('corrupt'); // the shared registry's copy is untouched
    expect((await pull(reference)).image_ref).toBe(img.configDigest);
  });

  it.each<TestImageName>(['hostile-traversal', 'hostile-symlink', 'hostile-hardlink', 'hostile-device', 'hostile-size'])('refuses the %s image', async (name) => {
    const { reference } = await pushImage(reg, name, `vmlet/${name}:v1`);
    const err = await failure(pull(reference));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/rejected/);
    expect((await status(reference)).image).toBeNull();
    expect(existsSync('/tmp/vmlet-escape')).toBe(false);
  });
});

describe('ListImages, RemoveImage, ImageFsInfo', () => {
  it('lists every image, and filters by reference', async () => {
    const all = (await list()).images;
    const ids = all.map((i: Image__Output) => i.id);
    expect(ids).toContain(images().containerdisk.configDigest);
    expect(ids).toContain(images().kernelboot.configDigest);
    for (const i of all) expect(Number(i.size)).toBeGreaterThan(0);
    const one = (await list(`${reg.host}/vmlet/kernelboot:v1`)).images;
    expect(one.map((i) => i.id)).toEqual([images().kernelboot.configDigest]);
  });

  it('removes one tag of several, then the image, its blobs and its disk', async () => {
    const img = images().containerdisk;
    const { reference: second } = await pushImage(reg, 'containerdisk', 'vmlet/containerdisk:v2');
    await pull(second);
    expect((await status(second)).image!.repo_tags.length).toBe(2);
    await remove(second);
    const left = (await status(img.configDigest)).image!;
    expect(left.repo_tags).toEqual([`${reg.host}/vmlet/containerdisk:v1`]);
    const disk = join(v.stateDir, 'images', 'disks', `${img.configDigest.slice(7)}.qcow2`);
    expect(existsSync(disk)).toBe(true);
    await remove(img.configDigest);
    expect((await status(img.configDigest)).image).toBeNull();
    expect(existsSync(disk)).toBe(false);
    expect(storeBlobs()).not.toContain(img.layers[0]!.digest.slice(7));
    expect(storeBlobs()).not.toContain(img.configDigest.slice(7));
    await remove(img.configDigest); // idempotent
    await remove(`${reg.host}/vmlet/never-pulled:v1`);
  });

  it('reports real filesystem usage', async () => {
    const res = await call<object, ImageFsInfoResponse__Output>(v.image, 'ImageFsInfo', {});
    const fs = res.image_filesystems[0]!;
    expect(fs.fs_id!.mountpoint).toMatch(/^\//);
    expect(Number(fs.used_bytes!.value)).toBeGreaterThan(images().kernelboot.layers[0]!.size);
    expect(Number(fs.inodes_used!.value)).toBeGreaterThan(3);
    expect(Number(fs.timestamp)).toBeGreaterThan(Date.now() * 1e6 - 60e9);
    expect(res.container_filesystems.length).toBe(1);
  });

  it('keeps images across a restart', async () => {
    const before = (await list()).images.map((i) => i.id).sort();
    await v.stop();
    v = await startVmlet({ stateDir: v.stateDir, config: `registries:\n  insecure: ["${reg.host}"]\n` });
    expect((await list()).images.map((i) => i.id).sort()).toEqual(before);
  });
});

describe('registry authentication', () => {
  let authReg: TestRegistry;
  let proxy: TokenProxy;
  let va: VmletProcess;
  const creds = { user: 'puller', password: 's3cret-pw-9876', identityToken: 'refresh-abc-123' };
  beforeAll(async () => {
    authReg = await startRegistry({ htpasswd: { user: creds.user, password: creds.password } });
    await pushImage(authReg, 'rootfs', 'vmlet/private:v1', { creds: { user: creds.user, password: creds.password } });
    // The token front forwards to an open registry holding the same image.
    await pushImage(reg, 'rootfs', 'vmlet/private:v1');
    proxy = await startTokenProxy(reg.url, creds);
    va = await startVmlet({ config: `registries:\n  insecure: ["${authReg.host}", "${proxy.host}"]\n` });
  });
  afterAll(async () => {
    await va?.stop();
    await proxy?.stop();
    await authReg?.stop();
  });
  const pullA = (image: string, auth?: object) => call<object, PullImageResponse__Output>(va.image, 'PullImage', { image: { image }, ...(auth ? { auth } : {}) });

  it('is refused without credentials, naming the registry', async () => {
    const err = await failure(pullA(`${authReg.host}/vmlet/private:v1`));
    expect(err.code).toBe(Status.PERMISSION_DENIED);
    expect(err.details).toContain(authReg.host);
  });

  it('pulls with username/password and with auth (Basic challenge)', async () => {
    const ref = `${authReg.host}/vmlet/private:v1`;
    expect((await pullA(ref, { username: creds.user, password: creds.password })).image_ref).toBe(images().rootfs.configDigest);
    const auth = Buffer.from(`${creds.user}:${creds.password}`).toString('base64');
    expect((await pullA(ref, { auth })).image_ref).toBe(images().rootfs.configDigest);
    const wrong = await failure(pullA(ref, { username: creds.user, password: 'wrong' }));
    expect(wrong.code).toBe(Status.PERMISSION_DENIED);
  });

  it('follows the Bearer token flow with a password, an identity token and a registry token', async () => {
    const ref = `${proxy.host}/vmlet/private:v1`;
    expect((await pullA(ref, { username: creds.user, password: creds.password })).image_ref).toBe(images().rootfs.configDigest);
    expect((await pullA(ref, { identity_token: creds.identityToken })).image_ref).toBe(images().rootfs.configDigest);
    expect((await pullA(ref, { registry_token: proxy.issue() })).image_ref).toBe(images().rootfs.configDigest);
    expect(proxy.seen.some((r) => r.path.startsWith('/token') && r.method === 'GET')).toBe(true);
    expect(proxy.seen.some((r) => r.path.startsWith('/token') && r.method === 'POST')).toBe(true);
    expect(proxy.seen.filter((r) => r.path.startsWith('/v2/vmlet/private/')).some((r) => r.auth === 'Bearer')).toBe(true);
  });

  it('follows a blob redirect to another origin without taking the registry token there', async () => {
    // A vmlet with an empty store, so every blob is downloaded: the token front redirects each
    // to its CDN on another port (another origin).
    const fresh = await startVmlet({ config: `registries:\n  insecure: ["${proxy.host}"]\n` });
    try {
      const from = proxy.cdnSeen.length;
      const res = await call<object, PullImageResponse__Output>(fresh.image, 'PullImage', { image: { image: `${proxy.host}/vmlet/private:v1` }, auth: { registry_token: proxy.issue() } });
      expect(res.image_ref).toBe(images().rootfs.configDigest);
      const blobs = proxy.cdnSeen.slice(from).filter((r) => r.path.includes('/blobs/sha256:'));
      expect(blobs.length).toBe(images().rootfs.layers.length + 1); // the config and every layer
      expect(blobs.every((r) => r.path.includes('X-Signature='))).toBe(true);
      expect(blobs.map((r) => r.auth)).toEqual(blobs.map(() => ''));
    } finally {
      await fresh.stop();
    }
  });

  it('never writes credentials to the log', () => {
    const log = va.logLines.join('\n');
    expect(log).not.toContain(creds.password);
    expect(log).not.toContain(creds.identityToken);
    expect(log).not.toContain(Buffer.from(`${creds.user}:${creds.password}`).toString('base64'));
  });
});
