// HTTP proxies for the registry client, from vmlet's environment as containerd reads them (Go's
// net/http ProxyFromEnvironment): HTTPS_PROXY for https URLs, HTTP_PROXY for http ones (the
// upper-case name first, then the lower-case), NO_PROXY for exceptions; localhost and loopback
// addresses never go through a proxy. https goes through a CONNECT tunnel, http as an absolute URI.
import { BlockList, isIP, type Socket } from 'node:net';
import { request as httpRequest } from 'node:http';
import { VmletError } from '../errors.js';

/** The proxy settings, as plain data (they cross to the blob download worker). */
export interface ProxyEnv {
  https?: string;
  http?: string;
  no?: string;
}

export function proxyEnv(env: NodeJS.ProcessEnv = process.env): ProxyEnv {
  const pick = (name: string) => env[name.toUpperCase()] || env[name] || undefined;
  const out: ProxyEnv = {};
  const https = pick('https_proxy');
  const http = pick('http_proxy');
  const no = pick('no_proxy');
  if (https) out.https = https;
  if (http) out.http = http;
  if (no) out.no = no;
  return out;
}

/** A proxy setting as a URL ("host:port" means http://host:port); only http:// proxies are supported. */
function proxyUrl(name: string, value: string): URL {
  let u: URL;
  try {
    u = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    throw new VmletError('invalid-argument', `${name}=${value} is not a proxy URL (http://host:port)`);
  }
  if (u.protocol !== 'http:') throw new VmletError('invalid-argument', `${name}=${value}: only http:// proxies are supported`);
  return u;
}

const defaultPort = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80');
/** A URL's hostname without an IPv6 address's brackets, lower-case. */
export const bareHost = (h: string) => h.replace(/^\[|\]$/g, '').toLowerCase();

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether NO_PROXY (Go's rules: "*", IPs, CIDRs, domains with optional port) exempts `url`. */
export function exempt(url: URL, noProxy: string | undefined): boolean {
  const host = bareHost(url.hostname);
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const family = isIP(host);
  const ipType = family === 6 ? 'ipv6' : 'ipv4';
  if (family && LOOPBACK.check(host, ipType)) return true;
  const port = defaultPort(url);
  for (const raw of (noProxy ?? '').split(',')) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    const slash = entry.indexOf('/');
    if (slash > 0) {
      const [net, bits] = [entry.slice(0, slash), Number(entry.slice(slash + 1))];
      const netFamily = isIP(net);
      if (family && netFamily === family && Number.isInteger(bits)) {
        const list = new BlockList();
        try {
          list.addSubnet(net, bits, ipType);
        } catch {
          continue; // a malformed CIDR exempts nothing
        }
        if (list.check(host, ipType)) return true;
      }
      continue;
    }
    // host, host:port, [v6]:port, .domain, *.domain
    let name = entry;
    let entryPort: string | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) [name, entryPort] = [bracketed[1]!, bracketed[2]];
    else if (isIP(entry) !== 6) {
      const m = /^(.*):(\d+)$/.exec(entry);
      if (m) [name, entryPort] = [m[1]!, m[2]];
    }
    if (entryPort && entryPort !== port) continue;
    if (isIP(name)) {
      if (name === host) return true;
      continue;
    }
    if (name.startsWith('*.')) name = name.slice(1);
    if (name.startsWith('.')) {
      if (host.endsWith(name)) return true;
    } else if (host === name || host.endsWith(`.${name}`)) {
      return true;
    }
  }
  return false;
}

/** The proxy `url` goes through, or undefined for a direct connection. */
export function proxyFor(url: URL, p: ProxyEnv): URL | undefined {
  const value = url.protocol === 'https:' ? p.https : p.http;
  if (!value || exempt(url, p.no)) return undefined;
  return proxyUrl(url.protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY', value);
}

/** Proxy-Authorization for credentials in the proxy's URL (http://user:password@host:port). */
export function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const basic = Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64');
  return { 'proxy-authorization': `Basic ${basic}` };
}

/** A failure to reach `proxy` says so (an abort or a deadline passes as it is: it says why itself). */
export function viaProxy(proxy: URL, err: unknown): unknown {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === 'AbortError' || e.name === 'TimeoutError' || err instanceof VmletError) return err;
  return new VmletError('unavailable', `through proxy ${proxy.host}: ${e.code ?? e.message ?? String(err)}`, { cause: err });
}

/** A CONNECT tunnel through `proxy` to `url`'s host and port: the socket to start TLS on. */
export function tunnel(proxy: URL, url: URL, signal?: AbortSignal): Promise<Socket> {
  const target = `${url.hostname}:${defaultPort(url)}`;
  return new Promise<Socket>((resolve, reject) => {
    const req = httpRequest({
      host: bareHost(proxy.hostname),
      port: defaultPort(proxy),
      method: 'CONNECT',
      path: target,
      headers: { host: target, ...proxyAuthorization(proxy) },
      agent: false, // a connection of its own: it becomes the tunnel
      signal,
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      reject(new VmletError('unavailable', `proxy ${proxy.host} refused the tunnel to ${target}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
    });
    req.once('error', (err) => reject(viaProxy(proxy, err)));
    req.end();
  });
}
