// ListMetricDescriptors and ListPodSandboxMetrics: the kubelet's /metrics/cadvisor figures for VM
// pods (KEP-2371, CRI-full stats), under cAdvisor's names. They are the figures
// ListPodSandboxStats gives (sandbox-stats-list.ts, measured by stats.ts and the files it names)
// turned into metrics, so the two answers agree. The kubelet asks for the descriptors once and
// drops a metric whose name or label count does not match them; it adds the pod, namespace and
// container labels itself.
//
// Labels are CRI-O's: id, name, image (the pod's own metrics carry its id, "POD" and no image).
// CRI values are unsigned integers: CPU time is in whole seconds, as containerd and CRI-O send it.
import type { PodManager } from './manager.js';
import type { ContainerMetadata, PodSandboxMetadata } from './configs.js';
import type { ContainerStats, PodSandboxStats } from './stats.js';
import { listPodSandboxStats } from './sandbox-stats-list.js';

export type MetricType = 'counter' | 'gauge';

export interface MetricDescriptor {
  name: string;
  help: string;
  labelKeys: string[];
}

export interface CriMetric {
  name: string;
  /** When the figure was read: ms since the epoch. */
  atMs: number;
  type: MetricType;
  /** In the order of the descriptor's labelKeys. */
  labelValues: string[];
  /** A whole number ≥ 0 (the wire is uint64). */
  value: number;
}

export interface ContainerMetrics {
  containerId: string;
  metrics: CriMetric[];
}

export interface PodSandboxMetrics {
  podSandboxId: string;
  metrics: CriMetric[];
  containers: ContainerMetrics[];
}

const BASE = ['id', 'name', 'image'];

interface Spec extends MetricDescriptor {
  type: MetricType;
}

const spec = (name: string, type: MetricType, help: string, extra: string[] = []): Spec => ({ name, type, help, labelKeys: [...BASE, ...extra] });

const SPECS = [
  spec('container_cpu_usage_seconds_total', 'counter', 'Cumulative CPU time consumed in seconds.'),
  spec('container_memory_working_set_bytes', 'gauge', 'Current working set in bytes.'),
  spec('container_memory_usage_bytes', 'gauge', 'Current memory usage in bytes, including all memory regardless of when it was accessed.'),
  spec('container_memory_rss', 'gauge', 'Size of RSS in bytes.'),
  spec('container_memory_swap', 'gauge', 'Container swap usage in bytes.'),
  spec('container_memory_failures_total', 'counter', 'Cumulative count of memory allocation failures.', ['failure_type', 'scope']),
  spec('container_fs_usage_bytes', 'gauge', 'Number of bytes that are consumed by the container on this filesystem.', ['device']),
  spec('container_start_time_seconds', 'gauge', 'Start time of the container since unix epoch in seconds.'),
  spec('container_network_receive_bytes_total', 'counter', 'Cumulative count of bytes received.', ['interface']),
  spec('container_network_receive_packets_total', 'counter', 'Cumulative count of packets received.', ['interface']),
  spec('container_network_receive_packets_dropped_total', 'counter', 'Cumulative count of packets dropped while receiving.', ['interface']),
  spec('container_network_receive_errors_total', 'counter', 'Cumulative count of errors encountered while receiving.', ['interface']),
  spec('container_network_transmit_bytes_total', 'counter', 'Cumulative count of bytes transmitted.', ['interface']),
  spec('container_network_transmit_packets_total', 'counter', 'Cumulative count of packets transmitted.', ['interface']),
  spec('container_network_transmit_packets_dropped_total', 'counter', 'Cumulative count of packets dropped while transmitting.', ['interface']),
  spec('container_network_transmit_errors_total', 'counter', 'Cumulative count of errors encountered while transmitting.', ['interface']),
] as const;

type Name = (typeof SPECS)[number]['name'];
const BY_NAME = new Map<string, Spec>(SPECS.map((s) => [s.name, s]));

/** What ListMetricDescriptors answers: every metric ListPodSandboxMetrics may send. */
export function metricDescriptors(): MetricDescriptor[] {
  return SPECS.map(({ name, help, labelKeys }) => ({ name, help, labelKeys: [...labelKeys] }));
}

