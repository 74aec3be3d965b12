// The converged node: one CRI endpoint for the kubelet. VM pods are vmlet's own; every other pod
// is forwarded to the node's CRI runtime (the "downstream", e.g. containerd). Routing is decided
// once per object: RunPodSandbox by handler, then every call naming a sandbox or container id
// by who knows the id (vmlet's PodManager is rebuilt from disk at start, so ownership survives
// restarts with no extra state). List calls ask both and merge. Images: images.ts. See
// docs/design.md and docs/converged-images.md.
import { status as Status, type UntypedServiceImplementation, type handleServerStreamingCall, type handleUnaryCall } from '@grpc/grpc-js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { PodManager } from '../pod/manager.js';
import { podOwnership, type Ownership } from './ownership.js';
import { connectDownstream, type Downstream } from './downstream.js';
import { arr, backends, str, type GrpcError, type Req, type Res } from './backends.js';
import { routedImages } from './images.js';

export { podOwnership, type Ownership, type PodMetadata } from './ownership.js';

export interface RouterOptions {
  log: Logger;
  /** vmlet's own implementations (src/cri/runtime-service.ts, image-service.ts). */
  own: { runtime: UntypedServiceImplementation; image: UntypedServiceImplementation };
  owner: Ownership;
  downstream: Downstream;
}

export interface CriServices {
  runtime: UntypedServiceImplementation;
  image: UntypedServiceImplementation;
  /** Closes the downstream connection (a no-op without one). */
  close(): void;
}

/**
 * What src/cri/server.ts registers: vmlet's own services as they are when the config names no
 * downstream, else routed between vmlet and the downstream.
 */
export function converge(log: Logger, cfg: Config, pods: PodManager, own: { runtime: UntypedServiceImplementation; image: UntypedServiceImplementation }): CriServices {
  if (!cfg.downstream) return { ...own, close: () => undefined };
  const downstream = connectDownstream(cfg.downstream);
  log.info({ downstream: cfg.downstream, handlers: cfg.handlers, defaultRuntime: cfg.defaultRuntime }, 'converged node: pods of other handlers go to the downstream CRI');
  const routed = routedServices({ log, own, owner: podOwnership(pods, cfg), downstream });
  return { ...routed, close: () => downstream.close() };
}

/** Merged answers: the list field of each List* response. */
const RUNTIME_LISTS: Record<string, string> = {
  ListPodSandbox: 'items',
  ListContainers: 'containers',
  ListContainerStats: 'stats',
  ListPodSandboxStats: 'stats',
  ListMetricDescriptors: 'descriptors',
  ListPodSandboxMetrics: 'pod_metrics',
};

const BY_SANDBOX = ['StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'CreateContainer', 'PortForward', 'PodSandboxStats', 'UpdatePodSandboxResources'];
const BY_CONTAINER = [
  'StartContainer', 'StopContainer', 'RemoveContainer', 'ContainerStatus', 'UpdateContainerResources', 'ReopenContainerLog',
  'ExecSync', 'Exec', 'Attach', 'ContainerStats', 'CheckpointContainer',
];

export function routedServices(opts: RouterOptions): { runtime: UntypedServiceImplementation; image: UntypedServiceImplementation } {
  const { log, own, owner, downstream } = opts;
  const b = backends(log, own, downstream);

  const concat = (field: string) => (mine: Res, theirs: Res): Res => ({
    ...mine,
    [field]: [...((mine[field] as unknown[]) ?? []), ...((theirs[field] as unknown[]) ?? [])],
  });

  // ---- RuntimeService ----
  const runtime: UntypedServiceImplementation = { ...own.runtime };

  runtime.RunPodSandbox = b.route('runtime', 'RunPodSandbox', (call) => {
    const h = str(call.request.runtime_handler);
    return owner.isVmHandler(h) ? 'vmlet' : 'downstream';
  });
  for (const m of BY_SANDBOX) {
    runtime[m] = b.route('runtime', m, (call) => (owner.ownsSandbox(str(call.request.pod_sandbox_id)) ? 'vmlet' : 'downstream'));
  }
  for (const m of BY_CONTAINER) {
    runtime[m] = b.route('runtime', m, (call) => (owner.ownsContainer(str(call.request.container_id)) ? 'vmlet' : 'downstream'));
  }
  for (const [m, field] of Object.entries(RUNTIME_LISTS)) runtime[m] = b.both('runtime', m, concat(field));
  runtime.Status = statusHandler();
  for (const m of NOT_MERGED_STREAMS) runtime[m] = notMerged(log, m);
  // The pod CIDR concerns both; Version and RuntimeConfig answer as vmlet (own.runtime).
  runtime.UpdateRuntimeConfig = b.both('runtime', 'UpdateRuntimeConfig', (mine) => mine);

  /** Status: RuntimeReady/NetworkReady only when both say so; a silent downstream is not ready. */
  function statusHandler(): handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      const started = performance.now();
      const downP = b.callDownstream('runtime', 'Status', call).then(
        (res) => (b.logForwarded('Status', started, call.request), res),
        (err: unknown) => {
          const e = b.downstreamError('Status', err);
          b.logForwarded('Status', started, call.request, e);
          return e;
        },
      );
      Promise.all([b.callOwn('runtime', 'Status', call), downP]).then(
        ([mine, theirs]) => callback(null, mergeStatus(mine, theirs, downstream.endpoint)),
        (err: unknown) => callback(err as GrpcError),
      );
    };
  }

  return { runtime, image: { ...routedImages(b, owner), StreamImages: notMerged(log, 'StreamImages') } };
}

