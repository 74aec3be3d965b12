// How a VM pod's QEMU is confined, read from /proc of the running process (docs/security.md):
// the node's QEMU user (libvirt's unprivileged qemu user, vmlet's default), with or without a
// shared directory (virtiofs: virtiofsd, root, serves it); QEMU's seccomp filter on (mode 2) with
// libvirt's -sandbox that forbids raising privileges and spawning processes. The unprivileged
// QEMU still serves exec (its guest-agent socket is in a dir of its own) and reaches its files
// (libvirt chowns them; vmlet's dirs let it pass). A 9p share (no virtiofsd) makes it root:
// test/unit/qemu-user.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { call, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { podVmReady, runVmPod, startVmSuite, stopVmSuite, waitForAgent } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { domainName } from '../../src/vm/spec.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
let rootfsImage = '';

beforeAll(async () => {
  const suite = await startVmSuite([['kernelboot', 'confine/kernel:1'], ['rootfs', 'confine/busybox:1']], { guestKit: true });
  ({ reg, v } = suite);
  [image = '', rootfsImage = ''] = suite.refs;
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
}, 120_000);

const idOf = (flag: '-u' | '-g', user: string) => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());

/** The running QEMU of a VM pod's container: pid, /proc status and argv. */
async function qemuOf(cid: string): Promise<{ pid: number; status: string; args: string[]; files: string[] }> {
  const st = await call<object, { info: Record<string, string> }>(v.runtime, 'ContainerStatus', { container_id: cid, verbose: true });
  const info = JSON.parse(st.info.info!) as { domain: string; files: string[] };
  const pid = Number(readFileSync(`/run/libvirt/qemu/${info.domain}.pid`, 'utf8').trim());
  return { pid, status: readFileSync(`/proc/${pid}/status`, 'utf8'), args: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'), files: info.files };
}

const uidOf = (status: string) => Number(/^Uid:\s+(\d+)/m.exec(status)![1]);

describe('QEMU confinement', () => {
  it('runs a VM without shares as libvirt\'s qemu user under QEMU\'s seccomp sandbox, and exec still reaches its guest', async () => {
    const pod = await runVmPod(v, { name: 'confined', namespace: 'confine', image, logDir: tempDir('vmlet-confine-logs-') });
    const q = await qemuOf(pod.cid);
    expect(uidOf(q.status)).toBe(idOf('-u', 'libvirt-qemu'));
    expect(Number(/^Gid:\s+(\d+)/m.exec(q.status)![1])).toBe(idOf('-g', 'libvirt-qemu'));
    expect(q.status).toMatch(/^Seccomp:\s+2$/m); // a filter is installed
    expect(q.status).toMatch(/^CapEff:\s+0+$/m); // no capability left
    const sandbox = q.args[q.args.indexOf('-sandbox') + 1] ?? '';
    expect(sandbox.split(',')).toEqual(expect.arrayContaining(['on', 'elevateprivileges=deny', 'spawn=deny', 'obsolete=deny', 'resourcecontrol=deny']));
    // The guest-agent socket QEMU made, in a dir of its own that nobody else may enter.
    const sockDir = q.files.find((f) => statSync(f, { throwIfNoEntry: false })?.isDirectory() && /qga|qemu/.test(f))!;
    const sockSt = statSync(join(sockDir, 'qga.sock'));
    expect(sockSt.uid).toBe(uidOf(q.status));
    expect(statSync(sockDir).mode & 0o777).toBe(0o700);
    await waitForAgent(v, pod.cid);
    // libvirt gave QEMU the image's kernel for the run, and gives it back to root after it.
    const kernels = join(v.stateDir, 'images', 'kernels');
    const kernel = readdirSync(kernels).map((d) => join(kernels, d, 'kernel')).find((f) => statSync(f, { throwIfNoEntry: false })?.uid === uidOf(q.status));
    expect(kernel).toBeDefined();
    console.log(`QEMU pid ${q.pid}: uid ${uidOf(q.status)} (libvirt-qemu), Seccomp ${/^Seccomp:\s+(\d+)/m.exec(q.status)![1]}, -sandbox ${sandbox}; exec answered through ${sockDir}`);
    await call(v.runtime, 'StopPodSandbox', { pod_sandbox_id: pod.id });
    await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: pod.id });
    expect(statSync(kernel!).uid).toBe(0);
  });

  it('runs a VM with a shared directory unprivileged too: virtiofsd (root) serves the host\'s owners both ways', async () => {
    const data = join(tempDir('vmlet-confine-vol-'), 'data');
    mkdirSync(data);
    writeFileSync(join(data, 'secret'), 'root only\n', { mode: 0o600 }); // as a Secret volume's file or /etc/shadow in an image
    const pod = await runVmPod(v, { name: 'shared', namespace: 'confine', image, logDir: tempDir('vmlet-confine-logs-'), container: { mounts: [{ container_path: '/data', host_path: data }] } });
    const q = await qemuOf(pod.cid);
    expect(uidOf(q.status)).toBe(idOf('-u', 'libvirt-qemu'));
    expect(q.status).toMatch(/^Seccomp:\s+2$/m);
    await waitForAgent(v, pod.cid);
    const sh = async (script: string) => {
      const r = await call<object, { stdout: Buffer; exit_code: number }>(v.runtime, 'ExecSync', { container_id: pod.cid, cmd: ['/bin/sh', '-c', script], timeout: 30 });
      return { out: Buffer.from(r.stdout).toString(), code: r.exit_code };
    };
    await waitFor('the share mounted in the guest', async () => (await sh('grep -q " /data virtiofs " /proc/mounts')).code === 0, { timeoutMs: 120_000, intervalMs: 500 });
    expect((await sh('cat /data/secret')).out).toBe('root only\n');
    expect((await sh('echo from the guest > /data/mine && chown 1234:2345 /data/mine')).code).toBe(0);
    expect(statSync(join(data, 'mine'))).toMatchObject({ uid: 1234, gid: 2345 });
    await call(v.runtime, 'StopPodSandbox', { pod_sandbox_id: pod.id });
    await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it('runs a sandboxed pod\'s VM unprivileged: its image tree and shared dir are virtiofs, the image tree from a read-only bind', async () => {
    const config = { metadata: { name: 'sbx', namespace: 'confine', uid: 'confine-sbx', attempt: 0 }, log_directory: tempDir('vmlet-confine-logs-'), annotations: { 'vmlet.io/pod-kind': 'sandboxed' } };
    const { pod_sandbox_id: id } = await call<object, { pod_sandbox_id: string }>(v.runtime, 'RunPodSandbox', { config, runtime_handler: 'vmlet' });
    await podVmReady(v, id); // it boots once RunPodSandbox has answered
    const domain = domainName('sbx', 'confine', id);
    const pid = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
    expect(uidOf(readFileSync(`/proc/${pid}/status`, 'utf8'))).toBe(idOf('-u', 'libvirt-qemu'));
    const xml = execFileSync('virsh', ['-c', 'qemu:///system', 'dumpxml', domain], { encoding: 'utf8' });
    const sources = [...xml.matchAll(/<driver type='virtiofs'[^]*?<source dir='([^']+)'/g)].map((m) => m[1]!);
    expect(sources).toHaveLength(2);
    const imagesView = sources.find((d) => d.endsWith('/images-ro'))!;
    const mnt = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === imagesView);
    expect(mnt?.split(' ')[5]).toMatch(/^ro(,|$)/);
    // A container runs from the image tree it reads through that share.
    const { container_id: cid } = await call<object, { container_id: string }>(v.runtime, 'CreateContainer', {
      pod_sandbox_id: id,
      config: { metadata: { name: 'c', attempt: 0 }, image: { image: rootfsImage }, command: ['sleep', '300'], log_path: 'c.log' },
      sandbox_config: config,
    });
    await call(v.runtime, 'StartContainer', { container_id: cid });
    const r = await call<object, { stdout: Buffer; exit_code: number }>(v.runtime, 'ExecSync', { container_id: cid, cmd: ['cat', '/etc/hostname'], timeout: 30 });
    expect(r.exit_code).toBe(0);
    await call(v.runtime, 'StopPodSandbox', { pod_sandbox_id: id });
    await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
  });
});
