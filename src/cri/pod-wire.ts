// Internal pod/container records → CRI messages, and the List* filters → vmlet's (pod/*-list.ts).
import type { ContainerRecord, ContainerState, SandboxRecord, SandboxState } from '../pod/records.js';
import type { ContainerFilter } from '../pod/container-list.js';
import type { SandboxFilter } from '../pod/sandbox-list.js';
import type { PodSandbox } from '../gen/runtime/v1/PodSandbox.js';
import type { PodSandboxStatus } from '../gen/runtime/v1/PodSandboxStatus.js';
import type { Container } from '../gen/runtime/v1/Container.js';
import type { ContainerStatus } from '../gen/runtime/v1/ContainerStatus.js';
import type { PodSandboxFilter__Output } from '../gen/runtime/v1/PodSandboxFilter.js';
import type { ContainerFilter__Output } from '../gen/runtime/v1/ContainerFilter.js';

const SANDBOX_STATE = { ready: 'SANDBOX_READY', notready: 'SANDBOX_NOTREADY' } as const;
const CONTAINER_STATE = { created: 'CONTAINER_CREATED', running: 'CONTAINER_RUNNING', exited: 'CONTAINER_EXITED', unknown: 'CONTAINER_UNKNOWN' } as const;

export function wirePodSandbox(s: SandboxRecord): PodSandbox {
  return {
    id: s.id,
    metadata: s.config.metadata,
    state: SANDBOX_STATE[s.state],
    created_at: s.createdAt,
    labels: s.config.labels ?? {},
    annotations: s.config.annotations ?? {},
    runtime_handler: s.runtimeHandler,
  };
}

/** The pod's IPs (pod/sandbox-status.ts has them from its network state). */
export type PodAddresses = readonly { family: 4 | 6; address: string }[];

export function wirePodSandboxStatus(s: SandboxRecord, addresses: PodAddresses): PodSandboxStatus {
  // IPv4 first, as the kubelet takes `ip` as the primary pod IP; the rest (dual stack) follow.
  const ips = [...addresses].sort((a, b) => a.family - b.family).map((i) => i.address);
  return {
    ...wirePodSandbox(s),
    network: { ip: ips[0] ?? '', additional_ips: ips.slice(1).map((ip) => ({ ip })) },
    linux: { namespaces: { options: s.config.linux?.security_context?.namespace_options ?? null } },
  };
}

export function wireContainer(c: ContainerRecord): Container {
  return {
    id: c.id,
    pod_sandbox_id: c.sandboxId,
    metadata: c.config.metadata,
    image: { image: c.image, annotations: c.config.image?.annotations ?? {} },
    image_ref: c.imageId,
    image_id: c.imageId,
    state: CONTAINER_STATE[c.state],
    created_at: c.createdAt,
    labels: c.config.labels ?? {},
    annotations: c.config.annotations ?? {},
  };
}

export function wireContainerStatus(c: ContainerRecord): ContainerStatus {
  return {
    id: c.id,
    metadata: c.config.metadata,
    state: CONTAINER_STATE[c.state],
    created_at: c.createdAt,
    started_at: c.startedAt,
    finished_at: c.finishedAt,
    exit_code: c.exitCode,
    image: { image: c.image, annotations: c.config.image?.annotations ?? {} },
    image_ref: c.imageId,
    image_id: c.imageId,
    reason: c.reason,
    message: c.message,
    labels: c.config.labels ?? {},
    annotations: c.config.annotations ?? {},
    mounts: c.config.mounts ?? [],
    log_path: c.logPath,
    // The kubelet reads these back to confirm an in-place resize.
    resources: { linux: c.resources ?? c.config.linux?.resources ?? null },
  };
}

/** A filter that asks for a state vmlet has no name for (an enum value newer than proto/): no record is in it. */
export const NO_MATCH = 'no-match';

function stateOf<S extends string>(names: Record<S, string>, wire: string | number): S | typeof NO_MATCH {
  for (const [state, name] of Object.entries(names) as [S, string][]) if (name === wire) return state;
  return NO_MATCH;
}

export function sandboxFilter(f: PodSandboxFilter__Output | null): SandboxFilter | null | typeof NO_MATCH {
  if (!f) return null;
  const state = f.state ? stateOf<SandboxState>(SANDBOX_STATE, f.state.state) : undefined;
  if (state === NO_MATCH) return NO_MATCH;
  return { id: f.id, labelSelector: f.label_selector, ...(state ? { state } : {}) };
}

export function containerFilter(f: ContainerFilter__Output | null): ContainerFilter | null | typeof NO_MATCH {
  if (!f) return null;
  const state = f.state ? stateOf<ContainerState>(CONTAINER_STATE, f.state.state) : undefined;
  if (state === NO_MATCH) return NO_MATCH;
  return { id: f.id, podSandboxId: f.pod_sandbox_id, labelSelector: f.label_selector, ...(state ? { state } : {}) };
}
