// Registry client for the OCI distribution API (Docker Registry HTTP API v2) on node:http (registry-http.ts):
// endpoint choice (mirrors, insecure registries), the Basic and Bearer challenge flows, manual
// redirects (credentials never follow a redirect to another host), and error → CRI kinds.
import type { RegistriesConfig } from '../config.js';
import { VmletError } from '../errors.js';
import { DOCKER_HUB, type ImageRef } from './reference.js';
import { httpSend, type HttpAnswer } from './registry-http.js';
import { getFollowing, networkFailure, registryFailure, type GetOptions } from './registry-get.js';
import { proxyEnv } from './registry-proxy.js';
import { fetchBlobInWorker } from './blob-fetch.js';
import type { BlobTarget, Progress } from './blob-write.js';
import type { LayerFeed } from './layer-feed.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** base64("user:password"), as in docker's config.json. */
  auth?: string;
  identityToken?: string;
  registryToken?: string;
}

export interface Endpoint {
  /** Base URL, e.g. https://registry-1.docker.io or http://127.0.0.1:5000. */
  url: string;
  mirror: boolean;
}

export const MANIFEST_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

const ACCEPT = Object.values(MANIFEST_TYPES).join(', ');
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Mirrors first, then the registry itself (https unless listed as insecure). */
export function endpointsFor(registry: string, cfg: RegistriesConfig): Endpoint[] {
  const mirrors = (cfg.mirrors[registry] ?? []).map((url) => ({ url, mirror: true }));
  const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
  const scheme = cfg.insecure.includes(registry) ? 'http' : 'https';
  return [...mirrors, { url: `${scheme}://${host}`, mirror: false }];
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (RFC 7235 auth-params, quoted or token values). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!))) params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

