// The parts of the one log line each CRI call gets, shared by vmlet's own handlers
// (src/cri/rpc.ts) and the calls forwarded to the downstream CRI (src/proxy/backends.ts).
import { status as Status } from '@grpc/grpc-js';

/**
 * Calls the kubelet makes every few seconds: logged at debug so an idle node's log is not a
 * stream of polls. Every other call is logged at info; failures at warn/error.
 */
const POLLED: ReadonlySet<string> = new Set([
  'Version', 'Status', 'ListPodSandbox', 'PodSandboxStatus', 'ListContainers', 'ContainerStatus',
  'ListImages', 'ImageStatus', 'ImageFsInfo', 'ContainerStats', 'ListContainerStats', 'PodSandboxStats',
  'ListPodSandboxStats', 'ListMetricDescriptors', 'ListPodSandboxMetrics', 'RuntimeConfig',
  'ExecSync', // exec probes: every period, for every probed pod
]);

/** Whether `method` is one of the calls the kubelet polls (logged at debug). */
export function isPolled(method: string): boolean {
  return POLLED.has(method);
}

/** Ids worth having on the log line, taken from whichever request fields carry them. */
export function requestIds(req: unknown): Record<string, string> {
  const ids: Record<string, string> = {};
  if (!req || typeof req !== 'object') return ids;
  const r = req as Record<string, unknown>;
  if (typeof r.pod_sandbox_id === 'string' && r.pod_sandbox_id) ids.podSandboxId = r.pod_sandbox_id;
  if (typeof r.container_id === 'string' && r.container_id) ids.containerId = r.container_id;
  const meta = (r.config as { metadata?: { name?: string; namespace?: string } } | undefined)?.metadata;
  if (meta?.name) ids.name = meta.name;
  if (meta?.namespace) ids.namespace = meta.namespace;
  return ids;
}

/** The status code's name for the log line ("NOT_FOUND"), or its number when unknown. */
export function codeName(code: Status): string {
  return Status[code] ?? String(code);
}
