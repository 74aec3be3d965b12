// Volumes in a sandboxed pod, end to end with a real vmlet, libvirtd and QEMU (TCG): a
// ConfigMap-like host dir in the kubelet's `..data` layout, updated by a real symlink swap while
// the container runs, seen through 9p without a restart; a block volume (a loop device) hotplugged
// into the running pod VM and made a device node in the container; bad mounts and devices refused
// with nothing left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, openSync, readSync, closeSync, renameSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { startVmSuite, stopVmSuite } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { virsh } from '../helpers/virsh.js';
import { freeLoop, loopUnavailable, makeLoop } from '../helpers/loop-device.js';
import { deviceSerial } from '../../src/vm/volumes.js';

const noLoop = loopUnavailable();

let v: VmletProcess;
let reg: TestRegistry;
let image: string;
const dir = tempDir('vmlet-vol-sbx-');
let loop: string | undefined;
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const asRoot = { linux: { security_context: { run_as_user: { value: '0' } } } };

interface Pod {
  id: string;
  config: object;
  domain: string;
}

async function runPod(name: string): Promise<Pod> {
  const uid = randomBytes(8).toString('hex');
  const config = { metadata: { name, namespace: 'vols', uid, attempt: 0 }, hostname: name, log_directory: join(dir, uid), annotations: { 'vmlet.io/pod-kind': 'sandboxed' } };
  const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
  return { id, config, domain: `vmlet-vols-${name}-${id.slice(0, 8)}` };
}

const create = (pod: Pod, name: string, config: object) =>
  rt<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod.id,
    config: { metadata: { name, attempt: 0 }, image: { image }, log_path: `${name}.log`, command: ['sleep', '3600'], ...asRoot, ...config },
    sandbox_config: pod.config,
  }).then((r) => r.container_id);

const sh = (cid: string, script: string) =>
  rt<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('ExecSync', { container_id: cid, cmd: ['sh', '-c', script], timeout: 30 }).then((r) => ({
    out: Buffer.from(r.stdout).toString(),
    err: Buffer.from(r.stderr).toString(),
    code: r.exit_code,
  }));

/** The kubelet's AtomicWriter layout: ..<ts>/ with the files, ..data → it, each key → ..data/key. */
function writeConfigMap(path: string, ts: string, files: Record<string, string>, first: boolean): void {
  mkdirSync(join(path, ts), { recursive: true });
  for (const [k, val] of Object.entries(files)) writeFileSync(join(path, ts, k), val);
  if (first) {
    symlinkSync(ts, join(path, '..data'));
    for (const k of Object.keys(files)) symlinkSync(join('..data', k), join(path, k));
    return;
  }
  // As the kubelet swaps: a new symlink, renamed over ..data (atomic).
  symlinkSync(ts, join(path, '..data_tmp'));
  renameSync(join(path, '..data_tmp'), join(path, '..data'));
}

/** Serials of the disks the running domain has. */
const diskSerials = (domain: string) => [...virsh('dumpxml', domain).matchAll(/<serial>([^<]+)<\/serial>/g)].map((m) => m[1]);

beforeAll(async () => {
  // SeaBIOS here (qboot is the default, in sandboxed-pods.test.ts): the hotplug below works after either firmware.
  const suite = await startVmSuite([['rootfs', 'vols/busybox:1']], { guestKit: true, config: 'podVmBios: seabios\n' });
  ({ v, reg } = suite);
  image = suite.refs[0]!;
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
  freeLoop(loop);
}, 120_000);

