// ListContainerStats: every created or running container matching the filter (as ListContainers'
// filter: container-list.ts). What each figure is: stats.ts and the stats-*.ts files it names.
import { containerMatches, type ContainerFilter } from './container-list.js';
import type { PodManager } from './manager.js';
import { listed, measureContainers, prune, statsState, type ContainerStats } from './stats.js';

export async function listContainerStats(m: PodManager, filter: Omit<ContainerFilter, 'state'> | null | undefined): Promise<ContainerStats[]> {
  const st = statsState(m);
  prune(m, st);
  const containers = [...m.containers.values()].filter((c) => listed(c) && containerMatches(c, filter));
  return measureContainers(m, st, containers);
}
