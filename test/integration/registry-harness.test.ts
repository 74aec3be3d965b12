// Proves the registry test harness: a real docker-registry on loopback, the project's OCI test
// images pushed with skopeo, digests as built, auth, and blob corruption. Uses plain fetch,
// so these checks do not depend on vmlet's own registry client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import {
  MANIFEST_ACCEPT, MEDIA_TYPES, basicAuth, corruptBlob, ensureTestImages, pushImage, sha256, startRegistry,
  type ImageInfo, type TestImageName, type TestRegistry,
} from '../helpers/registry.js';
import { ROOT, tempDir } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

interface Manifest {
  mediaType: string;
  config: { digest: string; mediaType: string };
  layers: { digest: string; size: number; mediaType: string }[];
}
interface Index { mediaType: string; manifests: { digest: string; platform: { architecture: string; os: string } }[] }
interface Config { architecture: string; rootfs: { diff_ids: string[] }; config: { User?: string } }

async function get(reg: TestRegistry, path: string, headers: Record<string, string> = {}) {
  const auth: Record<string, string> = reg.creds ? { Authorization: basicAuth(reg.creds) } : {};
  const res = await fetch(`${reg.url}/v2/${path}`, { headers: { Accept: MANIFEST_ACCEPT, ...auth, ...headers } });
  expect(res.status, `GET ${path}`).toBe(200);
  const body = new Uint8Array(await res.arrayBuffer());
  return { res, body, json: <T>() => JSON.parse(Buffer.from(body).toString('utf8')) as T };
}

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const v = await f();
  console.log(`[registry-harness] ${what}: ${Math.round(performance.now() - t0)} ms`);
  return v;
}

