// PodSandboxStats: one pod by id (or unique prefix), ready or not; NotFound if unknown. A stopped
// pod has no CPU, memory or network. What each figure is: stats.ts and the files it names.
import type { PodManager } from './manager.js';
import { listed, measureContainers, measureSandbox, statsState, type PodSandboxStats } from './stats.js';

export async function podSandboxStats(m: PodManager, id: string): Promise<PodSandboxStats> {
  const s = m.mustSandbox(id);
  const st = statsState(m);
  const members = await measureContainers(m, st, m.containersOf(s.id).filter(listed));
  return measureSandbox(m, st, s, members);
}
