// A gRPC client of the node's own CRI runtime (containerd, CRI-O) on its unix socket: both CRI
// services, (de)serialized by the same loaded proto as vmlet's server, so a request or answer
// passes through as the same plain object. Unary calls only, as promises with the caller's
// deadline, over h2-unary.ts (one HTTP/2 connection; not grpc-js's client: see there why).
import { VmletError } from '../errors.js';
import { Metadata, status as Status, type MethodDefinition, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import { loadCri } from '../grpc/cri-proto.js';
import { H2UnaryClient, statusError } from './h2-unary.js';

/** Which CRI service a call belongs to. */
export type CriService = 'runtime' | 'image';

export interface CallOptions {
  /** Forwarded as is (transport headers are dropped: grpc-js sets its own). */
  metadata?: Metadata;
  /** Absolute deadline (Date or ms since the epoch); Infinity or undefined for none. */
  deadline?: Date | number;
}

export interface Downstream {
  /** The endpoint as configured, e.g. unix:///run/containerd/containerd.sock: used in every message. */
  readonly endpoint: string;
  call<Res = unknown>(service: CriService, method: string, request: unknown, opts?: CallOptions): Promise<Res>;
  close(): void;
}

// The kubelet sends and accepts up to 16 MiB; so does vmlet's server (src/cri/server.ts).
const MAX_MESSAGE = 16 * 1024 * 1024;

/** Headers of the incoming HTTP/2 request that are not the caller's metadata. */
const TRANSPORT_HEADERS = new Set(['user-agent', 'content-type', 'te', 'host', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding']);

/** unix:///abs/path → the grpc-js target; a bare absolute path is taken as a unix socket. */
export function grpcTarget(endpoint: string): string {
  if (endpoint.startsWith('unix:///')) return endpoint;
  if (endpoint.startsWith('/')) return `unix://${endpoint}`;
  throw new VmletError('invalid-argument', `downstream endpoint ${JSON.stringify(endpoint)} must be unix:///absolute/path`);
}

/** The caller's metadata minus transport headers, ready to send on. */
export function forwardedMetadata(md: Metadata | undefined): Metadata {
  const out = new Metadata();
  if (!md) return out;
  for (const key of Object.keys(md.getMap())) {
    if (TRANSPORT_HEADERS.has(key) || key.startsWith(':')) continue;
    // getMap keeps only each key's first value; take them all.
    for (const v of md.get(key)) out.add(key, v);
  }
  return out;
}

/** The socket path of a unix:///abs/path (or bare /abs/path) endpoint. */
function socketPath(endpoint: string): string {
  return grpcTarget(endpoint).slice('unix://'.length);
}

export function connectDownstream(endpoint: string): Downstream {
  const cri = loadCri().runtime.v1;
  const client = new H2UnaryClient(socketPath(endpoint), MAX_MESSAGE);
  const services: Record<CriService, ServiceDefinition> = { runtime: cri.RuntimeService.service, image: cri.ImageService.service };
  return {
    endpoint,
    async call<Res>(service: CriService, method: string, request: unknown, opts: CallOptions = {}): Promise<Res> {
      const def = services[service][method] as MethodDefinition<unknown, unknown> | undefined;
      if (!def || def.requestStream || def.responseStream) throw new VmletError('internal', `no ${service} unary method ${method} in the CRI proto`);
      const d = opts.deadline instanceof Date ? opts.deadline.getTime() : opts.deadline;
      const bytes = await client.call(def.path, def.requestSerialize(request), {
        metadata: forwardedMetadata(opts.metadata),
        ...(d !== undefined && d !== Infinity ? { deadline: d } : {}),
      });
      try {
        return def.responseDeserialize(bytes) as Res;
      } catch (err) {
        throw statusError(Status.INTERNAL, `Response message parsing error: ${(err as Error).message}`);
      }
    },
    close() {
      client.close();
    },
  };
}

export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number' && 'details' in err;
}

export type DownstreamCheck = { ok: true; version: string } | { ok: false; error: string };

/**
 * For `vmlet doctor`: does the downstream answer Version? `version` reads like
 * "containerd 1.6.20~ds1 (CRI v1)"; `error` says what failed and where.
 */
export async function checkDownstream(endpoint: string, timeoutMs = 5000): Promise<DownstreamCheck> {
  let ds: Downstream;
  try {
    ds = connectDownstream(endpoint);
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  try {
    const v = await ds.call<{ runtime_name: string; runtime_version: string; runtime_api_version: string }>('runtime', 'Version', { version: '' }, { deadline: Date.now() + timeoutMs });
    return { ok: true, version: `${v.runtime_name} ${v.runtime_version} (CRI ${v.runtime_api_version})` };
  } catch (err) {
    const why = isServiceError(err) ? `${Status[err.code] ?? err.code}: ${err.details}` : (err as Error).message;
    return { ok: false, error: `downstream CRI ${endpoint} does not answer Version: ${why}` };
  } finally {
    ds.close();
  }
}
