// The Kubernetes streaming protocols over SPDY/3.1 (what crictl uses by default and what the
// kubelet / API server speak to a CRI streaming server): `Upgrade: SPDY/3.1`, the version picked
// from the client's `X-Stream-Protocol-Version` values, then one SPDY stream per purpose.
//   exec/attach (v4.channel.k8s.io; v5 = v4 here, v3, v2): streams named by the `streamType`
//     header: error, stdin, stdout, stderr, resize. The session starts once the streams the CRI
//     request asked for exist (error always; resize with tty, v3+), and ends by writing the
//     status on `error` (v4+: metav1.Status JSON; v2/v3: the message text, nothing on success),
//     FIN on every stream, GOAWAY and close.
//   portforward.k8s.io: per client connection a stream pair sharing `port` and `requestID`:
//     `error` and `data`. Each data stream dials the pod port and pipes both ways; a dial or
//     socket error is written as text on the paired error stream.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { PassThrough, Writable } from 'node:stream';
import type { Logger } from '../log.js';
import { errorStatus, exitStatus, successStatus, type Status, type TerminalSize } from './channel.js';
import type { AttachStreamRequest, ExecStreamRequest, PortForwardStreamRequest, StreamBackend, StreamIO } from './backend.js';
import { SpdyConnection, type SpdyStream } from './spdy-conn.js';

export const SPDY_UPGRADE = 'SPDY/3.1';
export const SPDY_REMOTECOMMAND_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io'] as const;
export const SPDY_PORTFORWARD_PROTOCOL = 'portforward.k8s.io';
/**
 * The WebSocket subprotocol of SPDY tunnelled in WebSocket binary messages: client-go's
 * NewSPDYOverWebsocketDialer, which crictl and kubectl port-forward use over WebSocket.
 */
export const SPDY_TUNNEL_PORTFORWARD_PROTOCOL = `${SPDY_UPGRADE}+${SPDY_PORTFORWARD_PROTOCOL}`;
/** How long the client has to open the streams it asked for (the kubelet's default). */
export const STREAM_CREATION_TIMEOUT_MS = 30_000;

export function isSpdyUpgrade(req: IncomingMessage): boolean {
  return String(req.headers.upgrade ?? '').trim().toLowerCase().startsWith('spdy/3');
}

/** The client's X-Stream-Protocol-Version values (repeated header and/or comma lists). */
export function offeredStreamProtocols(req: IncomingMessage): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'x-stream-protocol-version') {
      out.push(...raw[i + 1]!.split(',').map((p) => p.trim()).filter(Boolean));
    }
  }
  return out;
}

/** Like the kubelet's httpstream.Handshake: the first client protocol the server supports. */
export function negotiateSpdyProtocol(kind: 'exec' | 'attach' | 'portforward', offered: string[]): string | undefined {
  if (kind === 'portforward') {
    if (offered.length === 0) return '';
    return offered.includes(SPDY_PORTFORWARD_PROTOCOL) ? SPDY_PORTFORWARD_PROTOCOL : undefined;
  }
  return offered.find((p) => (SPDY_REMOTECOMMAND_PROTOCOLS as readonly string[]).includes(p));
}

/** Writes the 101 answer and wraps the socket in a SPDY connection. */
export function acceptSpdy(socket: Duplex, head: Buffer, protocol: string): SpdyConnection {
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
      (protocol ? `X-Stream-Protocol-Version: ${protocol}\r\n` : '') +
      '\r\n',
  );
  return new SpdyConnection(socket, head);
}

/** Splits the resize stream (a sequence of JSON objects) into sizes. */
export class ResizeDecoder {
  private buf = '';
  push(data: Buffer): TerminalSize[] {
    this.buf += data.toString('utf8');
    const out: TerminalSize[] = [];
    for (;;) {
      const end = closingBrace(this.buf);
      if (end < 0) break;
      const text = this.buf.slice(0, end + 1).trim();
      this.buf = this.buf.slice(end + 1);
      try {
        const v = JSON.parse(text) as { Width?: unknown; Height?: unknown };
        if (typeof v.Width === 'number' && typeof v.Height === 'number' && v.Width >= 0 && v.Height >= 0) {
          out.push({ width: v.Width, height: v.Height });
        }
      } catch {
        // a malformed object is dropped
      }
    }
    if (this.buf.length > 4096) this.buf = '';
    return out;
  }
}

function closingBrace(s: string): number {
  let depth = 0;
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
    } else if (c === '"') inStr = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i;
  }
  return -1;
}

