// A sandboxed pod's block volumes: hotplugged into the running pod VM as virtio-blk disks at
// CreateContainer (a block PVC is known only then), found by the agent through their serial, and
// unplugged when the last container using them goes. Two containers of a pod may use the same
// volume: it is one disk of the VM, attached once.
import { failedPrecondition } from '../errors.js';
import type { PodManager } from './manager.js';
import type { SandboxRecord } from './records.js';
import { devicesOf, type BlockVolume } from './volumes.js';
import { deviceSerial } from '../vm/volumes.js';

/** A device node the agent makes in the container (docs/guest-agent.md, create_container). */
export interface AgentDevice {
  serial: string;
  target: string;
  mode: number;
  uid: number;
  gid: number;
}

/**
 * Serials of the block volumes the pod's other containers use, each with whether the VM has it
 * read-only: it was attached as its first user asked (without `w`, read-only), and a later user
 * must agree (attachBlockVolumes).
 */
function serialsInUse(m: PodManager, sandboxId: string, exceptId: string): Map<string, { readonly: boolean; by: string }> {
  const out = new Map<string, { readonly: boolean; by: string }>();
  for (const c of m.containersOf(sandboxId)) {
    if (c.id === exceptId) continue;
    for (const d of devicesOf(c.config)) {
      const serial = deviceSerial(d.host_path);
      const readonly = !(d.permissions || 'rwm').includes('w');
      const prev = out.get(serial);
      out.set(serial, { readonly: (prev?.readonly ?? true) && readonly, by: c.config.metadata?.name ?? c.id });
    }
  }
  return out;
}

/** Attaches the volumes not yet in the pod VM; returns the serials it attached. A failure detaches them again. */
export async function attachBlockVolumes(m: PodManager, s: SandboxRecord, containerId: string, blocks: BlockVolume[]): Promise<string[]> {
  const inUse = serialsInUse(m, s.id, containerId);
  const attached: string[] = [];
  try {
    for (const b of blocks) {
      const used = inUse.get(b.serial);
      if (used) {
        // One disk of the VM, read-only or not for all its containers: the VM enforces it.
        if (used.readonly && !b.readonly) {
          throw failedPrecondition(`device ${JSON.stringify(b.containerPath)}: block volume ${b.hostPath} is attached to the pod VM read-only for container ${used.by} (permissions without w); a container of the same pod cannot write it: give both containers the same permissions`);
        }
        if (!used.readonly && b.readonly) {
          throw failedPrecondition(`device ${JSON.stringify(b.containerPath)}: block volume ${b.hostPath} is attached to the pod VM writable for container ${used.by}; read-only access (permissions without w) for another container of the same pod cannot be enforced in the VM: give both containers the same permissions`);
        }
        continue;
      }
      const target = await m.deps.vm.attachDisk(s.podVm!.domainName, { path: b.hostPath, serial: b.serial, readonly: b.readonly });
      attached.push(b.serial);
      m.log.info({ containerId, podSandboxId: s.id, device: b.hostPath, serial: b.serial, target }, 'block volume hotplugged into the pod VM');
    }
    return attached;
  } catch (err) {
    await detachBlockVolumes(m, s, containerId, attached);
    throw err;
  }
}

/** Detaches these serials unless another container of the pod uses them; failures are logged (the VM's end drops them anyway). */
export async function detachBlockVolumes(m: PodManager, s: SandboxRecord, containerId: string, serials: readonly string[]): Promise<void> {
  if (!s.podVm || serials.length === 0) return;
  const inUse = serialsInUse(m, s.id, containerId);
  for (const serial of serials) {
    if (inUse.has(serial)) continue;
    try {
      await m.deps.vm.detachDisk(s.podVm.domainName, serial);
      m.log.info({ containerId, podSandboxId: s.id, serial }, 'block volume unplugged from the pod VM');
    } catch (err) {
      m.log.warn({ containerId, podSandboxId: s.id, serial, err: (err as Error).message }, 'cannot unplug a block volume from the pod VM');
    }
  }
}