describe('registry test harness', () => {
  let images: Record<TestImageName, ImageInfo>;
  let reg: TestRegistry;
  let authReg: TestRegistry | undefined;

  beforeAll(async () => {
    images = await timed('ensureTestImages', ensureTestImages);
    reg = await timed('startRegistry', () => startRegistry());
  });
  afterAll(async () => {
    await reg?.stop();
    await authReg?.stop();
  });

  it('images.json names every image with an existing layout', () => {
    expect(Object.keys(images).sort()).toEqual([
      'busybox-app', 'containerdisk', 'containerdisk-raw', 'hostile-device', 'hostile-hardlink', 'hostile-size', 'hostile-symlink',
      'hostile-traversal', 'kernelboot', 'kernelboot-bzimage', 'multiarch', 'rootfs', 'rootfs-named-user', 'uncompressed',
    ]);
    for (const info of Object.values(images)) {
      expect(existsSync(`${info.layout}/index.json`)).toBe(true);
      expect(info.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
  });

  it('layouts carry the configs images.json promises', () => {
    const config = (name: TestImageName) => {
      const hex = images[name].configDigest.slice('sha256:'.length);
      return JSON.parse(readFileSync(join(images[name].layout, 'blobs/sha256', hex), 'utf8')) as {
        config: { User?: string; Labels?: Record<string, string> };
      };
    };
    const cmdline = readFileSync(join(ROOT, '.cache/test-images/kernel-guest/cmdline'), 'utf8');
    expect(config('kernelboot').config.Labels).toEqual({
      'vmlet.io/kernel': '/boot/vmlinuz', 'vmlet.io/initrd': '/boot/initrd.img', 'vmlet.io/cmdline': cmdline,
    });
    expect(config('rootfs').config.User).toBe('1234');
    expect(config('rootfs-named-user').config.User).toBe('app');
    expect(images.rootfs.layers).toHaveLength(2);
    expect(images.uncompressed.layers[0]?.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
  });

  it('containerdisk\'s disk.qcow2 boots the test guest (BIOS, syslinux, TCG)', async () => {
    const dir = tempDir('vmlet-cdisk-');
    const layer = images.containerdisk.layers[0]!;
    await execa('tar', ['-xzf', join(images.containerdisk.layout, 'blobs/sha256', layer.digest.slice(7)), '-C', dir]);
    const serial = join(dir, 'serial.log');
    const qemu = spawn('qemu-system-x86_64', [
      '-machine', 'q35,accel=tcg', '-m', '256', '-nographic', '-no-reboot', '-nic', 'none', '-monitor', 'none',
      '-drive', `file=${join(dir, 'disk/disk.qcow2')},if=virtio,format=qcow2,snapshot=on`, '-serial', `file:${serial}`,
    ], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => qemu.once('exit', () => resolve()));
    try {
      await timed('containerdisk boot to VMLET-READY', () =>
        waitFor('VMLET-READY on the serial console', () => {
          if (qemu.exitCode !== null) throw new Error(`qemu exited ${qemu.exitCode}`);
          return existsSync(serial) && readFileSync(serial, 'utf8').includes('VMLET-READY');
        }, { timeoutMs: 90_000, intervalMs: 100 }),
      );
    } finally {
      qemu.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves /v2/ anonymously on loopback', async () => {
    expect(reg.host).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await fetch(`${reg.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('pushes rootfs (OCI, digests preserved): manifest, config and layers as built', async () => {
    const want = images.rootfs;
    const pushed = await pushImage(reg, 'rootfs', 'vmlet/rootfs:v1');
    expect(pushed).toEqual({ reference: `${reg.host}/vmlet/rootfs:v1`, manifestDigest: want.manifestDigest });

    const m = await get(reg, 'vmlet/rootfs/manifests/v1');
    expect(m.res.headers.get('content-type')).toBe(MEDIA_TYPES.ociManifest);
    expect(m.res.headers.get('docker-content-digest')).toBe(want.manifestDigest);
    expect(sha256(m.body)).toBe(want.manifestDigest);
    const manifest = m.json<Manifest>();
    expect(manifest.config.digest).toBe(want.configDigest);
    expect(manifest.layers).toEqual(want.layers);

    const c = await get(reg, `vmlet/rootfs/blobs/${want.configDigest}`);
    expect(sha256(c.body)).toBe(want.configDigest);
    expect(c.json<Config>().config.User).toBe('1234');
    for (const l of want.layers) {
      const b = await get(reg, `vmlet/rootfs/blobs/${l.digest}`);
      expect(sha256(b.body)).toBe(l.digest);
      expect(b.body.length).toBe(l.size);
    }
  });

  it('pushes multiarch as a whole index; linux/amd64 resolves to the known config', async () => {
    const want = images.multiarch;
    const pushed = await pushImage(reg, 'multiarch', 'vmlet/multiarch:v1');
    expect(pushed.manifestDigest).toBe(want.indexDigest);

    const i = await get(reg, 'vmlet/multiarch/manifests/v1');
    expect(i.res.headers.get('content-type')).toBe(MEDIA_TYPES.ociIndex);
    expect(sha256(i.body)).toBe(want.indexDigest);
    const index = i.json<Index>();
    expect(index.manifests.map((d) => d.platform.architecture)).toEqual(['amd64', 'arm64']);
    const amd64 = index.manifests.find((d) => d.platform.architecture === 'amd64' && d.platform.os === 'linux');
    expect(amd64?.digest).toBe(want.manifestDigest);

    // Both platform manifests and configs were pushed (--all), not only the host's.
    for (const p of want.platforms ?? []) {
      const m = await get(reg, `vmlet/multiarch/manifests/${p.manifestDigest}`);
      expect(sha256(m.body)).toBe(p.manifestDigest);
      const cfgDigest = m.json<Manifest>().config.digest;
      expect(cfgDigest).toBe(p.configDigest);
      const c = await get(reg, `vmlet/multiarch/blobs/${cfgDigest}`);
      expect(c.json<Config>().architecture).toBe(p.platform.architecture);
    }
    expect(want.platforms?.find((p) => p.platform.architecture === 'amd64')?.configDigest).toBe(want.configDigest);
  });

  it('pushes containerdisk (the qcow2 layer arrives intact)', async () => {
    const want = images.containerdisk;
    const pushed = await timed('push containerdisk', () => pushImage(reg, 'containerdisk', 'vmlet/containerdisk:v1'));
    expect(pushed.manifestDigest).toBe(want.manifestDigest);
    const layer = want.layers[0]!;
    const b = await get(reg, `vmlet/containerdisk/blobs/${layer.digest}`);
    expect(sha256(b.body)).toBe(layer.digest);
  });

  it('pushes with --format v2s2: a Docker schema 2 manifest over the same blobs', async () => {
    const want = images.rootfs;
    const pushed = await pushImage(reg, 'rootfs', 'vmlet/rootfs-v2s2:v1', { format: 'v2s2' });
    expect(pushed.manifestDigest).not.toBe(want.manifestDigest);
    const m = await get(reg, 'vmlet/rootfs-v2s2/manifests/v1');
    expect(m.res.headers.get('content-type')).toBe(MEDIA_TYPES.dockerManifest);
    expect(sha256(m.body)).toBe(pushed.manifestDigest);
    const manifest = m.json<Manifest>();
    expect(manifest.mediaType).toBe(MEDIA_TYPES.dockerManifest);
    expect(manifest.config).toMatchObject({ digest: want.configDigest, mediaType: 'application/vnd.docker.container.image.v1+json' });
    expect(manifest.layers.map((l) => [l.digest, l.mediaType])).toEqual(
      want.layers.map((l) => [l.digest, 'application/vnd.docker.image.rootfs.diff.tar.gzip']),
    );
  });

  it('pushes with decompressed layers: layer digests are the diff_ids', async () => {
    const pushed = await pushImage(reg, 'rootfs', 'vmlet/rootfs-plain:v1', { compress: 'decompress' });
    const manifest = (await get(reg, `vmlet/rootfs-plain/manifests/${pushed.manifestDigest}`)).json<Manifest>();
    const config = (await get(reg, `vmlet/rootfs-plain/blobs/${manifest.config.digest}`)).json<Config>();
    expect(manifest.config.digest).toBe(images.rootfs.configDigest);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar']);
    expect(manifest.layers.map((l) => l.digest)).toEqual(config.rootfs.diff_ids);
  });

  it('htpasswd auth: anonymous 401 with a Basic challenge, credentials 200, push with credentials', async () => {
    const creds = { user: 'vmlet', password: 's3cret-pass' };
    authReg = await timed('startRegistry (htpasswd)', () => startRegistry({ htpasswd: creds }));
    const anon = await fetch(`${authReg.url}/v2/`);
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toMatch(/^Basic realm="[^"]+"/);
    const wrong = await fetch(`${authReg.url}/v2/`, { headers: { Authorization: basicAuth({ ...creds, password: 'nope' }) } });
    expect(wrong.status).toBe(401);
    const ok = await fetch(`${authReg.url}/v2/`, { headers: { Authorization: basicAuth(creds) } });
    expect(ok.status).toBe(200);

    const pushed = await pushImage(authReg, 'uncompressed', 'vmlet/uncompressed:v1');
    expect(pushed.manifestDigest).toBe(images.uncompressed.manifestDigest);
    const anonManifest = await fetch(`${authReg.url}/v2/vmlet/uncompressed/manifests/v1`, { headers: { Accept: MANIFEST_ACCEPT } });
    expect(anonManifest.status).toBe(401);
    const m = await get(authReg, 'vmlet/uncompressed/manifests/v1');
    expect(sha256(m.body)).toBe(images.uncompressed.manifestDigest);
  });

  it('corruptBlob: same length, different sha256, and the gzip stream still decompresses', async () => {
    const layer = images.rootfs.layers[0]!;
    corruptBlob(reg, layer.digest);
    const b = await get(reg, `vmlet/rootfs/blobs/${layer.digest}`);
    expect(b.body.length).toBe(layer.size);
    expect(sha256(b.body)).not.toBe(layer.digest);
    // Only a digest check can notice: the content (diff_id) is unchanged.
    const config = (await get(reg, `vmlet/rootfs/blobs/${images.rootfs.configDigest}`)).json<Config>();
    expect(sha256(gunzipSync(b.body))).toBe(config.rootfs.diff_ids[0]);
  });
});
