// Volumes in a VM-image pod, with a real vmlet, libvirtd and QEMU (TCG). Here the share side
// (virtiofs: this node has virtiofsd) is checked as far as the host and QEMU go: the domain's
// <filesystem> elements, the read-only bind a read-only share is served from, QEMU's
// vhost-user-fs devices and their tags (`info qtree`), the virtio-fs devices the guest's PCI bus
// shows, and the seed's `mounts` and `write_files`; what the guest sees of them (the test guest
// runs those cloud-config modules: test/images/README.md), a ConfigMap ..data swap included, is
// checked in volumes-vm-guest.test.ts. Block volumes are checked from inside the guest (qemu-ga):
// the disk with its serial, and a persistent root disk booted from a blank loop device, imaged
// once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, symlinkSync, writeFileSync, writeSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { parse as parseYaml } from 'yaml';
import { call, failure, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { runVmPod, startVmSuite, stopVmSuite, waitForAgent, waitForConsoleLine } from '../helpers/vm-suite.js';
import { virsh } from '../helpers/virsh.js';
import { freeLoop, loopUnavailable, makeLoop } from '../helpers/loop-device.js';
import { READY_MARKER } from '../helpers/guest.js';
import { deviceSerial, shareTag } from '../../src/vm/volumes.js';
import { domainName } from '../../src/vm/spec.js';

const noLoop = loopUnavailable();
let v: VmletProcess;
let reg: TestRegistry;
let kernelImage: string;
let diskImage: string;
const dir = tempDir('vmlet-vol-vm-');
const loops: string[] = [];
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

const sh = (cid: string, script: string) =>
  rt<{ stdout: Buffer; exit_code: number }>('ExecSync', { container_id: cid, cmd: ['/bin/sh', '-c', script], timeout: 30 }).then((r) => ({ out: Buffer.from(r.stdout).toString(), code: r.exit_code }));

function configMap(path: string, files: Record<string, string>): void {
  mkdirSync(join(path, '..2026_12_05'), { recursive: true });
  for (const [k, val] of Object.entries(files)) writeFileSync(join(path, '..2026_12_05', k), val);
  symlinkSync('..2026_12_05', join(path, '..data'));
  for (const k of Object.keys(files)) symlinkSync(join('..data', k), join(path, k));
}

const isoFile = (iso: string, name: string) => execFileSync('isoinfo', ['-i', iso, '-R', '-x', `/${name}`], { encoding: 'utf8' });
const domainsNamed = (prefix: string) => virsh('list', '--all', '--name').split('\n').filter((n) => n.startsWith(prefix));

function readAt(dev: string, offset: number, n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = openSync(dev, 'r');
  try {
    readSync(fd, buf, 0, n, offset);
  } finally {
    closeSync(fd);
  }
  return buf;
}

beforeAll(async () => {
  const suite = await startVmSuite([
    ['kernelboot', 'vols/kernel:1'],
    ['containerdisk', 'vols/disk:1'],
  ]);
  ({ v, reg } = suite);
  [kernelImage, diskImage] = suite.refs as [string, string];
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
  for (const l of loops) freeLoop(l);
}, 120_000);

describe('volumes in a VM-image pod', () => {
  it('gives each directory mount a virtiofs share with its tag (a read-only one from a read-only bind), mounted at boot by cloud-init; config files and single files also written at boot; block volumes as virtio-blk disks with their serial', async () => {
    const cm = join(dir, 'cm');
    configMap(cm, { 'app.conf': 'version=1\n' });
    const data = join(dir, 'emptydir');
    mkdirSync(data);
    const hosts = join(dir, 'etc-hosts');
    writeFileSync(hosts, '10.0.0.9 web\n');
    let loop: string | undefined;
    if (!noLoop) {
      loop = makeLoop(join(dir, 'data-pv.img'), 16 << 20);
      loops.push(loop);
      const fd = openSync(loop, 'r+');
      writeSync(fd, Buffer.from('VMLET-DATA-MARK!'), 0, 16, 0);
      closeSync(fd);
    }
    const pod = await runVmPod(v, {
      name: 'vols',
      namespace: 'vols',
      image: kernelImage,
      logDir: dir,
      container: {
        mounts: [
          { container_path: '/etc/app', host_path: cm, readonly: true },
          { container_path: '/data', host_path: data },
          { container_path: '/etc/hosts', host_path: hosts },
        ],
        ...(loop ? { devices: [{ container_path: '/dev/xvdb', host_path: loop, permissions: 'r' }] } : {}),
      },
    });
    const domain = domainName('vols', 'vols', pod.id);
    const xml = virsh('dumpxml', domain);
    // libvirt's definition: one passthrough virtiofs share per directory; the config one is
    // served from a read-only bind of it under the container dir (virtiofs has no read-only mode).
    const fss = [...xml.matchAll(/<filesystem type='mount' accessmode='passthrough'>([\s\S]*?)<\/filesystem>/g)].map((m) => m[1]!);
    expect(fss).toHaveLength(2);
    for (const f of fss) expect(f).toContain("<driver type='virtiofs'");
    const roShare = fss.find((f) => f.includes(`<target dir='${shareTag('/etc/app')}'/>`))!;
    const roSource = /<source dir='([^']+)'/.exec(roShare)![1]!;
    expect(roSource).toMatch(/\/containers\/[0-9a-f]{64}\/ro-shares\/0$/);
    const roMount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === roSource);
    expect(roMount?.split(' ')[5]).toMatch(/^ro(,|$)/);
    expect(fss.find((f) => f.includes(`dir='${data}'`))).toContain(`<target dir='${shareTag('/data')}'/>`);
    // QEMU has the devices with those tags.
    const qtree = virsh('qemu-monitor-command', '--hmp', domain, 'info qtree');
    expect(qtree).toContain(`tag = "${shareTag('/etc/app')}"`);
    expect(qtree).toContain(`tag = "${shareTag('/data')}"`);
    // The seed: virtiofs mounts at the container paths, and the config file and the single file written.
    const seedIso = /<source file='([^']+seed\.iso)'/.exec(xml)![1]!;
    const cfg = parseYaml(isoFile(seedIso, 'user-data'), { version: '1.1' }) as { mounts: string[][]; write_files: Array<{ path: string; content: string; encoding: string }> };
    expect(cfg.mounts).toEqual([
      [shareTag('/etc/app'), '/etc/app', 'virtiofs', 'ro,nofail', '0', '0'],
      [shareTag('/data'), '/data', 'virtiofs', 'rw,nofail', '0', '0'],
    ]);
    const written = Object.fromEntries(cfg.write_files.map((f) => [f.path, Buffer.from(f.content, 'base64').toString()]));
    expect(written).toMatchObject({ '/etc/app/app.conf': 'version=1\n', '/etc/hosts': '10.0.0.9 web\n' });
    expect(Object.keys(written)).not.toContain('/etc/app/..data');

    await waitForConsoleLine(pod.log, READY_MARKER);
    await waitForAgent(v, pod.cid);
    // The guest's PCI bus shows both virtio-fs devices (virtio device id 26).
    expect((await sh(pod.cid, 'cat /sys/bus/virtio/devices/*/device')).out.split('\n').filter((l) => l.trim() === '0x001a')).toHaveLength(2);
    if (loop) {
      const serial = deviceSerial(loop);
      expect(xml).toContain(`<serial>${serial}</serial>`);
      // Kernel boot: no root disk, so the volume is the guest's first virtio disk, read-only.
      const found = await sh(pod.cid, `for d in /sys/block/vd*; do [ "$(cat $d/serial)" = ${serial} ] && echo \${d##*/} $(cat $d/ro); done`);
      expect(found.out.trim()).toMatch(/^vd[a-z] 1$/);
      const dev = found.out.trim().split(' ')[0]!;
      expect((await sh(pod.cid, `[ -b /dev/${dev} ] || mknod /dev/${dev} b $(sed 's/:/ /' /sys/block/${dev}/dev); head -c 16 /dev/${dev}`)).out).toBe('VMLET-DATA-MARK!');
    }
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    // The bind went with the container, and the volume it bound is untouched.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(roSource);
    expect(readFileSync(join(cm, 'app.conf'), 'utf8')).toBe('version=1\n');
  }, 300_000);

  it.skipIf(noLoop)('boots from a block volume (vmlet.io/root-device): a blank device gets the image once, then is booted as it is', async () => {
    const root = makeLoop(join(dir, 'root-pv.img'), 256 << 20);
    loops.push(root);
    const device = { container_path: '/dev/xvda', host_path: root, permissions: 'rwm' };
    const first = await runVmPod(v, { name: 'persist', namespace: 'vols', image: diskImage, logDir: dir, annotations: { 'vmlet.io/root-device': '/dev/xvda' }, container: { devices: [device] } });
    expect(readAt(root, 510, 2).toString('hex')).toBe('55aa'); // the image's MBR, copied onto the device
    const xml = virsh('dumpxml', domainName('persist', 'vols', first.id));
    expect(xml).toMatch(new RegExp(`<disk type='block' device='disk'>[\\s\\S]*?<source dev='${root}'[\\s\\S]*?<boot order='1'/>`));
    expect(xml).not.toContain('root.qcow2');
    await waitForConsoleLine(first.log, READY_MARKER, 180_000);
    await rt('RemovePodSandbox', { pod_sandbox_id: first.id });
    // A mark past the image's end: a second pod must boot the device as it is, not image it again.
    const mib = 255 << 20;
    const fd = openSync(root, 'r+');
    writeSync(fd, Buffer.from('KEEP-ME'), 0, 7, mib);
    closeSync(fd);
    const second = await runVmPod(v, { name: 'persist2', namespace: 'vols', image: diskImage, logDir: dir, annotations: { 'vmlet.io/root-device': '/dev/xvda' }, container: { devices: [device] } });
    await waitForConsoleLine(second.log, READY_MARKER, 180_000);
    expect(readAt(root, mib, 7).toString()).toBe('KEEP-ME');
    await rt('RemovePodSandbox', { pod_sandbox_id: second.id });
  }, 600_000);

  it('refuses bad mounts and devices with INVALID_ARGUMENT naming them, and leaves no domain and no container dir', async () => {
    const uid = randomBytes(8).toString('hex');
    const config = { metadata: { name: 'bad', namespace: 'vols', uid, attempt: 0 }, hostname: 'bad', log_directory: join(dir, uid), annotations: {} };
    const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
    const create = (extra: object, annotations: Record<string, string> = {}) =>
      rt('CreateContainer', { pod_sandbox_id: id, config: { metadata: { name: 'vm', attempt: 0 }, image: { image: kernelImage }, log_path: 'vm.log', annotations, ...extra }, sandbox_config: config });
    const regular = join(dir, 'plain-file');
    writeFileSync(regular, 'x');
    const cases: Array<[object, RegExp, Record<string, string>?]> = [
      [{ mounts: [{ container_path: '/data', host_path: join(dir, 'missing') }] }, /mount "\/data".*does not exist/],
      [{ mounts: [{ container_path: 'data', host_path: dir }] }, /mount "data".*absolute path/],
      [{ devices: [{ container_path: '/dev/xvdb', host_path: regular, permissions: 'rw' }] }, /device "\/dev\/xvdb".*is a regular file: allowed block devices only/],
      [{ devices: [{ container_path: '/dev/xvdb', host_path: '/dev/null', permissions: 'rw' }] }, /device "\/dev\/xvdb".*is a character device/],
      [{}, /vmlet\.io\/root-device="\/dev\/xvda" names no device of the container/, { 'vmlet.io/root-device': '/dev/xvda' }],
    ];
    for (const [extra, re, ann] of cases) {
      const err = await failure(create(extra, ann));
      expect(err.code, err.details).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toMatch(re);
    }
    expect(domainsNamed(`vmlet-vols-bad-`)).toEqual([]);
    const containers = join(v.stateDir, 'pods', id, 'containers');
    expect(existsSync(containers) ? execFileSync('ls', ['-A', containers], { encoding: 'utf8' }).trim() : '').toBe('');
    await rt('RemovePodSandbox', { pod_sandbox_id: id });
  }, 120_000);
});
