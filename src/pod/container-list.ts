// ListContainers: vmlet's containers that match a filter (filter.ts, and the pod's id by
// prefix). The stats lists (container-stats-list.ts) filter the same way.
import { recordMatches, type RecordFilter } from './filter.js';
import type { PodManager } from './manager.js';
import type { ContainerRecord, ContainerState } from './records.js';

export interface ContainerFilter extends RecordFilter<ContainerState> {
  podSandboxId?: string;
}

export function containerMatches(c: ContainerRecord, f: ContainerFilter | null | undefined): boolean {
  if (f?.podSandboxId && !c.sandboxId.startsWith(f.podSandboxId)) return false;
  return recordMatches(c, f);
}

export function listContainers(m: PodManager, filter: ContainerFilter | null | undefined): ContainerRecord[] {
  return [...m.containers.values()].filter((c) => containerMatches(c, filter));
}
