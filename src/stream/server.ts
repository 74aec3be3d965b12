// vmlet's CRI streaming server. Exec/Attach/PortForward RPCs register their request here and
// answer with the URL it returns: http(s)://<host>:<port>/<kind>/<token>. The client (crictl, or
// the kubelet proxying the API server) then upgrades that URL to a WebSocket speaking the
// Kubernetes channel protocols (channel.ts). Tokens are single-use, expire after a minute and are
// bound to their request and kind; anything else gets an HTTP error before any upgrade.
// It listens where config `streaming` says: by default 127.0.0.1 on an ephemeral port (the kubelet
// on the node proxies it); off loopback, with TLS and the node's certificate, as the kubelet expects
// of a remote streaming server (`vmlet doctor` warns without).
// An `Upgrade: SPDY/3.1` request (crictl's default transport, the kubelet/API server) is
// handed to spdy-server.ts after the same token checks, and so is a port-forward WebSocket
// asking for `SPDY/3.1+portforward.k8s.io` (SPDY frames inside binary messages: what crictl and
// kubectl send for port-forward over WebSocket).
// Port-forward reaches only the ports of the CRI PortForward request: a `?port=` (or a SPDY
// stream's port header) may pick among them, never add one. A request with no port (what the
// kubelet sends for a SPDY client, which names ports per stream) lets SPDY streams name any port,
// as the kubelet does; over channel-framed WebSocket the kubelet always fills the request's ports.
import { VmletError } from '../errors.js';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { createSecureContext } from 'node:tls';
import { splitStreamingAddress, type StreamingConfig } from '../config.js';
import type { Duplex } from 'node:stream';
import { PassThrough, Writable } from 'node:stream';
import { WebSocketServer, WebSocket, createWebSocketStream, type RawData } from 'ws';
import type { Logger } from '../log.js';
import { TokenStore, TOKEN_TTL_MS, type StreamKind } from './tokens.js';
import {
  CLOSE, ERROR, PORTFORWARD_PROTOCOLS, REMOTECOMMAND_PROTOCOLS, RESIZE, STDERR, STDIN, STDOUT, V5_CHANNEL,
  decodeFrame, encodeFrame, errorStatus, exitStatus, isBase64Protocol, parsePorts, parseResize, portPrefix, successStatus,
  type Status, type TerminalSize,
} from './channel.js';
import type { AttachStreamRequest, ExecStreamRequest, PortForwardStreamRequest, StreamBackend, StreamIO } from './backend.js';
import {
  SPDY_PORTFORWARD_PROTOCOL, SPDY_REMOTECOMMAND_PROTOCOLS, SPDY_TUNNEL_PORTFORWARD_PROTOCOL, acceptSpdy, isSpdyUpgrade, negotiateSpdyProtocol,
  offeredStreamProtocols, runSpdyPortForward, runSpdyRemoteCommand,
} from './spdy-server.js';
import { SpdyConnection } from './spdy-conn.js';

export interface StreamServerOptions {
  backend: StreamBackend;
  log: Logger;
  /** Listen address; default 127.0.0.1; '' = every address. */
  host?: string;
  /** Listen port; default 0 (ephemeral). */
  port?: number;
  /** Host written into URLs; default the listen address, or a non-loopback address of the node when that is every address. */
  advertiseHost?: string;
  /** Serve https (and wss) with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  tokenTtlMs?: number;
  /** Clock for token expiry (tests). */
  now?: () => number;
}

/** The listen options config `streaming` asks for, the TLS files read and checked (a problem names the key). */
export async function streamingListenOptions(c: StreamingConfig): Promise<Pick<StreamServerOptions, 'host' | 'port' | 'advertiseHost' | 'tls'>> {
  const hp = splitStreamingAddress(c.address);
  if (!hp) throw new VmletError('invalid-argument', `config streaming.address ${JSON.stringify(c.address)} is not host:port`);
  return {
    host: hp.host,
    port: hp.port,
    ...(c.advertiseAddress ? { advertiseHost: c.advertiseAddress } : {}),
    ...(c.tls ? { tls: await readTls(c.tls) } : {}),
  };
}

