// The Kubernetes WebSocket channel protocols (k8s.io/apimachinery wsstream, the kubelet's
// cri/streaming/remotecommand/websocket.go and portforward/websocket.go):
//   every binary message is one byte of channel number followed by the payload;
//   base64 variants send text messages: an ASCII digit for the channel, then base64 payload.
// remotecommand (exec/attach): 0 stdin, 1 stdout, 2 stderr, 3 error (a metav1.Status JSON in
// v4+), 4 resize (JSON {"Width","Height"}); v5 adds 255 "close": payload is the channel the
// client closed (stdin), since WebSocket has no half-close.
// portforward: per requested port i, channel 2i is data and 2i+1 is error; the first message
// on each of them, sent by the server, is the port as 2 bytes little-endian.
import { VmletError } from '../errors.js';

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const ERROR = 3;
export const RESIZE = 4;
export const CLOSE = 255;

export const V5_CHANNEL = 'v5.channel.k8s.io';
export const V4_CHANNEL = 'v4.channel.k8s.io';
export const V4_BASE64_CHANNEL = 'v4.base64.channel.k8s.io';

/** Subprotocols served for exec/attach, most preferred first. */
export const REMOTECOMMAND_PROTOCOLS = [V5_CHANNEL, V4_CHANNEL, V4_BASE64_CHANNEL] as const;
/** Subprotocols served for port-forward ('' = none asked, which the kubelet also accepts). */
export const PORTFORWARD_PROTOCOLS = [V4_CHANNEL, V4_BASE64_CHANNEL] as const;

export function isBase64Protocol(protocol: string): boolean {
  return protocol.includes('base64.');
}

export interface Frame {
  channel: number;
  data: Buffer;
}

/** One message for `channel`: a Buffer (binary protocols) or a string (base64 protocols). */
export function encodeFrame(channel: number, data: Uint8Array, base64 = false): Buffer | string {
  if (base64) {
    if (channel > 9) throw new RangeError(`channel ${channel} cannot be sent on a base64 protocol`);
    return String(channel) + Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
  }
  const out = Buffer.allocUnsafe(data.byteLength + 1);
  out[0] = channel;
  out.set(data, 1);
  return out;
}

/** Parses a received message; undefined for an empty (channel-less) one, which is ignored. */
export function decodeFrame(msg: Buffer | string, base64 = false): Frame | undefined {
  if (base64 || typeof msg === 'string') {
    const s = typeof msg === 'string' ? msg : msg.toString('latin1');
    if (s.length === 0) return undefined;
    const channel = s.charCodeAt(0) - 0x30;
    if (channel < 0 || channel > 9) throw new VmletError('invalid-argument', `bad base64 channel byte ${JSON.stringify(s[0])}`);
    return { channel, data: Buffer.from(s.slice(1), 'base64') };
  }
  if (msg.length === 0) return undefined;
  return { channel: msg[0]!, data: msg.subarray(1) };
}

export interface TerminalSize {
  width: number;
  height: number;
}

/** The resize channel's payload, `{"Width":80,"Height":24}`; undefined when malformed. */
export function parseResize(data: Buffer): TerminalSize | undefined {
  try {
    const v = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
    const w = v.Width;
    const h = v.Height;
    if (typeof w !== 'number' || typeof h !== 'number') return undefined;
    if (!Number.isInteger(w) || !Number.isInteger(h) || w < 0 || h < 0 || w > 65535 || h > 65535) return undefined;
    return { width: w, height: h };
  } catch {
    return undefined;
  }
}

/** metav1.Status as the remotecommand v4+ error channel carries it. */
export interface Status {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes: { reason?: string; message: string }[] };
}

export function successStatus(): Status {
  return { metadata: {}, status: 'Success' };
}

/** What client-go turns into an exit code (reason NonZeroExitCode, cause ExitCode). */
export function exitStatus(exitCode: number): Status {
  if (exitCode === 0) return successStatus();
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

export function errorStatus(message: string): Status {
  return { metadata: {}, status: 'Failure', message, reason: 'InternalError', code: 500, details: { causes: [{ message }] } };
}

/** The port prefix that opens each port-forward channel: uint16 little-endian. */
export function portPrefix(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(port);
  return b;
}

/** Ports from the URL query (`?port=80&port=8080`), as the kubelet reads them. */
export function parsePorts(values: string[]): number[] {
  return values.flatMap((v) => v.split(',')).map((p) => {
    const t = p.trim();
    const n = Number(t);
    if (!/^\d+$/.test(t) || n < 1 || n > 65535) throw new VmletError('invalid-argument', `invalid port ${JSON.stringify(p)}: want 1-65535`);
    return n;
  });
}
