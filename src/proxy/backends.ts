// The two backends of a converged node as the routing sees them: vmlet's own handlers (which log
// their own line) and the downstream CRI (a line per forwarded call, here), with the helpers
// every routed call is built from: forward as is, ask both and merge.
import {
  Metadata,
  status as Status,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
  type handleUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { codeName, isPolled, requestIds } from '../grpc/rpc-log.js';
import { isServiceError, type CriService, type Downstream } from './downstream.js';

export type Req = Record<string, unknown>;
export type Call = ServerUnaryCall<Req, unknown>;
export type Res = Record<string, unknown>;
export type Route = 'vmlet' | 'downstream';
export interface GrpcError {
  code: Status;
  details: string;
  message: string;
  metadata: Metadata;
}

/** Stop/Remove are idempotent in CRI: NotFound from the downstream is success. */
const IDEMPOTENT = new Set(['StopPodSandbox', 'RemovePodSandbox', 'StopContainer', 'RemoveContainer', 'RemoveImage']);

/** A gRPC error to send back: the same code, details and trailers. */
export function grpcError(code: Status, details: string, metadata = new Metadata()): GrpcError {
  return { code, details, message: details, metadata };
}

export function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export type Backends = ReturnType<typeof backends>;

export function backends(log: Logger, own: { runtime: UntypedServiceImplementation; image: UntypedServiceImplementation }, downstream: Downstream) {
  const where = `downstream CRI ${downstream.endpoint}`;

  function logForwarded(method: string, started: number, req: Req, err?: { code: Status; details: string }): void {
    const fields: Record<string, unknown> = {
      rpc: method,
      backend: 'downstream',
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      ...requestIds(req),
      code: err ? codeName(err.code) : 'OK',
    };
    const image = str((req.image as { image?: unknown } | null | undefined)?.image);
    if (image) fields.image = image;
    if (err) fields.error = err.details;
    if (err) log.warn(fields, 'rpc');
    else if (isPolled(method)) log.debug(fields, 'rpc');
    else log.info(fields, 'rpc');
  }

  /** The downstream's error as the caller sees it; a transport failure names the downstream. */
  function downstreamError(method: string, err: unknown): GrpcError {
    if (!isServiceError(err)) return grpcError(Status.INTERNAL, `${where}: ${method}: ${(err as Error).message}`);
    if (err.code === Status.UNAVAILABLE) return grpcError(Status.UNAVAILABLE, `${where} is unavailable: ${err.details}`, err.metadata);
    return grpcError(err.code, err.details, err.metadata);
  }

  /** The call, as is, on the downstream: metadata passed on, deadline kept. */
  function callDownstream<R = Res>(service: CriService, method: string, call: Call): Promise<R> {
    return downstream.call<R>(service, method, call.request, { metadata: call.metadata, deadline: call.getDeadline() });
  }

  /** The downstream call, logged; rejects with the caller-facing error (downstreamError). */
  async function loggedDownstream(service: CriService, method: string, call: Call): Promise<Res> {
    const started = performance.now();
    try {
      const res = await callDownstream(service, method, call);
      logForwarded(method, started, call.request);
      return res;
    } catch (err) {
      if (IDEMPOTENT.has(method) && isServiceError(err) && err.code === Status.NOT_FOUND) {
        logForwarded(method, started, call.request);
        return {};
      }
      const e = downstreamError(method, err);
      logForwarded(method, started, call.request, e);
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- a gRPC status object: the callback takes it as is
      throw e;
    }
  }

  /** Forwards a call and answers with the downstream's answer or error, unchanged. */
  function forward(service: CriService, method: string, call: Call, callback: sendUnaryData<unknown>): void {
    loggedDownstream(service, method, call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(err as GrpcError),
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
  function both(service: CriService, method: string, merge: (mine: Res, theirs: Res, call: Call) => Res): handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      const ownP = ownPart(service, method, call);
      const downP = downstreamPart(service, method, call);
      Promise.all([ownP, downP]).then(
        ([mine, theirs]) => {
          if (mine === 'unimplemented' && theirs === 'unimplemented') callback(grpcError(Status.UNIMPLEMENTED, `neither vmlet nor ${where} implements ${method}`));
          else if (mine === 'unimplemented') callback(null, theirs);
          else if (theirs === 'unimplemented') callback(null, mine);
          else callback(null, merge(mine, theirs, call));
        },
        (err: unknown) => callback(err as GrpcError),
      );
      // Both are awaited by Promise.all; keep a second rejection from being unhandled.
      ownP.catch(() => undefined);
      downP.catch(() => undefined);
    };
  }

  /** One backend, picked per call; a pick that throws (e.g. an ambiguous id) means vmlet's, which says why. */
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

  return { log, own, where, endpoint: downstream.endpoint, callDownstream, loggedDownstream, logForwarded, downstreamError, callOwn, forward, both, route };
}
