// vmlet's Prometheus endpoint and the kubelet's CRI metrics calls, against the built vmlet with
// a real registry, libvirtd and QEMU (TCG here): scrape, make CRI calls (one failing, a pull, one
// VM pod), scrape again and check that the figures moved; ListMetricDescriptors and
// ListPodSandboxMetrics agree with ListPodSandboxStats; `vmlet doctor`'s metrics check.
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status as Status } from '@grpc/grpc-js';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, failure, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { podVmReady, podDiagnostics, runVmPod, stopVmSuite, TEST_GUEST_KIT, vmletConfig, waitForConsoleLine, type VmPod } from '../helpers/vm-suite.js';
import { metricsCheck } from '../../src/doctor.js';
import type { ListMetricDescriptorsResponse__Output } from '../../src/gen/runtime/v1/ListMetricDescriptorsResponse.js';
import type { ListPodSandboxMetricsResponse__Output } from '../../src/gen/runtime/v1/ListPodSandboxMetricsResponse.js';
import type { ListPodSandboxStatsResponse__Output } from '../../src/gen/runtime/v1/ListPodSandboxStatsResponse.js';
import type { Metric__Output } from '../../src/gen/runtime/v1/Metric.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
let address = '';
const logDir = tempDir('vmlet-metricslogs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

/** A port nothing listens on now (bound and released at once). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** One scrape, as `name{label="value",...}` → value (labels as rendered, in their order). */
async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(`http://${address}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

const get = (s: Map<string, number>, key: string) => s.get(key) ?? 0;

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  image = (await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:metrics')).reference;
  address = `127.0.0.1:${await freePort()}`;
  v = await startVmlet({ config: `${vmletConfig(reg)}metricsAddress: "${address}"\nguestKitDir: "${TEST_GUEST_KIT}"\n` });
}, 300_000);

afterAll(() => stopVmSuite(v, reg));

describe('the /metrics endpoint', () => {
  let pod: VmPod;

  it('serves vmlet_ metrics and the Node process collectors; other paths are 404', async () => {
    expect(v.logLines.some((l) => l.includes('metrics endpoint listening'))).toBe(true);
    const s = await scrape();
    expect(s.get('process_resident_memory_bytes')).toBeGreaterThan(1 << 20);
    expect(s.get('process_start_time_seconds')).toBeGreaterThan(1.6e9);
    expect([...s.keys()].some((k) => k.startsWith('nodejs_heap_size_used_bytes'))).toBe(true);
    expect(s.get('vmlet_pods{state="ready",kind="vm"}')).toBe(0);
    expect(s.get('vmlet_libvirt_reconnects_total')).toBeUndefined(); // no series until one happens
    expect((await fetch(`http://${address}/`)).status).toBe(404);
  });

  it('counts CRI calls by method and code, times them, and counts a pull and a VM boot', async () => {
    const before = await scrape();
    await rt('Version', {});
    await rt('Version', {});
    expect((await failure(rt('ContainerStatus', { container_id: 'f'.repeat(64) }))).code).toBe(Status.NOT_FOUND);
    await call(v.image, 'PullImage', { image: { image } });
    pod = await runVmPod(v, { name: 'metrics', namespace: 'metrics-test', image, logDir, annotations: { 'vmlet.io/memory': '256Mi' } });
    const after = await scrape();
    const moved = (key: string) => get(after, key) - get(before, key);
    expect(moved('vmlet_cri_requests_total{method="Version",code="OK"}')).toBe(2);
    expect(moved('vmlet_cri_request_duration_seconds_count{method="Version"}')).toBe(2);
    expect(moved('vmlet_cri_request_duration_seconds_bucket{method="Version",le="+Inf"}')).toBe(2);
    expect(moved('vmlet_cri_requests_total{method="ContainerStatus",code="NOT_FOUND"}')).toBe(1);
    expect(moved('vmlet_cri_requests_total{method="PullImage",code="OK"}')).toBe(1);
    expect(moved('vmlet_cri_requests_total{method="RunPodSandbox",code="OK"}')).toBe(1);
    expect(moved('vmlet_cri_requests_total{method="StartContainer",code="OK"}')).toBe(1);
    expect(moved('vmlet_image_pull_duration_seconds_count')).toBe(1);
    expect(moved('vmlet_image_pull_bytes_total')).toBeGreaterThan(1 << 20); // a kernel and an initramfs
    expect(moved('vmlet_vm_boot_duration_seconds_count{kind="vm"}')).toBe(1);
    expect(moved('vmlet_vm_boot_duration_seconds_sum{kind="vm"}')).toBeGreaterThan(0);
    expect(get(after, 'vmlet_pods{state="ready",kind="vm"}')).toBe(1);
    expect(get(after, 'vmlet_containers{state="running",kind="vm"}')).toBe(1);
  });

  it('answers ListMetricDescriptors and ListPodSandboxMetrics, in agreement with ListPodSandboxStats', async () => {
    await waitForConsoleLine(pod.log, 'VMLET-DHCP eth0', 90_000, () => podDiagnostics(v, pod)); // the guest has sent and received
    const { descriptors } = await rt<ListMetricDescriptorsResponse__Output>('ListMetricDescriptors', {});
    const keys = new Map(descriptors.map((d) => [d.name, d.label_keys]));
    for (const name of ['container_cpu_usage_seconds_total', 'container_memory_working_set_bytes', 'container_memory_usage_bytes', 'container_network_receive_bytes_total', 'container_network_transmit_bytes_total']) {
      expect(keys.has(name), name).toBe(true);
    }

    const { pod_metrics } = await rt<ListPodSandboxMetricsResponse__Output>('ListPodSandboxMetrics', {});
    const { stats } = await rt<ListPodSandboxStatsResponse__Output>('ListPodSandboxStats', {});
    expect(pod_metrics.map((p) => p.pod_sandbox_id)).toEqual([pod.id]);
    const pm = pod_metrics[0]!;
    const all: Metric__Output[] = [...pm.metrics, ...pm.container_metrics.flatMap((c) => c.metrics)];
    for (const x of all) expect(x.label_values, x.name).toHaveLength(keys.get(x.name)!.length);
    expect(pm.container_metrics.map((c) => c.container_id)).toEqual([pod.cid]);
    const value = (name: string, list: Metric__Output[] = all) => Number(list.find((x) => x.name === name)!.value!.value);
    const st = stats.find((s) => s.attributes!.id === pod.id)!.linux!;
    const ctr = st.containers[0]!;

    // Metrics first, stats after: counters may only have grown since.
    expect(value('container_cpu_usage_seconds_total')).toBeLessThanOrEqual(Number(ctr.cpu!.usage_core_nano_seconds!.value) / 1e9);
    const eth0 = st.network!.interfaces.find((i) => i.name === 'eth0')!;
    const rx = pm.metrics.find((x) => x.name === 'container_network_receive_bytes_total' && x.label_values.at(-1) === 'eth0')!;
    expect(rx.label_values).toEqual([pod.id, 'POD', '', 'eth0']);
    expect(Number(rx.value!.value)).toBeGreaterThan(0);
    expect(Number(rx.value!.value)).toBeLessThanOrEqual(Number(eth0.rx_bytes!.value));
    expect(value('container_network_transmit_bytes_total', pm.metrics)).toBeLessThanOrEqual(Number(eth0.tx_bytes!.value));
    // QEMU's working set between two reads a few ms apart: the same figure, give or take.
    const ws = value('container_memory_working_set_bytes');
    expect(ws).toBeGreaterThan(1 << 20);
    expect(Math.abs(ws - Number(ctr.memory!.working_set_bytes!.value)) / ws).toBeLessThan(0.25);
    const cpuMetric = all.find((x) => x.name === 'container_cpu_usage_seconds_total')!;
    expect(cpuMetric.metric_type).toBe('COUNTER');
    expect(cpuMetric.label_values).toEqual([pod.cid, `k8s_vm_metrics_metrics-test_${pod.log.split('/').at(-2)}_0`, image]);
    expect(BigInt(cpuMetric.timestamp)).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1_000_000n);
  });

  it('shows the pod notready once stopped, and gone once removed', async () => {
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    let s = await scrape();
    expect(get(s, 'vmlet_pods{state="ready",kind="vm"}')).toBe(0);
    expect(get(s, 'vmlet_pods{state="notready",kind="vm"}')).toBe(1);
    expect(get(s, 'vmlet_containers{state="exited",kind="vm"}')).toBe(1);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    s = await scrape();
    expect(get(s, 'vmlet_pods{state="notready",kind="vm"}')).toBe(0);
    expect(get(s, 'vmlet_containers{state="exited",kind="vm"}')).toBe(0);
  });

  it('times a sandboxed pod VM boot and counts the pod as sandboxed', async () => {
    const before = await scrape();
    const uid = randomBytes(8).toString('hex');
    const config = { metadata: { name: 'metrics-sbx', namespace: 'metrics-test', uid, attempt: 0 }, log_directory: join(logDir, uid), annotations: { 'vmlet.io/pod-kind': 'sandboxed' } };
    const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
    // Counted as sandboxed from the start (its annotation), while its VM boots after the answer.
    expect(get(await scrape(), 'vmlet_pods{state="ready",kind="sandboxed"}')).toBe(1);
    await podVmReady(v, id);
    const after = await scrape();
    expect(get(after, 'vmlet_vm_boot_duration_seconds_count{kind="sandboxed"}') - get(before, 'vmlet_vm_boot_duration_seconds_count{kind="sandboxed"}')).toBe(1);
    expect(get(after, 'vmlet_vm_boot_duration_seconds_sum{kind="sandboxed"}')).toBeGreaterThan(0.1);
    expect(get(after, 'vmlet_pods{state="ready",kind="sandboxed"}')).toBe(1);
    const { pod_metrics } = await rt<ListPodSandboxMetricsResponse__Output>('ListPodSandboxMetrics', {});
    expect(pod_metrics.map((p) => [p.pod_sandbox_id, p.container_metrics.length])).toEqual([[id, 0]]);
    await rt('RemovePodSandbox', { pod_sandbox_id: id });
    expect(get(await scrape(), 'vmlet_pods{state="ready",kind="sandboxed"}')).toBe(0);
  });
});

describe('vmlet doctor: metrics', () => {
  it('is OK when off, when vmlet serves there, or when the address is free', async () => {
    expect(await metricsCheck('')).toMatchObject({ verdict: 'OK', detail: expect.stringContaining('off') as unknown });
    expect(await metricsCheck(address)).toMatchObject({ verdict: 'OK', detail: expect.stringContaining('vmlet serves') as unknown });
    expect(await metricsCheck(`127.0.0.1:${await freePort()}`)).toMatchObject({ verdict: 'OK', detail: expect.stringContaining('free') as unknown });
  });

  it('FAILs when another program holds the port, or the address is not this host', async () => {
    const other = createHttpServer((_req, res) => res.end('not metrics'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const r = await metricsCheck(`127.0.0.1:${(other.address() as AddressInfo).port}`);
      expect(r).toMatchObject({ verdict: 'FAIL', detail: expect.stringContaining('another program listens') as unknown });
      expect(r.fix).toBeTruthy();
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
    expect(await metricsCheck('203.0.113.1:9464')).toMatchObject({ verdict: 'FAIL', detail: expect.stringContaining('EADDRNOTAVAIL') as unknown });
  });
});