describe('volumes in a sandboxed pod', () => {
  let pod: Pod;
  let app: string;
  const cm = join(dir, 'configmap');

  it('shows a config volume over 9p, and a ..data symlink swap on the host without a restart', async () => {
    pod = await runPod('cfg');
    writeConfigMap(cm, '..2026_12_05_v1', { 'app.conf': 'version=1\n' }, true);
    app = await create(pod, 'app', { mounts: [{ container_path: '/etc/app', host_path: cm, readonly: true }] });
    await rt('StartContainer', { container_id: app });
    expect((await sh(app, 'cat /etc/app/app.conf')).out).toBe('version=1\n');
    expect((await sh(app, 'echo x > /etc/app/new 2>&1; echo $?')).out.trim()).not.toBe('0'); // read-only
    writeConfigMap(cm, '..2026_12_05_v2', { 'app.conf': 'version=2\n' }, false);
    const seen = await waitFor('the guest to read the swapped ..data', async () => ((await sh(app, 'cat /etc/app/app.conf')).out === 'version=2\n' ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    expect(seen).toBe(true);
    expect((await sh(app, 'readlink /etc/app/..data')).out.trim()).toBe('..2026_12_05_v2');
  }, 240_000);

  it.skipIf(noLoop)('hotplugs a block volume into the running pod VM and makes its node in the container; one disk for two containers; unplugged with the last', async () => {
    const file = join(dir, 'pv.img');
    loop = makeLoop(file, 32 << 20);
    const fd = openSync(loop, 'r+');
    writeSync(fd, Buffer.from('VMLET-BLOCK-MARK'), 0, 16, 0);
    closeSync(fd);
    const serial = deviceSerial(loop);
    const db = await create(pod, 'db', { devices: [{ container_path: '/dev/xvdb', host_path: loop, permissions: 'rwm' }] });
    expect(diskSerials(pod.domain)).toContain(serial);
    await rt('StartContainer', { container_id: db });
    const node = await sh(db, 'ls -l /dev/xvdb; head -c 16 /dev/xvdb');
    expect(node.code).toBe(0);
    expect(node.out).toMatch(/^b/); // a block device node
    expect(node.out).toContain('VMLET-BLOCK-MARK');
    // The guest found it by serial, as /dev/disk/by-id/virtio-<serial> would.
    expect((await sh(db, `grep -l ${serial} /sys/block/*/serial`)).out).toMatch(/\/sys\/block\/vd[b-z]\/serial/);
    // It came through ACPI: the guest kernel runs no PCIe port services (pcie_ports=compat, pod-vm-spec.ts).
    expect((await sh(db, 'ls /sys/bus/pci_express/devices | wc -l')).out.trim()).toBe('0');
    expect((await sh(db, 'cat /sys/class/dmi/id/bios_vendor')).out.trim()).toBe('SeaBIOS'); // config podVmBios: seabios
    // Written in the guest, read on the host: the same device.
    expect((await sh(db, 'printf from-guest | dd of=/dev/xvdb bs=512 seek=8 conv=notrunc,fsync 2>/dev/null; echo $?')).out.trim()).toBe('0');
    const buf = Buffer.alloc(10);
    const rfd = openSync(loop, 'r');
    readSync(rfd, buf, 0, 10, 4096);
    closeSync(rfd);
    expect(buf.toString()).toBe('from-guest');
    // A container asking for read-only access to the writable disk is refused: the VM enforces access per disk.
    const mixed = await failure(create(pod, 'db-ro', { devices: [{ container_path: '/dev/ro', host_path: loop, permissions: 'r' }] }));
    expect(mixed.code).toBe(Status.FAILED_PRECONDITION);
    expect(mixed.details).toMatch(/device "\/dev\/ro": block volume .* writable for container db;/);
    // A second container on the same volume shares the one disk, and keeps it when the first goes.
    const db2 = await create(pod, 'db2', { devices: [{ container_path: '/dev/vol', host_path: loop, permissions: 'rw' }] });
    expect(diskSerials(pod.domain).filter((x) => x === serial)).toHaveLength(1);
    await rt('StartContainer', { container_id: db2 });
    await rt('StopContainer', { container_id: db, timeout: 0 });
    await rt('RemoveContainer', { container_id: db });
    expect(diskSerials(pod.domain)).toContain(serial);
    expect((await sh(db2, 'head -c 16 /dev/vol')).out).toBe('VMLET-BLOCK-MARK');
    await rt('StopContainer', { container_id: db2, timeout: 0 });
    await rt('RemoveContainer', { container_id: db2 });
    await waitFor('the disk to leave the pod VM', () => !diskSerials(pod.domain).includes(serial), { timeoutMs: 60_000, intervalMs: 200 });
    // The other container is untouched.
    expect((await sh(app, 'cat /etc/app/app.conf')).out).toBe('version=2\n');
  }, 240_000);

  it('refuses a missing host path, a device that is not a block device, a relative container path: INVALID_ARGUMENT naming it, nothing left', async () => {
    const before = (await rt<{ containers: unknown[] }>('ListContainers', {})).containers.length;
    const disksBefore = diskSerials(pod.domain);
    const missing = await failure(create(pod, 'bad1', { mounts: [{ container_path: '/data', host_path: join(dir, 'no-such-dir') }] }));
    expect(missing.code).toBe(Status.INVALID_ARGUMENT);
    expect(missing.details).toMatch(/mount "\/data".*does not exist/);
    const regular = join(dir, 'not-a-device');
    writeFileSync(regular, 'x');
    const notBlock = await failure(create(pod, 'bad2', { devices: [{ container_path: '/dev/xvdc', host_path: regular, permissions: 'rw' }] }));
    expect(notBlock.code).toBe(Status.INVALID_ARGUMENT);
    expect(notBlock.details).toMatch(/device "\/dev\/xvdc".*is a regular file: allowed block devices only/);
    const relative = await failure(create(pod, 'bad3', { mounts: [{ container_path: 'data', host_path: cm }] }));
    expect(relative.code).toBe(Status.INVALID_ARGUMENT);
    expect(relative.details).toMatch(/mount "data".*absolute path/);
    expect((await rt<{ containers: unknown[] }>('ListContainers', {})).containers.length).toBe(before);
    expect(diskSerials(pod.domain)).toEqual(disksBefore);
    const shared = join(v.stateDir, 'pods', pod.id, 'shared');
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(shared).sort()).toEqual([app].sort()); // no bind dir of a refused container
  }, 120_000);
});
