// Volumes into a VM, the pure parts: mount tags and disk serials, the cloud-init entries that
// mount and write them, the domain XML of shares, block disks and hotplug ports, and the host
// checks of pod/volumes.ts on real temporary files (no mounts, no devices made).
import { describe, expect, it } from 'vitest';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { pino } from 'pino';
import { VmletError } from '../../src/errors.js';
import { buildSeed } from '../../src/vm/cloud-init.js';
import { cloudInitMounts, cloudInitWriteFiles, deviceSerial, shareTag, WRITE_FILES_CAP } from '../../src/vm/volumes.js';
import { guestAgentArgs, hotplugDiskXml } from '../../src/vm/domain-xml.js';
import { parseVmSettings } from '../../src/vm/annotations.js';
import { blockVolumes, checkSandboxedMounts, vmMounts } from '../../src/pod/volumes.js';
import type { ContainerConfig } from '../../src/pod/configs.js';
import { xml } from './domain-spec-fixtures.js';
import { at, one, tree } from './xml-tree.js';
import { tempDir } from '../helpers/vmlet.js';

const log = pino({ level: 'silent' });

/** The call fails with invalid-argument and a message matching re. */
async function refused(p: Promise<unknown>, re: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as VmletError,
  );
  expect(err).toBeInstanceOf(VmletError);
  expect(err!.kind).toBe('invalid-argument');
  expect(err!.message).toMatch(re);
}
const ids = { containerId: 'c1', podSandboxId: 's1' };

describe('shareTag and deviceSerial', () => {
  it('gives a short tag (QEMU: 31 bytes at most) with a ":" (kept as written by cloud-init), stable per path', () => {
    const t = shareTag('/etc/config');
    expect(t).toMatch(/^vmlet:[0-9a-f]{12}$/);
    expect(Buffer.byteLength(t)).toBeLessThanOrEqual(31);
    expect(shareTag('/etc/config')).toBe(t);
    expect(shareTag('/etc/config2')).not.toBe(t);
    expect(shareTag('/' + 'x'.repeat(4000)).length).toBe(t.length);
  });

  it('gives a 20-byte serial from the volume name, the same in every pod', () => {
    const a = deviceSerial('/var/lib/kubelet/pods/uid-1/volumeDevices/kubernetes.io~csi/pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');
    const b = deviceSerial('/var/lib/kubelet/pods/uid-2/volumeDevices/kubernetes.io~csi/pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');
    expect(a).toBe(b);
    expect(a).toMatch(/^vmlet-[0-9a-f]{14}$/);
    expect(a).toHaveLength(20);
    expect(deviceSerial('/dev/loop3')).not.toBe(deviceSerial('/dev/loop4'));
  });
});

describe('cloud-init entries', () => {
  it('mounts each share with 9p over virtio, 9P2000.L, ro or rw, nofail', () => {
    expect(cloudInitMounts([{ tag: 'vmlet:aa', path: '/etc/cfg', readonly: true }, { tag: 'vmlet:bb', path: '/data', readonly: false }])).toEqual([
      ['vmlet:aa', '/etc/cfg', '9p', 'trans=virtio,version=9p2000.L,msize=512000,ro,nofail', '0', '0'],
      ['vmlet:bb', '/data', '9p', 'trans=virtio,version=9p2000.L,msize=512000,rw,nofail', '0', '0'],
    ]);
  });

  it('writes files base64 with their mode', () => {
    expect(cloudInitWriteFiles([{ path: '/etc/cfg/k', content: Buffer.from([0, 255, 10]), mode: 0o640 }])).toEqual([
      { path: '/etc/cfg/k', encoding: 'b64', content: 'AP8K', owner: 'root:root', permissions: '0640' },
    ]);
  });

  it('puts both into the user-data, after the env file, appended to the user config', () => {
    const settings = parseVmSettings({ sandboxAnnotations: { 'vmlet.io/user-data': '#cloud-config\nmounts: [[/dev/vdc, /srv]]\n' }, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 512 } });
    const seed = buildSeed({
      podUid: 'u',
      podName: 'p',
      hostname: '',
      envs: [{ key: 'A', value: 'b' }],
      command: [],
      args: [],
      cloudInit: settings.cloudInit,
      mounts: [{ tag: 'vmlet:aa', path: '/etc/cfg', readonly: true }],
      files: [{ path: '/etc/cfg/key', content: Buffer.from('v1'), mode: 0o644 }],
    });
    const cfg = parseYaml(seed.files['user-data'], { version: '1.1' }) as { mounts: string[][]; write_files: Array<Record<string, string>> };
    expect(cfg.mounts).toEqual([['/dev/vdc', '/srv'], ['vmlet:aa', '/etc/cfg', '9p', 'trans=virtio,version=9p2000.L,msize=512000,ro,nofail', '0', '0']]);
    expect(cfg.write_files.map((f) => f.path)).toEqual(['/etc/vmlet/environment', '/etc/cfg/key']);
    expect(Buffer.from(cfg.write_files[1]!.content!, 'base64').toString()).toBe('v1');
    expect(cfg.write_files[1]!.permissions).toBe('0644');
  });
});

