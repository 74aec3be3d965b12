// A registry GET that follows redirects by hand, and what its failures mean as CRI kinds. Shared
// by the registry client (registry.ts, main thread) and the blob download worker
// (blob-fetch-worker.ts), which fetches layers with the Authorization the main thread got.
import { VmletError } from '../errors.js';
import { httpSend, type HttpAnswer } from './registry-http.js';
import type { ProxyEnv } from './registry-proxy.js';

const MAX_REDIRECTS = 5;

export function registryFailure(registry: string, what: string, status: number, statusText: string): VmletError {
  const msg = `registry ${registry}: ${what}: HTTP ${status} ${statusText}`.trim();
  if (status === 404) return new VmletError('not-found', msg);
  if (status === 401 || status === 403) return new VmletError('permission-denied', msg);
  if (status === 429 || status >= 500) return new VmletError('unavailable', msg);
  return new VmletError('internal', msg);
}

export function networkFailure(registry: string, url: string, err: unknown): VmletError {
  // A VmletError says what failed in its own words (a proxy that cannot be reached, a scheme
  // refused). An abort carries what aborted it as its cause: a deadline's own error, or
  // AbortSignal.timeout's.
  const e = err as { code?: string; message?: string; cause?: { name?: string; message?: string } };
  const detail = err instanceof VmletError ? err.message : e.cause?.name === 'TimeoutError' ? 'no answer in time' : e.cause?.message ?? e.code ?? e.message;
  return new VmletError('unavailable', `registry ${registry}: cannot reach ${new URL(url).origin}: ${detail}`, { cause: err });
}

export interface GetOptions {
  /** The registry's name, for messages. */
  registry: string;
  /** What is fetched, for messages ("blob sha256:…"). */
  what: string;
  /** The registry endpoint's origin: the only one Authorization is sent to. */
  origin: string;
  authorization?: string;
  timeoutMs: number;
  /** The deadline covers the headers only (a blob's body may take long to stream). */
  timeoutHeadersOnly?: boolean;
  /** HTTP(S)_PROXY and NO_PROXY as vmlet's environment has them (read on the main thread). */
  proxies?: ProxyEnv;
}

/** GET following redirects by hand: Authorization goes only to the registry's own origin. */
export async function getFollowing(url: string, headers: Record<string, string>, o: GetOptions): Promise<HttpAnswer> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const h: Record<string, string> = { ...headers };
    if (o.authorization && new URL(current).origin === o.origin) h.authorization = o.authorization;
    // Small answers (manifests, tokens, errors) get one deadline for the whole exchange; a blob's
    // deadline covers only the wait for its headers, as its body may take long to stream.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new VmletError('unavailable', `no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
    timer.unref();
    const signal = o.timeoutHeadersOnly ? ctl.signal : AbortSignal.timeout(o.timeoutMs);
    let res: HttpAnswer;
    try {
      res = await httpSend(new URL(current), { headers: h, signal, ...(o.proxies ? { proxies: o.proxies } : {}) });
    } catch (err) {
      throw networkFailure(o.registry, current, err);
    } finally {
      clearTimeout(timer);
    }
    const location = res.header('location');
    if (res.status >= 300 && res.status < 400 && location) {
      res.discard();
      current = new URL(location, current).toString();
      continue;
    }
    return res;
  }
  throw new VmletError('unavailable', `registry ${o.registry}: ${o.what}: more than ${MAX_REDIRECTS} redirects`);
}
