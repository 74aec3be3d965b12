// UpdateContainerResources on a container of a sandboxed pod: its cgroup in the guest takes the
// new memory and CPU limits (through the agent), after the pod's VM has grown to hold them (the
// balloon up to vmlet.io/max-memory, vCPUs up to its maximum). Checked before anything changes.
import { failedPrecondition, invalidArgument } from '../errors.js';
import { parseCpuTune } from '../vm/cputune.js';
import type { LinuxContainerResources } from './configs.js';
import type { PodManager } from './manager.js';
import { podVmOf } from './podvm-boot.js';
import { growPodVm } from './podvm-grow.js';
import type { ContainerRecord } from './records.js';

export async function updateSandboxedResources(m: PodManager, c: ContainerRecord, linux: LinuxContainerResources | null): Promise<void> {
  if (!linux) throw invalidArgument('linux is required: vmlet runs Linux VMs (windows resources do not apply)');
  const s = m.mustSandbox(c.sandboxId);
  const tune = parseCpuTune(linux, 'linux');
  const memoryLimitBytes = Number(linux.memory_limit_in_bytes || 0);
  if (memoryLimitBytes < 0) throw invalidArgument(`linux.memory_limit_in_bytes=${linux.memory_limit_in_bytes} is invalid: allowed 0 (no limit) or a positive number of bytes`);
  if (linux.cpuset_cpus || linux.cpuset_mems) {
    // The guest's CPUs are vCPUs, not the host's: pinning belongs to the pod VM, not a container.
    throw invalidArgument('linux.cpuset_cpus and linux.cpuset_mems name host CPUs and NUMA nodes, which a container of a sandboxed pod does not see: leave them empty');
  }
  // Pod lock first, as CreateContainer takes it: the VM's size is the pod's, summed over its containers.
  await m.lock.run(s.id, () =>
    m.lock.run(c.id, async () => {
      if (c.state !== 'running' && c.state !== 'created') {
        throw failedPrecondition(`container ${c.id} is ${c.state}: resources can be updated on a created or running container only`);
      }
      const p = podVmOf(m, s);
      if (!p) throw failedPrecondition(`pod ${s.id} is ${s.state} and its VM is not running: container ${c.id}'s resources cannot be updated`);
      await growPodVm(m, s, p, linux, c.id);
      const agent = await p.agent();
      await agent.updateContainer({
        id: c.id,
        memoryLimitBytes,
        cpuQuotaUs: tune.quotaUs ?? 0,
        cpuPeriodUs: tune.quotaUs ? (tune.periodUs ?? 100_000) : 0,
        cpuShares: tune.shares ?? 0,
      });
      c.resources = linux;
      await m.store.saveContainer(c);
      m.log.info({ containerId: c.id, podSandboxId: s.id, memoryLimitBytes, cpuQuotaUs: tune.quotaUs ?? -1, cpuShares: tune.shares }, 'container resources updated in the pod VM');
    }),
  );
}
