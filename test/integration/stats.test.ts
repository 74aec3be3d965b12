// Stats of VM pods over vmlet's socket (what `crictl stats`, `crictl statsp`, the kubelet's
// eviction manager and `kubectl top` read): real registry, libvirtd, QEMU (TCG here), CNI, the
// project's test guest. CPU from libvirt, memory from the QEMU process, the overlay as the
// writable layer, the tap's counters as the pod's eth0.
//
// VMLET_STATS_BENCH=1 also runs 10 VM pods and reports the median latency of 20
// ListContainerStats (and ListPodSandboxStats) calls.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { call, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { podDiagnostics, runVmPod, startVmSuite, stopVmSuite, waitForConsoleLine, type VmPod } from '../helpers/vm-suite.js';
import type { ContainerStatsResponse__Output } from '../../src/gen/runtime/v1/ContainerStatsResponse.js';
import type { ListContainerStatsResponse__Output } from '../../src/gen/runtime/v1/ListContainerStatsResponse.js';
import type { PodSandboxStatsResponse__Output } from '../../src/gen/runtime/v1/PodSandboxStatsResponse.js';
import type { ListPodSandboxStatsResponse__Output } from '../../src/gen/runtime/v1/ListPodSandboxStatsResponse.js';

let reg: TestRegistry;
let v: VmletProcess;
let diskImage = '';
let kernelImage = '';
const logDir = tempDir('vmlet-statslogs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const fail = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: ServiceError) => e,
  );

type Pod = VmPod;

const startPod = (name: string, image: string, annotations: Record<string, string> = {}): Promise<Pod> =>
  runVmPod(v, {
    name,
    namespace: 'stats-test',
    image,
    logDir,
    annotations,
    sandbox: { labels: { app: name, suite: 'stats' } },
    container: { labels: { role: 'vm', app: name } },
  });

const marker = (pod: Pod, m: string, timeoutMs = 100_000) => waitForConsoleLine(pod.log, m, timeoutMs, () => podDiagnostics(v, pod));

const n = (u: { value: string } | null | undefined) => (u ? Number(u.value) : NaN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  ({ reg, v, refs: [diskImage = '', kernelImage = ''] } = await startVmSuite([
    ['containerdisk', 'vmlet/containerdisk:stats'],
    ['kernelboot', 'vmlet/kernelboot:stats'],
  ]));
});

afterAll(() => stopVmSuite(v, reg));

