// UpdateContainerResources: a VM's vCPUs and memory follow the container's limits (when no
// annotation fixes them), but vmlet cannot resize a running VM yet (its libvirt binding has no
// vCPU/memory/cputune calls). So a change that keeps the VM's size is accepted, and one that
// would resize it, or pin it (cpuset), is refused with what and why.
import { failedPrecondition } from '../errors.js';
import type { LinuxContainerResources__Output } from '../gen/runtime/v1/LinuxContainerResources.js';
import { parseVmSettings } from '../vm/annotations.js';
import { CLOUD_INIT_ANNOTATIONS } from '../vm/cloud-init.js';
import type { PodManager } from './manager.js';

export async function updateContainerResources(m: PodManager, id: string, linux: LinuxContainerResources__Output | null): Promise<void> {
  const c = m.mustContainer(id);
  const s = m.mustSandbox(c.sandboxId);
  if (linux?.cpuset_cpus || linux?.cpuset_mems) {
    throw failedPrecondition('linux.cpuset_cpus/cpuset_mems: pinning a VM\'s vCPUs is not supported by vmlet yet');
  }
  const size = (resources: LinuxContainerResources__Output | null | undefined) =>
    parseVmSettings({
      sandboxAnnotations: s.config.annotations ?? {},
      containerAnnotations: c.config.annotations ?? {},
      containerResources: resources ?? null,
      sandboxResources: s.config.linux?.resources ?? null,
      defaults: { vcpus: 1, memoryMiB: 512 },
      otherKnownAnnotations: CLOUD_INIT_ANNOTATIONS,
    });
  const have = size(c.config.linux?.resources);
  const want = size(linux);
  if (want.vcpus !== have.vcpus || want.memoryMiB !== have.memoryMiB) {
    throw failedPrecondition(
      `linux resources would resize the VM from ${have.vcpus} vCPUs / ${have.memoryMiB} MiB to ${want.vcpus} vCPUs / ${want.memoryMiB} MiB: vmlet cannot resize a VM in place yet; recreate the pod`,
    );
  }
  m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, vcpus: have.vcpus, memoryMiB: have.memoryMiB }, 'container resources updated (VM size unchanged)');
}
