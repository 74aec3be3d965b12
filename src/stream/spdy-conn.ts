// A minimal SPDY/3.1 connection, server side: accepts client-initiated streams (answers each
// SYN_STREAM with a SYN_REPLY), carries data both ways with FIN half-close, answers PING,
// honours RST_STREAM/GOAWAY and does flow control:
//  - receiving: every consumed DATA byte is returned with WINDOW_UPDATE (stream and session,
//    SPDY/3.1 §2.6.8), so a peer that enforces windows never stalls;
//  - sending: windows start at 64 KiB (or SETTINGS_INITIAL_WINDOW_SIZE) and are only enforced
//    once the peer has shown it does flow control (sent a WINDOW_UPDATE or that setting).
//    moby/spdystream (client-go, the kubelet, the API server) never sends WINDOW_UPDATE and
//    ignores windows, so enforcing them blindly would stall every session after 64 KiB.
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import {
  DEFAULT_WINDOW, FLAG_FIN, FrameReader, GOAWAY, HEADERS, HeaderCodec, PING, RST_PROTOCOL_ERROR, RST_STREAM, SETTINGS,
  SETTINGS_INITIAL_WINDOW_SIZE, SYN_REPLY, SYN_STREAM, WINDOW_UPDATE, buildStreamHeaders, encodeData, encodeGoAway,
  encodePing, encodeRstStream, encodeWindowUpdate, parseIdAndValue, parseSettings, parseStreamHeaders, parseSynStream,
  type Frame, type Headers,
} from './spdy-frame.js';

/** Largest DATA frame we send. */
export const DATA_CHUNK = 32 * 1024;

export class SpdyStream extends EventEmitter {
  /** The peer sent FIN (or the stream was reset). */
  remoteClosed = false;
  /** We sent FIN (or the stream was reset). */
  localClosed = false;
  reset = false;
  sendWindow: number;
  private readonly pending: { data: Buffer; fin: boolean; cb?: () => void }[] = [];

  constructor(
    readonly conn: SpdyConnection,
    readonly id: number,
    readonly headers: Headers,
    initialWindow: number,
  ) {
    super();
    this.sendWindow = initialWindow;
  }

  header(name: string): string | undefined {
    return this.headers.get(name.toLowerCase())?.[0];
  }

  /** Queues bytes for the peer; cb once they are handed to the socket. */
  write(data: Buffer, cb?: () => void): void {
    if (this.localClosed) return void cb?.();
    this.pending.push({ data, fin: false, cb });
    this.conn.pump(this);
  }

  /** Half-closes our side (DATA with FIN) after what is queued. */
  end(cb?: () => void): void {
    if (this.localClosed) return void cb?.();
    this.localClosed = true;
    this.pending.push({ data: Buffer.alloc(0), fin: true, cb });
    this.conn.pump(this);
  }

  /** RST_STREAM with CANCEL (or `status`). */
  resetStream(status = 5): void {
    if (this.reset) return;
    this.conn.sendRst(this.id, status);
    this.onReset();
  }

  /** @internal */
  onReset(): void {
    if (this.reset) return;
    this.reset = true;
    this.localClosed = true;
    for (const p of this.pending.splice(0)) p.cb?.();
    if (!this.remoteClosed) {
      this.remoteClosed = true;
      this.emit('end');
    }
    this.emit('reset');
    this.emit('close');
  }

  /** @internal the frames this stream may send now. */
  takeSendable(enforce: boolean, sessionWindow: number): { frames: Buffer[]; used: number; cbs: (() => void)[] } {
    const frames: Buffer[] = [];
    const cbs: (() => void)[] = [];
    let used = 0;
    while (this.pending.length) {
      const p = this.pending[0]!;
      if (p.fin && p.data.length === 0) {
        frames.push(encodeData(this.id, FLAG_FIN, p.data));
        if (p.cb) cbs.push(p.cb);
        this.pending.shift();
        continue;
      }
      let n = Math.min(p.data.length, DATA_CHUNK);
      if (enforce) n = Math.min(n, this.sendWindow, sessionWindow - used);
      if (n <= 0) break;
      frames.push(encodeData(this.id, 0, p.data.subarray(0, n)));
      used += n;
      this.sendWindow -= n;
      if (n === p.data.length) {
        if (p.cb) cbs.push(p.cb);
        this.pending.shift();
      } else {
        p.data = p.data.subarray(n);
      }
    }
    return { frames, used, cbs };
  }

  get queued(): boolean {
    return this.pending.length > 0;
  }
}

export interface SpdyConnectionEvents {
  stream: (s: SpdyStream) => void;
  close: () => void;
}

export class SpdyConnection extends EventEmitter {
  readonly streams = new Map<number, SpdyStream>();
  private readonly reader = new FrameReader();
  private readonly codec = new HeaderCodec();
  /** Serializes every write so header blocks (shared zlib context) leave in order. */
  private out: Promise<void> = Promise.resolve();
  private inbound: Promise<void> = Promise.resolve();
  private lastStreamId = 0;
  private peerFlowControl = false;
  private initialSendWindow = DEFAULT_WINDOW;
  private sessionSendWindow = DEFAULT_WINDOW;
  closed = false;
  goneAway = false;

  constructor(private readonly socket: Duplex, head?: Buffer) {
    super();
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('close', () => this.teardown());
    socket.on('end', () => this.teardown());
    socket.on('error', () => this.teardown());
    if (head && head.length) this.onBytes(head);
  }