/** vmlet's own server streams, which would leave out the downstream's pods on a converged node. */
const NOT_MERGED_STREAMS = ['GetContainerEvents', 'StreamPodSandboxes', 'StreamContainers', 'StreamContainerStats', 'StreamPodSandboxStats'];

/**
 * A server stream on a converged node: vmlet's alone would leave out the downstream's pods (a
 * kubelet on Evented PLEG relists only every few minutes); UNIMPLEMENTED keeps the kubelet on
 * its List* calls and relists, which are merged, until the two streams are.
 */
function notMerged(log: Logger, method: string): handleServerStreamingCall<Req, unknown> {
  return (call) => {
    log.info({ rpc: method, code: 'UNIMPLEMENTED' }, 'rpc');
    call.emit('error', {
      code: Status.UNIMPLEMENTED,
      details: `${method}: on a node that forwards pods to a downstream runtime, vmlet does not merge its stream with the downstream's yet; use the List* call (the kubelet relists instead)`,
    });
  };
}

interface Condition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

const REQUIRED_CONDITIONS = ['RuntimeReady', 'NetworkReady'];

/**
 * vmlet's Status with the downstream's folded in: a condition is true only when it is true on
 * both sides (a condition the downstream does not report counts as true there, except the two
 * the kubelet requires); the reason and message say which backend is not ready. A downstream
 * that does not answer makes both required conditions false. Handlers: vmlet's, then the
 * downstream's.
 */
export function mergeStatus(mine: Res, theirs: Res | { code: Status; details: string }, endpoint: string): Res {
  const where = `downstream ${endpoint}`;
  const ownConds = arr((mine.status as { conditions?: unknown } | null)?.conditions) as Condition[];
  const failed = 'code' in theirs && typeof theirs.code === 'number' && 'details' in theirs;
  const theirConds = failed ? [] : (arr(((theirs as Res).status as { conditions?: unknown } | null)?.conditions) as Condition[]);
  const types = [...new Set([...ownConds.map((c) => c.type), ...REQUIRED_CONDITIONS, ...theirConds.map((c) => c.type)])];
  const conditions = types.map((type): Condition => {
    const a = ownConds.find((c) => c.type === type);
    const b = theirConds.find((c) => c.type === type);
    if (failed && REQUIRED_CONDITIONS.includes(type)) {
      const msg = `${where} does not answer Status: ${(theirs as { details: string }).details}`;
      if (a && !a.status) return { type, status: false, reason: a.reason, message: `vmlet: ${a.message}; ${msg}` };
      return { type, status: false, reason: 'DownstreamUnavailable', message: msg };
    }
    const aOk = a ? a.status : true;
    const bOk = b ? b.status : !REQUIRED_CONDITIONS.includes(type) || failed;
    if (aOk && bOk) return { type, status: true, reason: '', message: '' };
    const parts: string[] = [];
    if (!aOk) parts.push(`vmlet: ${a?.reason ? `${a.reason}: ` : ''}${a?.message ?? ''}`);
    if (!bOk) parts.push(`${where}: ${b ? `${b.reason ? `${b.reason}: ` : ''}${b.message}` : `no ${type} condition`}`);
    const reason = !aOk ? (a?.reason || 'VmletNotReady') : (b?.reason || 'DownstreamNotReady');
    return { type, status: false, reason, message: parts.join('; ') };
  });
  const handlers = [...arr(mine.runtime_handlers), ...(failed ? [] : arr((theirs as Res).runtime_handlers))] as { name: string }[];
  const seen = new Set<string>();
  const runtime_handlers = handlers.filter((h) => (seen.has(h.name) ? false : (seen.add(h.name), true)));
  const info: Record<string, string> = { ...((mine.info as Record<string, string>) ?? {}) };
  if (!failed) for (const [k, v] of Object.entries(((theirs as Res).info as Record<string, string>) ?? {})) info[`downstream.${k}`] = v;
  return { ...mine, status: { conditions }, runtime_handlers, info };
}
