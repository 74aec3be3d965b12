// The one label matcher and the List* filters built on it (src/pod/filter.ts, container-list.ts),
// applied to the wire filters as ListPodSandbox and ListContainers apply them (cri/pod-wire.ts).
import { describe, expect, it } from 'vitest';
import { labelsMatch, recordMatches } from '../../src/pod/filter.js';
import { containerMatches } from '../../src/pod/container-list.js';
import { containerFilter, NO_MATCH, sandboxFilter } from '../../src/cri/pod-wire.js';
import type { ContainerRecord, SandboxRecord } from '../../src/pod/records.js';
import type { ContainerFilter__Output } from '../../src/gen/runtime/v1/ContainerFilter.js';
import type { PodSandboxFilter__Output } from '../../src/gen/runtime/v1/PodSandboxFilter.js';

describe('labelsMatch', () => {
  it('selects everything with no selector or an empty one', () => {
    expect(labelsMatch({ app: 'web' }, undefined)).toBe(true);
    expect(labelsMatch({ app: 'web' }, {})).toBe(true);
    expect(labelsMatch(undefined, {})).toBe(true);
  });

  it('needs every key of the selector with the same value (ANDed); extra labels do not matter', () => {
    const labels = { app: 'web', tier: 'front', 'io.kubernetes.pod.namespace': 'default' };
    expect(labelsMatch(labels, { app: 'web' })).toBe(true);
    expect(labelsMatch(labels, { app: 'web', tier: 'front' })).toBe(true);
    expect(labelsMatch(labels, { app: 'web', tier: 'back' })).toBe(false);
    expect(labelsMatch(labels, { app: 'db' })).toBe(false);
    expect(labelsMatch(labels, { missing: '' })).toBe(false);
    expect(labelsMatch(undefined, { app: 'web' })).toBe(false);
    expect(labelsMatch({ app: '' }, { app: '' })).toBe(true);
  });
});

const SB = 'a'.repeat(64);
const CT = 'c'.repeat(64);

const sandbox = (state: SandboxRecord['state']): SandboxRecord =>
  ({ id: SB, config: { metadata: null, labels: { app: 'web' } }, runtimeHandler: 'vmlet', state, createdAt: '1' }) as unknown as SandboxRecord;
const container = (state: ContainerRecord['state']): ContainerRecord =>
  ({ id: CT, sandboxId: SB, config: { metadata: null, labels: { role: 'vm' } }, state }) as unknown as ContainerRecord;

function podFilter(f: Partial<PodSandboxFilter__Output>): PodSandboxFilter__Output {
  return { id: '', state: null, label_selector: {}, ...f };
}
function ctrFilter(f: Partial<ContainerFilter__Output>): ContainerFilter__Output {
  return { id: '', state: null, pod_sandbox_id: '', label_selector: {}, ...f };
}

/** A wire filter applied as ListPodSandbox applies it. */
function listsSandbox(s: SandboxRecord, f: PodSandboxFilter__Output | null): boolean {
  const filter = sandboxFilter(f);
  return filter !== NO_MATCH && recordMatches(s, filter);
}
function listsContainer(c: ContainerRecord, f: ContainerFilter__Output | null): boolean {
  const filter = containerFilter(f);
  return filter !== NO_MATCH && containerMatches(c, filter);
}

describe('ListPodSandbox filter', () => {
  it('matches the id by prefix, the state by its CRI name, and the labels', () => {
    const s = sandbox('ready');
    expect(listsSandbox(s, null)).toBe(true);
    expect(listsSandbox(s, podFilter({}))).toBe(true);
    expect(listsSandbox(s, podFilter({ id: SB.slice(0, 6) }))).toBe(true);
    expect(listsSandbox(s, podFilter({ id: 'b' }))).toBe(false);
    expect(listsSandbox(s, podFilter({ state: { state: 'SANDBOX_READY' } }))).toBe(true);
    expect(listsSandbox(s, podFilter({ state: { state: 'SANDBOX_NOTREADY' } }))).toBe(false);
    expect(listsSandbox(sandbox('notready'), podFilter({ state: { state: 'SANDBOX_NOTREADY' } }))).toBe(true);
    expect(listsSandbox(s, podFilter({ label_selector: { app: 'web' } }))).toBe(true);
    expect(listsSandbox(s, podFilter({ label_selector: { app: 'db' } }))).toBe(false);
  });

  it('matches nothing for a state value vmlet has no name for', () => {
    const f = podFilter({ state: { state: 7 as unknown as 'SANDBOX_READY' } });
    expect(sandboxFilter(f)).toBe(NO_MATCH);
    expect(listsSandbox(sandbox('ready'), f)).toBe(false);
  });
});

describe('ListContainers filter', () => {
  it('matches ids by prefix, the state by its CRI name, and the labels', () => {
    const c = container('running');
    expect(listsContainer(c, null)).toBe(true);
    expect(listsContainer(c, ctrFilter({ id: CT.slice(0, 3), pod_sandbox_id: SB.slice(0, 3) }))).toBe(true);
    expect(listsContainer(c, ctrFilter({ pod_sandbox_id: 'b' }))).toBe(false);
    expect(listsContainer(c, ctrFilter({ state: { state: 'CONTAINER_RUNNING' } }))).toBe(true);
    expect(listsContainer(c, ctrFilter({ state: { state: 'CONTAINER_CREATED' } }))).toBe(false);
    expect(listsContainer(container('unknown'), ctrFilter({ state: { state: 'CONTAINER_UNKNOWN' } }))).toBe(true);
    expect(listsContainer(c, ctrFilter({ label_selector: { role: 'vm' } }))).toBe(true);
    expect(listsContainer(c, ctrFilter({ label_selector: { role: 'vm', app: 'x' } }))).toBe(false);
    expect(listsContainer(c, ctrFilter({ state: { state: 9 as unknown as 'CONTAINER_RUNNING' } }))).toBe(false);
  });
});
