// UpdateContainerResources on a real VM (in-place pod resize): the memory limit moves the
// balloon and the guest sees it, the CPU limit becomes the domain's CFS quota and hotplugs vCPUs
// up to vmlet.io/max-vcpus, shares and pinning reach libvirt; refusals change nothing.
// Every effect is read back independently of vmlet: virsh for libvirt's view, ExecSync for the guest's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { podDiagnostics, runVmPod, startVmSuite, stopVmSuite, waitForAgent, waitForConsoleLine, type VmPod } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { dommemstat, schedinfo, virsh } from '../helpers/virsh.js';
import { domainName } from '../../src/vm/spec.js';
import type { ContainerStatusResponse__Output } from '../../src/gen/runtime/v1/ContainerStatusResponse.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
const logDir = tempDir('vmlet-resizelogs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const MiB = 1024 * 1024;
const NS = 'resize-test';

const vcpuPins = (dom: string) => Object.fromEntries([...virsh('vcpupin', dom, '--live').matchAll(/^\s*(\d+)\s+(\S+)\s*$/gm)].map((m) => [Number(m[1]), m[2]!]));
const emulatorPin = (dom: string) => /\*:\s*(\S+)/.exec(virsh('emulatorpin', dom, '--live'))?.[1];

interface ExecSyncReply {
  stdout: Buffer;
  exit_code: number;
}
const sh = async (cid: string, script: string) => {
  const r = await rt<ExecSyncReply>('ExecSync', { container_id: cid, cmd: ['sh', '-c', script], timeout: 10 });
  expect(r.exit_code).toBe(0);
  return r.stdout.toString().trim();
};
/** The guest's MemTotal: the virtio balloon takes its pages out of the guest's total. */
const guestMemKiB = async (cid: string) => Number(/MemTotal:\s+(\d+) kB/.exec(await sh(cid, 'cat /proc/meminfo'))![1]);
/** QEMU's 'actual' is what the guest's balloon driver reports having done. */
const balloonAt = (dom: string, mib: number) =>
  waitFor(`the balloon of ${dom} at ${mib} MiB`, () => dommemstat(dom).actual === mib * 1024, { timeoutMs: 60_000, intervalMs: 200 });

interface Pod extends VmPod {
  dom: string;
}

async function createPod(name: string, annotations: Record<string, string>, resources: object, start: boolean): Promise<Pod> {
  const pod = await runVmPod(v, { name, namespace: NS, image, logDir, annotations, resources, start });
  if (start) {
    await waitForConsoleLine(pod.log, 'VMLET-HOSTNAME', 90_000, () => podDiagnostics(v, pod));
    await waitForAgent(v, pod.cid);
  }
  return { ...pod, dom: domainName(name, NS, pod.id) };
}

const update = (cid: string, linux: object) => rt('UpdateContainerResources', { container_id: cid, linux });
const limits = (cpuQuota: number, memMiB: number, extra: object = {}) => ({ cpu_period: '100000', cpu_quota: String(cpuQuota), cpu_shares: '1024', memory_limit_in_bytes: String(memMiB * MiB), ...extra });

beforeAll(async () => {
  ({ reg, v, refs: [image = ''] } = await startVmSuite([['kernelboot', 'vmlet/kernelboot:resize']], { allowAnnotations: ['vmlet.io/max-memory'] }));
});

afterAll(() => stopVmSuite(v, reg));

describe('UpdateContainerResources on a running VM', () => {
  let pod: Pod;
  let memAt256 = 0;

  it('starts the VM at its size, with room to grow and its CPU limit as a quota', async () => {
    pod = await createPod('grow', { 'vmlet.io/max-vcpus': '2', 'vmlet.io/max-memory': '384Mi' }, limits(100_000, 256), true);
    const xml = virsh('dumpxml', pod.dom);
    expect(xml).toContain("<vcpu placement='static' current='1'>2</vcpu>");
    expect(xml).toContain("<memory unit='KiB'>393216</memory>");
    expect(schedinfo(pod.dom)).toMatchObject({ cpu_shares: 1024, global_period: 100000, global_quota: 100000 });
    // The guest was given 384 MiB; its balloon driver hands all but 256 back once it loads.
    await balloonAt(pod.dom, 256);
    memAt256 = await guestMemKiB(pod.cid);
    expect(memAt256).toBeLessThan(256 * 1024);
  });

  it('grows memory through the balloon, and the guest sees it', async () => {
    const t0 = performance.now();
    await update(pod.cid, limits(100_000, 320));
    const called = performance.now();
    await balloonAt(pod.dom, 320);
    console.log(`UpdateContainerResources (memory 256 → 320 MiB): call ${Math.round(called - t0)} ms, balloon done in the guest after ${Math.round(performance.now() - t0)} ms`);
    expect(Math.abs((await guestMemKiB(pod.cid)) - memAt256 - 64 * 1024)).toBeLessThan(1024);
    expect(virsh('dumpxml', pod.dom, '--inactive')).toContain("<currentMemory unit='KiB'>327680</currentMemory>"); // the definition follows
  });

  it('follows quick successive resizes (libvirt learns the balloon size late: each target must still be set)', async () => {
    for (const mib of [256, 320, 256, 320]) {
      await update(pod.cid, limits(100_000, mib));
      await balloonAt(pod.dom, mib);
    }
  });

  it('hotplugs a vCPU for a larger CPU limit and sets quota, shares and pinning', async () => {
    const t0 = performance.now();
    await update(pod.cid, limits(150_000, 320, { cpu_shares: '512', cpuset_cpus: '1' }));
    console.log(`UpdateContainerResources (vCPU hotplug, quota, shares, pinning of 2 vCPUs + emulator): ${Math.round(performance.now() - t0)} ms`);
    expect(virsh('vcpucount', pod.dom, '--live', '--active').trim()).toBe('2');
    expect(schedinfo(pod.dom)).toMatchObject({ cpu_shares: 512, global_quota: 150000 });
    expect(vcpuPins(pod.dom)).toEqual({ 0: '1', 1: '1' });
    expect(emulatorPin(pod.dom)).toBe('1');
    // The new CPU reached the guest (Linux leaves a hotplugged CPU offline until told).
    await waitFor('cpu1 in the guest', async () => (await sh(pod.cid, 'cat /sys/devices/system/cpu/present')) === '0-1', { timeoutMs: 30_000, intervalMs: 300 });
    const st = await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: pod.cid });
    expect(st.status!.resources!.linux).toMatchObject({ cpu_quota: '150000', cpu_shares: '512', cpuset_cpus: '1', memory_limit_in_bytes: String(320 * MiB) });
  });

  it('refuses what the VM cannot do, naming the field and annotation, and changes nothing', async () => {
    const more = await failure(update(pod.cid, limits(150_000, 512)));
    expect(more.code).toBe(Status.FAILED_PRECONDITION);
    expect(more.details).toMatch(/^linux\.memory_limit_in_bytes: the VM would need 512 MiB .* more than the 384 MiB it was created with: .*vmlet\.io\/max-memory/);
    const cpus = await failure(update(pod.cid, limits(250_000, 320)));
    expect(cpus.code).toBe(Status.FAILED_PRECONDITION);
    expect(cpus.details).toMatch(/^linux\.cpu_quota: the CPU limit needs 3 vCPUs .* more than the 2 the VM was created with: .*vmlet\.io\/max-vcpus/);
    const pin = await failure(update(pod.cid, limits(150_000, 320, { cpuset_cpus: '0-4096' })));
    expect(pin.code).toBe(Status.INVALID_ARGUMENT);
    expect(pin.details).toMatch(/^linux\.cpuset_cpus="0-4096" is invalid: allowed a list like "0-3,6"/);
    const quota = await failure(update(pod.cid, limits(10, 320)));
    expect(quota.code).toBe(Status.INVALID_ARGUMENT);
    expect(quota.details).toMatch(/^linux\.cpu_quota=10 is invalid/);
    expect(dommemstat(pod.dom).actual).toBe(320 * 1024);
    expect(schedinfo(pod.dom)).toMatchObject({ cpu_shares: 512, global_quota: 150000 });
    expect(vcpuPins(pod.dom)).toEqual({ 0: '1', 1: '1' });
  });

  it('shrinks: a smaller CPU limit keeps the vCPUs and lowers the quota; no cpuset unpins; less memory', async () => {
    const before = await guestMemKiB(pod.cid);
    await update(pod.cid, limits(50_000, 256, { cpuset_cpus: '' }));
    expect(virsh('vcpucount', pod.dom, '--live', '--active').trim()).toBe('2');
    expect(schedinfo(pod.dom).global_quota).toBe(50000);
    const all = `0-${Number(execFileSync('nproc', ['--all'], { encoding: 'utf8' })) - 1}`;
    expect(vcpuPins(pod.dom)).toEqual({ 0: all, 1: all });
    await balloonAt(pod.dom, 256);
    expect(Math.abs(before - (await guestMemKiB(pod.cid)) - 64 * 1024)).toBeLessThan(1024);
    // No limit at all: the quota goes away.
    await update(pod.cid, { cpu_shares: '1024', memory_limit_in_bytes: String(256 * MiB) });
    expect(schedinfo(pod.dom).global_quota).toBe(-1);
  });

  it('refuses a stopped container', async () => {
    await rt('StopContainer', { container_id: pod.cid, timeout: 0 });
    const err = await failure(update(pod.cid, limits(100_000, 256)));
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toBe(`container ${pod.cid} is exited: resources can be updated on a created or running container only`);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});

describe('UpdateContainerResources on a created (not started) VM', () => {
  it('changes its definition, which the VM then starts with', async () => {
    const pod = await createPod('created', {}, limits(100_000, 256), false);
    await update(pod.cid, limits(80_000, 192, { cpu_shares: '256', cpuset_cpus: '0' }));
    const xml = virsh('dumpxml', pod.dom, '--inactive');
    expect(xml).toContain("<currentMemory unit='KiB'>196608</currentMemory>");
    expect(xml).toContain('<shares>256</shares>');
    expect(xml).toContain('<global_quota>80000</global_quota>');
    expect(xml).toContain("<vcpupin vcpu='0' cpuset='0'/>");
    await rt('StartContainer', { container_id: pod.cid });
    expect(schedinfo(pod.dom)).toMatchObject({ cpu_shares: 256, global_quota: 80000 });
    expect(vcpuPins(pod.dom)).toEqual({ 0: '0' });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});
