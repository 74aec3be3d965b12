// SPDY/3.1 framing (pure): the wire format moby/spdystream speaks for client-go (crictl's
// default transport) and for the kubelet/API server proxying kubectl. Spec: SPDY draft 3.1
// (chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1).
//   control frame: 1 | version(15) | type(16) | flags(8) | length(24) | payload
//   data frame:    0 | stream id(31)          | flags(8) | length(24) | payload
// Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are name/value lists compressed with ONE zlib
// stream per direction per connection, seeded with the fixed SPDY/3 dictionary below.
import { VmletError } from '../errors.js';
import zlib from 'node:zlib';
import type { Transform } from 'node:stream';

/** The peer sent bytes that are not SPDY/3.1: its fault, the session ends. */
const badFrame = (msg: string) => new VmletError('invalid-argument', msg);

export const SPDY_VERSION = 3;

export const SYN_STREAM = 1;
export const SYN_REPLY = 2;
export const RST_STREAM = 3;
export const SETTINGS = 4;
export const PING = 6;
export const GOAWAY = 7;
export const HEADERS = 8;
export const WINDOW_UPDATE = 9;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. */
export const RST_PROTOCOL_ERROR = 1;
export const RST_INVALID_STREAM = 2;
export const RST_REFUSED_STREAM = 3;
export const RST_CANCEL = 5;
export const RST_INTERNAL_ERROR = 6;
export const RST_FLOW_CONTROL_ERROR = 7;

/** SETTINGS ids. */
export const SETTINGS_MAX_CONCURRENT_STREAMS = 4;
export const SETTINGS_INITIAL_WINDOW_SIZE = 7;

export const DEFAULT_WINDOW = 64 * 1024;
export const MAX_FRAME_PAYLOAD = 0xffffff;

// The SPDY/3 header dictionary (draft 3 §2.6.10.1): length-prefixed (uint32 BE) words, then a
// run of raw text. 1423 bytes; its Adler-32 (the zlib DICTID every SPDY/3 header block starts
// with after the 2-byte zlib header) is 0xe3c6a7c2.
const DICT_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
  'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
  'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified',
  'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via',
  'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url',
  'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICT_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

export const SPDY3_DICTIONARY: Buffer = Buffer.concat([
  ...DICT_WORDS.map((w) => {
    const b = Buffer.alloc(4 + w.length);
    b.writeUInt32BE(w.length);
    b.write(w, 4, 'latin1');
    return b;
  }),
  Buffer.from(DICT_TAIL, 'latin1'),
]);

export type Headers = Map<string, string[]>;

export interface DataFrame {
  control: false;
  streamId: number;
  flags: number;
  data: Buffer;
}

export interface ControlFrame {
  control: true;
  version: number;
  type: number;
  flags: number;
  payload: Buffer;
}

export type Frame = DataFrame | ControlFrame;

export function encodeControl(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError('SPDY frame too large');
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24 | payload.length) >>> 0, 4);
  return Buffer.concat([h, payload]);
}

export function encodeData(streamId: number, flags: number, data: Uint8Array): Buffer {
  if (data.byteLength > MAX_FRAME_PAYLOAD) throw new RangeError('SPDY frame too large');
  const out = Buffer.alloc(8 + data.byteLength);
  out.writeUInt32BE(streamId & 0x7fffffff, 0);
  out.writeUInt32BE(((flags & 0xff) << 24 | data.byteLength) >>> 0, 4);
  out.set(data, 8);
  return out;
}

function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

export const encodeRstStream = (streamId: number, status: number): Buffer =>
  encodeControl(RST_STREAM, 0, u32(streamId & 0x7fffffff, status));
export const encodePing = (id: number): Buffer => encodeControl(PING, 0, u32(id));
export const encodeGoAway = (lastGoodStreamId: number, status = 0): Buffer =>
  encodeControl(GOAWAY, 0, u32(lastGoodStreamId & 0x7fffffff, status));
export const encodeWindowUpdate = (streamId: number, delta: number): Buffer =>
  encodeControl(WINDOW_UPDATE, 0, u32(streamId & 0x7fffffff, delta & 0x7fffffff));

export function encodeSettings(settings: { id: number; value: number; flags?: number }[]): Buffer {
  const b = Buffer.alloc(4 + 8 * settings.length);
  b.writeUInt32BE(settings.length, 0);
  settings.forEach((s, i) => {
    b.writeUInt32BE((((s.flags ?? 0) & 0xff) << 24 | (s.id & 0xffffff)) >>> 0, 4 + 8 * i);
    b.writeUInt32BE(s.value >>> 0, 8 + 8 * i);
  });
  return encodeControl(SETTINGS, 0, b);
}

export function parseSettings(payload: Buffer): { flags: number; id: number; value: number }[] {
  if (payload.length < 4) throw badFrame('short SETTINGS frame');
  const n = payload.readUInt32BE(0);
  if (payload.length < 4 + 8 * n) throw badFrame('short SETTINGS frame');
  const out = [];
  for (let i = 0; i < n; i++) {
    const w = payload.readUInt32BE(4 + 8 * i);
    out.push({ flags: w >>> 24, id: w & 0xffffff, value: payload.readUInt32BE(8 + 8 * i) });
  }
  return out;
}

