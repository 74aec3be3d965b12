// Stats of VM pods: what `crictl stats`, `crictl statsp`, the kubelet's eviction manager and
// `kubectl top` read. This file holds vmlet's own stats types (cri/stats-wire.ts turns them into
// CRI messages) and puts a container's or a pod's together; each figure comes from the file
// named for what it measures (a container is one libvirt domain, i.e. one QEMU process):
//   stats-cpu.ts       CPU time (libvirt getInfo) and its rate
//   stats-memory.ts    memory and swap of the QEMU process (/proc)
//   stats-layer.ts     writable layer (the files vmlet made for the container)
//   stats-network.ts   network, pods only (the VM tap's counters in the pod netns)
//   stats-sandboxed.ts a sandboxed pod's containers: their cgroups in the guest, through its agent
// The RPCs: container-stats.ts, container-stats-list.ts, sandbox-stats.ts, sandbox-stats-list.ts.
// A list call costs one libvirt bulk stats call listing the running domains, then getInfo per
// VM, sent at once, and /proc reads.
import { mountPointOf } from '../util/fs-usage.js';
import type { VmSample } from '../vm/driver.js';
import type { ContainerMetadata, PodSandboxMetadata } from './configs.js';
import type { PodManager } from './manager.js';
import { nowMs, type ContainerRecord, type SandboxRecord } from './records.js';
import { containerCpu, CpuRateTracker, podCpu, podRateKey, sampleDomains, type CpuStats } from './stats-cpu.js';
import { containerMemory, podMemory, readQemuProc, type MemoryStats, type SwapStats } from './stats-memory.js';
import { writableLayer, type FilesystemStats } from './stats-layer.js';
import { podNetwork, type NetworkStats } from './stats-network.js';
import { sandboxedFigures } from './stats-sandboxed.js';

/** Whose stats these are: the record's id, and the metadata and labels the kubelet gave it. */
export interface StatsAttributes<M> {
  id: string;
  metadata: M | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** One container's stats: what a stopped or created VM lacks is left out, never made up. */
export interface ContainerStats extends StatsAttributes<ContainerMetadata> {
  cpu?: CpuStats;
  memory?: MemoryStats;
  swap?: SwapStats;
  writableLayer: FilesystemStats;
}

/** One pod's stats: its containers' CPU and memory summed, its network, and the containers. */
export interface PodSandboxStats extends StatsAttributes<PodSandboxMetadata> {
  cpu?: CpuStats;
  memory?: MemoryStats;
  network?: NetworkStats;
  containers: ContainerStats[];
}

function attributes<M>(r: { id: string; config: { metadata: M | null; labels: Record<string, string>; annotations: Record<string, string> } }): StatsAttributes<M> {
  return { id: r.id, metadata: r.config.metadata, labels: r.config.labels ?? {}, annotations: r.config.annotations ?? {} };
}

/** What the stats keep between calls, per PodManager: the rate samples, the state dir's mount. */
export interface StatsState {
  cpu: CpuRateTracker;
  mountpoint?: string;
}

const states = new WeakMap<PodManager, StatsState>();

export function statsState(m: PodManager): StatsState {
  let st = states.get(m);
  if (!st) {
    st = { cpu: new CpuRateTracker() };
    states.set(m, st);
  }
  return st;
}

function mountpoint(m: PodManager, st: StatsState): string {
  st.mountpoint ??= mountPointOf(m.store.root);
  return st.mountpoint;
}

/** Containers that get stats: all but exited ones (CRI-O's choice; containerd lists running ones). */
export const listed = (c: ContainerRecord): boolean => c.state !== 'exited';

/** Drops rate samples of containers and pods vmlet no longer knows. */
export function prune(m: PodManager, st: StatsState): void {
  const keep = new Set<string>();
  for (const id of m.containers.keys()) keep.add(id);
  for (const id of m.sandboxes.keys()) keep.add(podRateKey(id));
  st.cpu.retain(keep);
}

async function measureContainer(m: PodManager, st: StatsState, c: ContainerRecord, d: VmSample | undefined): Promise<ContainerStats> {
  const proc = d ? readQemuProc(m.deps.vm.qemuPid(d.name)) : undefined;
  const memAtMs = nowMs();
  const layer = await writableLayer(c.files, mountpoint(m, st));
  const out: ContainerStats = { ...attributes(c), writableLayer: layer };
  if (d) out.cpu = containerCpu(st.cpu, c.id, d);
  if (d && proc) Object.assign(out, containerMemory(d, proc, memAtMs));
  return out;
}

/** Stats of `containers`, in their order. */
export async function measureContainers(m: PodManager, st: StatsState, containers: ContainerRecord[]): Promise<ContainerStats[]> {
  const vms = containers.filter((c) => c.kind !== 'sandboxed');
  const [domains, inPods] = await Promise.all([sampleDomains(m, vms), sandboxedFigures(m, st.cpu, containers.filter((c) => c.kind === 'sandboxed'))]);
  return Promise.all(
    containers.map(async (c) => {
      const fig = inPods.get(c.id);
      return fig ? { ...attributes(c), ...fig } : measureContainer(m, st, c, domains.get(c.domainName));
    }),
  );
}

/** A pod's stats from its members' (measured by measureContainers). A stopped pod has no CPU, memory or network. */
export async function measureSandbox(m: PodManager, st: StatsState, s: SandboxRecord, members: ContainerStats[]): Promise<PodSandboxStats> {
  const network = await podNetwork(m, s);
  const out: PodSandboxStats = { ...attributes(s), containers: members };
  const cpu = podCpu(st.cpu, s.id, members.map((x) => x.cpu));
  if (cpu) out.cpu = cpu;
  const memory = podMemory(members.map((x) => x.memory));
  if (memory) out.memory = memory;
  if (network) out.network = network;
  return out;
}
