// A sandboxed pod's VM grows as containers are added or resized: its RAM follows the sum of its
// live containers' memory limits plus room for the guest (POD_VM_BASE_MIB), through the balloon,
// up to the most it was given at boot (vmlet.io/max-memory); its vCPUs follow the sum of their CPU
// limits, hot-added up to its maximum (vmlet.io/max-vcpus, else the host's CPUs) and brought
// online by the agent. It never shrinks here: a removed container's memory is the guest's page
// cache until the pod goes, and unplugging a vCPU needs the guest's cooperation.
import { CFS_DEFAULT_PERIOD } from '../vm/annotations.js';
import type { LinuxContainerResources } from './configs.js';
import type { PodManager } from './manager.js';
import type { PodVm } from './podvm.js';
import { POD_VM_BASE_MIB } from './podvm-boot.js';
import type { SandboxRecord } from './records.js';

const MiB = 2 ** 20;

/** What the pod's containers ask for: memory limits in bytes, CPU limits in CPUs (fractions kept). */
export function podDemand(resources: Iterable<LinuxContainerResources | null | undefined>): { memoryBytes: number; cpus: number } {
  let memoryBytes = 0;
  let cpus = 0;
  for (const r of resources) {
    memoryBytes += Math.max(0, Number(r?.memory_limit_in_bytes || 0));
    const quota = Number(r?.cpu_quota || 0);
    if (quota > 0) cpus += quota / (Number(r?.cpu_period || 0) || CFS_DEFAULT_PERIOD);
  }
  return { memoryBytes, cpus };
}

/**
 * Call before a container with `resources` joins the pod, or before container `replacing` takes
 * new `resources`, or with neither when the pod's own resources changed (caller holds the
 * sandbox's lock).
 */
export async function growPodVm(m: PodManager, s: SandboxRecord, p: PodVm, resources: LinuxContainerResources | null | undefined, replacing?: string): Promise<void> {
  const rec = s.podVm;
  if (!rec) return;
  const live = m.containersOf(s.id).filter((c) => c.kind === 'sandboxed' && c.state !== 'exited' && c.id !== replacing);
  const sum = podDemand([resources, ...live.map((c) => c.resources ?? c.config.linux?.resources)]);
  // The pod's own resources (the kubelet's, updated by UpdatePodSandboxResources) are a floor.
  const pod = podDemand([s.config.linux?.resources]);
  const demand = { memoryBytes: Math.max(sum.memoryBytes, pod.memoryBytes), cpus: Math.max(sum.cpus, pod.cpus) };

  if (rec.memoryMiB && rec.maxMemoryMiB && rec.maxMemoryMiB > rec.memoryMiB) {
    const want = POD_VM_BASE_MIB + Math.ceil(demand.memoryBytes / MiB);
    if (want > rec.memoryMiB) {
      const target = Math.min(want, rec.maxMemoryMiB);
      await m.deps.vm.setMemory(rec.domainName, target * 1024, true);
      const from = rec.memoryMiB;
      rec.memoryMiB = target;
      await m.store.saveSandbox(s);
      m.log.info({ podSandboxId: s.id, domain: rec.domainName, fromMiB: from, toMiB: target, wantMiB: want }, 'pod VM memory grown for its containers');
    }
  }

  const wantCpus = Math.ceil(demand.cpus - 1e-9); // 2.0000000001 CPUs from float sums is still 2
  if (wantCpus > 1) {
    const counts = await m.deps.vm.vcpuCounts(rec.domainName, true);
    const target = Math.min(wantCpus, counts.max);
    m.log.debug({ podSandboxId: s.id, wantCpus, ...counts }, 'pod VM vCPUs for its containers');
    if (target > counts.current) {
      await m.deps.vm.setVcpus(rec.domainName, target, true);
      // A vCPU the guest has not onlined costs the containers CPU time, not correctness: warn.
      const online = await (await p.agent()).onlineCpus(target).catch((err: unknown) => {
        m.log.warn({ podSandboxId: s.id, domain: rec.domainName, vcpus: target, err: (err as Error).message }, 'the guest did not bring the added vCPUs online');
        return undefined;
      });
      m.log.info({ podSandboxId: s.id, domain: rec.domainName, fromVcpus: counts.current, toVcpus: target, wantVcpus: wantCpus, online }, 'pod VM vCPUs added for its containers');
    }
  }
}