function basicAuth(c: Credentials): string | undefined {
  if (c.auth) return `Basic ${c.auth}`;
  if (c.username) return `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
  return undefined;
}

/**
 * One repository on one endpoint with one set of credentials: remembers the Authorization
 * header a challenge produced, so the manifest and every blob of a pull reuse it.
 */
export class RegistrySession {
  private authorization: string | undefined;
  /** The last Authorization a token service gave: refreshed once when a registry refuses it (tokens expire, Docker Hub's after 5 min). */
  private fetched: string | undefined;
  /** A token request under way: concurrent downloads refused at once share it. */
  private refreshing: Promise<string> | undefined;
  /** HTTPS_PROXY, HTTP_PROXY, NO_PROXY as they were when the session (one pull) began. */
  private readonly proxies = proxyEnv();

  constructor(
    readonly ref: ImageRef,
    readonly endpoint: Endpoint,
    private readonly creds: Credentials = {},
    private readonly timeoutMs = 30_000,
  ) {
    if (creds.registryToken) this.authorization = `Bearer ${creds.registryToken}`;
  }

  private url(kind: 'manifests' | 'blobs', ref: string): string {
    return `${this.endpoint.url}/v2/${this.ref.repository}/${kind}/${ref}`;
  }

  /** GET a manifest by tag or digest: raw bytes (digests are over these exact bytes) and media type. */
  async manifest(reference: string): Promise<{ body: Buffer; mediaType: string; digest?: string }> {
    const what = `registry ${this.ref.registry}: manifest ${reference}`;
    const res = await this.get(this.url('manifests', reference), { accept: ACCEPT }, 'manifest ' + reference);
    const length = Number(res.header('content-length') ?? 0);
    if (length > MAX_MANIFEST_BYTES) {
      res.discard();
      throw new VmletError('internal', `${what} is ${length} bytes (limit ${MAX_MANIFEST_BYTES})`);
    }
    let body: Buffer;
    try {
      body = await res.bytes(MAX_MANIFEST_BYTES, what);
    } catch (err) {
      throw err instanceof VmletError ? err : networkFailure(this.ref.registry, this.url('manifests', reference), err);
    }
    const mediaType = (res.header('content-type') ?? '').split(';')[0]!.trim();
    const digest = res.header('docker-content-digest') ?? undefined;
    return { body, mediaType, ...(digest ? { digest } : {}) };
  }

  /** GET a blob; the caller streams the body and checks size and digest. */
  async blob(digest: string): Promise<HttpAnswer> {
    return this.get(this.url('blobs', digest), {}, 'blob ' + digest, { timeoutHeadersOnly: true });
  }

  /**
   * Downloads a blob into `target` in the blob download worker (blob-fetch.ts), which writes
   * and checks it there. A 401 comes back here: answered as get() answers it, then tried again.
   */
  async storeBlob(digest: string, target: BlobTarget, on: { progress?: Progress; feed?: LayerFeed } = {}): Promise<void> {
    const what = 'blob ' + digest;
    const attempt = () => fetchBlobInWorker(this.url('blobs', digest), this.getOptions(what, true), target, on);
    const used = this.authorization;
    let out = await attempt();
    if (!out.stored && out.status === 401) {
      await this.reauthorize(out.challenge ?? '', what, used);
      out = await attempt();
    }
    if (!out.stored) throw registryFailure(this.ref.registry, what, out.status, out.statusText);
  }

  private getOptions(what: string, timeoutHeadersOnly = false): GetOptions {
    return {
      registry: this.ref.registry,
      what,
      origin: new URL(this.endpoint.url).origin,
      ...(this.authorization ? { authorization: this.authorization } : {}),
      timeoutMs: this.timeoutMs,
      timeoutHeadersOnly,
      proxies: this.proxies,
    };
  }

  private async get(url: string, headers: Record<string, string>, what: string, opts: { timeoutHeadersOnly?: boolean } = {}): Promise<HttpAnswer> {
    const used = this.authorization;
    let res = await getFollowing(url, headers, this.getOptions(what, opts.timeoutHeadersOnly));
    if (res.status === 401) {
      const header = res.header('www-authenticate') ?? '';
      res.discard();
      await this.reauthorize(header, what, used);
      res = await getFollowing(url, headers, this.getOptions(what, opts.timeoutHeadersOnly));
    }
    if (!res.ok) {
      res.discard();
      throw registryFailure(this.ref.registry, what, res.status, res.statusText);
    }
    return res;
  }

  /**
   * Sets the Authorization a 401's challenge asks for, the request having sent `used`. Another
   * request may have set a new one meanwhile: that is used. A token that vmlet fetched is
   * fetched again (it may have expired mid-pull); credentials the registry refused are not sent again.
   */
  private async reauthorize(header: string, what: string, used: string | undefined): Promise<void> {
    if (this.authorization !== used) return;
    const challenge = parseChallenge(header);
    const retry = used === undefined || used === this.fetched || (this.creds.registryToken !== undefined && used === `Bearer ${this.creds.registryToken}`);
    if (!challenge || !retry) throw registryFailure(this.ref.registry, `${what}: authentication failed`, 401, 'Unauthorized');
    this.refreshing ??= this.answer(challenge, what)
      .then((auth) => {
        if (auth.startsWith('Bearer ')) this.fetched = auth;
        this.authorization = auth;
        return auth;
      })
      .finally(() => (this.refreshing = undefined));
    await this.refreshing;
  }

  /** Turns a 401 challenge into an Authorization header value. */
  private async answer(ch: Challenge, what: string): Promise<string> {
    const registry = this.ref.registry;
    if (ch.scheme === 'basic') {
      const basic = basicAuth(this.creds);
      if (!basic) throw new VmletError('permission-denied', `registry ${registry}: ${what}: credentials required (HTTP 401, Basic); none given`);
      return basic;
    }
    if (ch.scheme !== 'bearer' || !ch.params.realm) {
      throw new VmletError('permission-denied', `registry ${registry}: ${what}: unsupported authentication challenge "${ch.scheme}"`);
    }
    const realm = new URL(ch.params.realm);
    const scope = ch.params.scope ?? `repository:${this.ref.repository}:pull`;
    let tok: { token?: string; access_token?: string };
    try {
      const signal = AbortSignal.timeout(this.timeoutMs);
      let res: HttpAnswer;
      if (this.creds.identityToken) {
        // OAuth2 refresh-token grant, as docker does for identity tokens.
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: this.creds.identityToken, client_id: 'vmlet', scope });
        if (ch.params.service) form.set('service', ch.params.service);
        res = await httpSend(realm, { method: 'POST', body: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded;charset=UTF-8' }, signal, proxies: this.proxies });
      } else {
        if (ch.params.service) realm.searchParams.set('service', ch.params.service);
        realm.searchParams.set('scope', scope);
        const basic = basicAuth(this.creds);
        res = await httpSend(realm, { headers: basic ? { authorization: basic } : {}, signal, proxies: this.proxies });
      }
      if (!res.ok) {
        res.discard();
        throw registryFailure(registry, `${what}: token from ${realm.origin}`, res.status, res.statusText);
      }
      const body = await res.bytes(MAX_MANIFEST_BYTES, `registry ${registry}: token from ${realm.origin}`);
      try {
        tok = JSON.parse(body.toString('utf8')) as typeof tok;
      } catch {
        throw new VmletError('permission-denied', `registry ${registry}: token service ${realm.origin} answered with no JSON`);
      }
    } catch (err) {
      throw err instanceof VmletError ? err : networkFailure(registry, realm.toString(), err);
    }
    const token = tok.token ?? tok.access_token;
    if (!token) throw new VmletError('permission-denied', `registry ${registry}: token service ${realm.origin} returned no token`);
    return `Bearer ${token}`;
  }
}
