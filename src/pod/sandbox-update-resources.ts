// UpdatePodSandboxResources: the kubelet's notice that a pod's resources changed (in-place pod
// resize; it writes the pod cgroup's limits itself). vmlet keeps the new figures with the pod, and
// a sandboxed pod's running VM grows to hold them (balloon up to vmlet.io/max-memory, vCPUs up to
// its maximum: podvm-grow.ts); it never shrinks here, as the containers' own updates shrink their
// cgroups. A VM-image pod's VM follows its container's resources (UpdateContainerResources).
import type { LinuxContainerResources } from './configs.js';
import type { PodManager } from './manager.js';
import { podVmOf } from './podvm-boot.js';
import { growPodVm } from './podvm-grow.js';

export async function updatePodSandboxResources(
  m: PodManager,
  id: string,
  overhead: LinuxContainerResources | null,
  resources: LinuxContainerResources | null,
): Promise<void> {
  const s = m.mustSandbox(id);
  await m.lock.run(s.id, async () => {
    m.requireReady(s, 'pod resources cannot be updated');
    const linux = s.config.linux ?? { overhead: null, resources: null, security_context: null, sysctls: {}, cgroup_parent: '' };
    s.config.linux = { ...linux, ...(overhead ? { overhead } : {}), ...(resources ? { resources } : {}) };
    await m.store.saveSandbox(s);
    const p = podVmOf(m, s);
    if (p) await growPodVm(m, s, p, null);
    m.log.info({ podSandboxId: s.id, memoryLimitBytes: resources?.memory_limit_in_bytes, cpuQuota: resources?.cpu_quota, cpuPeriod: resources?.cpu_period, podVm: !!p }, 'pod resources updated');
  });
}
