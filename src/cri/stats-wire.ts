// vmlet's stats (pod/stats.ts) → CRI's ContainerStats and PodSandboxStats, and the stats
// filters → vmlet's (pod/container-list.ts, pod/sandbox-list.ts). uint64 values as decimal
// strings in UInt64Value, timestamps as int64 ns since the epoch.
import type { ContainerFilter } from '../pod/container-list.js';
import type { SandboxFilter } from '../pod/sandbox-list.js';
import type { ContainerStats, PodSandboxStats, StatsAttributes } from '../pod/stats.js';
import type { CpuStats } from '../pod/stats-cpu.js';
import type { MemoryStats } from '../pod/stats-memory.js';
import type { FilesystemStats } from '../pod/stats-layer.js';
import type { NetworkStats } from '../pod/stats-network.js';
import type { ContainerStats as WireContainerStats } from '../gen/runtime/v1/ContainerStats.js';
import type { PodSandboxStats as WirePodSandboxStats } from '../gen/runtime/v1/PodSandboxStats.js';
import type { CpuUsage } from '../gen/runtime/v1/CpuUsage.js';
import type { MemoryUsage } from '../gen/runtime/v1/MemoryUsage.js';
import type { NetworkUsage } from '../gen/runtime/v1/NetworkUsage.js';
import type { FilesystemUsage } from '../gen/runtime/v1/FilesystemUsage.js';
import type { ContainerStatsFilter__Output } from '../gen/runtime/v1/ContainerStatsFilter.js';
import type { PodSandboxStatsFilter__Output } from '../gen/runtime/v1/PodSandboxStatsFilter.js';

const u64 = (n: number) => ({ value: BigInt(Math.max(0, Math.round(n))).toString() });

/** ms since the epoch (sub-ms precision) → ns as the decimal string int64 fields take. */
export function nsString(atMs: number): string {
  return (BigInt(Math.round(atMs * 1000)) * 1000n).toString();
}

function cpuWire(c: CpuStats): CpuUsage {
  return {
    timestamp: nsString(c.atMs),
    usage_core_nano_seconds: u64(c.usageCoreNanoSeconds),
    ...(c.usageNanoCores !== undefined ? { usage_nano_cores: u64(c.usageNanoCores) } : {}),
  };
}

function memoryWire(mem: MemoryStats): MemoryUsage {
  return {
    timestamp: nsString(mem.atMs),
    working_set_bytes: u64(mem.workingSetBytes),
    available_bytes: u64(mem.availableBytes),
    usage_bytes: u64(mem.usageBytes),
    rss_bytes: u64(mem.rssBytes),
    ...(mem.pageFaults !== undefined ? { page_faults: u64(mem.pageFaults) } : {}),
    ...(mem.majorPageFaults !== undefined ? { major_page_faults: u64(mem.majorPageFaults) } : {}),
  };
}

function fsWire(u: FilesystemStats): FilesystemUsage {
  return { timestamp: nsString(u.atMs), fs_id: { mountpoint: u.mountpoint }, used_bytes: u64(u.usedBytes), inodes_used: u64(u.inodesUsed) };
}

function networkWire(n: NetworkStats): NetworkUsage {
  const interfaces = n.interfaces.map((i) => ({ name: i.name, rx_bytes: u64(i.rxBytes), rx_errors: u64(i.rxErrors), tx_bytes: u64(i.txBytes), tx_errors: u64(i.txErrors) }));
  return { timestamp: nsString(n.atMs), default_interface: interfaces[0] ?? null, interfaces };
}

const attributes = <M>(s: StatsAttributes<M>) => ({ id: s.id, metadata: s.metadata, labels: s.labels, annotations: s.annotations });

export function wireContainerStats(s: ContainerStats): WireContainerStats {
  const wire: WireContainerStats = { attributes: attributes(s) };
  if (s.cpu) wire.cpu = cpuWire(s.cpu);
  if (s.memory) wire.memory = memoryWire(s.memory);
  if (s.swap) wire.swap = { timestamp: nsString(s.swap.atMs), swap_usage_bytes: u64(s.swap.swapUsageBytes) };
  wire.writable_layer = fsWire(s.writableLayer);
  return wire;
}

export function wirePodSandboxStats(s: PodSandboxStats): WirePodSandboxStats {
  const linux: NonNullable<WirePodSandboxStats['linux']> = { containers: s.containers.map(wireContainerStats) };
  if (s.cpu) linux.cpu = cpuWire(s.cpu);
  if (s.memory) linux.memory = memoryWire(s.memory);
  if (s.network) linux.network = networkWire(s.network);
  return { attributes: attributes(s), linux };
}

export function containerStatsFilter(f: ContainerStatsFilter__Output | null): Omit<ContainerFilter, 'state'> | null {
  return f && { id: f.id, podSandboxId: f.pod_sandbox_id, labelSelector: f.label_selector };
}

export function sandboxStatsFilter(f: PodSandboxStatsFilter__Output | null): Omit<SandboxFilter, 'state'> | null {
  return f && { id: f.id, labelSelector: f.label_selector };
}