describe('VM pod stats', () => {
  let pod: Pod;

  it('reports CPU, memory and the writable layer of a running VM; nano cores from a sample ≥ 1 s old', async () => {
    pod = await startPod('stats', diskImage, { 'vmlet.io/memory': '256Mi' });
    const first = (await rt<ContainerStatsResponse__Output>('ContainerStats', { container_id: pod.cid })).stats!;
    const t0 = Date.now();
    expect(first.attributes).toMatchObject({ id: pod.cid, metadata: { name: 'vm', attempt: 0 }, labels: { role: 'vm', app: 'stats' } });
    expect(n(first.cpu!.usage_core_nano_seconds)).toBeGreaterThan(0);
    expect(first.cpu!.usage_nano_cores).toBeNull(); // no earlier sample
    expect(BigInt(first.cpu!.timestamp)).toBeGreaterThan(BigInt(t0 - 60_000) * 1_000_000n);
    const mem = first.memory!;
    expect(n(mem.working_set_bytes)).toBeGreaterThan(1 << 20);
    expect(n(mem.usage_bytes)).toBe(n(mem.working_set_bytes));
    expect(n(mem.rss_bytes)).toBeGreaterThan(0);
    expect(n(mem.rss_bytes)).toBeLessThanOrEqual(n(mem.usage_bytes));
    expect(n(mem.available_bytes)).toBe(Math.max(0, 256 * 1024 * 1024 - n(mem.working_set_bytes)));
    expect(n(mem.page_faults)).toBeGreaterThan(0);
    expect(mem.major_page_faults).not.toBeNull();
    const layer = first.writable_layer!;
    expect(n(layer.used_bytes)).toBeGreaterThan(0);
    expect(n(layer.inodes_used)).toBeGreaterThanOrEqual(2); // overlay + cloud-init seed
    expect(layer.fs_id!.mountpoint).toMatch(/^\//);

    await sleep(Math.max(0, 1100 - (Date.now() - t0)));
    const second = (await rt<ContainerStatsResponse__Output>('ContainerStats', { container_id: pod.cid })).stats!;
    expect(n(second.cpu!.usage_core_nano_seconds)).toBeGreaterThan(n(first.cpu!.usage_core_nano_seconds));
    const cores = n(second.cpu!.usage_nano_cores);
    expect(cores).toBeGreaterThan(0);
    expect(cores).toBeLessThanOrEqual(2.5e9); // 1 vCPU under TCG plus QEMU's own threads, on 2 host cores
    expect(BigInt(second.cpu!.timestamp)).toBeGreaterThan(BigInt(first.cpu!.timestamp));
  });

  it('lists container stats by id, pod id and labels', async () => {
    const ids = async (filter: object) => (await rt<ListContainerStatsResponse__Output>('ListContainerStats', { filter })).stats.map((s) => s.attributes!.id);
    expect((await rt<ListContainerStatsResponse__Output>('ListContainerStats', {})).stats.map((s) => s.attributes!.id)).toContain(pod.cid);
    expect(await ids({ id: pod.cid })).toEqual([pod.cid]);
    expect(await ids({ id: pod.cid.slice(0, 12) })).toEqual([pod.cid]);
    expect(await ids({ pod_sandbox_id: pod.id })).toEqual([pod.cid]);
    expect(await ids({ label_selector: { role: 'vm', app: 'stats' } })).toEqual([pod.cid]);
    expect(await ids({ pod_sandbox_id: pod.id, label_selector: { app: 'nope' } })).toEqual([]);
    const s = (await rt<ListContainerStatsResponse__Output>('ListContainerStats', { filter: { id: pod.cid } })).stats[0]!;
    expect(n(s.cpu!.usage_core_nano_seconds)).toBeGreaterThan(0);
    expect(n(s.memory!.working_set_bytes)).toBeGreaterThan(0);
  });

  it("reports the pod: CPU, memory, its VM, and the guest's eth0 traffic once it has its DHCP lease", async () => {
    await marker(pod, 'VMLET-DHCP eth0');
    const st = (await rt<PodSandboxStatsResponse__Output>('PodSandboxStats', { pod_sandbox_id: pod.id })).stats!;
    expect(st.attributes).toMatchObject({ id: pod.id, metadata: { name: 'stats', namespace: 'stats-test' }, labels: { app: 'stats', suite: 'stats' } });
    const linux = st.linux!;
    expect(n(linux.cpu!.usage_core_nano_seconds)).toBeGreaterThan(0);
    expect(n(linux.memory!.working_set_bytes)).toBeGreaterThan(0);
    expect(linux.containers.map((c) => c.attributes!.id)).toEqual([pod.cid]);
    const eth0 = linux.network!.default_interface!;
    expect(eth0.name).toBe('eth0');
    // The guest sent a DHCP request (tap rx → eth0 tx) and got an answer (tap tx → eth0 rx).
    expect(n(eth0.rx_bytes)).toBeGreaterThan(0);
    expect(n(eth0.tx_bytes)).toBeGreaterThan(0);
    expect(n(eth0.rx_errors)).toBe(0);
    expect(linux.network!.interfaces.map((i) => i.name)).toEqual(['eth0']);

    const list = await rt<ListPodSandboxStatsResponse__Output>('ListPodSandboxStats', { filter: { label_selector: { app: 'stats' } } });
    expect(list.stats.map((s) => s.attributes!.id)).toEqual([pod.id]);
    expect((await rt<ListPodSandboxStatsResponse__Output>('ListPodSandboxStats', { filter: { id: pod.id.slice(0, 10) } })).stats.map((s) => s.attributes!.id)).toEqual([pod.id]);
    expect((await rt<ListPodSandboxStatsResponse__Output>('ListPodSandboxStats', { filter: { label_selector: { app: 'nope' } } })).stats).toEqual([]);
  });

  it('answers NotFound for unknown ids', async () => {
    expect((await fail(rt('ContainerStats', { container_id: 'f'.repeat(64) }))).code).toBe(Status.NOT_FOUND);
    expect((await fail(rt('PodSandboxStats', { pod_sandbox_id: 'f'.repeat(64) }))).code).toBe(Status.NOT_FOUND);
  });

  it('keeps a stopped VM out of the lists; by id it has its writable layer and no CPU', async () => {
    await rt('StopContainer', { container_id: pod.cid, timeout: 0 });
    expect((await rt<ListContainerStatsResponse__Output>('ListContainerStats', { filter: { pod_sandbox_id: pod.id } })).stats).toEqual([]);
    const s = (await rt<ContainerStatsResponse__Output>('ContainerStats', { container_id: pod.cid })).stats!;
    expect(s.cpu).toBeNull();
    expect(s.memory).toBeNull();
    expect(n(s.writable_layer!.used_bytes)).toBeGreaterThan(0);
    const p = (await rt<PodSandboxStatsResponse__Output>('PodSandboxStats', { pod_sandbox_id: pod.id })).stats!;
    expect(p.linux!.cpu).toBeNull();
    expect(p.linux!.network).toBeNull();
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    expect((await rt<ListPodSandboxStatsResponse__Output>('ListPodSandboxStats', { filter: { id: pod.id } })).stats).toEqual([]);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it.runIf(process.env.VMLET_STATS_BENCH === '1')('measures ListContainerStats with 10 running VMs (median of 20 calls)', async () => {
    const pods: Pod[] = [];
    for (let i = 0; i < 10; i++) pods.push(await startPod(`bench${i}`, kernelImage, { 'vmlet.io/memory': '256Mi' }));
    for (const p of pods) await marker(p, 'VMLET-READY', 600_000);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const time = async (method: string) => {
      const ms: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t = performance.now();
        const r = await rt<{ stats: unknown[] }>(method, {});
        ms.push(performance.now() - t);
        expect(r.stats.length).toBe(10);
      }
      return { median: Math.round(median(ms) * 100) / 100, min: Math.round(Math.min(...ms) * 100) / 100, max: Math.round(Math.max(...ms) * 100) / 100 };
    };
    const containers = await time('ListContainerStats');
    const sandboxes = await time('ListPodSandboxStats');
    // The server's own time for the same calls, from its rpc log lines.
    const server = v.logLines
      .filter((l) => l.includes('"rpc":"ListContainerStats"'))
      .slice(-20)
      .map((l) => (JSON.parse(l) as { durationMs: number }).durationMs);
    console.log(JSON.stringify({ vms: 10, ListContainerStats: containers, ListPodSandboxStats: sandboxes, serverListContainerStatsMedianMs: median(server) }));
    expect(containers.median).toBeLessThan(1000);
    for (const p of pods) await rt('RemovePodSandbox', { pod_sandbox_id: p.id });
  }, 900_000);
});
