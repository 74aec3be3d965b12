// A VM-image pod's shares (virtiofs on this node) as its guest sees them, with a real vmlet, libvirtd and QEMU (TCG).
// The test guest runs the seed's cloud-config `write_files` and `mounts` as a cloud image's
// cloud-init does (test/images/README.md: VMLET-WRITE, VMLET-MOUNT), so this checks from inside
// the guest (ExecSync through qemu-ga): a read-write share (a hostPath or emptyDir), a read-only
// one, and a ConfigMap-like dir with the kubelet's AtomicWriter layout (`..data` -> a timestamped
// dir, each key a symlink through it), whose `..data` swap on the host the guest sees without a
// restart; and the write_files copies (the config file under its share, a single file).
// volumes-vm.test.ts covers the host side (domain XML, QEMU devices, seed) and block volumes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { call, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { consoleLines, runVmPod, startVmSuite, stopVmSuite, waitForAgent, waitForConsoleLine } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { shareTag } from '../../src/vm/volumes.js';

let v: VmletProcess;
let reg: TestRegistry;
let kernelImage: string;
const dir = tempDir('vmlet-vol-guest-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

interface Out {
  out: string;
  err: string;
  code: number;
}
const sh = (cid: string, script: string): Promise<Out> =>
  rt<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('ExecSync', { container_id: cid, cmd: ['/bin/sh', '-c', script], timeout: 30 }).then((r) => ({
    out: Buffer.from(r.stdout).toString(),
    err: Buffer.from(r.stderr).toString(),
    code: r.exit_code,
  }));

/** The kubelet's AtomicWriter: the files in a new timestamped dir, `..data` renamed over to it, a key symlink per file. */
function writeConfigVolume(path: string, stamp: string, files: Record<string, string>): void {
  const ts = `..${stamp}`;
  mkdirSync(join(path, ts), { recursive: true });
  for (const [k, val] of Object.entries(files)) writeFileSync(join(path, ts, k), val, { mode: 0o644 });
  symlinkSync(ts, join(path, '..data_tmp'));
  renameSync(join(path, '..data_tmp'), join(path, '..data')); // rename(2): atomic, replaces the old symlink
  for (const k of Object.keys(files)) if (!existsSync(join(path, k))) symlinkSync(join('..data', k), join(path, k));
}

beforeAll(async () => {
  const suite = await startVmSuite([['kernelboot', 'volguest/kernel:1']]);
  ({ v, reg } = suite);
  [kernelImage] = suite.refs as [string];
}, 300_000);

afterAll(() => stopVmSuite(v, reg), 120_000);

describe("a VM-image pod's shares inside its guest", () => {
  it('mounts each share at its container path (rw, ro), writes config and single files at boot, and follows a ConfigMap ..data swap without a restart', async () => {
    const data = join(dir, 'data'); // a hostPath / emptyDir: read-write
    mkdirSync(data);
    writeFileSync(join(data, 'from-host.txt'), 'host says hi\n');
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    writeFileSync(join(ro, 'ro.txt'), 'read me\n');
    const cm = join(dir, 'cm');
    writeConfigVolume(cm, '2026_12_05_11_00_00.000000001', { 'app.conf': 'version=1\n', 'other.conf': 'x=1\n' });
    const single = join(dir, 'single.txt');
    writeFileSync(single, 'one file\n', { mode: 0o640 });
    const mounts = { data: '/data', ro: '/srv/ro', cm: '/etc/app' };
    const pod = await runVmPod(v, {
      name: 'volguest',
      namespace: 'vols',
      image: kernelImage,
      logDir: dir,
      container: {
        mounts: [
          { container_path: mounts.data, host_path: data },
          { container_path: mounts.ro, host_path: ro, readonly: true },
          { container_path: mounts.cm, host_path: cm, readonly: true },
          { container_path: '/etc/single/single.txt', host_path: single, readonly: true },
        ],
      },
    });

    // The guest's cloud-config run: one marker per file and per mount, then the summary.
    for (const path of Object.values(mounts)) await waitForConsoleLine(pod.log, `VMLET-MOUNT ${shareTag(path)} ${path} ok`, 240_000);
    const summary = await waitForConsoleLine(pod.log, 'VMLET-CLOUDCONFIG', 60_000);
    expect(summary).toBe('VMLET-CLOUDCONFIG write_files=3 mounts=3');
    const lines = consoleLines(pod.log);
    expect(lines).toEqual(expect.arrayContaining(['VMLET-WRITE /etc/app/app.conf', 'VMLET-WRITE /etc/app/other.conf', 'VMLET-WRITE /etc/single/single.txt']));
    expect(lines.filter((l) => l.startsWith('VMLET-MOUNT') && !l.endsWith(' ok'))).toEqual([]);
    await waitForAgent(v, pod.cid, 120_000);

    // The kernel's view: three virtiofs mounts (this node has virtiofsd) with the tags, read-only where asked.
    const m = await sh(pod.cid, "awk '$3 == \"virtiofs\" { print $1, $2, substr($4, 1, 2) }' /proc/mounts | sort -k2");
    expect(m.out.trim().split('\n')).toEqual(
      [
        `${shareTag(mounts.data)} ${mounts.data} rw`,
        `${shareTag(mounts.cm)} ${mounts.cm} ro`,
        `${shareTag(mounts.ro)} ${mounts.ro} ro`,
      ].sort((a, b) => a.split(' ')[1]!.localeCompare(b.split(' ')[1]!)),
    );

    // The files at the container paths, through the shares (the ConfigMap's keys through its symlinks).
    expect((await sh(pod.cid, `cat ${mounts.data}/from-host.txt ${mounts.ro}/ro.txt ${mounts.cm}/app.conf ${mounts.cm}/other.conf`)).out).toBe('host says hi\nread me\nversion=1\nx=1\n');
    expect((await sh(pod.cid, `readlink ${mounts.cm}/app.conf; readlink ${mounts.cm}/..data`)).out).toBe('..data/app.conf\n..2026_12_05_11_00_00.000000001\n');

    // A write in the read-write share is on the host at once.
    expect((await sh(pod.cid, `echo written in the guest > ${mounts.data}/from-guest.txt && mkdir ${mounts.data}/sub && echo deep > ${mounts.data}/sub/f`)).code).toBe(0);
    expect(readFileSync(join(data, 'from-guest.txt'), 'utf8')).toBe('written in the guest\n');
    expect(readFileSync(join(data, 'sub/f'), 'utf8')).toBe('deep\n');
    // A host write shows in the guest.
    writeFileSync(join(data, 'later.txt'), 'later\n');
    expect((await sh(pod.cid, `cat ${mounts.data}/later.txt`)).out).toBe('later\n');

    // The read-only shares refuse writes, and nothing reaches the host.
    for (const target of [`${mounts.ro}/nope`, `${mounts.cm}/nope`]) {
      const w = await sh(pod.cid, `echo x > ${target}`);
      expect(w.code, target).not.toBe(0);
      expect(w.err, target).toMatch(/Read-only file system/);
    }
    expect((await sh(pod.cid, `rm ${mounts.ro}/ro.txt`)).code).not.toBe(0);
    // Not only the guest's ro: remounted read-write in the guest, the host's read-only bind still refuses.
    const rw = await sh(pod.cid, `mount -o remount,rw ${mounts.ro} && echo x > ${mounts.ro}/nope`);
    expect(rw.code).not.toBe(0);
    expect(rw.err).toMatch(/Read-only file system/);
    expect(existsSync(join(ro, 'nope'))).toBe(false);
    expect(existsSync(join(ro, 'ro.txt'))).toBe(true);
    expect(existsSync(join(cm, 'nope'))).toBe(false);

    // The single file: written at boot with its mode (a copy: shares are directories only).
    expect((await sh(pod.cid, 'cat /etc/single/single.txt; stat -c %a /etc/single/single.txt')).out).toBe('one file\n640\n');
    // The config file's write_files copy is under the share (cloud-init: write_files, then
    // mounts): a bind mount of / (not recursive) shows what the share covers.
    const copy = await sh(pod.cid, 'mkdir -p /run/rootview && mount --bind / /run/rootview && cat /run/rootview/etc/app/app.conf && stat -c %a /run/rootview/etc/app/app.conf; umount /run/rootview');
    expect(copy.out, copy.err).toBe('version=1\n644\n');

    // The kubelet updates the ConfigMap: a new timestamped dir, `..data` renamed over, the old dir removed.
    writeConfigVolume(cm, '2026_12_05_11_05_00.000000002', { 'app.conf': 'version=2\n', 'other.conf': 'x=2\n' });
    rmSync(join(cm, '..2026_12_05_11_00_00.000000001'), { recursive: true });
    // No restart: the guest sees it at its next lookup (virtiofsd's cache times out in a second); polled, with a deadline.
    const seen = await waitFor(
      'the guest to read the new ConfigMap content',
      () => sh(pod.cid, `cat ${mounts.cm}/app.conf ${mounts.cm}/other.conf`).then((r) => r.out === 'version=2\nx=2\n' && r),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(seen.code).toBe(0);
    expect((await sh(pod.cid, `readlink ${mounts.cm}/..data`)).out).toBe('..2026_12_05_11_05_00.000000002\n');
    // The boot-time copy does not follow updates (docs/volumes.md).
    expect((await sh(pod.cid, 'mount --bind / /run/rootview && cat /run/rootview/etc/app/app.conf; umount /run/rootview')).out).toBe('version=1\n');

    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  }, 600_000);
});
