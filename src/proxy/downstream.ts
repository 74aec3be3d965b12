// A gRPC client of the node's own CRI runtime (containerd, CRI-O) on its unix socket: both CRI
// services, built from the same loaded proto as vmlet's server, so a request or answer passes
// through as the same plain object. Unary calls only, as promises with the caller's deadline.
import { VmletError } from '../errors.js';
import { credentials, Metadata, status as Status, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadCri } from '../grpc/cri-proto.js';

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

export function connectDownstream(endpoint: string): Downstream {
  const cri = loadCri().runtime.v1;
  const target = grpcTarget(endpoint);
  const options = {
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
    // Reconnect quickly after the downstream restarts (default backoff grows to 120 s).
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2000,
  };
  const clients: Record<CriService, Client> = {
    runtime: new cri.RuntimeService(target, credentials.createInsecure(), options),
    image: new cri.ImageService(target, credentials.createInsecure(), options),
  };
  type Unary = (req: unknown, md: Metadata, opts: { deadline?: Date | number }, cb: (err: ServiceError | null, res: unknown) => void) => unknown;
  return {
    endpoint,
    call<Res>(service: CriService, method: string, request: unknown, opts: CallOptions = {}): Promise<Res> {
      const fn = (clients[service] as unknown as Record<string, Unary | undefined>)[method];
      if (typeof fn !== 'function') return Promise.reject(new VmletError('internal', `no ${service} method ${method} in the CRI proto`));
      const deadline = opts.deadline !== undefined && opts.deadline !== Infinity ? opts.deadline : undefined;
      return new Promise<Res>((resolve, reject) => {
        fn.call(clients[service], request, forwardedMetadata(opts.metadata), deadline === undefined ? {} : { deadline }, (err, res) =>
          err ? reject(err) : resolve(res as Res),
        );
      });
    },
    close() {
      clients.runtime.close();
      clients.image.close();
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
