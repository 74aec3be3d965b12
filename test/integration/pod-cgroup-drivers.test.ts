// The pod cgroup with the systemd driver and on a cgroup v2 host, against real libvirtd + QEMU
// (TCG here). pod-cgroup.test.ts covers the host's own layout with the cgroupfs driver (v1 here).
// - systemd driver: vmlet writes the slice's cgroups itself (no D-Bus), so it runs here without
//   systemd: a slice cgroup_parent is expanded as runc does and QEMU and dnsmasq run below it.
// - cgroup v2: vmlet runs in a mount namespace of its own whose /sys/fs/cgroup is this host's
//   cgroup2 hierarchy (the one a hybrid host mounts at /sys/fs/cgroup/unified), so it sees a v2
//   host and places QEMU and dnsmasq in real v2 leaves (the kernel's v2 rules: one hierarchy, no
//   processes beside child cgroups that have controllers). On a hybrid host every controller
//   libvirt uses is bound to v1, so a memory limit cannot be tried there (pod-cgroup.test.ts
//   does on a v2 host); what v2 gives every cgroup, cpu.stat, shows the VM's CPU.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { runVmPod, startVmSuite, stopVmSuite, vmletConfig, waitForConsoleLine } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { hostLayout, joinDirs, removeCreated } from '../../src/vm/pod-cgroup.js';

const layout = hostLayout();
/** This host's cgroup2 hierarchy when it is hybrid (v1 controllers, cgroup2 beside them). */
const unified = layout.version === 1 ? readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[4] === '/sys/fs/cgroup/unified' && f[f.indexOf('-') + 1] === 'cgroup2')?.[4] : undefined;
const tag = randomBytes(4).toString('hex');
const logDir = tempDir('vmlet-cgdrv-logs-');
let reg: TestRegistry;
let v: VmletProcess | undefined;
let kernelImage = '';
let stateDir = '';
const made: string[] = [];
/** Pods a test made, removed after it even when it failed (a failed test leaves no netns or dnsmasq). */
const pods = new Set<string>();

const rt = <T>(method: string, req: object) => call<object, T>(v!.runtime, method, req);
/** runVmPod, the pod noted for removal as soon as RunPodSandbox made it. */
async function runPod(o: Parameters<typeof runVmPod>[1]) {
  const before = new Set((await rt<{ items: Array<{ id: string }> }>('ListPodSandbox', {})).items.map((p) => p.id));
  try {
    return await runVmPod(v!, o);
  } finally {
    for (const p of (await rt<{ items: Array<{ id: string }> }>('ListPodSandbox', {})).items) if (!before.has(p.id)) pods.add(p.id);
  }
}
const qemuPid = (domain: string) => Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
/** `pid`'s cgroup in the v1 hierarchy of `controller`, or ('') in the unified one. */
function cgroupOf(pid: number, controller: string): string {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n').map((l) => l.split(':'));
  const line = controller === '' ? lines.find((l) => l[0] === '0') : lines.find((l) => l[1]!.split(',').includes(controller));
  return line!.slice(2).join(':');
}
async function domainOf(cid: string): Promise<string> {
  const st = await rt<{ info: Record<string, string> }>('ContainerStatus', { container_id: cid, verbose: true });
  return (JSON.parse(st.info.info!) as { domain: string }).domain;
}
const dnsmasqPid = (pod: string) => Number(readFileSync(join(v!.stateDir, 'pods', pod, 'dnsmasq.pid'), 'utf8').trim());

beforeAll(async () => {
  const suite = await startVmSuite([['kernelboot', 'cgdrv/kernel:1']]);
  ({ reg } = suite);
  kernelImage = suite.refs[0]!;
  stateDir = suite.v.stateDir; // its image store has the pulled image
  await suite.v.stop();
}, 300_000);

afterAll(async () => {
  for (const id of pods) await rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
  await stopVmSuite(v, reg);
  removeCreated(made.filter((d) => existsSync(d)));
}, 120_000);

/** A vmlet on the suite's registry with `extra` config, in place of the one before. */
async function vmletWith(extra: string, wrap?: string[]) {
  for (const id of pods) await rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
  pods.clear();
  await v?.stop();
  v = await startVmlet({ stateDir, config: vmletConfig(reg) + extra, ...(wrap ? { wrap } : {}) });
}

