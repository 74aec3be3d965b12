// One HTTP(S) exchange for the registry client, on node:http rather than fetch. A 200 MB pull
// through fetch cost ~0.1 s more CPU (web streams, a copy of every chunk) and, in each fresh
// process, ~0.1-0.2 s compiling undici's WebAssembly HTTP parser; node:http parses in C and
// hands the body over as the socket's own buffers.
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { VmletError } from '../errors.js';
import { bareHost, proxyAuthorization, proxyFor, tunnel, viaProxy, type ProxyEnv } from './registry-proxy.js';

// Kept-alive connections, as fetch kept them: a pull's manifest, config and layers reuse them.
// Node unrefs idle ones, so they hold no process open.
const agents = { 'http:': new HttpAgent({ keepAlive: true }), 'https:': new HttpsAgent({ keepAlive: true }) };

export interface HttpAnswer {
  status: number;
  statusText: string;
  ok: boolean;
  /** A response header (name in any case), or undefined. */
  header(name: string): string | undefined;
  /** The body, as it arrives. */
  body: IncomingMessage;
  /** Drops the body unread (its connection is closed, not reused). */
  discard(): void;
  /** The whole body, refused past `limit` bytes (`what` names it in the error). */
  bytes(limit: number, what: string): Promise<Buffer>;
}

export interface HttpOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the exchange: before the headers, or while the body is read. */
  signal?: AbortSignal;
  /** HTTP(S)_PROXY and NO_PROXY (registry-proxy.ts); none: direct. */
  proxies?: ProxyEnv;
}

/** Sends one request; resolves once the response's headers are in (a redirect is not followed). */
export async function httpSend(url: URL, opts: HttpOptions = {}): Promise<HttpAnswer> {
  const send = url.protocol === 'https:' ? httpsRequest : url.protocol === 'http:' ? httpRequest : undefined;
  if (!send) throw new VmletError('invalid-argument', `${url.origin}: only http and https are supported`);
  const method = opts.method ?? 'GET';
  const proxy = opts.proxies && proxyFor(url, opts.proxies);
  if (proxy && url.protocol === 'http:') {
    // An http URL goes to the proxy whole (absolute form), with the target as Host.
    const headers = { ...opts.headers, host: url.host, ...proxyAuthorization(proxy) };
    const req = httpRequest({ host: bareHost(proxy.hostname), port: proxy.port || 80, path: url.href, method, headers, agent: agents['http:'], signal: opts.signal });
    return exchange(req, opts.body).catch((err: unknown) => Promise.reject(viaProxy(proxy, err)));
  }
  if (proxy) {
    // https: TLS with the registry inside a CONNECT tunnel; the tunnel serves this one exchange.
    const socket = await tunnel(proxy, url, opts.signal);
    const host = bareHost(url.hostname);
    const createConnection = () => tlsConnect({ socket, host, ...(isIP(host) ? {} : { servername: host }), ALPNProtocols: ['http/1.1'] });
    return exchange(httpsRequest(url, { method, headers: opts.headers, signal: opts.signal, createConnection }), opts.body);
  }
  return exchange(send(url, { method, headers: opts.headers, agent: agents[url.protocol as 'http:' | 'https:'], signal: opts.signal }), opts.body);
}

/** Sends the request; resolves with the answer once its headers are in. */
function exchange(req: ClientRequest, body: string | undefined): Promise<HttpAnswer> {
  return new Promise<HttpAnswer>((resolve, reject) => {
    req.once('response', (res) => resolve(answer(res)));
    req.on('error', reject);
    req.end(body);
  });
}

function answer(res: IncomingMessage): HttpAnswer {
  const status = res.statusCode ?? 0;
  return {
    status,
    statusText: res.statusMessage ?? '',
    ok: status >= 200 && status < 300,
    header: (name) => {
      const v = res.headers[name.toLowerCase()];
      return Array.isArray(v) ? v.join(', ') : v;
    },
    body: res,
    discard: () => res.destroy(),
    bytes: async (limit, what) => {
      const parts: Buffer[] = [];
      let n = 0;
      for await (const chunk of res as AsyncIterable<Buffer>) {
        n += chunk.length;
        if (n > limit) {
          res.destroy();
          throw new VmletError('internal', `${what} exceeds ${limit} bytes`);
        }
        parts.push(chunk);
      }
      return Buffer.concat(parts);
    },
  };
}
