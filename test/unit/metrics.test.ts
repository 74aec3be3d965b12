// The pure parts of vmlet's metrics: the text the registry renders, the metrics address rule
// (config and server agree), pods counted by state and kind, and the kubelet's CRI metrics
// built from stats (names and label counts as ListMetricDescriptors says, values as the stats).
import { describe, expect, it } from 'vitest';
import { Counter, Gauge, Histogram, Registry, register } from '../../src/metrics/registry.js';
import { splitAddress } from '../../src/metrics/server.js';
import { criDuration, criRequests, observeRpc } from '../../src/metrics/vmlet.js';
import { ConfigError, defaults, validate } from '../../src/config.js';
import { podCounts } from '../../src/pod/pod-counts.js';
import { containerName, metricDescriptors, podSandboxMetrics } from '../../src/pod/sandbox-metrics.js';
import type { PodSandboxStats } from '../../src/pod/stats.js';
import type { ContainerRecord, SandboxRecord } from '../../src/pod/records.js';

describe('registry text format', () => {
  it('renders counters, gauges and cumulative histogram buckets with escaped labels', async () => {
    const reg = new Registry();
    const c = new Counter<'method' | 'code'>({ name: 't_calls_total', help: 'Calls.\nSecond line', labelNames: ['method', 'code'], registers: [reg] });
    c.inc({ method: 'Version', code: 'OK' });
    c.inc({ method: 'Version', code: 'OK' }, 2);
    c.inc({ method: 'a"b\\c', code: 'NOT_FOUND' });
    let n = 0;
    new Gauge({ name: 't_level', help: 'Level.', registers: [reg], collect() { this.set(++n); } });
    const h = new Histogram({ name: 't_seconds', help: 'Time.', buckets: [1, 0.1], registers: [reg] });
    h.observe(0.05);
    h.observe(0.5);
    h.observe(7);
    const text = await reg.metrics();
    expect(text).toBe(
      [
        '# HELP t_calls_total Calls.\\nSecond line',
        '# TYPE t_calls_total counter',
        't_calls_total{method="Version",code="OK"} 3',
        't_calls_total{method="a\\"b\\\\c",code="NOT_FOUND"} 1',
        '# HELP t_level Level.',
        '# TYPE t_level gauge',
        't_level 1',
        '# HELP t_seconds Time.',
        '# TYPE t_seconds histogram',
        't_seconds_bucket{le="0.1"} 1',
        't_seconds_bucket{le="1"} 2',
        't_seconds_bucket{le="+Inf"} 3',
        't_seconds_sum 7.55',
        't_seconds_count 3',
        '',
      ].join('\n'),
    );
    expect(await reg.metrics()).toContain('t_level 2'); // collect runs at every scrape
  });

  it('refuses what Prometheus would reject: bad names, unknown labels, a counter going down, a name twice', () => {
    const reg = new Registry();
    expect(() => new Counter({ name: 'bad-name', help: 'x', registers: [reg] })).toThrow(/invalid metric name/);
    const c = new Counter<'a'>({ name: 'ok_total', help: 'x', labelNames: ['a'], registers: [reg] });
    expect(() => c.inc({ b: '1' } as never)).toThrow(/no label "b"/);
    expect(() => c.inc(-1)).toThrow(/cannot go down/);
    expect(() => new Counter({ name: 'ok_total', help: 'x', registers: [reg] })).toThrow(/already registered/);
  });

  it('a gauge whose collect hook fails is left out of the scrape, the rest is served', async () => {
    const reg = new Registry();
    new Gauge({ name: 'broken', help: 'x', registers: [reg], collect() { throw new TypeError('no source'); } });
    new Gauge({ name: 'fine', help: 'x', registers: [reg], collect() { this.set(1); } });
    const text = await reg.metrics();
    expect(text).not.toContain('broken');
    expect(text).toContain('fine 1');
  });

  it('observeRpc moves the CRI counter by method and code and the latency histogram by method', async () => {
    const before = criRequests.get({ method: 'UnitTestCall', code: 'NOT_FOUND' });
    observeRpc('UnitTestCall', 'NOT_FOUND', 0.002);
    observeRpc('UnitTestCall', 'OK', 0.2);
    expect(criRequests.get({ method: 'UnitTestCall', code: 'NOT_FOUND' })).toBe(before + 1);
    expect(criDuration.get({ method: 'UnitTestCall' }).count).toBe(2);
    const text = await register.metrics();
    expect(text).toContain('vmlet_cri_requests_total{method="UnitTestCall",code="OK"} 1');
    expect(text).toContain('vmlet_cri_request_duration_seconds_bucket{method="UnitTestCall",le="0.005"} 1');
    expect(text).toContain('vmlet_cri_request_duration_seconds_count{method="UnitTestCall"} 2');
  });
});

