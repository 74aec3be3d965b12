// gRPC unary calls over one node:http2 session on a unix socket: the downstream CRI's client.
// grpc-js's client stack (interceptors, resolving, retrying and load-balancing calls) spends
// about 2.5x the CPU of the HTTP/2 exchange itself per call, and every call the converged node
// forwards pays it on top of the downstream's own time (bench/cri-latency.ts). The protocol
// (github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) for a unary call is one request
// with one length-prefixed message and an answer with one message and the status in trailers;
// the mapping of what can go wrong to a status follows grpc-js's (subchannel-call.js).
import { connect as netConnect } from 'node:net';
import { connect as h2Connect, constants as H2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';

/** What the downstream's logs see calling. */
const USER_AGENT = 'vmlet-proxy';

/** A status error as grpc-js's client reports one: code, details, the trailers' metadata. */
export function statusError(code: Status, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), { code, details, metadata });
}

/** The grpc-timeout header for `ms` from now: at most 8 digits, then its unit. */
export function timeoutHeader(ms: number): string {
  const n = Math.max(1, Math.ceil(ms));
  if (n < 1e8) return `${n}m`;
  const s = Math.ceil(n / 1000);
  return s < 1e8 ? `${s}S` : `${Math.min(99_999_999, Math.ceil(s / 3600))}H`;
}

/** A gRPC status for an answer that was not 200 (the protocol's mapping, as grpc-js has it). */
function httpStatus(code: number): { code: Status; details: string } {
  const details = `Received HTTP status code ${code}`;
  if (code === 400) return { code: Status.INTERNAL, details };
  if (code === 401) return { code: Status.UNAUTHENTICATED, details };
  if (code === 403) return { code: Status.PERMISSION_DENIED, details };
  if (code === 404) return { code: Status.UNIMPLEMENTED, details };
  if ([429, 502, 503, 504].includes(code)) return { code: Status.UNAVAILABLE, details };
  return { code: Status.UNKNOWN, details };
}

/** A stream that ended with neither a status nor an HTTP error: what its RST_STREAM code means. */
function resetStatus(rstCode: number, connectionLost: string | undefined): { code: Status; details: string } {
  if (connectionLost !== undefined) return { code: Status.UNAVAILABLE, details: connectionLost };
  if (rstCode === H2.NGHTTP2_REFUSED_STREAM) return { code: Status.UNAVAILABLE, details: 'Stream refused by server' };
  if (rstCode === H2.NGHTTP2_CANCEL) return { code: Status.CANCELLED, details: 'Call cancelled' };
  if (rstCode === H2.NGHTTP2_ENHANCE_YOUR_CALM) return { code: Status.RESOURCE_EXHAUSTED, details: 'Bandwidth exhausted or memory limit exceeded' };
  if (rstCode === H2.NGHTTP2_NO_ERROR) return { code: Status.INTERNAL, details: `Received RST_STREAM with code ${rstCode} (Call ended without gRPC status)` };
  return { code: Status.INTERNAL, details: `Received RST_STREAM with code ${rstCode}` };
}

/** The error in trailers (or trailers-only headers), with the rest as its metadata. */
function trailerError(headers: IncomingHttpHeaders): ServiceError {
  const md = Metadata.fromHttp2Headers(headers);
  for (const k of ['grpc-status', 'grpc-message', 'content-type']) md.remove(k);
  const msg = headers['grpc-message'];
  let details = typeof msg === 'string' ? msg : '';
  try {
    details = decodeURI(details);
  } catch {
    // not percent-encoded after all: as sent
  }
  return statusError(Number(headers['grpc-status']), details, md);
}

export interface UnaryCallOptions {
  /** Sent as is (transport headers must already be gone). */
  metadata?: Metadata;
  /** Absolute deadline, ms since the epoch. */
  deadline?: number;
}

interface Session {
  h2: ClientHttp2Session;
  /** Why the connection failed or ended, once it did. */
  lost?: string;
}

export class H2UnaryClient {
  private session: Session | undefined;
  private active = 0;
  private closed = false;

  /** `maxMessage`: the largest answer accepted (bytes of the message). */
  constructor(
    private readonly socketPath: string,
    private readonly maxMessage: number,
  ) {}

  /** The live session, or a new one (connecting: requests made meanwhile wait for it). */
  private current(): Session {
    const s = this.session;
    if (s && s.lost === undefined && !s.h2.closed && !s.h2.destroyed) return s;
    const h2 = h2Connect('http://localhost', { createConnection: () => netConnect(this.socketPath) });
    const next: Session = { h2 };
    const lost = (why: string) => {
      next.lost ??= why;
      if (this.session === next) this.session = undefined;
    };
    h2.on('error', (err: Error) => lost(err.message)); // each stream reports it too
    h2.once('goaway', () => lost('Connection dropped (GOAWAY)'));
    h2.once('close', () => lost('Connection dropped'));
    if (this.active === 0) h2.unref();
    this.session = next;
    return next;
  }

  /** Keeps the process alive while calls are in flight, as grpc-js does, and not otherwise. */
  private track(delta: 1 | -1): void {
    this.active += delta;
    const h2 = this.session?.h2;
    if (!h2 || h2.destroyed) return;
    if (this.active > 0) h2.ref();
    else h2.unref();
  }

