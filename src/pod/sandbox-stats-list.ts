// ListPodSandboxStats: every ready pod matching the filter (as ListPodSandbox's: filter.ts); as
// containerd, stopped pods are left out. All their containers are measured at once (one libvirt
// list call). What each figure is: stats.ts and the files it names.
import type { PodManager } from './manager.js';
import { recordMatches } from './filter.js';
import type { SandboxFilter } from './sandbox-list.js';
import { listed, measureContainers, measureSandbox, prune, statsState, type PodSandboxStats } from './stats.js';

export async function listPodSandboxStats(m: PodManager, filter: Omit<SandboxFilter, 'state'> | null | undefined): Promise<PodSandboxStats[]> {
  const st = statsState(m);
  prune(m, st);
  const sandboxes = [...m.sandboxes.values()].filter((s) => s.state === 'ready' && recordMatches(s, filter));
  const ids = new Set(sandboxes.map((s) => s.id));
  const containers = [...m.containers.values()].filter((c) => ids.has(c.sandboxId) && listed(c));
  const measured = await measureContainers(m, st, containers);
  return Promise.all(sandboxes.map((s) => measureSandbox(m, st, s, measured.filter((_, i) => containers[i]!.sandboxId === s.id))));
}
