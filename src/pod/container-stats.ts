// ContainerStats: one container by id (or unique prefix), in any state; NotFound if unknown.
// What each figure is: stats.ts and the stats-*.ts files it names.
import type { PodManager } from './manager.js';
import { measureContainers, statsState, type ContainerStats } from './stats.js';

export async function containerStats(m: PodManager, id: string): Promise<ContainerStats> {
  const c = m.mustContainer(id);
  const [x] = await measureContainers(m, statsState(m), [c]);
  return x!;
}
