// The pod cgroup against real libvirtd + QEMU (TCG here): a VM pod's QEMU and its dnsmasq, and a
// sandboxed pod's VM, run in LinuxPodSandboxConfig.cgroup_parent (cgroupfs driver; made when
// missing, as runc does); a memory limit on that cgroup caps the VM; a cgroup_parent vmlet cannot
// use is refused with nothing left behind. Checked from /sys/fs/cgroup and /proc.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { podVmReady, runVmPod, startVmSuite, stopVmSuite, waitForAgent, waitForConsoleLine } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { hostLayout, removeCreated } from '../../src/vm/pod-cgroup.js';

const MiB = 1024 * 1024;
let reg: TestRegistry;
let v: VmletProcess;
let kernelImage = '';
let rootfsImage = '';
const logDir = tempDir('vmlet-cgroup-logs-');
const top = `/vmlet-cgtest-${randomBytes(4).toString('hex')}`;
const layout = hostLayout();
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

/** Where `pid` runs for `controller` (v1), or in the unified hierarchy (v2). */
function cgroupOf(pid: number, controller: string): string {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n').map((l) => l.split(':'));
  const line = layout.version === 2 ? lines.find((l) => l[0] === '0') : lines.find((l) => l[1]!.split(',').includes(controller));
  return line!.slice(2).join(':');
}
const memRoot = () => (layout.version === 2 ? layout.unified! : layout.v1.get('memory')!);
const usageFile = (dir: string) => join(dir, layout.version === 2 ? 'memory.current' : 'memory.usage_in_bytes');
const limitFile = (dir: string) => join(dir, layout.version === 2 ? 'memory.max' : 'memory.limit_in_bytes');
const qemuPid = (domain: string) => Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());

/**
 * cgroup v1: QEMU was born in the pod cgroup (the domain runs vmlet's emulator wrapper), so its
 * anonymous memory (guest RAM, the kernel and initrd copied into it at start included) is charged
 * to its leaf. A QEMU moved after its start leaves what it touched before in libvirt's /machine.
 */
function expectBornInPod(domain: string, pid: number, leaf: string): void {
  const wrapper = join(v.stateDir, 'bin', 'qemu-in-pod-cgroup');
  expect(readFileSync(`/run/libvirt/qemu/${domain}.xml`, 'utf8')).toContain(`<emulator>${wrapper}</emulator>`);
  const anon = Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const charged = Number(/^rss (\d+)/m.exec(readFileSync(join(leaf, 'memory.stat'), 'utf8'))![1]);
  console.log(`pod cgroup: QEMU's anonymous memory ${Math.round(anon / MiB)} MiB, charged to its leaf ${Math.round(charged / MiB)} MiB`);
  expect(charged).toBeGreaterThanOrEqual(anon * 0.95);
}

async function domainOf(cid: string): Promise<string> {
  const st = await rt<{ info: Record<string, string> }>('ContainerStatus', { container_id: cid, verbose: true });
  return (JSON.parse(st.info.info!) as { domain: string }).domain;
}

beforeAll(async () => {
  const suite = await startVmSuite(
    [
      ['kernelboot', 'cg/kernel:1'],
      ['rootfs', 'cg/busybox:1'],
    ],
    { guestKit: true },
  );
  ({ reg, v } = suite);
  [kernelImage, rootfsImage] = suite.refs as [string, string];
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
  const roots = layout.version === 2 ? [layout.unified!] : [...new Set(layout.v1.values())];
  removeCreated(roots.map((r) => join(r, top)).filter((d) => existsSync(d)));
}, 120_000);