describe('pod cgroup: systemd driver, cgroup v2', () => {
  it.skipIf(layout.version !== 1)('systemd driver: a slice cgroup_parent is expanded as runc does; QEMU and dnsmasq run below it; RuntimeConfig says SYSTEMD', async () => {
    await vmletWith('cgroupDriver: systemd\n');
    expect((await rt<{ linux: { cgroup_driver: string } }>('RuntimeConfig', {})).linux.cgroup_driver).toBe('SYSTEMD');
    const top = `vmletcg${tag}`;
    const slice = `${top}-burstable-pod${tag}.slice`;
    const path = `/${top}.slice/${top}-burstable.slice/${slice}`;
    made.push(...joinDirs(layout, `/${top}.slice`, ''));
    const pod = await runPod({ name: 'cgsd', namespace: 'cgdrv', image: kernelImage, logDir, sandbox: { linux: { cgroup_parent: slice } } });
    const pid = qemuPid(await domainOf(pod.cid));
    expect(cgroupOf(pid, 'memory')).toMatch(new RegExp(`^${path.replace(/\./g, '\\.')}/[^/]+\\.libvirt-qemu$`));
    expect(cgroupOf(dnsmasqPid(pod.id), 'memory')).toBe(`${path}/vmlet-helpers`);
    // A cgroupfs path is no slice: refused, naming the field.
    const bad = await rt('RunPodSandbox', { config: { metadata: { name: 'cgsdbad', namespace: 'cgdrv', uid: randomBytes(8).toString('hex'), attempt: 0 }, linux: { cgroup_parent: '/kubepods/burstable/pod1' } }, runtime_handler: 'vmlet' }).catch((e: Error) => e);
    expect(String((bad as Error).message)).toMatch(/linux\.cgroup_parent .*not a systemd slice name/);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    const mem = layout.v1.get('memory')!;
    expect(readdirSync(join(mem, path), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name), 'vmlet\'s leaves after RemovePodSandbox').toEqual([]);
  });

  it.skipIf(!unified)('cgroup v2: QEMU and dnsmasq each in a leaf of the unified pod cgroup, made with its controllers delegated; cpu.stat shows the VM', async () => {
    // Only /sys/fs/cgroup is private to vmlet's mount namespace: /run/netns and the rest stay the host's.
    await vmletWith('', ['unshare', '--mount', '--propagation', 'unchanged', '--', 'sh', '-c', 'mount --make-rprivate /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" "$@"']);
    expect(parseLogLines(v!.logLines).some((l) => /cgroup/.test(String(l.msg)) && Number(l.level) >= 50)).toBe(false);
    const top = `/vmlet-cgv2-${tag}`;
    const parent = `${top}/burstable/pod${tag}`;
    made.push(join(unified!, top));
    const pod = await runPod({ name: 'cgv2', namespace: 'cgdrv', image: kernelImage, logDir, sandbox: { linux: { cgroup_parent: parent } } });
    const pid = qemuPid(await domainOf(pod.cid));
    const leaf = cgroupOf(pid, '');
    expect(leaf).toMatch(new RegExp(`^${parent}/[^/]+\\.libvirt-qemu$`));
    for (const t of readdirSync(`/proc/${pid}/task`)) expect(cgroupOf(Number(t), '')).toBe(leaf);
    expect(readFileSync(join(unified!, leaf, 'cgroup.procs'), 'utf8').split('\n')).toContain(String(pid));
    expect(cgroupOf(dnsmasqPid(pod.id), '')).toBe(`${parent}/vmlet-helpers`);
    // v1 is left alone: QEMU stays in libvirt's memory cgroup there.
    expect(cgroupOf(pid, 'memory')).not.toContain(parent);
    // Each level vmlet made delegates what its parent has (else the leaf could not use it).
    const rootControllers = readFileSync(join(unified!, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
    for (const d of [top, `${top}/burstable`, parent]) {
      expect(readFileSync(join(unified!, d, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/).filter(Boolean).sort(), d).toEqual([...rootControllers].sort());
    }
    // The pod cgroup accounts the VM's CPU: it grows while the guest boots.
    const usage = () => Number(/^usage_usec (\d+)/m.exec(readFileSync(join(unified!, parent, 'cpu.stat'), 'utf8'))![1]);
    const first = usage();
    await waitForConsoleLine(pod.log, 'VMLET-READY', 180_000);
    const grown = await waitFor('the pod cgroup\'s CPU time to grow', () => (usage() > first ? usage() : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    expect(grown).toBeGreaterThan(first);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    // RemovePodSandbox takes vmlet's leaves (the VM's, the helpers'); the pod cgroup is the kubelet's.
    expect([existsSync(join(unified!, leaf)), existsSync(join(unified!, parent, 'vmlet-helpers')), existsSync(join(unified!, parent))]).toEqual([false, false, true]);
  });
});