/** Incremental frame splitter: feed it socket bytes, get whole frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPayload = MAX_FRAME_PAYLOAD) {}

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.buf.length >= 8) {
      const w1 = this.buf.readUInt32BE(0);
      const w2 = this.buf.readUInt32BE(4);
      const len = w2 & 0xffffff;
      if (len > this.maxPayload) throw badFrame(`SPDY frame of ${len} bytes exceeds the limit`);
      if (this.buf.length < 8 + len) break;
      const payload = Buffer.from(this.buf.subarray(8, 8 + len));
      const flags = w2 >>> 24;
      if (w1 & 0x80000000) {
        frames.push({ control: true, version: (w1 >>> 16) & 0x7fff, type: w1 & 0xffff, flags, payload });
      } else {
        frames.push({ control: false, streamId: w1 & 0x7fffffff, flags, data: payload });
      }
      this.buf = this.buf.subarray(8 + len);
    }
    return frames;
  }
}

/** The uncompressed name/value block: count, then (len, name, len, values joined by NUL). */
export function encodeHeaderBlock(headers: Headers | Record<string, string | string[]>): Buffer {
  const entries: [string, string[]][] =
    headers instanceof Map
      ? [...headers]
      : Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]);
  const parts: Buffer[] = [u32(entries.length)];
  for (const [name, values] of entries) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(values.join('\0'), 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(block: Buffer): Headers {
  const headers: Headers = new Map();
  let off = 0;
  const need = (n: number) => {
    if (off + n > block.length) throw badFrame('truncated SPDY header block');
  };
  need(4);
  const count = block.readUInt32BE(off);
  off += 4;
  for (let i = 0; i < count; i++) {
    need(4);
    const nl = block.readUInt32BE(off);
    off += 4;
    need(nl);
    const name = block.subarray(off, off + nl).toString('utf8').toLowerCase();
    off += nl;
    need(4);
    const vl = block.readUInt32BE(off);
    off += 4;
    need(vl);
    const values = block.subarray(off, off + vl).toString('utf8').split('\0');
    off += vl;
    headers.set(name, [...(headers.get(name) ?? []), ...values]);
  }
  return headers;
}

/** One direction's zlib context; calls are serialized so the shared stream stays in order. */
class ZContext {
  private chunks: Buffer[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private failed: Error | undefined;

  constructor(private readonly z: Transform & { flush(kind: number, cb: () => void): void }) {
    z.on('data', (c: Buffer) => this.chunks.push(c));
    z.on('error', (err: Error) => {
      this.failed = err;
    });
  }

  run(input: Buffer): Promise<Buffer> {
    const next = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.failed) return reject(this.failed);
          const onError = (err: Error) => reject(err);
          this.z.once('error', onError);
          this.z.write(input);
          this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.z.off('error', onError);
            if (this.failed) return reject(this.failed);
            const out = Buffer.concat(this.chunks);
            this.chunks = [];
            resolve(out);
          });
        }),
    );
    this.chain = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.z.destroy();
  }
}

/** Header compression for one connection: a deflate context out, an inflate context in. */
export class HeaderCodec {
  private readonly deflate = new ZContext(zlib.createDeflate({ dictionary: SPDY3_DICTIONARY }));
  private readonly inflate = new ZContext(zlib.createInflate({ dictionary: SPDY3_DICTIONARY }));

  compress(headers: Headers | Record<string, string | string[]>): Promise<Buffer> {
    return this.deflate.run(encodeHeaderBlock(headers));
  }

  async decompress(block: Buffer): Promise<Headers> {
    return decodeHeaderBlock(await this.inflate.run(block));
  }

  close(): void {
    this.deflate.close();
    this.inflate.close();
  }
}

/** SYN_STREAM payload: stream id, associated id, priority (3 bits), slot, header block. */
export function parseSynStream(payload: Buffer): { streamId: number; associatedId: number; priority: number; block: Buffer } {
  if (payload.length < 10) throw badFrame('short SYN_STREAM');
  return {
    streamId: payload.readUInt32BE(0) & 0x7fffffff,
    associatedId: payload.readUInt32BE(4) & 0x7fffffff,
    priority: payload[8]! >>> 5,
    block: payload.subarray(10),
  };
}

export function buildSynStream(streamId: number, flags: number, compressedBlock: Buffer, priority = 0, associatedId = 0): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt32BE(streamId & 0x7fffffff, 0);
  head.writeUInt32BE(associatedId & 0x7fffffff, 4);
  head[8] = (priority & 7) << 5;
  return encodeControl(SYN_STREAM, flags, Buffer.concat([head, compressedBlock]));
}

/** SYN_REPLY / HEADERS payload: stream id, header block. */
export function buildStreamHeaders(type: typeof SYN_REPLY | typeof HEADERS, streamId: number, flags: number, compressedBlock: Buffer): Buffer {
  return encodeControl(type, flags, Buffer.concat([u32(streamId & 0x7fffffff), compressedBlock]));
}

export function parseStreamHeaders(payload: Buffer): { streamId: number; block: Buffer } {
  if (payload.length < 4) throw badFrame('short SYN_REPLY/HEADERS');
  return { streamId: payload.readUInt32BE(0) & 0x7fffffff, block: payload.subarray(4) };
}

export function parseIdAndValue(payload: Buffer): [number, number] {
  if (payload.length < 8) throw badFrame('short control frame');
  return [payload.readUInt32BE(0) & 0x7fffffff, payload.readUInt32BE(4)];
}