describe('pod cgroup (cgroupfs driver)', () => {
  it('RuntimeConfig reports the cgroup driver pods are placed with', async () => {
    const r = await rt<{ linux: { cgroup_driver: string } }>('RuntimeConfig', {});
    expect(r.linux.cgroup_driver).toBe(existsSync('/run/systemd/system') ? 'SYSTEMD' : 'CGROUPFS');
  });

  it('runs a VM pod\'s QEMU and dnsmasq in cgroup_parent, made when missing; a memory limit there caps the VM', async () => {
    const parent = `${top}/burstable/pod${randomBytes(4).toString('hex')}`;
    const pod = await runVmPod(v, { name: 'cg', namespace: 'cgtest', image: kernelImage, logDir, resources: { memory_limit_in_bytes: String(256 * MiB) }, sandbox: { linux: { cgroup_parent: parent } } });
    const domain = await domainOf(pod.cid);
    const pid = qemuPid(domain);
    const memDir = join(memRoot(), cgroupOf(pid, 'memory'));
    expect(cgroupOf(pid, 'memory').startsWith(`${parent}/`)).toBe(true);
    // The leaf carries libvirt's own name for the machine, so libvirt still knows it after a restart.
    expect(cgroupOf(pid, 'memory')).toMatch(/\.libvirt-qemu$/);
    // Every QEMU thread moved, not just the main one.
    for (const t of readdirSync(`/proc/${pid}/task`)) expect(cgroupOf(Number(t), 'memory')).toBe(cgroupOf(pid, 'memory'));
    if (layout.version === 1) {
      // libvirt keeps its CPU and pinning cgroups (UpdateContainerResources tunes them).
      expect(cgroupOf(pid, 'cpu')).toMatch(/^\/machine/);
      if (layout.v1.get('pids')) expect(cgroupOf(pid, 'pids').startsWith(`${parent}/`)).toBe(true);
    }
    // Under TCG the translation cache is capped (tcgTbCacheMiB, 128 MiB by default).
    if ((JSON.parse((await rt<{ info: Record<string, string> }>('Status', { verbose: true })).info.hypervisor!) as { accel: string }).accel === 'tcg') {
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toMatch(/tcg,tb-size=128\b/);
    }
    const dnsmasq = Number(readFileSync(join(v.stateDir, 'pods', pod.id, 'dnsmasq.pid'), 'utf8').trim());
    expect(cgroupOf(dnsmasq, 'memory')).toBe(`${parent}/vmlet-helpers`);

    await waitForConsoleLine(pod.log, 'VMLET-READY', 180_000);
    await waitForAgent(v, pod.cid, 90_000);
    if (layout.version === 1) expectBornInPod(domain, pid, memDir);
    const podDir = join(memRoot(), parent);
    const used = Number(readFileSync(usageFile(podDir), 'utf8'));
    expect(used).toBeGreaterThan(0);
    // Cap the pod at what it uses now plus 24 MiB, then have the guest fill 160 MB of its RAM.
    const limit = used + 24 * MiB;
    writeFileSync(limitFile(podDir), String(limit));
    await rt('ExecSync', { container_id: pod.cid, cmd: ['sh', '-c', 'dd if=/dev/zero of=/fill bs=1048576 count=160'], timeout: 60 }).catch(() => undefined);
    const capped = await waitFor('the pod cgroup to hit its limit', () => {
      if (layout.version === 2) {
        const ev = readFileSync(join(podDir, 'memory.events'), 'utf8');
        return /^(max|oom) [1-9]/m.test(ev) ? ev : undefined;
      }
      const failcnt = Number(readFileSync(join(podDir, 'memory.failcnt'), 'utf8'));
      return failcnt > 0 ? failcnt : undefined;
    }, { timeoutMs: 90_000, intervalMs: 200 });
    expect(capped).toBeTruthy();
    console.log(`pod cgroup: ${Math.round(used / MiB)} MiB charged before the fill, limit ${Math.round(limit / MiB)} MiB, then ${Math.round(Number(readFileSync(usageFile(podDir), 'utf8')) / MiB)} MiB (hit the limit: ${String(capped).trim()}${layout.version === 1 ? `; ${/oom_kill \d+/.exec(readFileSync(join(memDir, 'memory.oom_control'), 'utf8'))?.[0] ?? ''} in QEMU's leaf` : ''})`);
    if (existsSync(usageFile(memDir))) expect(Number(readFileSync(usageFile(memDir), 'utf8'))).toBeLessThanOrEqual(limit);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it('runs a sandboxed pod\'s VM in cgroup_parent', async () => {
    const parent = `${top}/besteffort/pod${randomBytes(4).toString('hex')}`;
    const uid = randomBytes(8).toString('hex');
    const config = { metadata: { name: 'cgsbx', namespace: 'cgtest', uid, attempt: 0 }, log_directory: join(logDir, uid), annotations: { 'vmlet.io/pod-kind': 'sandboxed' }, linux: { cgroup_parent: parent } };
    const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
    await podVmReady(v, id); // it boots once RunPodSandbox has answered
    const st = await rt<{ info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    const domains = readdirSync('/run/libvirt/qemu').filter((f) => f.endsWith('.pid') && f.includes(id.slice(0, 8)));
    expect(domains, JSON.stringify(st.info)).toHaveLength(1);
    const pid = qemuPid(domains[0]!.replace(/\.pid$/, ''));
    expect(cgroupOf(pid, 'memory').startsWith(`${parent}/`)).toBe(true);
    if (layout.version === 1) expectBornInPod(domains[0]!.replace(/\.pid$/, ''), pid, join(memRoot(), cgroupOf(pid, 'memory')));
    expect(rootfsImage).not.toBe('');
    await rt('RemovePodSandbox', { pod_sandbox_id: id });
  });

  it('refuses a cgroup_parent it cannot use, naming linux.cgroup_parent, and leaves nothing behind', async () => {
    const before = (await rt<{ items: unknown[] }>('ListPodSandbox', {})).items.length;
    for (const cgroup_parent of [`${top}/../escape`, 'kubepods-besteffort-pod1.slice']) {
      const config = { metadata: { name: 'cgbad', namespace: 'cgtest', uid: randomBytes(8).toString('hex'), attempt: 0 }, linux: { cgroup_parent } };
      const err = await failure(rt('RunPodSandbox', { config, runtime_handler: 'vmlet' }));
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/^linux\.cgroup_parent /);
    }
    expect((await rt<{ items: unknown[] }>('ListPodSandbox', {})).items).toHaveLength(before);
    expect(existsSync(join(memRoot(), 'escape'))).toBe(false);
  });

  it('leaves QEMU where libvirt puts it when cgroup_parent is empty', async () => {
    const pod = await runVmPod(v, { name: 'cgnone', namespace: 'cgtest', image: kernelImage, logDir });
    const pid = qemuPid(await domainOf(pod.cid));
    expect(cgroupOf(pid, 'memory')).toMatch(/^\/machine/);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});
