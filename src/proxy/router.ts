// The converged node: one CRI endpoint for the kubelet. VM pods are vmlet's own; every other pod
// is forwarded to the node's CRI runtime (the "downstream", e.g. containerd). Routing is decided
// once per object: RunPodSandbox by handler, then every call naming a sandbox or container id
// by who knows the id (vmlet's PodManager is rebuilt from disk at start, so ownership survives
// restarts with no extra state). List calls ask both and merge. See docs/design.md.
import {
  Metadata,
  status as Status,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
  type handleUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { PodManager } from '../pod/manager.js';
import { codeName, isPolled, requestIds } from '../grpc/rpc-log.js';
import { connectDownstream, isServiceError, type CriService, type Downstream } from './downstream.js';

/** What the router needs to know about vmlet's side. */
export interface Ownership {
  ownsSandbox(id: string): boolean;
  ownsContainer(id: string): boolean;
  /** Is a pod with this RuntimeClass handler a VM pod ('' = no RuntimeClass)? */
  isVmHandler(handler: string): boolean;
  /** Is this pod (by its sandbox metadata) one of vmlet's sandboxes? */
  ownsPodConfig(meta: PodMetadata | null | undefined): boolean;
}

export interface PodMetadata {
  name?: string;
  uid?: string;
  namespace?: string;
}

/**
 * Ownership from the PodManager and the handler config. An ambiguous id prefix counts as
 * vmlet's, so vmlet's own handler answers it (InvalidArgument naming the prefix).
 */
export function podOwnership(pods: PodManager, cfg: { handlers: string[]; defaultRuntime: boolean }): Ownership {
  const owns = (lookup: () => unknown): boolean => {
    try {
      return lookup() !== undefined;
    } catch {
      return true;
    }
  };
  return {
    ownsSandbox: (id) => owns(() => pods.sandbox(id)),
    ownsContainer: (id) => owns(() => pods.container(id)),
    isVmHandler: (h) => cfg.handlers.includes(h) || (h === '' && cfg.defaultRuntime),
    ownsPodConfig: (meta) => {
      if (!meta?.uid) return false;
      for (const s of pods.sandboxes.values()) {
        const m = s.config.metadata;
        if (m && m.uid === meta.uid && m.name === meta.name && m.namespace === meta.namespace) return true;
      }
      return false;
    },
  };
}

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

type Req = Record<string, unknown>;
type Call = ServerUnaryCall<Req, unknown>;
type Res = Record<string, unknown>;
type Route = 'vmlet' | 'downstream';


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
/** Stop/Remove are idempotent in CRI: NotFound from the downstream is success. */
const IDEMPOTENT = new Set(['StopPodSandbox', 'RemovePodSandbox', 'StopContainer', 'RemoveContainer']);

/** A gRPC error to send back: the same code, details and trailers. */
function grpcError(code: Status, details: string, metadata = new Metadata()) {
  return { code, details, message: details, metadata };
}

export function routedServices(opts: RouterOptions): { runtime: UntypedServiceImplementation; image: UntypedServiceImplementation } {
  const { log, own, owner, downstream } = opts;
  const where = `downstream CRI ${downstream.endpoint}`;

  function logForwarded(method: string, started: number, req: Req, err?: { code: Status; details: string }): void {
    const fields: Record<string, unknown> = {
      rpc: method,
      backend: 'downstream',
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      ...requestIds(req),
      code: err ? codeName(err.code) : 'OK',
    };
    if (err) fields.error = err.details;
    if (err) log.warn(fields, 'rpc');
    else if (isPolled(method)) log.debug(fields, 'rpc');
    else log.info(fields, 'rpc');
  }

  /** The downstream's error as the caller sees it; a transport failure names the downstream. */
  function downstreamError(method: string, err: unknown) {
    if (!isServiceError(err)) return grpcError(Status.INTERNAL, `${where}: ${method}: ${(err as Error).message}`);
    if (err.code === Status.UNAVAILABLE) return grpcError(Status.UNAVAILABLE, `${where} is unavailable: ${err.details}`, err.metadata);
    return grpcError(err.code, err.details, err.metadata);
  }

  /** The call, as is, on the downstream: metadata passed on, deadline kept. */
  function callDownstream<R = Res>(service: CriService, method: string, call: Call): Promise<R> {
    return downstream.call<R>(service, method, call.request, { metadata: call.metadata, deadline: call.getDeadline() });
  }

  /** Forwards a call and answers with the downstream's answer or error, unchanged. */
  function forward(service: CriService, method: string, call: Call, callback: sendUnaryData<unknown>): void {
    const started = performance.now();
    callDownstream(service, method, call).then(
      (res) => {
        logForwarded(method, started, call.request);
        callback(null, res);
      },
      (err: unknown) => {
        if (IDEMPOTENT.has(method) && isServiceError(err) && err.code === Status.NOT_FOUND) {
          logForwarded(method, started, call.request);
          callback(null, {});
          return;
        }
        const e = downstreamError(method, err);
        logForwarded(method, started, call.request, e);
        callback(e);
      },
    );
  }

  /** vmlet's own handler for the call (it logs the call itself) as a promise. */
  function callOwn(service: CriService, method: string, call: Call): Promise<Res> {
    const h = own[service][method] as handleUnaryCall<Req, unknown> | undefined;
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- a gRPC status object: the callback takes it as is
    if (!h) return Promise.reject(grpcError(Status.UNIMPLEMENTED, `vmlet has no ${method}`));
    return new Promise((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the handler's gRPC status, passed on
      h(call, (err, res) => (err ? reject(err) : resolve((res ?? {}) as Res)));
    });
  }

  /** The downstream's answer for a merged call; any failure names the downstream (UNAVAILABLE). */
  async function downstreamPart(service: CriService, method: string, call: Call): Promise<Res | 'unimplemented'> {
    const started = performance.now();
    try {
      const res = await callDownstream(service, method, call);
      logForwarded(method, started, call.request);
      return res;
    } catch (err) {
      if (isServiceError(err) && err.code === Status.UNIMPLEMENTED) {
        logForwarded(method, started, call.request, grpcError(err.code, err.details));
        return 'unimplemented';
      }
      const why = isServiceError(err) ? `${codeName(err.code)}: ${err.details}` : (err as Error).message;
      const e = grpcError(Status.UNAVAILABLE, `${where} failed ${method}: ${why}`);
      logForwarded(method, started, call.request, e);
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- a gRPC status object: the callback takes it as is
      throw e;
    }
  }

  async function ownPart(service: CriService, method: string, call: Call): Promise<Res | 'unimplemented'> {
    try {
      return await callOwn(service, method, call);
    } catch (err) {
      if (isServiceError(err) && err.code === Status.UNIMPLEMENTED) return 'unimplemented';
      throw err;
    }
  }

  /**
   * Both backends at once, then `merge`. A side that does not implement the call contributes
   * nothing; when neither does, UNIMPLEMENTED. Any other failure fails the call.
   */
  function both(service: CriService, method: string, merge: (mine: Res, theirs: Res) => Res): handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      const ownP = ownPart(service, method, call);
      const downP = downstreamPart(service, method, call);
      Promise.all([ownP, downP]).then(
        ([mine, theirs]) => {
          if (mine === 'unimplemented' && theirs === 'unimplemented') callback(grpcError(Status.UNIMPLEMENTED, `neither vmlet nor ${where} implements ${method}`));
          else if (mine === 'unimplemented') callback(null, theirs);
          else if (theirs === 'unimplemented') callback(null, mine);
          else callback(null, merge(mine, theirs));
        },
        (err: unknown) => callback(err as ReturnType<typeof grpcError>),
      );
      // Both are awaited by Promise.all; keep a second rejection from being unhandled.
      ownP.catch(() => undefined);
      downP.catch(() => undefined);
    };
  }

  const concat = (field: string) => (mine: Res, theirs: Res): Res => ({
    ...mine,
    [field]: [...((mine[field] as unknown[]) ?? []), ...((theirs[field] as unknown[]) ?? [])],
  });

  function route(service: CriService, method: string, pick: (call: Call) => Route): handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      let to: Route;
      try {
        to = pick(call);
      } catch {
        to = 'vmlet';
      }
      if (to === 'vmlet') (own[service][method] as handleUnaryCall<Req, unknown>)(call, callback);
      else forward(service, method, call, callback);
    };
  }

  // ---- RuntimeService ----
  const runtime: UntypedServiceImplementation = { ...own.runtime };
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');

  runtime.RunPodSandbox = route('runtime', 'RunPodSandbox', (call) => {
    const h = str(call.request.runtime_handler);
    return owner.isVmHandler(h) ? 'vmlet' : 'downstream';
  });
  for (const m of BY_SANDBOX) {
    runtime[m] = route('runtime', m, (call) => (owner.ownsSandbox(str(call.request.pod_sandbox_id)) ? 'vmlet' : 'downstream'));
  }
  for (const m of BY_CONTAINER) {
    runtime[m] = route('runtime', m, (call) => (owner.ownsContainer(str(call.request.container_id)) ? 'vmlet' : 'downstream'));
  }
  for (const [m, field] of Object.entries(RUNTIME_LISTS)) runtime[m] = both('runtime', m, concat(field));
  runtime.Status = statusHandler();
  // The pod CIDR concerns both; Version and RuntimeConfig answer as vmlet (own.runtime).
  runtime.UpdateRuntimeConfig = both('runtime', 'UpdateRuntimeConfig', (mine) => mine);

  // ---- ImageService ----
  const image: UntypedServiceImplementation = { ...own.image };

  image.PullImage = route('image', 'PullImage', (call) => {
    const spec = call.request.image as { runtime_handler?: string } | null;
    const handler = str(spec?.runtime_handler);
    if (handler !== '') return owner.isVmHandler(handler) ? 'vmlet' : 'downstream';
    const meta = (call.request.sandbox_config as { metadata?: PodMetadata | null } | null)?.metadata;
    if (meta?.uid) return owner.ownsPodConfig(meta) ? 'vmlet' : 'downstream';
    return owner.isVmHandler('') ? 'vmlet' : 'downstream';
  });
  image.ImageStatus = both('image', 'ImageStatus', (mine, theirs) => (mine.image ? mine : theirs));
  image.ListImages = both('image', 'ListImages', (mine, theirs) => ({ images: mergeImages(mine.images, theirs.images) }));
  image.ImageFsInfo = both('image', 'ImageFsInfo', (mine, theirs) => ({
    // The downstream's first: the kubelet reads the first entry as "the" image filesystem,
    // and container images are the bulk of a converged node's images.
    image_filesystems: [...arr(theirs.image_filesystems), ...arr(mine.image_filesystems)],
    container_filesystems: [...arr(theirs.container_filesystems), ...arr(mine.container_filesystems)],
  }));
  image.RemoveImage = removeImageHandler();

  /** Status: RuntimeReady/NetworkReady only when both say so; a silent downstream is not ready. */
  function statusHandler(): handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      const started = performance.now();
      const downP = callDownstream('runtime', 'Status', call).then(
        (res) => (logForwarded('Status', started, call.request), res),
        (err: unknown) => {
          const e = downstreamError('Status', err);
          logForwarded('Status', started, call.request, e);
          return e;
        },
      );
      Promise.all([callOwn('runtime', 'Status', call), downP]).then(
        ([mine, theirs]) => callback(null, mergeStatus(mine, theirs, downstream.endpoint)),
        (err: unknown) => callback(err as ReturnType<typeof grpcError>),
      );
    };
  }

  /** Removes the image wherever it is; NotFound on a side counts as removed there. */
  function removeImageHandler(): handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      const notFoundIsOk = (p: Promise<unknown>) =>
        p.catch((err: unknown) => {
          if (isServiceError(err) && err.code === Status.NOT_FOUND) return {};
          throw err;
        });
      const started = performance.now();
      const downP = notFoundIsOk(callDownstream('image', 'RemoveImage', call)).then(
        (res) => (logForwarded('RemoveImage', started, call.request), res),
        (err: unknown) => {
          const e = downstreamError('RemoveImage', err);
          logForwarded('RemoveImage', started, call.request, e);
          // eslint-disable-next-line @typescript-eslint/only-throw-error -- a gRPC status object: the callback takes it as is
          throw e;
        },
      );
      const ownP = notFoundIsOk(callOwn('image', 'RemoveImage', call));
      Promise.all([ownP, downP]).then(
        () => callback(null, {}),
        (err: unknown) => callback(err as ReturnType<typeof grpcError>),
      );
      ownP.catch(() => undefined);
      downP.catch(() => undefined);
    };
  }

  return { runtime, image };
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

interface WireImage {
  id: string;
  repo_tags?: string[];
  repo_digests?: string[];
}

/** Both backends' images; one image known to both (same id) is listed once, tags united. */
export function mergeImages(mine: unknown, theirs: unknown): unknown[] {
  const out = new Map<string, WireImage>();
  for (const img of [...arr(mine), ...arr(theirs)] as WireImage[]) {
    const seen = out.get(img.id);
    if (!seen) {
      out.set(img.id, img);
      continue;
    }
    const union = (a?: string[], b?: string[]) => [...new Set([...(a ?? []), ...(b ?? [])])];
    out.set(img.id, { ...seen, repo_tags: union(seen.repo_tags, img.repo_tags), repo_digests: union(seen.repo_digests, img.repo_digests) });
  }
  return [...out.values()];
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