/** The certificate and key PEM files, checked to form a usable pair. */
export async function readTls(files: { certFile: string; keyFile: string }): Promise<{ cert: Buffer; key: Buffer }> {
  const read = (path: string, key: string) =>
    readFile(path).catch((err: Error) => {
      throw new VmletError('failed-precondition', `config streaming.tls.${key} ${path}: ${err.message}`);
    });
  const cert = await read(files.certFile, 'certFile');
  const key = await read(files.keyFile, 'keyFile');
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new VmletError('failed-precondition', `config streaming.tls: ${files.certFile} and ${files.keyFile} are not a PEM certificate and its key: ${(err as Error).message}`);
  }
  return { cert, key };
}

/** Listening on every address (or none named). */
function unspecified(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::';
}

/** The interface of the IPv4 default route (/proc/net/route: destination 00000000), as the kubelet picks the node IP. */
function defaultRouteInterface(): string | undefined {
  try {
    const rows = readFileSync('/proc/net/route', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    return rows.find((r) => r[1] === '00000000' && r[7] === '00000000')?.[0];
  } catch {
    return undefined;
  }
}

/**
 * What a client elsewhere can reach: the IPv4 of the default route's interface, else the node's
 * first non-loopback IPv4, else IPv6 (not link-local), else loopback.
 */
export function nodeAddress(): string {
  const ifaces = networkInterfaces();
  const viaDefault = ifaces[defaultRouteInterface() ?? '']?.find((a) => a.family === 'IPv4' && !a.internal)?.address;
  if (viaDefault) return viaDefault;
  const addrs = Object.values(ifaces).flatMap((list) => list ?? []).filter((a) => !a.internal);
  return (
    addrs.find((a) => a.family === 'IPv4')?.address ??
    addrs.find((a) => a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80:'))?.address ??
    '127.0.0.1'
  );
}

/** Loopback: 127.0.0.0/8, ::1, localhost (what `vmlet doctor` accepts without TLS). */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

type Registered = ExecStreamRequest | AttachStreamRequest | PortForwardStreamRequest;

const PATH = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]{43})\/?$/;
const MAX_MESSAGE = 16 * 1024 * 1024;

/**
 * The ports a port-forward session forwards: the CRI request's, or those of `?port=` when they
 * are all among them (the client then chooses their order, i.e. its channels). A string is why not.
 */
export function sessionPorts(requested: readonly number[], query: readonly number[]): number[] | string {
  const extra = query.find((p) => requested.length > 0 && !requested.includes(p));
  if (extra !== undefined) return `port ${extra} was not part of the PortForward request (ports ${requested.join(', ')})`;
  if (requested.length === 0) return 'the PortForward request named no port';
  return query.length ? [...query] : [...requested];
}

/** Refusal for a `?port=` outside the request (SPDY names its ports per stream: only a check). */
function queryPortsRefused(requested: readonly number[], query: URLSearchParams): string | undefined {
  if (!query.getAll('port').length) return undefined;
  let ports: number[];
  try {
    ports = parsePorts(query.getAll('port'));
  } catch (err) {
    return (err as Error).message;
  }
  const r = sessionPorts(requested, ports);
  return typeof r === 'string' && requested.length > 0 ? r : undefined;
}

