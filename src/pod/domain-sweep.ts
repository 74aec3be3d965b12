// Start-up sweep of what a crash leaves between libvirt's define (or start) and the record that
// names the VM: CreateContainer defines the domain, then saves the container's record; a pod's
// own VM is defined and started, then named in the pod's record. A vmlet killed in between leaves
// a domain no record names, and the kubelet's retry would fail on it for ever (libvirt refuses a
// second definition of the same name, and the first container's VM is named after its pod).
// Only domains of this vmlet's own pods are judged (libvirtd may serve other vmlets: the pod's id
// in the domain's metadata must be one of this state dir's served pods); a set-aside pod's are kept.
import { removeUnmounted } from '../guest/shared-mounts.js';
import { readMetadata } from '../vm/domain-xml.js';
import type { VmDriver } from '../vm/driver.js';
import type { Logger } from '../log.js';
import type { ContainerRecord, PodStateStore, SandboxRecord } from './records.js';
import { podVmFiles, removePodVmDisks } from './podvm-files.js';

export interface SweepDeps {
  deps: { vm: VmDriver };
  log: Logger;
  store: PodStateStore;
  sandboxes: ReadonlyMap<string, SandboxRecord>;
  containers: ReadonlyMap<string, ContainerRecord>;
}

/** Removes unrecorded domains of this vmlet's pods (and a crashed CreateContainer's dir); returns their names. */
export async function sweepUnrecordedDomains(m: SweepDeps): Promise<string[]> {
  const named = new Set<string>();
  for (const c of m.containers.values()) named.add(c.domainName);
  for (const s of m.sandboxes.values()) if (s.podVm?.domainName) named.add(s.podVm.domainName);
  // A pod's VMs carry its id's first 8 characters last, or before the container's (spec.ts
  // domainName): only those are looked at, not other vmlets' or set-aside pods' domains.
  const served = new Set([...m.sandboxes.keys()].map((id) => id.slice(0, 8)));
  const swept: string[] = [];
  for (const name of await m.deps.vm.allNames()) {
    // Warm-pool VMs (vmletpool-…) are the pool's own sweep's.
    if (!name.startsWith('vmlet-') || named.has(name)) continue;
    if (!name.split('-').slice(-2).some((part) => served.has(part))) continue;
    const md = readMetadata(await m.deps.vm.definition(name).catch(() => ''));
    const s = md && m.sandboxes.get(md.sandboxId);
    if (!md || !s) continue;
    await m.deps.vm.destroy(name);
    await m.deps.vm.remove(name);
    const cid = md.containerId;
    if (/^[a-f0-9]{64}$/.test(cid) && !m.containers.has(cid)) await removeUnmounted(m.store.containerDir(s.id, cid));
    // A pod's own VM: its scratch disk and share, or the pod's next VM could not make them.
    if (md.podVm === true && !md.pool) await removePodVmDisks(podVmFiles(m.store.sandboxDir(s.id), s.id));
    m.log.warn({ podSandboxId: s.id, ...(cid ? { containerId: cid } : {}), domain: name, why: 'vmlet stopped between defining it and recording it' }, 'removed a VM no record names');
    swept.push(name);
  }
  return swept;
}

/**
 * A VM container still 'created' whose domain is active: vmlet stopped between StartContainer's
 * start and its record of it (a VM started paused may be waiting for its tap, its resume). Its VM
 * is stopped, so the kubelet's retry of StartContainer starts it afresh; returns the domains.
 */
export async function stopUnfinishedStarts(m: SweepDeps): Promise<string[]> {
  const created = [...m.containers.values()].filter((c) => c.state === 'created' && c.kind !== 'sandboxed' && m.sandboxes.has(c.sandboxId));
  if (created.length === 0) return [];
  const active = await m.deps.vm.activeNames(new Set(created.map((c) => c.domainName)));
  const stopped: string[] = [];
  for (const c of created) {
    if (!active.has(c.domainName)) continue;
    await m.deps.vm.destroy(c.domainName);
    m.log.warn({ podSandboxId: c.sandboxId, containerId: c.id, domain: c.domainName, why: 'vmlet stopped between starting it and recording the start' }, 'stopped the VM of a container not started');
    stopped.push(c.domainName);
  }
  return stopped;
}
