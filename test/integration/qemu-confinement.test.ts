// How a VM pod's QEMU is confined, read from /proc of the running process (docs/security.md):
// the user qemu.conf names (root on vmlet nodes: why, and what it would take to change, is in
// the doc), QEMU's seccomp filter on (mode 2) with libvirt's -sandbox that forbids raising
// privileges and spawning processes, and no capability to gain more (no_new_privs is not
// QEMU's way: elevateprivileges=deny filters setuid and friends instead).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { call, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { runVmPod, startVmSuite, stopVmSuite } from '../helpers/vm-suite.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';

beforeAll(async () => {
  const suite = await startVmSuite([['kernelboot', 'confine/kernel:1']]);
  ({ reg, v } = suite);
  image = suite.refs[0]!;
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
}, 120_000);

/** qemu.conf's `user`, as libvirt reads it (libvirt's own default where the key is absent). */
function qemuConfUser(): string {
  const conf = readFileSync('/etc/libvirt/qemu.conf', 'utf8');
  return /^\s*user\s*=\s*"([^"]+)"/m.exec(conf)?.[1] ?? 'libvirt-qemu';
}

describe('QEMU confinement', () => {
  it('runs as qemu.conf\'s user under QEMU\'s seccomp sandbox: no privilege raising, no spawning', async () => {
    const pod = await runVmPod(v, { name: 'confined', namespace: 'confine', image, logDir: tempDir('vmlet-confine-logs-') });
    const st = await call<object, { info: Record<string, string> }>(v.runtime, 'ContainerStatus', { container_id: pod.cid, verbose: true });
    const domain = (JSON.parse(st.info.info!) as { domain: string }).domain;
    const pid = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
    expect(uid).toBe(Number(execFileSync('id', ['-u', qemuConfUser()], { encoding: 'utf8' }).trim()));
    expect(status).toMatch(/^Seccomp:\s+2$/m); // a filter is installed
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const sandbox = args[args.indexOf('-sandbox') + 1] ?? '';
    expect(sandbox.split(',')).toEqual(expect.arrayContaining(['on', 'elevateprivileges=deny', 'spawn=deny', 'obsolete=deny', 'resourcecontrol=deny']));
    console.log(`QEMU pid ${pid}: uid ${uid} (${qemuConfUser()}), Seccomp ${/^Seccomp:\s+(\d+)/m.exec(status)![1]}, -sandbox ${sandbox}`);
    await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});