  /** GOAWAY, then end the socket once everything queued is written. */
  close(): void {
    if (this.closed) return;
    this.enqueue(async () => {
      this.goneAway = true;
      return encodeGoAway(this.lastStreamId, 0);
    });
    void this.out.then(() => {
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 2000).unref();
    });
  }

  destroy(): void {
    this.socket.destroy();
    this.teardown();
  }

  sendRst(streamId: number, status: number): void {
    this.enqueue(async () => encodeRstStream(streamId, status));
  }

  private enqueue(build: () => Promise<Buffer | Buffer[] | undefined>, after?: () => void): void {
    this.out = this.out.then(async () => {
      if (this.closed) return;
      try {
        const b = await build();
        if (b && !this.closed) for (const x of Array.isArray(b) ? b : [b]) this.socket.write(x);
      } catch {
        this.destroy();
      }
      after?.();
    });
  }

  /** @internal send what the windows allow for stream `s`. */
  pump(s: SpdyStream): void {
    const { frames, used, cbs } = s.takeSendable(this.peerFlowControl, this.sessionSendWindow);
    if (this.peerFlowControl) this.sessionSendWindow -= used;
    if (frames.length === 0 && cbs.length === 0) return;
    this.enqueue(async () => frames, () => cbs.forEach((cb) => cb()));
  }

  private pumpAll(): void {
    for (const s of this.streams.values()) if (s.queued) this.pump(s);
  }

  private onBytes(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch {
      return this.destroy();
    }
    for (const f of frames) {
      this.inbound = this.inbound.then(() => this.onFrame(f)).catch(() => this.destroy());
    }
  }

  private async onFrame(f: Frame): Promise<void> {
    if (this.closed) return;
    if (!f.control) {
      const s = this.streams.get(f.streamId);
      if (f.data.length) {
        // Give the credit back at once: the backends apply their own backpressure.
        this.enqueue(async () => [encodeWindowUpdate(0, f.data.length), ...(s && !s.remoteClosed ? [encodeWindowUpdate(f.streamId, f.data.length)] : [])]);
      }
      if (!s) {
        if (f.streamId !== 0) this.sendRst(f.streamId, 2 /* INVALID_STREAM */);
        return;
      }
      if (s.remoteClosed) return;
      if (f.data.length) s.emit('data', f.data);
      if (f.flags & FLAG_FIN) this.remoteFin(s);
      return;
    }
    if (f.version !== 3) {
      if (f.type === SYN_STREAM) this.sendRst(parseSynStream(f.payload).streamId, 4 /* UNSUPPORTED_VERSION */);
      return;
    }
    switch (f.type) {
      case SYN_STREAM: {
        const { streamId, block } = parseSynStream(f.payload);
        const headers = await this.codec.decompress(block); // always, to keep the zlib context in sync
        if (this.goneAway || streamId % 2 === 0 || streamId <= this.lastStreamId || this.streams.has(streamId)) {
          return this.sendRst(streamId, RST_PROTOCOL_ERROR);
        }
        this.lastStreamId = streamId;
        const s = new SpdyStream(this, streamId, headers, this.initialSendWindow);
        this.streams.set(streamId, s);
        s.on('close', () => this.streams.delete(streamId));
        this.enqueue(async () => buildStreamHeaders(SYN_REPLY, streamId, 0, await this.codec.compress({})));
        if (f.flags & FLAG_FIN) s.remoteClosed = true;
        this.emit('stream', s);
        if (f.flags & FLAG_FIN) s.emit('end');
        return;
      }
      case SYN_REPLY:
      case HEADERS: {
        const { streamId, block } = parseStreamHeaders(f.payload);
        await this.codec.decompress(block);
        const s = this.streams.get(streamId);
        if (s && f.flags & FLAG_FIN) this.remoteFin(s);
        return;
      }
      case RST_STREAM: {
        const [streamId] = parseIdAndValue(f.payload);
        this.streams.get(streamId)?.onReset();
        return;
      }
      case SETTINGS: {
        for (const st of parseSettings(f.payload)) {
          if (st.id === SETTINGS_INITIAL_WINDOW_SIZE) {
            const delta = st.value - this.initialSendWindow;
            this.initialSendWindow = st.value;
            this.peerFlowControl = true;
            for (const s of this.streams.values()) s.sendWindow += delta;
          }
        }
        this.pumpAll();
        return;
      }
      case PING: {
        if (f.payload.length < 4) return;
        const id = f.payload.readUInt32BE(0);
        if (id % 2 === 1) this.enqueue(async () => encodePing(id)); // client-initiated: echo
        return;
      }
      case GOAWAY:
        this.goneAway = true;
        this.close();
        return;
      case WINDOW_UPDATE: {
        const [streamId, delta] = parseIdAndValue(f.payload);
        this.peerFlowControl = true;
        if (streamId === 0) this.sessionSendWindow += delta & 0x7fffffff;
        else {
          const s = this.streams.get(streamId);
          if (s) s.sendWindow += delta & 0x7fffffff;
        }
        this.pumpAll();
        return;
      }
      default:
        return; // unknown control frames are ignored (spec)
    }
  }

  private remoteFin(s: SpdyStream): void {
    if (s.remoteClosed) return;
    s.remoteClosed = true;
    s.emit('end');
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    // The peer is gone (or we are done): never leave a half-open socket behind.
    this.socket.destroy();
    this.codec.close();
    for (const s of [...this.streams.values()]) s.onReset();
    this.streams.clear();
    this.emit('close');
  }
}
