// A minimal RFB 3.8 (VNC) client for tests: enough to read a VM's screen through `vmlet vnc`.
// Security type None, a shared session, 32 bpp true colour, Raw encoding (plus the DesktopSize
// pseudo-encoding, so a guest that changes its video mode is followed), one full
// (non-incremental) update per capture. RFC 6143 is the reference; the section numbers below are its.
// Not a general client: no other encodings, no input events beyond what a capture needs.
import { connect, type Socket } from 'node:net';

const RAW = 0;
const DESKTOP_SIZE = -223;

/** A screen as RGB bytes, row by row, 3 bytes a pixel. */
export interface Frame {
  width: number;
  height: number;
  rgb: Buffer;
}

/** Reads exact byte counts off a socket (RFB has no framing of its own). */
class Reader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiting?: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void };
  private ended?: Error;

  constructor(sock: Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      this.pump();
    });
    const end = (err?: Error) => {
      this.ended ??= err ?? new Error('the VNC server closed the connection');
      this.pump();
    };
    sock.on('end', () => end());
    sock.on('close', () => end());
    sock.on('error', end);
  }

  read(n: number): Promise<Buffer> {
    if (this.waiting) return Promise.reject(new Error('rfb: one read at a time'));
    return new Promise((resolve, reject) => {
      this.waiting = { n, resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.have >= w.n) {
      const all = Buffer.concat(this.chunks);
      this.chunks = [all.subarray(w.n)];
      this.have -= w.n;
      this.waiting = undefined;
      w.resolve(all.subarray(0, w.n));
    } else if (this.ended) {
      this.waiting = undefined;
      w.reject(this.ended);
    }
  }
}

export class RfbClient {
  width = 0;
  height = 0;
  /** The desktop name the server announced (QEMU: the domain's name). */
  name = '';
  /** 4 bytes a pixel as set by SetPixelFormat: little-endian 0x00RRGGBB, so B, G, R, 0 in memory. */
  private fb = Buffer.alloc(0);

  private constructor(
    private readonly sock: Socket,
    private readonly r: Reader,
  ) {}

  /** Connects (TCP host:port or a unix socket path) and completes the handshake and initialisation. */
  static async connect(to: { host: string; port: number } | { path: string }): Promise<RfbClient> {
    const sock = connect(to as { host: string; port: number });
    const r = new Reader(sock);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const c = new RfbClient(sock, r);
    try {
      await c.handshake();
    } catch (err) {
      sock.destroy();
      throw err;
    }
    return c;
  }

  private async handshake(): Promise<void> {
    // 7.1.1 ProtocolVersion: the server's first, then ours.
    const version = (await this.r.read(12)).toString('latin1');
    if (!/^RFB \d{3}\.\d{3}\n$/.test(version)) throw new Error(`rfb: not an RFB server: ${JSON.stringify(version)}`);
    this.sock.write('RFB 003.008\n');
    // 7.1.2 Security: a list of types; 0 of them means a reason follows.
    const [count] = await this.r.read(1);
    if (count === 0) throw new Error(`rfb: server refused the connection: ${await this.string()}`);
    const types = [...(await this.r.read(count!))];
    if (!types.includes(1)) throw new Error(`rfb: server offers security types ${types.join(', ')}, not None (1)`);
    this.sock.write(Buffer.from([1]));
    // 7.1.3 SecurityResult (3.8 sends it for None too).
    if ((await this.r.read(4)).readUInt32BE(0) !== 0) throw new Error(`rfb: security handshake failed: ${await this.string()}`);
    // 7.3.1 ClientInit: shared, so other viewers stay connected.
    this.sock.write(Buffer.from([1]));
    // 7.3.2 ServerInit: size, the server's pixel format (ours replaces it), name.
    const init = await this.r.read(24);
    this.resize(init.readUInt16BE(0), init.readUInt16BE(2));
    this.name = (await this.r.read(init.readUInt32BE(20))).toString('utf8');
    // 7.5.1 SetPixelFormat: 32 bpp, depth 24, little-endian, true colour, 8 bits a channel.
    const pf = Buffer.alloc(20);
    pf.writeUInt8(0, 0);
    pf.set([32, 24, 0, 1], 4);
    pf.writeUInt16BE(255, 8);
    pf.writeUInt16BE(255, 10);
    pf.writeUInt16BE(255, 12);
    pf.set([16, 8, 0], 14);
    this.sock.write(pf);
    // 7.5.2 SetEncodings: Raw, and DesktopSize so a mode change is announced rather than clipped.
    const enc = Buffer.alloc(4 + 8);
    enc.writeUInt8(2, 0);
    enc.writeUInt16BE(2, 2);
    enc.writeInt32BE(RAW, 4);
    enc.writeInt32BE(DESKTOP_SIZE, 8);
    this.sock.write(enc);
  }

  private async string(): Promise<string> {
    const n = (await this.r.read(4)).readUInt32BE(0);
    return (await this.r.read(n)).toString('utf8');
  }

  private resize(width: number, height: number): void {
    this.width = width;
    this.height = height;
    this.fb = Buffer.alloc(width * height * 4);
  }

  /** The whole screen now: a non-incremental FramebufferUpdateRequest, read until its update arrives. */
  async capture(): Promise<Frame> {
    const req = Buffer.alloc(10);
    req.writeUInt8(3, 0);
    req.writeUInt8(0, 1); // non-incremental: every pixel, not only what changed
    req.writeUInt16BE(this.width, 6);
    req.writeUInt16BE(this.height, 8);
    this.sock.write(req);
    for (;;) {
      const [type] = await this.r.read(1);
      if (type === 0) {
        // 7.6.1 FramebufferUpdate; a DesktopSize rectangle alone asks for a new request at the new size.
        const resized = await this.update();
        if (!resized) return this.frame();
        req.writeUInt16BE(this.width, 6);
        req.writeUInt16BE(this.height, 8);
        this.sock.write(req);
      } else if (type === 1) {
        const h = await this.r.read(5); // SetColourMapEntries (not used in true colour): skip it
        await this.r.read(h.readUInt16BE(3) * 6);
      } else if (type === 2) {
        // Bell
      } else if (type === 3) {
        await this.r.read(3);
        await this.string(); // ServerCutText
      } else {
        throw new Error(`rfb: unknown server message type ${type}`);
      }
    }
  }

  /** One FramebufferUpdate's rectangles into the framebuffer; true when it resized the desktop. */
  private async update(): Promise<boolean> {
    const n = (await this.r.read(3)).readUInt16BE(1);
    let resized = false;
    for (let i = 0; i < n; i++) {
      const h = await this.r.read(12);
      const [x, y, w, hh] = [h.readUInt16BE(0), h.readUInt16BE(2), h.readUInt16BE(4), h.readUInt16BE(6)];
      const encoding = h.readInt32BE(8);
      if (encoding === DESKTOP_SIZE) {
        this.resize(w, hh);
        resized = true;
      } else if (encoding === RAW) {
        const data = await this.r.read(w * hh * 4);
        if (x + w > this.width || y + hh > this.height) throw new Error(`rfb: rectangle ${w}x${hh}+${x}+${y} outside the ${this.width}x${this.height} screen`);
        for (let row = 0; row < hh; row++) data.copy(this.fb, ((y + row) * this.width + x) * 4, row * w * 4, (row + 1) * w * 4);
      } else {
        throw new Error(`rfb: server sent encoding ${encoding}, which was not asked for`);
      }
    }
    return resized;
  }

  private frame(): Frame {
    const rgb = Buffer.alloc(this.width * this.height * 3);
    for (let p = 0; p < this.width * this.height; p++) {
      rgb[p * 3] = this.fb[p * 4 + 2]!;
      rgb[p * 3 + 1] = this.fb[p * 4 + 1]!;
      rgb[p * 3 + 2] = this.fb[p * 4]!;
    }
    return { width: this.width, height: this.height, rgb };
  }

  close(): void {
    this.sock.destroy();
  }
}

/** How much of a frame is drawn: its distinct colours, and the pixels not of its most common one (the background). */
export function frameStats(f: Frame): { colours: number; foreground: number; background: string } {
  const counts = new Map<number, number>();
  for (let p = 0; p < f.rgb.length; p += 3) {
    const c = (f.rgb[p]! << 16) | (f.rgb[p + 1]! << 8) | f.rgb[p + 2]!;
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  let bg = 0;
  let most = -1;
  for (const [c, n] of counts) if (n > most) [bg, most] = [c, n];
  return { colours: counts.size, foreground: f.width * f.height - most, background: `#${bg.toString(16).padStart(6, '0')}` };
}