/** A plain HTTP answer on a socket whose upgrade is refused. */
function refuse(socket: Duplex, code: number, reason: string, message: string): void {
  const body = message + '\n';
  socket.end(
    `HTTP/1.1 ${code} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  socket.on('error', () => undefined);
}

function offeredProtocols(req: IncomingMessage): string[] {
  const h = req.headers['sec-websocket-protocol'];
  if (!h) return [];
  return h.split(',').map((p) => p.trim()).filter(Boolean);
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class StreamServer {
  private readonly tokens: TokenStore<Registered>;
  /** The subprotocol vmlet chose for an upgrade request, so the WebSocket answers with exactly that. */
  private readonly chosen = new WeakMap<IncomingMessage, string>();
  /** Upgrades to SPDY tunnelled in WebSocket (their subprotocol header is added by hand). */
  private readonly tunnels = new WeakSet<IncomingMessage>();
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_MESSAGE,
    handleProtocols: (offered, req) => this.chosen.get(req) ?? offered.values().next().value ?? false,
  });
  private readonly sweeper: NodeJS.Timeout;
  private readonly sessions = new Set<WebSocket>();
  private readonly spdySessions = new Set<SpdyConnection>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: Server,
    private readonly opts: StreamServerOptions,
    readonly baseUrl: string,
  ) {
    this.tokens = new TokenStore(opts.tokenTtlMs ?? TOKEN_TTL_MS, opts.now ?? Date.now);
    this.sweeper = setInterval(() => this.tokens.sweep(), 30_000).unref();
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.wss.on('headers', (headers: string[], req: IncomingMessage) => {
      if (this.tunnels.has(req)) headers.push(`Sec-WebSocket-Protocol: ${SPDY_TUNNEL_PORTFORWARD_PROTOCOL}`);
    });
  }

  static async start(opts: StreamServerOptions): Promise<StreamServer> {
    const host = opts.host ?? '127.0.0.1';
    const server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }) : createHttpServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const listening = () => {
        server.off('error', reject);
        resolve();
      };
      // No host: Node listens on every address (IPv6 and IPv4, or IPv4 alone without IPv6).
      if (host === '') server.listen(opts.port ?? 0, listening);
      else server.listen(opts.port ?? 0, host, listening);
    });
    const { address, port } = server.address() as AddressInfo;
    const adv = opts.advertiseHost ?? (unspecified(host) ? nodeAddress() : host);
    const baseUrl = `${opts.tls ? 'https' : 'http'}://${adv.includes(':') ? `[${adv}]` : adv}:${port}`;
    opts.log.info({ url: baseUrl, listen: `${address.includes(':') ? `[${address}]` : address}:${port}`, tls: opts.tls !== undefined }, 'streaming server listening');
    return new StreamServer(server, opts, baseUrl);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  registerExec(req: ExecStreamRequest): string {
    return this.register('exec', { ...req, cmd: [...req.cmd] });
  }

  registerAttach(req: AttachStreamRequest): string {
    return this.register('attach', { ...req });
  }

  registerPortForward(req: PortForwardStreamRequest): string {
    return this.register('portforward', { ...req, ports: [...req.ports] });
  }

  /** Stops listening, ends every session and forgets every token. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.sweeper);
      this.tokens.clear();
      for (const ws of this.sessions) ws.close(1001, 'server shutting down');
      for (const c of this.spdySessions) c.close();
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      // Sessions that do not finish their close handshake promptly are cut.
      const t = setTimeout(() => {
        for (const ws of this.sessions) ws.terminate();
        for (const c of this.spdySessions) c.destroy();
        this.server.closeAllConnections();
      }, 1000);
      await closed;
      clearTimeout(t);
      this.wss.close();
    })();
    return this.closing;
  }

  private register(kind: StreamKind, req: Registered): string {
    if (this.closing) throw new VmletError('unavailable', 'streaming server is shutting down');
    return `${this.baseUrl}/${kind}/${this.tokens.issue(kind, req)}`;
  }

  private lookup(url: string | undefined): { kind: StreamKind; token: string; query: URLSearchParams } | undefined {
    const u = new URL(url ?? '/', 'http://x');
    const m = PATH.exec(u.pathname);
    if (!m) return undefined;
    return { kind: m[1] as StreamKind, token: m[2]!, query: u.searchParams };
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const found = this.lookup(req.url);
    const live = found && this.tokens.peek(found.kind, found.token) !== undefined;
    const [code, msg] = live
      ? [400, 'this URL must be opened with a WebSocket (v5.channel.k8s.io) or SPDY/3.1 upgrade']
      : [404, 'unknown or expired streaming URL'];
    res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
    res.end(msg + '\n');
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const found = this.lookup(req.url);
    const log = this.opts.log;
    if (!found || this.tokens.peek(found.kind, found.token) === undefined) {
      log.warn({ path: found ? `/${found.kind}/…` : 'other' }, 'streaming request with an unknown, used or expired token');
      return refuse(socket, 404, 'Not Found', 'unknown or expired streaming URL');
    }
    const { kind, token, query } = found;
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (isSpdyUpgrade(req)) return this.onSpdyUpgrade(req, socket, head, kind, token, query);
    if (upgrade !== 'websocket') {
      // Leaves the token usable: a client falling back between transports may retry in time.
      return refuse(socket, 400, 'Bad Request',
        `vmlet's streaming server speaks WebSocket (${REMOTECOMMAND_PROTOCOLS.join(', ')}), not ${req.headers.upgrade ?? 'plain HTTP'}; with crictl use --transport websocket`);
    }
    const offered = offeredProtocols(req);
    if (kind === 'portforward' && offered.includes(SPDY_TUNNEL_PORTFORWARD_PROTOCOL)) return this.onSpdyTunnel(req, socket, head, token, query);
    let protocol: string | undefined;
    if (kind === 'portforward') {
      protocol = offered.length === 0 ? '' : PORTFORWARD_PROTOCOLS.find((p) => offered.includes(p));
    } else {
      protocol = REMOTECOMMAND_PROTOCOLS.find((p) => offered.includes(p));
    }
    if (protocol === undefined) {
      const want = kind === 'portforward' ? PORTFORWARD_PROTOCOLS : REMOTECOMMAND_PROTOCOLS;
      return refuse(socket, 400, 'Bad Request', `unsupported WebSocket subprotocol(s) ${JSON.stringify(offered)}; supported: ${want.join(', ')}`);
    }
    let ports: number[] = [];
    if (kind === 'portforward') {
      let asked: number[];
      try {
        asked = parsePorts(query.getAll('port'));
      } catch (err) {
        return refuse(socket, 400, 'Bad Request', (err as Error).message);
      }
      const r = sessionPorts((this.tokens.peek(kind, token) as PortForwardStreamRequest).ports, asked);
      if (typeof r === 'string') {
        log.warn({ kind, why: r }, 'port-forward refused');
        return refuse(socket, 400, 'Bad Request', r);
      }
      ports = r;
    }
    const request = this.tokens.consume(kind, token);
    if (request === undefined) return refuse(socket, 404, 'Not Found', 'unknown or expired streaming URL');
    if (protocol) this.chosen.set(req, protocol);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.sessions.add(ws);
      ws.on('close', () => this.sessions.delete(ws));
      ws.on('error', (err) => log.debug({ err: err.message, kind }, 'streaming connection error'));
      const chosen = ws.protocol || protocol;
      if (kind === 'portforward') this.runPortForward(ws, chosen, request as PortForwardStreamRequest, ports);
      else this.runRemoteCommand(ws, chosen, kind, request as ExecStreamRequest | AttachStreamRequest);
    });
  }

  /** Port-forward over SPDY inside WebSocket binary messages; ports come from the stream headers (among the request's), as over plain SPDY. */
  private onSpdyTunnel(req: IncomingMessage, socket: Duplex, head: Buffer, token: string, query: URLSearchParams): void {
    const refused = queryPortsRefused((this.tokens.peek('portforward', token) as PortForwardStreamRequest).ports, query);
    if (refused) return refuse(socket, 400, 'Bad Request', refused);
    const request = this.tokens.consume('portforward', token);
    if (request === undefined) return refuse(socket, 404, 'Not Found', 'unknown or expired streaming URL');
    // ws refuses a subprotocol with '/' (not an RFC 6455 token; gorilla/websocket, which client-go
    // uses, allows it): take the header out of ws's sight and answer it in the 'headers' hook.
    delete req.headers['sec-websocket-protocol'];
    this.tunnels.add(req);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.sessions.add(ws);
      ws.on('close', () => this.sessions.delete(ws));
      const log = this.opts.log.child({ stream: 'portforward', transport: 'websocket-spdy', protocol: SPDY_TUNNEL_PORTFORWARD_PROTOCOL });
      ws.on('error', (err) => log.debug({ err: err.message }, 'streaming connection error'));
      const conn = new SpdyConnection(createWebSocketStream(ws));
      this.spdySessions.add(conn);
      conn.on('close', () => this.spdySessions.delete(conn));
      const pf = request as PortForwardStreamRequest;
      runSpdyPortForward(conn, pf, pf.ports, this.opts.backend, log);
    });
  }

  private onSpdyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, kind: StreamKind, token: string, query: URLSearchParams): void {
    const offered = offeredStreamProtocols(req);
    const protocol = negotiateSpdyProtocol(kind, offered);
    if (protocol === undefined) {
      const want = kind === 'portforward' ? [SPDY_PORTFORWARD_PROTOCOL] : SPDY_REMOTECOMMAND_PROTOCOLS;
      return refuse(socket, 400, 'Bad Request', `unsupported X-Stream-Protocol-Version ${JSON.stringify(offered)}; supported: ${want.join(', ')}`);
    }
    if (kind === 'portforward') {
      const refused = queryPortsRefused((this.tokens.peek(kind, token) as PortForwardStreamRequest).ports, query);
      if (refused) return refuse(socket, 400, 'Bad Request', refused);
    }
    const request = this.tokens.consume(kind, token);
    if (request === undefined) return refuse(socket, 404, 'Not Found', 'unknown or expired streaming URL');
    const log = this.opts.log.child({ stream: kind, transport: 'spdy', protocol });
    const conn = acceptSpdy(socket, head, protocol);
    this.spdySessions.add(conn);
    conn.on('close', () => this.spdySessions.delete(conn));
    if (kind === 'portforward') {
      // The ports of the request; with none (the kubelet's SPDY case), any the streams name.
      const pf = request as PortForwardStreamRequest;
      runSpdyPortForward(conn, pf, pf.ports, this.opts.backend, log);
    } else {
      runSpdyRemoteCommand(conn, protocol, kind, request as ExecStreamRequest | AttachStreamRequest, this.opts.backend, log);
    }
  }

  private runRemoteCommand(ws: WebSocket, protocol: string, kind: StreamKind, req: ExecStreamRequest | AttachStreamRequest): void {
    const b64 = isBase64Protocol(protocol);
    const v5 = protocol === V5_CHANNEL;
    const log = this.opts.log.child({ stream: kind, containerId: req.containerId, protocol });
    const ctl = new AbortController();
    const send = (channel: number, data: Uint8Array, cb?: () => void): void => {
      if (ws.readyState !== WebSocket.OPEN) return cb?.();
      ws.send(encodeFrame(channel, data, b64), () => cb?.());
    };
    const output = (channel: number) =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          send(channel, chunk, () => cb());
        },
      });
    const stdin = req.stdin ? new PassThrough() : undefined;
    const stdout = req.stdout ? output(STDOUT) : undefined;
    const stderr = req.stderr && !req.tty ? output(STDERR) : undefined;
    const resizeListeners: ((s: TerminalSize) => void)[] = [];
    const io: StreamIO = {
      stdin,
      stdout,
      stderr,
      onResize: (l) => void resizeListeners.push(l),
      signal: ctl.signal,
    };

    ws.on('message', (data, isBinary) => {
      let frame;
      try {
        frame = decodeFrame(isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'), b64);
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'ignoring malformed message');
        return;
      }
      if (!frame) return;
      if (frame.channel === STDIN) stdin?.write(frame.data);
      else if (frame.channel === RESIZE) {
        const size = parseResize(frame.data);
        if (size) for (const l of resizeListeners) l(size);
      } else if (frame.channel === CLOSE && v5 && frame.data[0] === STDIN) stdin?.end();
    });
    ws.on('close', () => {
      ctl.abort();
      stdin?.end();
    });

    // The kubelet opens with an empty message on the lowest channel it will write.
    send(req.stdout ? STDOUT : stderr ? STDERR : ERROR, Buffer.alloc(0));
    log.info('stream session started');
    const run: Promise<Status> =
      kind === 'exec'
        ? this.opts.backend.exec(req as ExecStreamRequest, io).then((r) => exitStatus(r.exitCode))
        : this.opts.backend.attach(req, io).then(() => successStatus());
    run
      .catch((err: unknown) => errorStatus((err as Error).message ?? String(err)))
      .then((status) => {
        log.info({ status: status.status, message: status.message }, 'stream session ended');
        if (ws.readyState !== WebSocket.OPEN) return;
        send(ERROR, Buffer.from(JSON.stringify(status)), () => ws.close(1000));
      })
      // A throw in the steps above would otherwise be an unhandled rejection: log it instead.
      .catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'stream session did not end cleanly'));
  }

  private runPortForward(ws: WebSocket, protocol: string, req: PortForwardStreamRequest, ports: number[]): void {
    const b64 = isBase64Protocol(protocol);
    const log = this.opts.log.child({ stream: 'portforward', podSandboxId: req.podSandboxId, ports });
    const send = (channel: number, data: Uint8Array): void => {
      if (ws.readyState === WebSocket.OPEN) ws.send(encodeFrame(channel, data, b64));
    };
    interface PortStream {
      port: number;
      socket?: Duplex;
      pending: Buffer[];
      done: boolean;
    }
    const streams: PortStream[] = ports.map((port) => ({ port, pending: [], done: false }));
    const finishOne = (s: PortStream) => {
      if (s.done) return;
      s.done = true;
      s.socket?.destroy();
      if (streams.every((x) => x.done) && ws.readyState === WebSocket.OPEN) ws.close(1000);
    };

    streams.forEach((s, i) => {
      send(2 * i, portPrefix(s.port));
      send(2 * i + 1, portPrefix(s.port));
    });
    ws.on('message', (data, isBinary) => {
      let frame;
      try {
        frame = decodeFrame(isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'), b64);
      } catch {
        return;
      }
      if (!frame || frame.channel % 2 !== 0) return;
      const s = streams[frame.channel / 2];
      if (!s || s.done) return;
      if (s.socket) s.socket.write(frame.data);
      else s.pending.push(frame.data);
    });
    ws.on('close', () => {
      for (const s of streams) {
        s.done = true;
        s.socket?.destroy();
      }
    });
    log.info('port-forward session started');
    streams.forEach((s, i) => {
      this.opts.backend.portForward(req.podSandboxId, s.port).then(
        (sock) => {
          if (s.done) return void sock.destroy();
          s.socket = sock;
          for (const b of s.pending.splice(0)) sock.write(b);
          sock.on('data', (chunk: Buffer) => send(2 * i, chunk));
          sock.on('end', () => finishOne(s));
          sock.on('close', () => finishOne(s));
          sock.on('error', (err: Error) => {
            send(2 * i + 1, Buffer.from(`error forwarding port ${s.port} to pod ${req.podSandboxId}: ${err.message}`));
            finishOne(s);
          });
        },
        (err: unknown) => {
          const msg = `error forwarding port ${s.port} to pod ${req.podSandboxId}: ${(err as Error).message}`;
          log.warn({ port: s.port, err: (err as Error).message }, 'port-forward connect failed');
          send(2 * i + 1, Buffer.from(msg));
          finishOne(s);
        },
      );
    });
  }
}