  /** One unary call: resolves with the answer's message bytes, rejects with a status error. */
  call(path: string, message: Buffer, opts: UnaryCallOptions = {}): Promise<Buffer> {
    return this.attempt(path, message, opts, true);
  }

  private attempt(path: string, message: Buffer, opts: UnaryCallOptions, mayRetry: boolean): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.closed) return reject(statusError(Status.UNAVAILABLE, 'downstream client closed'));
      const headers: OutgoingHttpHeaders = {
        ...(opts.metadata?.toHttp2Headers() ?? {}),
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'user-agent': USER_AGENT,
      };
      if (opts.deadline !== undefined) {
        if (opts.deadline <= Date.now()) return reject(statusError(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
        headers['grpc-timeout'] = timeoutHeader(opts.deadline - Date.now());
      }
      const framed = Buffer.allocUnsafe(5 + message.length);
      framed[0] = 0; // not compressed
      framed.writeUInt32BE(message.length, 1);
      message.copy(framed, 5);

      let session: Session;
      let stream: ClientHttp2Stream;
      try {
        session = this.current();
        stream = session.h2.request(headers);
      } catch (err) {
        // A session that went away between the check and the request: the call was not sent.
        this.session = undefined;
        if (mayRetry) return resolve(this.attempt(path, message, opts, false));
        return reject(statusError(Status.UNAVAILABLE, (err as Error).message));
      }
      this.track(1);

      let httpCode: number | undefined;
      /** The headers that carried grpc-status: the trailers, or the headers of a trailers-only answer. */
      let status: IncomingHttpHeaders | undefined;
      let failure: ServiceError | undefined;
      let responded = false;
      const chunks: Buffer[] = [];
      let received = 0;
      let timer: NodeJS.Timeout | undefined;
      const fail = (e: ServiceError) => {
        failure ??= e;
        if (!stream.closed) stream.close(H2.NGHTTP2_CANCEL);
      };
      const left = opts.deadline === undefined ? Infinity : opts.deadline - Date.now();
      // (Past setTimeout's range, 24 days, the downstream's own grpc-timeout is the only check.)
      if (left < 2 ** 31 - 1) timer = setTimeout(() => fail(statusError(Status.DEADLINE_EXCEEDED, 'Deadline exceeded')), left);

      stream.on('response', (h) => {
        responded = true;
        httpCode = Number(h[':status']);
        if (h['grpc-status'] !== undefined) status = h; // trailers-only: an error without a message
      });
      let declared: number | undefined;
      stream.on('data', (chunk: Buffer) => {
        if (failure) return;
        received += chunk.length;
        chunks.push(chunk);
        // The length prefix says at once whether the message fits.
        if (declared === undefined && received >= 5) {
          if (chunks.length > 1) chunks.splice(0, chunks.length, Buffer.concat(chunks));
          declared = chunks[0]!.readUInt32BE(1);
        }
        const size = Math.max(declared ?? 0, received - 5);
        if (size > this.maxMessage) fail(statusError(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${size} vs ${this.maxMessage})`));
      });
      stream.on('trailers', (h: IncomingHttpHeaders) => {
        if (h['grpc-status'] !== undefined) status ??= h;
      });
      let streamError: (Error & { cause?: unknown }) | undefined;
      stream.on('error', (err: Error) => (streamError = err)); // 'close' reports the outcome
      stream.on('close', () => {
        if (timer) clearTimeout(timer);
        this.track(-1);
        if (failure) return reject(failure);
        if (status && status['grpc-status'] !== '0') return reject(trailerError(status));
        if (!status) {
          if (httpCode !== undefined && httpCode !== 200) {
            const h = httpStatus(httpCode);
            return reject(statusError(h.code, h.details));
          }
          // Refused (sent after the server's GOAWAY): the downstream never ran it; once more,
          // on a new connection.
          if (mayRetry && !responded && stream.rstCode === H2.NGHTTP2_REFUSED_STREAM && !this.closed) {
            return resolve(this.attempt(path, message, opts, false));
          }
          // A connection that failed or dropped takes its streams down before it reports why
          // (its 'error' comes after their 'close'); the stream's error names the cause.
          const cause = streamError?.cause instanceof Error ? streamError.cause.message : streamError?.message;
          const lost = session.lost ?? (session.h2.destroyed ? (cause ?? 'Connection dropped') : undefined);
          const r = resetStatus(stream.rstCode ?? H2.NGHTTP2_NO_ERROR, lost);
          return reject(statusError(r.code, r.details));
        }
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (body.length < 5) return reject(statusError(Status.UNIMPLEMENTED, 'No message received'));
        if (body[0] !== 0) return reject(statusError(Status.INTERNAL, 'Received a compressed message without asking for compression'));
        const len = body.readUInt32BE(1);
        if (body.length !== 5 + len) return reject(statusError(Status.INTERNAL, `Received ${body.length - 5} bytes for a ${len}-byte message`));
        resolve(body.subarray(5));
      });
      stream.end(framed);
    });
  }

  close(): void {
    this.closed = true;
    const s = this.session;
    this.session = undefined;
    s?.h2.close();
  }
}
