// Wraps every RPC the same way: time it, log one line (method, duration, status code, ids),
// tell the metrics (observeRpcs), map errors to a gRPC status. Handlers below this layer just return or throw.
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
import { codeName, isPolled, requestIds } from '../grpc/rpc-log.js';
import { toServiceError } from './status.js';

/** Hears of every call answered: method, gRPC code name (OK, NOT_FOUND, …), seconds taken. */
export type RpcObserver = (method: string, code: string, seconds: number) => void;

// Set once by src/serve.ts (metrics live outside cri/, which stays free of them: depcheck).
let observer: RpcObserver | undefined;

/** Makes every RPC this wrapper answers known to `o` (undefined: to nobody). */
export function observeRpcs(o: RpcObserver | undefined): void {
  observer = o;
}

function logResult(log: Logger, method: string, started: number, req: unknown, err?: unknown): void {
  const elapsedMs = performance.now() - started;
  const durationMs = Math.round(elapsedMs * 1000) / 1000;
  const fields: Record<string, unknown> = { rpc: method, durationMs, ...requestIds(req) };
  if (!err) {
    observer?.(method, 'OK', elapsedMs / 1000);
    fields.code = 'OK';
    if (isPolled(method)) log.debug(fields, 'rpc');
    else log.info(fields, 'rpc');
    return;
  }
  const se = toServiceError(err);
  const code = codeName(se.code);
  fields.code = code;
  observer?.(method, code, elapsedMs / 1000);
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

/**
 * A server-streaming call: `fn` writes replies (dropped once the client has gone) and settles;
 * then the stream ends, with the error's status if it threw. Logged and observed as unary() is.
 */
export function serverStream<Req, Res>(log: Logger, method: string, fn: (req: Req, write: (r: Res) => void) => Promise<void>): handleServerStreamingCall<Req, Res> {
  return (call) => {
    const started = performance.now();
    let p: Promise<void>;
    try {
      p = fn(call.request, (r) => {
        if (!call.cancelled) call.write(r);
      });
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        logResult(log, method, started, call.request);
        call.end();
      },
      (err: unknown) => {
        logResult(log, method, started, call.request, err);
        call.emit('error', toServiceError(err));
      },
    );
  };
}

/** Items per message of a Stream* list call: well under the 16 MiB message cap for any item. */
const STREAM_BATCH = 100;

/**
 * A Stream* list call (StreamPodSandboxes, StreamContainers, ...): the same list as its List*
 * sibling, sent in batches of STREAM_BATCH items, then the end; an error ends the stream with
 * its status. `field` is the response's repeated field.
 */
export function listStream<Req, Item>(log: Logger, method: string, field: string, list: (req: Req) => Promise<Item[]>): handleServerStreamingCall<Req, Record<string, Item[]>> {
  return serverStream(log, method, async (req: Req, write: (r: Record<string, Item[]>) => void) => {
    const items = await list(req);
    for (let i = 0; i < items.length; i += STREAM_BATCH) write({ [field]: items.slice(i, i + STREAM_BATCH) });
  });
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
