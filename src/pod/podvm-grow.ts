// A sandboxed pod's VM grows as containers are added: its RAM follows the sum of its live
// containers' memory limits plus room for the guest (POD_VM_BASE_MIB), through the balloon, up
// to the most it was given at boot (vmlet.io/max-memory; without it the VM keeps its size). It
// never shrinks here: a removed container's memory is the guest's page cache until the pod goes.
import type { PodManager } from './manager.js';
import { POD_VM_BASE_MIB } from './podvm-boot.js';
import type { SandboxRecord } from './records.js';

const MiB = 2 ** 20;

/** Call before a container with `memoryLimitBytes` (0: none) joins the pod (caller holds the sandbox's lock). */
export async function growPodVm(m: PodManager, s: SandboxRecord, memoryLimitBytes: number): Promise<void> {
  const rec = s.podVm;
  if (!rec?.memoryMiB || !rec.maxMemoryMiB || rec.maxMemoryMiB <= rec.memoryMiB) return;
  let limits = memoryLimitBytes;
  for (const c of m.containersOf(s.id)) {
    if (c.kind === 'sandboxed' && c.state !== 'exited') limits += Number(c.config.linux?.resources?.memory_limit_in_bytes || 0);
  }
  const want = POD_VM_BASE_MIB + Math.ceil(limits / MiB);
  if (want <= rec.memoryMiB) return;
  const target = Math.min(want, rec.maxMemoryMiB);
  await m.deps.vm.setMemory(rec.domainName, target * 1024, true);
  const from = rec.memoryMiB;
  rec.memoryMiB = target;
  await m.store.saveSandbox(s);
  m.log.info({ podSandboxId: s.id, domain: rec.domainName, fromMiB: from, toMiB: target, wantMiB: want }, 'pod VM memory grown for its containers');
}