describe('domain XML of volumes', () => {
  it('renders a share as a passthrough 9p filesystem with its tag, read-only when asked', () => {
    const d = tree(xml({}, { shares: [{ source: '/var/lib/kubelet/pods/u/volumes/cm', tag: 'vmlet:aa', readonly: true }] }));
    const fs = one(d, 'devices/filesystem');
    expect(fs.attrs).toEqual({ type: 'mount', accessmode: 'passthrough' });
    expect(one(fs, 'source').attrs.dir).toBe('/var/lib/kubelet/pods/u/volumes/cm');
    expect(one(fs, 'target').attrs.dir).toBe('vmlet:aa');
    expect(at(fs, 'readonly')).toHaveLength(1);
  });

  it('renders a block volume as a raw virtio block disk with its serial, uncached, after the root disk', () => {
    const d = tree(
      xml({ 'vmlet.io/disk-bus': 'scsi' }, {
        disks: [
          { path: '/r.qcow2', format: 'qcow2' },
          { path: '/dev/loop7', format: 'raw', block: true, serial: 'vmlet-0123456789abcd', bus: 'virtio', readonly: true },
        ],
      }),
    );
    const [root, vol] = at(d, 'devices/disk');
    expect(one(root!, 'target').attrs).toEqual({ dev: 'sda', bus: 'scsi' });
    expect(vol!.attrs).toEqual({ type: 'block', device: 'disk' });
    expect(one(vol!, 'source').attrs).toEqual({ dev: '/dev/loop7' });
    expect(one(vol!, 'target').attrs).toEqual({ dev: 'vda', bus: 'virtio' });
    expect(one(vol!, 'driver').attrs.cache).toBe('none');
    expect(one(vol!, 'serial').children).toEqual(['vmlet-0123456789abcd']);
    expect(at(vol!, 'readonly')).toHaveLength(1);
    expect(at(vol!, 'boot')).toHaveLength(0);
  });

  it('puts a hotplug VM\'s devices on pcie.0 and adds only the empty root ports on q35, none on pc', () => {
    const q = tree(xml({}, { hotplugSlots: 4 }));
    const ctrls = at(q, 'devices/controller').filter((c) => c.attrs.type === 'pci');
    expect(ctrls[0]!.attrs).toEqual({ type: 'pci', index: '0', model: 'pcie-root' });
    expect(ctrls.slice(1).map((c) => c.attrs.model)).toEqual(Array(4).fill('pcie-root-port'));
    // Every PCI device and root port has its own slot on bus 0; the agent's controller keeps 0x1e.
    const addrs = at(q, 'devices/*/address').map((a) => a.attrs);
    expect(addrs.every((a) => a.bus === '0x00')).toBe(true);
    const slots = addrs.map((a) => a.slot);
    expect(new Set(slots).size).toBe(slots.length);
    expect(slots).not.toContain('0x1e');
    for (const name of ['disk', 'rng', 'memballoon']) expect(at(q, `devices/${name}/address`).length).toBeGreaterThan(0);
    expect(guestAgentArgs({ machine: 'q35', hotplugSlots: 4 }, '/a.sock')[3]).toBe('{"driver":"virtio-serial-pci","id":"vmletvser","bus":"pcie.0","addr":"0x1e"}');
    const pc = tree(xml({ 'vmlet.io/machine': 'pc' }, { hotplugSlots: 4 }));
    expect(at(pc, 'devices/controller').filter((c) => c.attrs.type === 'pci')).toHaveLength(0);
  });

  it('renders a hotplug disk alone', () => {
    const d = tree(hotplugDiskXml({ path: '/dev/loop1', format: 'raw', bus: 'virtio', target: 'vdc', serial: 'vmlet-x', block: true }, 'q35'));
    expect(d.name).toBe('disk');
    expect(one(d, 'target').attrs).toEqual({ dev: 'vdc', bus: 'virtio' });
    expect(one(d, 'serial').children).toEqual(['vmlet-x']);
  });
});

describe('vmlet.io/root-device', () => {
  const parse = (a: Record<string, string>) => parseVmSettings({ sandboxAnnotations: a, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 512 } });
  it('takes an absolute container path', () => {
    expect(parse({ 'vmlet.io/root-device': '/dev/xvda' }).rootDevice).toBe('/dev/xvda');
  });
  it('refuses a relative path, and a root disk size beside it', () => {
    expect(() => parse({ 'vmlet.io/root-device': 'xvda' })).toThrow(/vmlet\.io\/root-device.*absolute path/);
    expect(() => parse({ 'vmlet.io/root-device': '/dev/xvda', 'vmlet.io/root-disk-size': '10Gi' })).toThrow(/root-disk-size cannot be combined with vmlet\.io\/root-device/);
  });
});

// ---- host checks, on real temporary files ----

const dir = tempDir('vmlet-vol-unit-');
const cfg = (over: Partial<ContainerConfig> & { devices?: unknown[] }): ContainerConfig => ({ mounts: [], ...over }) as ContainerConfig;
const mount = (container_path: string, host_path: string, extra: object = {}) => ({ container_path, host_path, readonly: false, propagation: 'PROPAGATION_PRIVATE', ...extra }) as ContainerConfig['mounts'][number];

