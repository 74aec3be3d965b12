// Hostile containerDisks, made by the real qemu-img and carried in a real image layer through
// prepareBoot (what a pull does with the layers): qcow2 with a backing file (relative, absolute,
// json:) or an external data file, a vmdk descriptor pointing at a host path. Each is refused
// with a message naming the disk, and nothing lands in the store. Then how qemu-img itself runs on
// untrusted bytes: the format pinned, --force-share, an address-space and CPU limit.
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Header } from 'tar';
import { prepareBoot } from '../../src/image/boot.js';
import { probeDiskBytes, qemuImgInfo } from '../../src/image/qemu-img.js';
import type { LayerRef, ScanLimits } from '../../src/image/layer-scan.js';
import { tempDir } from '../helpers/vmlet.js';

const LIMITS: ScanLimits = { maxEntryBytes: 1024 ** 3, maxImageBytes: 4 * 1024 ** 3, writableBytes: 1024 ** 3 };
const ID = 'sha256:' + 'ab'.repeat(32);
const work = tempDir('vmlet-hostile-disk-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });

/** An uncompressed layer holding `disk/<name>` with the bytes of `file`. */
function diskLayer(file: string, name = 'disk.img'): LayerRef {
  const body = readFileSync(file);
  const h = new Header({ path: `disk/${name}`, mode: 0o644, mtime: new Date(0), type: 'File', size: body.length });
  const block = Buffer.alloc(512);
  h.encode(block, 0);
  const raw = Buffer.concat([block, body, Buffer.alloc((512 - (body.length % 512)) % 512), Buffer.alloc(1024)]);
  const digest = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  const path = join(work, digest.slice(7));
  writeFileSync(path, raw);
  return { digest, path, mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: digest };
}

async function boot(file: string) {
  const root = tempDir('vmlet-hostile-store-');
  const paths = { disks: join(root, 'disks'), kernels: join(root, 'kernels'), tmp: join(root, 'tmp') };
  execFileSync('mkdir', ['-p', paths.tmp]);
  const result = await prepareBoot(ID, [diskLayer(file)], {}, paths, LIMITS).then(
    ({ boot: info }) => ({ info, err: undefined }),
    (err: Error & { kind?: string }) => ({ info: undefined, err }),
  );
  const left = [...(existsSync(paths.disks) ? readdirSync(paths.disks) : []), ...readdirSync(paths.tmp)];
  rmSync(root, { recursive: true, force: true });
  return { ...result, left };
}

describe('containerDisks with a backing or data file', () => {
  qemuImg('create', '-q', '-f', 'qcow2', 'base.qcow2', '1M');
  const cases: [string, string[], string][] = [
    ['a relative backing file', ['-b', 'base.qcow2', '-F', 'qcow2'], 'base.qcow2'],
    ['an absolute backing file', ['-b', '/etc/passwd', '-F', 'raw', '-u'], '/etc/passwd'],
    ['a json: backing file', ['-b', 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}', '-F', 'raw', '-u'], 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}'],
    ['an external data file', ['-o', `data_file=${join(work, 'host-data.raw')}`], join(work, 'host-data.raw')],
  ];

  it.each(cases)('refuses a qcow2 with %s, naming it, and keeps nothing', async (_name, opts, named) => {
    const file = `hostile-${createHash('sha1').update(named).digest('hex').slice(0, 8)}.qcow2`;
    qemuImg('create', '-q', '-f', 'qcow2', ...opts, file, '1M');
    const { err, left } = await boot(join(work, file));
    expect(err?.kind).toBe('invalid-argument');
    expect(err?.message).toContain(`containerDisk disk/disk.img in ${ID} refers to ${named}; a containerDisk must be self-contained`);
    expect(left).toEqual([]);
  });

  it('boots a self-contained qcow2 and a raw disk', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', 'ok.qcow2', '3M');
    const q = await boot(join(work, 'ok.qcow2'));
    expect(q.err).toBeUndefined();
    expect(q.info?.disk).toMatchObject({ format: 'qcow2', virtualSize: 3 * 1024 * 1024 });
    writeFileSync(join(work, 'ok.raw'), Buffer.alloc(4096, 0x5a));
    const r = await boot(join(work, 'ok.raw'));
    expect(r.info?.disk).toMatchObject({ format: 'raw', virtualSize: 4096 });
  });
});

describe('qemu-img on untrusted bytes', () => {
  it('refuses a vmdk descriptor naming a host path by its magic, before qemu-img follows it', async () => {
    const desc = ['# Disk DescriptorFile', 'version=1', 'CID=fffffffe', 'parentCID=ffffffff', 'createType="monolithicFlat"', 'RW 2048 FLAT "/nonexistent/vmlet-host-file" 0', ''].join('\n');
    writeFileSync(join(work, 'desc.vmdk'), desc);
    const { err, left } = await boot(join(work, 'desc.vmdk'));
    expect(err?.message).toBe(`containerDisk disk/disk.img in ${ID} is vmdk; qcow2 or raw is allowed`);
    expect(left).toEqual([]);
  });

  it('reads the backing file name from the qcow2 header itself', () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'json:{"file":"/x"}', '-F', 'raw', '-u', 'js.qcow2', '1M');
    expect(probeDiskBytes(readFileSync(join(work, 'js.qcow2')))).toEqual({ format: 'qcow2', backingFile: 'json:{"file":"/x"}' });
    expect(probeDiskBytes(Buffer.from('QFI\xfb\0\0\0\x01', 'latin1'))).toEqual({ format: 'qcow' });
    expect(probeDiskBytes(Buffer.alloc(512))).toEqual({ format: 'raw' });
  });

  it('reads an image another process holds open for writing (--force-share)', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', 'locked.qcow2', '1M');
    const holder = spawn('qemu-io', ['-f', 'qcow2', '-c', 'sleep 20000', join(work, 'locked.qcow2')], { stdio: 'ignore' });
    try {
      const opened = () => {
        try {
          return readdirSync(`/proc/${holder.pid}/fd`).some((fd) => readlinkSync(`/proc/${holder.pid}/fd/${fd}`).endsWith('locked.qcow2'));
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 100 && !opened(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(opened()).toBe(true);
      expect(await qemuImgInfo(join(work, 'locked.qcow2'), 'qcow2')).toMatchObject({ format: 'qcow2', virtualSize: 1024 * 1024 });
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('runs qemu-img under an address-space limit, and says so when the image needs more', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', 'small.qcow2', '1M');
    const err = (await qemuImgInfo(join(work, 'small.qcow2'), 'qcow2', { addressSpaceBytes: 16 * 1024 * 1024, cpuSeconds: 10 }).catch((e: unknown) => e)) as Error & { kind?: string };
    expect(err).toBeInstanceOf(Error);
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toMatch(/^qemu-img info could not read the disk within its limits \(16 MiB of address space, 10 s of CPU\)/);
  });
});