describe('metrics address', () => {
  const ok = ['127.0.0.1:9464', '[::1]:9464', ':9464', '0.0.0.0:1', 'localhost:65535'];
  const bad = ['9464', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '::1:9464', 'http://127.0.0.1:9464', '127.0.0.1:94x'];

  it('is off by default', () => {
    expect(defaults.metricsAddress).toBe('');
    expect(validate({ ...defaults }).metricsAddress).toBe('');
  });

  it('config and server accept and refuse the same addresses', () => {
    for (const a of ok) {
      expect(validate({ ...defaults, metricsAddress: a }).metricsAddress).toBe(a);
      expect(splitAddress(a), a).toBeDefined();
    }
    for (const a of bad) {
      expect(() => validate({ ...defaults, metricsAddress: a }), a).toThrow(ConfigError);
      expect(splitAddress(a), a).toBeUndefined();
    }
    expect(splitAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(splitAddress(':9464')).toEqual({ host: '', port: 9464 });
  });
});

const sandbox = (id: string, state: SandboxRecord['state'], kind?: SandboxRecord['kind'], annotations: Record<string, string> = {}) => ({ id, state, kind, config: { annotations } }) as SandboxRecord;
const container = (id: string, state: ContainerRecord['state'], kind?: 'sandboxed') => ({ id, state, kind }) as ContainerRecord;

describe('pods by state and kind', () => {
  it('counts every known state and kind, zeros included', () => {
    // e: annotated sandboxed, its VM booting after RunPodSandbox answered (no kind recorded yet).
    const sandboxes = new Map([sandbox('a', 'ready', 'vm'), sandbox('b', 'ready', 'vm'), sandbox('c', 'notready', 'sandboxed'), sandbox('d', 'ready'), sandbox('e', 'ready', undefined, { 'vmlet.io/pod-kind': 'sandboxed' })].map((s) => [s.id, s]));
    const containers = new Map([container('x', 'running'), container('y', 'exited', 'sandboxed'), container('z', 'running')].map((c) => [c.id, c]));
    const n = podCounts({ sandboxes, containers });
    const pod = (state: string, kind: string) => n.pods.find((p) => p.state === state && p.kind === kind)?.count;
    const ctr = (state: string, kind: string) => n.containers.find((p) => p.state === state && p.kind === kind)?.count;
    expect(pod('ready', 'vm')).toBe(2);
    expect(pod('notready', 'sandboxed')).toBe(1);
    expect(pod('ready', 'undecided')).toBe(1);
    expect(pod('ready', 'sandboxed')).toBe(1);
    expect(pod('notready', 'vm')).toBe(0);
    expect(n.pods).toHaveLength(6);
    expect(ctr('running', 'vm')).toBe(2);
    expect(ctr('exited', 'sandboxed')).toBe(1);
    expect(ctr('created', 'vm')).toBe(0);
    expect(n.containers).toHaveLength(8);
  });
});

describe('CRI metrics from stats', () => {
  const stats: PodSandboxStats = {
    id: 'pod1',
    metadata: { name: 'web', namespace: 'ns', uid: 'u1', attempt: 0 },
    labels: {},
    annotations: {},
    cpu: { atMs: 1000, usageCoreNanoSeconds: 3_900_000_000 },
    memory: { atMs: 1000, workingSetBytes: 300, availableBytes: 0, usageBytes: 400, rssBytes: 300 },
    network: {
      atMs: 1001,
      interfaces: [{ name: 'eth0', rxBytes: 1500, rxPackets: 10, rxErrors: 0, rxDropped: 1, txBytes: 900, txPackets: 8, txErrors: 2, txDropped: 0 }],
    },
    containers: [
      {
        id: 'ctr1',
        metadata: { name: 'vm', attempt: 1 },
        labels: {},
        annotations: {},
        cpu: { atMs: 1000, usageCoreNanoSeconds: 3_900_000_000, usageNanoCores: 5 },
        memory: { atMs: 1000, workingSetBytes: 300, availableBytes: 0, usageBytes: 400, rssBytes: 300, pageFaults: 7, majorPageFaults: 1 },
        writableLayer: { atMs: 1002, mountpoint: '/var', usedBytes: 4096, inodesUsed: 2 },
      },
    ],
  };
  const facts = (id: string) => (id === 'ctr1' ? { image: 'reg/vm:1', startedAt: '1700000000123456789' } : undefined);
  const m = podSandboxMetrics(stats, facts, 5000);
  const descriptors = new Map(metricDescriptors().map((d) => [d.name, d]));
  const all = [...m.metrics, ...m.containers.flatMap((c) => c.metrics)];
  const find = (name: string, ...labels: string[]) => all.find((x) => x.name === name && labels.every((l) => x.labelValues.includes(l)));

  it('sends only described metrics, with as many label values as the descriptor has keys', () => {
    expect(all.length).toBeGreaterThan(10);
    for (const x of all) {
      const d = descriptors.get(x.name);
      expect(d, x.name).toBeDefined();
      expect(x.labelValues, x.name).toHaveLength(d!.labelKeys.length);
      expect(Number.isInteger(x.value) && x.value >= 0, x.name).toBe(true);
    }
    expect(descriptors.get('container_cpu_usage_seconds_total')!.labelKeys).toEqual(['id', 'name', 'image']);
    expect(descriptors.get('container_network_receive_bytes_total')!.labelKeys).toEqual(['id', 'name', 'image', 'interface']);
  });

  it('has the stats figures: the pod network as POD, the container by id, name and image', () => {
    expect(m.podSandboxId).toBe('pod1');
    expect(find('container_network_receive_bytes_total')).toMatchObject({ labelValues: ['pod1', 'POD', '', 'eth0'], value: 1500, type: 'counter', atMs: 1001 });
    expect(find('container_network_transmit_errors_total')!.value).toBe(2);
    const name = containerName({ name: 'vm', attempt: 1 }, stats.metadata);
    expect(name).toBe('k8s_vm_web_ns_u1_1');
    expect(m.containers[0]!.containerId).toBe('ctr1');
    expect(find('container_cpu_usage_seconds_total')).toMatchObject({ labelValues: ['ctr1', name, 'reg/vm:1'], value: 3, type: 'counter' });
    expect(find('container_memory_working_set_bytes')).toMatchObject({ value: 300, type: 'gauge' });
    expect(find('container_memory_usage_bytes')!.value).toBe(400);
    expect(find('container_memory_failures_total', 'pgmajfault')!.value).toBe(1);
    expect(find('container_fs_usage_bytes', '/var')!.value).toBe(4096);
    expect(find('container_start_time_seconds')!.value).toBe(1700000000);
  });

  it('leaves out what a stopped container lacks rather than sending zeros', () => {
    const stopped = podSandboxMetrics({ ...stats, network: undefined, containers: [{ ...stats.containers[0]!, cpu: undefined, memory: undefined }] }, () => undefined, 0);
    expect(stopped.metrics).toEqual([]);
    expect(stopped.containers[0]!.metrics.map((x) => x.name)).toEqual(['container_fs_usage_bytes']);
  });
});
