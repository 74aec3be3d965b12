// Stats of sandboxed pods' containers: from the guest agent, one `stats` call per pod VM (each
// container's cgroup in the guest: CPU time, memory, and its writable layer on the scratch disk).
// A pod VM that does not answer within the time limit gives its containers no CPU or memory
// figures rather than holding up the whole list call.
import { unavailable } from '../errors.js';
import type { AgentStats } from '../guest/agent-client.js';
import type { PodManager } from './manager.js';
import { podVmOf } from './podvm-boot.js';
import type { ContainerRecord } from './records.js';
import type { CpuStats } from './stats-cpu.js';
import type { MemoryStats } from './stats-memory.js';
import type { FilesystemStats } from './stats-layer.js';
import { nowMs } from './records.js';

const STATS_TIMEOUT_MS = 5_000;

export interface SandboxedFigures {
  cpu?: CpuStats;
  memory?: MemoryStats;
  writableLayer: FilesystemStats;
}

/** Figures for each of `containers` (all sandboxed), by container id. */
export async function sandboxedFigures(
  m: PodManager,
  rates: { update(key: string, cpuNs: number, atMs: number): number | undefined },
  containers: ContainerRecord[],
): Promise<Map<string, SandboxedFigures>> {
  const bySandbox = new Map<string, ContainerRecord[]>();
  for (const c of containers) bySandbox.set(c.sandboxId, [...(bySandbox.get(c.sandboxId) ?? []), c]);
  const out = new Map<string, SandboxedFigures>();
  await Promise.all(
    [...bySandbox].map(async ([sid, list]) => {
      const s = m.sandboxes.get(sid);
      const p = s && podVmOf(m, s);
      let st: AgentStats | undefined;
      if (p && list.some((c) => c.state === 'running')) {
        st = await p
          .agent()
          .then((a) => withTimeout(a.stats(), STATS_TIMEOUT_MS))
          .catch((err: unknown) => {
            m.log.warn({ podSandboxId: sid, err: (err as Error).message }, 'no stats from the pod VM agent');
            return undefined;
          });
      }
      const atMs = nowMs();
      for (const c of list) {
        const g = st?.containers.find((x) => x.id === c.id);
        const fig: SandboxedFigures = { writableLayer: { atMs, mountpoint: '/run/vmlet/scratch', usedBytes: g?.writableLayerBytes ?? 0, inodesUsed: g?.writableLayerInodes ?? 0 } };
        if (g && c.state === 'running') {
          const ns = Number(g.cpuUsageNs);
          const rate = rates.update(c.id, ns, atMs);
          fig.cpu = { atMs, usageCoreNanoSeconds: ns, ...(rate !== undefined ? { usageNanoCores: rate } : {}) };
          fig.memory = {
            atMs,
            workingSetBytes: g.memoryWorkingSetBytes,
            availableBytes: st!.memAvailableBytes,
            usageBytes: g.memoryUsageBytes,
            rssBytes: g.rssBytes,
            pageFaults: g.pageFaults,
            majorPageFaults: g.majorPageFaults,
          };
        }
        out.set(c.id, fig);
      }
    }),
  );
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(unavailable(`no answer within ${ms} ms`)), ms).unref())]);
}
