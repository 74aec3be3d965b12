// Wraps every RPC the same way: time it, log one line (method, duration, status code, ids),
// map errors to a gRPC status. Handlers below this layer just return or throw.
import {
  status as Status,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type handleUnaryCall,
  type handleServerStreamingCall,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import { codeName, toServiceError } from './status.js';

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

function logResult(log: Logger, method: string, started: number, req: unknown, err?: unknown): void {
  const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
  const fields: Record<string, unknown> = { rpc: method, durationMs, ...requestIds(req) };
  if (!err) {
    fields.code = 'OK';
    if (POLLED.has(method)) log.debug(fields, 'rpc');
    else log.info(fields, 'rpc');
    return;
  }
  const se = toServiceError(err);
  fields.code = codeName(se.code);
  fields.error = se.details;
  if (se.code === Status.INTERNAL || se.code === Status.UNKNOWN) log.error(fields, 'rpc');
  else log.warn(fields, 'rpc');
}

export function unary<Req, Res>(log: Logger, method: string, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = performance.now();
    let p: Promise<Res>;
    try {
      p = fn(call.request, call);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (res) => {
        logResult(log, method, started, call.request);
        callback(null, res);
      },
      (err: unknown) => {
        logResult(log, method, started, call.request, err);
        callback(toServiceError(err));
      },
    );
  };
}

export function unimplementedError(method: string, service: string): VmletError {
  return new VmletError('unimplemented', `vmlet does not implement ${service}/${method} yet`);
}

/**
 * Completes `impl` so every method of the service is registered: those without a handler
 * answer UNIMPLEMENTED naming themselves (unary and server-streaming alike).
 */
export function withUnimplemented(
  log: Logger,
  serviceName: string,
  definition: ServiceDefinition,
  impl: UntypedServiceImplementation,
): UntypedServiceImplementation {
  const full: UntypedServiceImplementation = { ...impl };
  for (const [method, def] of Object.entries(definition)) {
    if (full[method]) continue;
    if (def.responseStream && !def.requestStream) {
      const h: handleServerStreamingCall<unknown, unknown> = (call) => {
        const started = performance.now();
        const err = unimplementedError(method, serviceName);
        logResult(log, method, started, call.request, err);
        call.emit('error', toServiceError(err));
      };
      full[method] = h;
    } else {
      full[method] = unary(log, method, async () => {
        throw unimplementedError(method, serviceName);
      });
    }
  }
  return full;
}
