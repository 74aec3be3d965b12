// The /metrics endpoint: plain HTTP on the configured host:port (config metricsAddress; off when
// empty). Prometheus scrapes it; nothing else is served there.
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import { collectDefaultMetrics } from './process.js';
import { register, type Registry } from './registry.js';

export interface HostPort {
  host: string;
  port: number;
}

/**
 * `host:port`, `[v6]:port` or `:port` (all addresses) → its parts; undefined when malformed.
 * The same rule validates the config key (src/config.ts).
 */
export function splitAddress(address: string): HostPort | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port };
}

export interface MetricsServer {
  /** Where it listens, as host:port. */
  address: string;
  close(): Promise<void>;
}

let defaultsOn = false;

/** Serves `reg` (default: vmlet's registry, with the Node process collectors) at GET /metrics. */
export async function startMetricsServer(address: string, log: Logger, reg: Registry = register): Promise<MetricsServer> {
  const hp = splitAddress(address);
  if (!hp) throw new VmletError('invalid-argument', `metrics address ${JSON.stringify(address)} is not host:port`);
  if (reg === register && !defaultsOn) {
    collectDefaultMetrics(reg);
    defaultsOn = true;
  }
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('vmlet serves /metrics only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    reg.metrics().then(
      (text) => res.writeHead(200, { 'content-type': reg.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(hp.port, hp.host || undefined, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const where = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  log.info({ address: where }, 'metrics endpoint listening at /metrics');
  return {
    address: where,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export type AddressProbe =
  | { state: 'off' }
  | { state: 'vmlet'; url: string }
  | { state: 'free' }
  | { state: 'taken' | 'invalid'; problem: string };

/**
 * What `vmlet doctor` says of the metrics address: '' is off; free to bind now (for the next
 * `vmlet serve`); or in use, and then a running vmlet when its /metrics has vmlet's metrics.
 * Binding comes first, so nothing is sent anywhere unless something local holds the port.
 */
export async function probeMetricsAddress(address: string): Promise<AddressProbe> {
  if (!address) return { state: 'off' };
  const hp = splitAddress(address);
  if (!hp) return { state: 'invalid', problem: 'not host:port' };
  const err = await new Promise<string | undefined>((resolve) => {
    const srv = createTcpServer();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    srv.listen(hp.port, hp.host || undefined, () => srv.close(() => resolve(undefined)));
  });
  if (err === undefined) return { state: 'free' };
  if (err !== 'EADDRINUSE') return { state: 'taken', problem: `cannot listen there (${err})` };
  const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host || '127.0.0.1';
  const url = `http://${host}:${hp.port}/metrics`;
  const body = await fetch(url, { signal: AbortSignal.timeout(3000) }).then((r) => r.text(), () => '');
  return body.includes('vmlet_cri_requests_total') ? { state: 'vmlet', url } : { state: 'taken', problem: "another program listens there (it does not serve vmlet's /metrics)" };
}
