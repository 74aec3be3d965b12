// VM pods and their containers counted by state and kind, read-only from the PodManager's maps:
// what the vmlet_pods and vmlet_containers gauges show at each scrape (src/metrics/vmlet.ts).
// Every known state and kind is listed, at 0 when empty, so a series never vanishes mid-graph.
import type { PodCounts, StateCount } from '../metrics/vmlet.js';
import type { ContainerRecord, ContainerState, SandboxRecord, SandboxState } from './records.js';
import { POD_KIND_ANNOTATION } from '../vm/annotations.js';

const SANDBOX_STATES: readonly SandboxState[] = ['ready', 'notready'];
const SANDBOX_KINDS = ['vm', 'sandboxed', 'undecided'] as const;
const CONTAINER_STATES: readonly ContainerState[] = ['created', 'running', 'exited', 'unknown'];
const CONTAINER_KINDS = ['vm', 'sandboxed'] as const;

function count<R>(records: Iterable<R>, states: readonly string[], kinds: readonly string[], of: (r: R) => [string, string]): StateCount[] {
  const n = new Map<string, number>();
  for (const r of records) {
    const [state, kind] = of(r);
    n.set(`${state}/${kind}`, (n.get(`${state}/${kind}`) ?? 0) + 1);
  }
  const out: StateCount[] = [];
  for (const state of states) for (const kind of kinds) out.push({ state, kind, count: n.get(`${state}/${kind}`) ?? 0 });
  // A state or kind a newer record carries still shows, rather than being dropped.
  for (const [key, c] of n) {
    const [state = '', kind = ''] = key.split('/');
    if (!states.includes(state) || !kinds.includes(kind)) out.push({ state, kind, count: c });
  }
  return out;
}

export function podCounts(m: { sandboxes: ReadonlyMap<string, SandboxRecord>; containers: ReadonlyMap<string, ContainerRecord> }): PodCounts {
  return {
    pods: count(m.sandboxes.values(), SANDBOX_STATES, SANDBOX_KINDS, (s) => [s.state, kindOf(s)]),
    containers: count(m.containers.values(), CONTAINER_STATES, CONTAINER_KINDS, (c) => [c.state, c.kind ?? 'vm']),
  };
}

/** A pod annotated sandboxed is one while its VM boots (after RunPodSandbox answered), before the record says so. */
const kindOf = (s: SandboxRecord): string => s.kind ?? (s.config.annotations?.[POD_KIND_ANNOTATION] === 'sandboxed' ? 'sandboxed' : 'undecided');
