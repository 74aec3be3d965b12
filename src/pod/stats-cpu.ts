// Stats, CPU: the domain's CPU time (libvirt getInfo cpuTime: the whole QEMU process, vCPUs plus
// emulator and I/O threads, in ns), and usage_nano_cores as the rate between this sample and
// the last kept one (CpuRateTracker): left out until a sample at least 1 s older exists.
//
// The same getInfo answer carries the balloon's current size, which the memory figures use
// (stats-memory.ts). For several containers, one libvirt bulk stats call lists the running
// domains (their state only: the groups with CPU and memory make libvirt ask every QEMU, see
// Libvirt.activeDomainInfo), then getInfo per VM, sent at once (VmDriver.sampleActive).
import { unavailable, VmletError } from '../errors.js';
import type { VmSample, VmState } from '../vm/driver.js';
import type { PodManager } from './manager.js';
import type { ContainerRecord } from './records.js';

/** The shortest window usage_nano_cores is computed over (libvirt's CPU time may tick in 10 ms). */
export const MIN_RATE_WINDOW_MS = 1000;

/** CPU of a container (its VM) or of a pod (the sum of its VMs). */
export interface CpuStats {
  /** When libvirt answered: ms since the epoch. */
  atMs: number;
  /** Cumulative CPU time, ns. */
  usageCoreNanoSeconds: number;
  /** CPU time per second over the last window: undefined until a rate is known. */
  usageNanoCores?: number;
}

interface CpuSample {
  cpuNs: number;
  atMs: number;
  rate?: number;
}

/**
 * usage_nano_cores from cumulative CPU time, per key (container id, or pod). The sample a rate
 * is computed against is replaced only once it is at least `minWindowMs` old, so callers that
 * poll faster (the kubelet, crictl, metrics agents at once) share one steady window instead of
 * dividing tick-sized differences by tiny intervals; between two such updates the last rate is
 * reported again. No rate before a second sample exists (the first call reports none: the
 * kubelet then computes one itself from usage_core_nano_seconds), and none after the counter
 * went backwards (a new QEMU process), until the window has passed again.
 */
export class CpuRateTracker {
  private readonly samples = new Map<string, CpuSample>();

  constructor(readonly minWindowMs = MIN_RATE_WINDOW_MS) {}

  /** Records a sample; returns nano cores, or undefined when no rate is known yet. */
  update(key: string, cpuNs: number, atMs: number): number | undefined {
    const prev = this.samples.get(key);
    if (!prev || cpuNs < prev.cpuNs || atMs < prev.atMs) {
      this.samples.set(key, { cpuNs, atMs });
      return undefined;
    }
    const dtMs = atMs - prev.atMs;
    if (dtMs < this.minWindowMs) return prev.rate;
    const rate = Math.round(((cpuNs - prev.cpuNs) * 1000) / dtMs); // ns of CPU per s = nano cores
    this.samples.set(key, { cpuNs, atMs, rate });
    return rate;
  }

  /** Forgets every key not in `keep` (removed containers and pods). */
  retain(keep: ReadonlySet<string>): void {
    for (const k of this.samples.keys()) if (!keep.has(k)) this.samples.delete(k);
  }

  get size(): number {
    return this.samples.size;
  }
}

const ACTIVE = new Set<VmState>(['running', 'blocked', 'paused', 'shutdown', 'pmsuspended']);

/** The running domains among `containers`: lookup + getInfo for one, the bulk list + getInfo each for several. */
export async function sampleDomains(m: PodManager, containers: ContainerRecord[]): Promise<Map<string, VmSample>> {
  const out = new Map<string, VmSample>();
  // A created container's domain is defined but off; an exited one's is off or gone.
  const wanted = containers.filter((c) => c.state === 'running' || c.state === 'unknown');
  if (wanted.length === 0) return out;
  const vm = m.deps.vm;
  try {
    if (wanted.length === 1) {
      const d = await vm.sample(wanted[0]!.domainName);
      out.set(d.name, d);
    } else {
      for (const d of await vm.sampleActive(new Set(wanted.map((c) => c.domainName)))) out.set(d.name, d);
    }
  } catch (err) {
    if (err instanceof VmletError && err.kind === 'not-found') return out; // removed meanwhile
    if (err instanceof VmletError && err.kind === 'unavailable') throw unavailable(`cannot read VM stats: ${err.message}`);
    throw err;
  }
  for (const [name, d] of out) if (!ACTIVE.has(d.state)) out.delete(name);
  return out;
}

/** A container's CPU from its domain's sample; the rate is kept under the container's id. */
export function containerCpu(rates: CpuRateTracker, containerId: string, d: VmSample): CpuStats {
  const rate = rates.update(containerId, d.cpuTimeNs, d.sampledAtMs);
  return { atMs: d.sampledAtMs, usageCoreNanoSeconds: d.cpuTimeNs, ...(rate !== undefined ? { usageNanoCores: rate } : {}) };
}

/** The key a pod's rate is kept under, beside its containers' ids. */
export const podRateKey = (sandboxId: string): string => `pod/${sandboxId}`;

/** A pod's CPU: its running containers' summed, at the latest of their samples; undefined if none runs. */
export function podCpu(rates: CpuRateTracker, sandboxId: string, members: readonly (CpuStats | undefined)[]): CpuStats | undefined {
  const running = members.filter((x): x is CpuStats => x !== undefined);
  if (running.length === 0) return undefined;
  const cpuNs = running.reduce((a, x) => a + x.usageCoreNanoSeconds, 0);
  const atMs = Math.max(...running.map((x) => x.atMs));
  const rate = rates.update(podRateKey(sandboxId), cpuNs, atMs);
  return { atMs, usageCoreNanoSeconds: cpuNs, ...(rate !== undefined ? { usageNanoCores: rate } : {}) };
}
