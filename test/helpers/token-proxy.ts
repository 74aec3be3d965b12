// A Bearer-token front for the real test registry, for the token challenge flow
// (WWW-Authenticate: Bearer realm=…). Debian's docker-registry can only check tokens signed for
// it by a token server with a certificate chain; this front plays the token server instead and
// forwards authorised requests, unchanged, to the real registry. It answers:
//   GET  /token?service&scope  with Basic credentials → {"token": …}
//   POST /token (grant_type=refresh_token)            → {"access_token": …} for the identity token
//   /v2/…  401 + Bearer challenge unless Authorization: Bearer <a token it issued>
// A blob GET it would forward is redirected instead (307) to a second server on another port, a
// CDN of another origin, as Docker Hub and most cloud registries send blobs to signed storage URLs.
// That server records the Authorization each request carried (none may reach it) and serves the
// blob from the registry.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface TokenProxy {
  host: string;
  url: string;
  /** Requests seen, for assertions: method, path, and the Authorization scheme used. */
  seen: Array<{ method: string; path: string; auth: string }>;
  /** Requests the CDN saw, with the Authorization header each carried in full ('' for none). */
  cdnSeen: Array<{ path: string; auth: string }>;
  /** A token this proxy accepts, as a registry_token would be. */
  issue(): string;
  stop(): Promise<void>;
}

export async function startTokenProxy(upstream: string, creds: { user: string; password: string; identityToken: string }): Promise<TokenProxy> {
  const tokens = new Set<string>();
  const issue = () => {
    const t = randomBytes(16).toString('hex');
    tokens.add(t);
    return t;
  };
  const seen: TokenProxy['seen'] = [];
  const body = (req: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let s = '';
      req.setEncoding('utf8').on('data', (c: string) => (s += c)).on('end', () => resolve(s));
    });
  let url = '';
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const auth = req.headers.authorization ?? '';
    seen.push({ method: req.method ?? '', path: req.url ?? '', auth: auth.split(' ')[0] ?? '' });
    const path = new URL(req.url ?? '/', url);
    if (path.pathname === '/token') {
      if (req.method === 'POST') {
        const form = new URLSearchParams(await body(req));
        if (form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === creds.identityToken) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: issue() }));
        } else res.writeHead(401).end();
        return;
      }
      const expected = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`;
      if (auth === expected && path.searchParams.get('service') === 'vmlet-test' && path.searchParams.get('scope')?.startsWith('repository:')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: issue() }));
      } else res.writeHead(401).end();
      return;
    }
    if (!auth.startsWith('Bearer ') || !tokens.has(auth.slice(7))) {
      const repo = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(path.pathname)?.[1] ?? '';
      res
        .writeHead(401, { 'www-authenticate': `Bearer realm="${url}/token",service="vmlet-test",scope="repository:${repo}:pull"` })
        .end();
      return;
    }
    if (req.method === 'GET' && /\/blobs\/sha256:/.test(path.pathname)) {
      res.writeHead(307, { location: `${cdnUrl}${path.pathname}?X-Signature=${randomBytes(8).toString('hex')}` }).end();
      return;
    }
    forward(req, res);
  };
  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const up = httpRequest(`${upstream}${req.url}`, { method: req.method, headers: { ...req.headers, host: new URL(upstream).host, authorization: '' } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  };
  const cdnSeen: TokenProxy['cdnSeen'] = [];
  const cdn = createServer((req, res) => {
    cdnSeen.push({ path: req.url ?? '', auth: req.headers.authorization ?? '' });
    forward(req, res);
  });
  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
  const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  const server: Server = createServer((req, res) => {
    // A failure in the helper itself: answer 500 so the test fails on it (node:http ignores the
    // handler's promise, so a rejection would go unhandled).
    handle(req, res).catch((err: unknown) => {
      console.error('token proxy:', err);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  url = `http://127.0.0.1:${port}`;
  return {
    host: `127.0.0.1:${port}`,
    url,
    seen,
    cdnSeen,
    issue,
    stop: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => cdn.close(() => resolve()));
    },
  };
}