/** cAdvisor's (and the kubelet's) name for a pod's container: k8s_<container>_<pod>_<namespace>_<uid>_<attempt>. */
export function containerName(c: ContainerMetadata | null, pod: PodSandboxMetadata | null): string {
  return ['k8s', c?.name ?? '', pod?.name ?? '', pod?.namespace ?? '', pod?.uid ?? '', c?.attempt ?? 0].join('_');
}

const whole = (n: number): number => (Number.isFinite(n) ? Math.max(0, Math.floor(n)) : 0);

function metric(name: Name, atMs: number, base: string[], value: number, extra: string[] = []): CriMetric {
  const s = BY_NAME.get(name)!;
  return { name, atMs, type: s.type, labelValues: [...base, ...extra], value: whole(value) };
}

/** What the container's record adds to its stats: the image it was created from, when it started. */
export interface ContainerFacts {
  image: string;
  /** ns since the epoch as a decimal string; '0' when never started. */
  startedAt: string;
}

export function containerMetrics(c: ContainerStats, pod: PodSandboxMetadata | null, facts: ContainerFacts | undefined, nowMs: number): ContainerMetrics {
  const base = [c.id, containerName(c.metadata, pod), facts?.image ?? ''];
  const out: CriMetric[] = [];
  if (c.cpu) out.push(metric('container_cpu_usage_seconds_total', c.cpu.atMs, base, c.cpu.usageCoreNanoSeconds / 1e9));
  if (c.memory) {
    const mem = c.memory;
    out.push(
      metric('container_memory_working_set_bytes', mem.atMs, base, mem.workingSetBytes),
      metric('container_memory_usage_bytes', mem.atMs, base, mem.usageBytes),
      metric('container_memory_rss', mem.atMs, base, mem.rssBytes),
    );
    if (mem.pageFaults !== undefined) out.push(metric('container_memory_failures_total', mem.atMs, base, mem.pageFaults, ['pgfault', 'container']));
    if (mem.majorPageFaults !== undefined) out.push(metric('container_memory_failures_total', mem.atMs, base, mem.majorPageFaults, ['pgmajfault', 'container']));
  }
  if (c.swap) out.push(metric('container_memory_swap', c.swap.atMs, base, c.swap.swapUsageBytes));
  const fs = c.writableLayer;
  out.push(metric('container_fs_usage_bytes', fs.atMs, base, fs.usedBytes, [fs.mountpoint]));
  if (facts && facts.startedAt !== '0') out.push(metric('container_start_time_seconds', nowMs, base, Number(BigInt(facts.startedAt) / 1_000_000_000n)));
  return { containerId: c.id, metrics: out };
}

/** One pod's metrics from its stats: the network is the pod's (as cAdvisor's POD container), the rest its containers'. */
export function podSandboxMetrics(s: PodSandboxStats, facts: (containerId: string) => ContainerFacts | undefined, nowMs: number): PodSandboxMetrics {
  const base = [s.id, 'POD', ''];
  const metrics: CriMetric[] = [];
  for (const i of s.network?.interfaces ?? []) {
    const at = s.network!.atMs;
    const ifc = [i.name];
    metrics.push(
      metric('container_network_receive_bytes_total', at, base, i.rxBytes, ifc),
      metric('container_network_receive_packets_total', at, base, i.rxPackets, ifc),
      metric('container_network_receive_packets_dropped_total', at, base, i.rxDropped, ifc),
      metric('container_network_receive_errors_total', at, base, i.rxErrors, ifc),
      metric('container_network_transmit_bytes_total', at, base, i.txBytes, ifc),
      metric('container_network_transmit_packets_total', at, base, i.txPackets, ifc),
      metric('container_network_transmit_packets_dropped_total', at, base, i.txDropped, ifc),
      metric('container_network_transmit_errors_total', at, base, i.txErrors, ifc),
    );
  }
  return { podSandboxId: s.id, metrics, containers: s.containers.map((c) => containerMetrics(c, s.metadata, facts(c.id), nowMs)) };
}

/** ListPodSandboxMetrics: every ready VM pod, from the same measurement as ListPodSandboxStats. */
export async function listPodSandboxMetrics(m: PodManager): Promise<PodSandboxMetrics[]> {
  const stats = await listPodSandboxStats(m, null);
  const now = Date.now();
  const facts = (id: string): ContainerFacts | undefined => {
    const c = m.containers.get(id);
    return c && { image: c.image, startedAt: c.startedAt };
  };
  return stats.map((s) => podSandboxMetrics(s, facts, now));
}