/** The kubelet's AtomicWriter layout: ..<ts>/ with the files, ..data → ..<ts>, each key → ..data/key. */
function configMap(path: string, files: Record<string, string>): void {
  mkdirSync(join(path, '..2026_01_01'), { recursive: true });
  for (const [k, v] of Object.entries(files)) writeFileSync(join(path, '..2026_01_01', k), v);
  symlinkSync('..2026_01_01', join(path, '..data'));
  for (const k of Object.keys(files)) symlinkSync(join('..data', k), join(path, k));
}

describe('vmMounts', () => {
  it('shares a directory; copies a config volume\'s visible files and a single file too', async () => {
    const cm = join(dir, 'cm');
    configMap(cm, { 'app.conf': 'a=1\n', 'other': 'x' });
    const empty = join(dir, 'emptydir');
    mkdirSync(empty);
    const hosts = join(dir, 'hosts');
    writeFileSync(hosts, '10.0.0.5 web\n');
    const v = await vmMounts(cfg({ mounts: [mount('/etc/app', cm, { readonly: true }), mount('/data', empty), mount('/etc/hosts', hosts)] }), log, ids);
    expect(v.shares).toEqual([
      { source: cm, tag: shareTag('/etc/app'), readonly: true },
      { source: empty, tag: shareTag('/data'), readonly: false },
    ]);
    expect(v.guestMounts.map((g) => g.path)).toEqual(['/etc/app', '/data']);
    expect(v.files.map((f) => [f.path, f.content.toString()]).sort()).toEqual([
      ['/etc/app/app.conf', 'a=1\n'],
      ['/etc/app/other', 'x'],
      ['/etc/hosts', '10.0.0.5 web\n'],
    ]);
  });

  it('shares a config volume over the cap without copying it', async () => {
    const big = join(dir, 'big-secret');
    configMap(big, { blob: 'x'.repeat(WRITE_FILES_CAP + 1) });
    const v = await vmMounts(cfg({ mounts: [mount('/secret', big)] }), log, ids);
    expect(v.shares).toHaveLength(1);
    expect(v.files).toEqual([]);
  });

  it('refuses, naming the container path: a missing host path, a socket, Bidirectional, a relative path, a file over the cap', async () => {
    await refused(vmMounts(cfg({ mounts: [mount('/data', join(dir, 'nope'))] }), log, ids), /^mount "\/data".*does not exist: allowed an existing directory or file/);
    const sock = join(dir, 's.sock');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(sock, r));
    try {
      await refused(vmMounts(cfg({ mounts: [mount('/run/s.sock', sock)] }), log, ids), /^mount "\/run\/s\.sock".*is a socket.*allowed a directory/);
    } finally {
      srv.close();
    }
    await refused(vmMounts(cfg({ mounts: [mount('/m', dir, { propagation: 'PROPAGATION_BIDIRECTIONAL' })] }), log, ids), /^mount "\/m".*Bidirectional/);
    await refused(vmMounts(cfg({ mounts: [mount('data', dir)] }), log, ids), /^mount "data".*container_path must be an absolute path/);
    const huge = join(dir, 'huge');
    writeFileSync(huge, Buffer.alloc(WRITE_FILES_CAP + 1));
    await refused(vmMounts(cfg({ mounts: [mount('/huge', huge)] }), log, ids), /^mount "\/huge".*file of \d+ bytes/);
    await refused(checkSandboxedMounts(cfg({ mounts: [mount('/data', join(dir, 'nope'))] })), /^mount "\/data"/);
  });

  it('sees the new files after the kubelet swaps ..data (read again at each CreateContainer)', async () => {
    const cm = join(dir, 'cm-swap');
    configMap(cm, { k: 'v1' });
    mkdirSync(join(cm, '..2026_01_02'));
    writeFileSync(join(cm, '..2026_01_02', 'k'), 'v2');
    symlinkSync('..2026_01_02', join(cm, '..data_tmp'));
    renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
    const v = await vmMounts(cfg({ mounts: [mount('/cfg', cm)] }), log, ids);
    expect(v.files.map((f) => f.content.toString())).toEqual(['v2']);
  });
});

describe('blockVolumes', () => {
  it('refuses a device that is not a block device, naming it', async () => {
    const f = join(dir, 'disk.img');
    writeFileSync(f, '');
    await refused(blockVolumes(cfg({ devices: [{ container_path: '/dev/xvda', host_path: f, permissions: 'rw' }] })), /^device "\/dev\/xvda".*is a regular file: allowed block devices only/);
    await refused(blockVolumes(cfg({ devices: [{ container_path: '/dev/null0', host_path: '/dev/null', permissions: 'rw' }] })), /is a character device/);
    await refused(blockVolumes(cfg({ devices: [{ container_path: 'xvda', host_path: f, permissions: 'rw' }] })), /^device "xvda".*absolute path/);
    await refused(blockVolumes(cfg({ mounts: [mount('/dev/xvda', dir)], devices: [{ container_path: '/dev/xvda', host_path: f, permissions: 'rw' }] })), /given twice/);
  });
});