export function runSpdyRemoteCommand(
  conn: SpdyConnection,
  protocol: string,
  kind: 'exec' | 'attach',
  req: ExecStreamRequest | AttachStreamRequest,
  backend: StreamBackend,
  log: Logger,
  creationTimeoutMs = STREAM_CREATION_TIMEOUT_MS,
): void {
  const legacyError = protocol === 'v2.channel.k8s.io' || protocol === 'v3.channel.k8s.io';
  const streams = new Map<string, SpdyStream>();
  const want = ['error'];
  if (req.stdin) want.push('stdin');
  if (req.stdout) want.push('stdout');
  if (req.stderr && !req.tty) want.push('stderr');
  if (req.tty && protocol !== 'v2.channel.k8s.io') want.push('resize');
  let started = false;
  const ctl = new AbortController();
  const stdin = req.stdin ? new PassThrough() : undefined;
  const resizeListeners: ((s: TerminalSize) => void)[] = [];
  const resize = new ResizeDecoder();

  const timer = setTimeout(() => {
    if (started) return;
    log.warn({ have: [...streams.keys()], want }, 'SPDY client did not open the expected streams in time');
    finish(errorStatus(`timed out waiting for streams ${want.filter((w) => !streams.has(w)).join(', ')}`));
  }, creationTimeoutMs);
  timer.unref();

  const output = (name: string) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        const s = streams.get(name);
        if (!s || s.localClosed) return cb();
        s.write(chunk, () => cb());
      },
    });

  let finished = false;
  function finish(status: Status): void {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    const err = streams.get('error');
    let payload: Buffer | undefined;
    if (legacyError) payload = status.status === 'Success' ? undefined : Buffer.from(status.message ?? 'error');
    else payload = Buffer.from(JSON.stringify(status));
    if (err && payload && !err.localClosed) err.write(payload);
    for (const s of streams.values()) s.end();
    conn.close();
  }

  conn.on('close', () => {
    clearTimeout(timer);
    ctl.abort();
    stdin?.end();
    finished = true;
  });

  conn.on('stream', (s: SpdyStream) => {
    const type = s.header('streamtype') ?? '';
    if (!['error', 'stdin', 'stdout', 'stderr', 'resize'].includes(type) || streams.has(type)) {
      log.debug({ type }, 'resetting unexpected SPDY stream');
      return s.resetStream(3 /* REFUSED_STREAM */);
    }
    streams.set(type, s);
    if (type === 'stdin') {
      s.on('data', (d: Buffer) => stdin?.write(d));
      s.on('end', () => stdin?.end());
    } else if (type === 'resize') {
      s.on('data', (d: Buffer) => {
        for (const size of resize.push(d)) for (const l of resizeListeners) l(size);
      });
    }
    if (!started && want.every((w) => streams.has(w))) start();
  });

  function start(): void {
    started = true;
    clearTimeout(timer);
    const io: StreamIO = {
      stdin,
      stdout: req.stdout ? output('stdout') : undefined,
      stderr: req.stderr && !req.tty ? output('stderr') : undefined,
      onResize: (l) => void resizeListeners.push(l),
      signal: ctl.signal,
    };
    log.info('stream session started');
    const run: Promise<Status> =
      kind === 'exec'
        ? backend.exec(req as ExecStreamRequest, io).then((r) => exitStatus(r.exitCode))
        : backend.attach(req, io).then(() => successStatus());
    run
      .catch((err: unknown) => errorStatus((err as Error).message ?? String(err)))
      .then((status) => {
        log.info({ status: status.status, message: status.message }, 'stream session ended');
        finish(status);
      })
      // A throw in the steps above would otherwise be an unhandled rejection: log it instead.
      .catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'stream session did not end cleanly'));
  }
}

export function runSpdyPortForward(
  conn: SpdyConnection,
  req: PortForwardStreamRequest,
  allowedPorts: number[] | undefined,
  backend: StreamBackend,
  log: Logger,
): void {
  interface Pair {
    error?: SpdyStream;
    data?: SpdyStream;
    socket?: Duplex;
  }
  const pairs = new Map<string, Pair>();
  const sockets = new Set<Duplex>();
  conn.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  conn.on('stream', (s: SpdyStream) => {
    const type = s.header('streamtype');
    const portText = s.header('port') ?? '';
    const port = Number(portText);
    if ((type !== 'error' && type !== 'data') || !/^\d+$/.test(portText) || port < 1 || port > 65535) {
      log.debug({ type, port: portText }, 'resetting bad port-forward stream');
      return s.resetStream(3);
    }
    // Clients before requestID existed: pair by port (error stream then data stream).
    const key = `${port}/${s.header('requestid') ?? 'noid'}`;
    const pair = pairs.get(key) ?? {};
    pairs.set(key, pair);
    if (pair[type]) return s.resetStream(3);
    pair[type] = s;
    if (type === 'error') {
      s.on('end', () => undefined);
      return;
    }
    const reportError = (msg: string) => {
      const e = pair.error;
      if (e && !e.localClosed) {
        e.write(Buffer.from(msg));
        e.end();
      }
    };
    const done = () => {
      s.end();
      pair.error?.end();
      pairs.delete(key);
    };
    if (allowedPorts && allowedPorts.length && !allowedPorts.includes(port)) {
      reportError(`port ${port} was not part of the port-forward request`);
      return done();
    }
    const pending: Buffer[] = [];
    let clientEnded = false;
    s.on('data', (d: Buffer) => (pair.socket ? pair.socket.write(d) : pending.push(d)));
    s.on('end', () => {
      clientEnded = true;
      pair.socket?.end();
    });
    s.on('reset', () => pair.socket?.destroy());
    backend.portForward(req.podSandboxId, port).then(
      (sock) => {
        if (s.reset || conn.closed) return void sock.destroy();
        pair.socket = sock;
        sockets.add(sock);
        for (const b of pending.splice(0)) sock.write(b);
        if (clientEnded) sock.end();
        sock.on('data', (chunk: Buffer) => {
          // Backpressure: pause the pod socket until the frame is on the wire.
          sock.pause();
          s.write(chunk, () => sock.resume());
        });
        sock.on('end', done);
        sock.on('close', () => {
          sockets.delete(sock);
          done();
        });
        sock.on('error', (err: Error) => {
          reportError(`error forwarding port ${port} to pod ${req.podSandboxId}: ${err.message}`);
          done();
        });
      },
      (err: unknown) => {
        const msg = `error forwarding port ${port} to pod ${req.podSandboxId}: ${(err as Error).message}`;
        log.warn({ port, err: (err as Error).message }, 'port-forward connect failed');
        reportError(msg);
        done();
      },
    );
  });
}
