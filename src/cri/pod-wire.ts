// Internal pod/container records → CRI messages, and the List* filters.
import type { ContainerRecord, SandboxRecord } from '../pod/records.js';
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

/** What the status needs of the pod's network (the PodManager's network state has it). */
export interface PodAddresses {
  ips: readonly { family: 4 | 6; address: string }[];
}

export function wirePodSandboxStatus(s: SandboxRecord, net: PodAddresses | undefined): PodSandboxStatus {
  // IPv4 first, as the kubelet takes `ip` as the primary pod IP; the rest (dual stack) follow.
  const ips = [...(net?.ips ?? [])].sort((a, b) => a.family - b.family).map((i) => i.address);
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

function labelsMatch(labels: Record<string, string> | undefined, selector: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if (labels?.[k] !== v) return false;
  return true;
}

export function sandboxMatches(s: SandboxRecord, f: PodSandboxFilter__Output | null): boolean {
  if (!f) return true;
  if (f.id && !s.id.startsWith(f.id)) return false;
  if (f.state && SANDBOX_STATE[s.state] !== f.state.state) return false;
  return labelsMatch(s.config.labels, f.label_selector);
}

export function containerMatches(c: ContainerRecord, f: ContainerFilter__Output | null): boolean {
  if (!f) return true;
  if (f.id && !c.id.startsWith(f.id)) return false;
  if (f.pod_sandbox_id && !c.sandboxId.startsWith(f.pod_sandbox_id)) return false;
  if (f.state && CONTAINER_STATE[c.state] !== f.state.state) return false;
  return labelsMatch(c.config.labels, f.label_selector);
}
