// The streaming server over SPDY/3.1 with a SPDY client written here (the same framing and
// header compression as moby/spdystream, which client-go, crictl and the kubelet use): attach to a
// fake console made of PassThroughs, port-forward to TCP echo servers on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { StreamServer } from '../../src/stream/server.js';
import type { StreamBackend } from '../../src/stream/backend.js';
import type { TerminalSize } from '../../src/stream/channel.js';
import {
  FLAG_FIN, FrameReader, GOAWAY, HeaderCodec, PING, RST_STREAM, SYN_REPLY, WINDOW_UPDATE, buildSynStream, encodeData,
  encodePing, encodeSettings, encodeWindowUpdate, parseIdAndValue, parseStreamHeaders, type Frame,
} from '../../src/stream/spdy-frame.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: 'silent' });

interface ClientStream {
  id: number;
  data: Buffer[];
  fin: boolean;
  replied: boolean;
  reset: boolean;
}

/** A SPDY/3.1 client: HTTP upgrade, then client-initiated streams. */
class SpdyClient {
  readonly streams = new Map<number, ClientStream>();
  readonly frames: Frame[] = [];
  readonly windowUpdates: [number, number][] = [];
  readonly pings: number[] = [];
  goaway = false;
  closed = false;
  status = 0;
  protocol: string | undefined;
  private nextId = 1;
  private readonly codec = new HeaderCodec();
  private readonly reader = new FrameReader();
  private chain: Promise<void> = Promise.resolve();
  private inChain: Promise<void> = Promise.resolve();

  private constructor(readonly sock: Socket) {}

  static open(url: string, protocols: string[]): Promise<SpdyClient> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const sock = connect(Number(u.port), u.hostname);
      const c = new SpdyClient(sock);
      let head = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        sock.off('data', onData);
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        c.status = Number(lines[0]!.split(' ')[1]);
        for (const l of lines.slice(1)) {
          const [k, ...v] = l.split(':');
          if (k!.toLowerCase() === 'x-stream-protocol-version') c.protocol = v.join(':').trim();
        }
        if (c.status !== 101) {
          sock.destroy();
          return reject(new Error(`HTTP ${c.status}`));
        }
        sock.on('data', (b: Buffer) => c.onBytes(b));
        sock.on('close', () => (c.closed = true));
        const rest = head.subarray(end + 4);
        if (rest.length) c.onBytes(rest);
        resolve(c);
      };
      sock.on('data', onData);
      sock.on('error', reject);
      sock.write(
        `POST ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
          protocols.map((p) => `X-Stream-Protocol-Version: ${p}\r\n`).join('') +
          'Content-Length: 0\r\n\r\n',
      );
    });
  }

  private onBytes(b: Buffer): void {
    for (const f of this.reader.push(b)) {
      this.inChain = this.inChain.then(() => this.onFrame(f));
    }
  }

  private async onFrame(f: Frame): Promise<void> {
    this.frames.push(f);
    if (!f.control) {
      const s = this.streams.get(f.streamId);
      if (!s) return;
      if (f.data.length) s.data.push(f.data);
      if (f.flags & FLAG_FIN) s.fin = true;
      return;
    }
    if (f.type === SYN_REPLY) {
      const { streamId, block } = parseStreamHeaders(f.payload);
      await this.codec.decompress(block);
      const s = this.streams.get(streamId);
      if (s) s.replied = true;
    } else if (f.type === RST_STREAM) {
      const s = this.streams.get(parseIdAndValue(f.payload)[0]);
      if (s) s.reset = true;
    } else if (f.type === WINDOW_UPDATE) {
      this.windowUpdates.push(parseIdAndValue(f.payload));
    } else if (f.type === PING) {
      this.pings.push(f.payload.readUInt32BE(0));
    } else if (f.type === GOAWAY) {
      this.goaway = true;
    }
  }

  private send(build: () => Promise<Buffer> | Buffer): Promise<void> {
    this.chain = this.chain.then(async () => void this.sock.write(await build()));
    return this.chain;
  }

  async create(headers: Record<string, string>, fin = false): Promise<ClientStream> {
    const s: ClientStream = { id: this.nextId, data: [], fin: false, replied: false, reset: false };
    this.nextId += 2;
    this.streams.set(s.id, s);
    await this.send(async () => buildSynStream(s.id, fin ? FLAG_FIN : 0, await this.codec.compress(headers)));
    await waitFor(`SYN_REPLY for stream ${s.id}`, () => s.replied || s.reset, { timeoutMs: 5000 });
    return s;
  }

  write(s: ClientStream, data: string | Buffer, fin = false): Promise<void> {
    return this.send(() => encodeData(s.id, fin ? FLAG_FIN : 0, Buffer.from(data)));
  }

  raw(b: Buffer): Promise<void> {
    return this.send(() => b);
  }

  text(s: ClientStream): string {
    return Buffer.concat(s.data).toString();
  }

  waitText(s: ClientStream, want: string): Promise<string> {
    return waitFor(`"${want}" on stream ${s.id}`, () => this.text(s).includes(want) && this.text(s), { timeoutMs: 5000 });
  }

  close(): void {
    this.sock.destroy();
    this.codec.close();
  }
}

/** A console made of PassThroughs: echoes stdin as "echo:<bytes>", `guest` writes output. */
class FakeConsole {
  readonly guest = new PassThrough();
  openCount = 0;
  resizes: TerminalSize[] = [];
  attach: StreamBackend['attach'] = async (_req, io) => {
    this.openCount++;
    try {
      await new Promise<void>((resolve) => {
        const onGuest = (d: Buffer) => io.stdout?.write(d);
        this.guest.on('data', onGuest);
        const onEnd = () => resolve();
        this.guest.once('end', onEnd);
        io.stdin?.on('data', (d: Buffer) => io.stdout?.write(Buffer.concat([Buffer.from('echo:'), d])));
        io.stdin?.on('end', () => io.stderr?.write('stdin closed\n'));
        io.onResize((s) => this.resizes.push(s));
        io.signal.addEventListener('abort', () => {
          this.guest.off('data', onGuest);
          this.guest.off('end', onEnd);
          resolve();
        });
      });
    } finally {
      this.openCount--;
    }
  };
}

const tcpServers: Server[] = [];
async function echoServer(prefix: string): Promise<number> {
  const srv = createServer((sock) => {
    sock.on('data', (d) => sock.write(prefix + d.toString()));
    sock.on('end', () => sock.end());
  });
  tcpServers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return (srv.address() as { port: number }).port;
}

const dial = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', (err) => reject(new Error(`connecting to 127.0.0.1:${port}: ${err.message}`)));
  });

let now = Date.now();
const consoleFake = new FakeConsole();
let server: StreamServer;
const backend: StreamBackend = {
  attach: (req, io) => consoleFake.attach(req, io),
  exec: async (req, io) => {
    io.stdout?.write(`ran ${req.cmd.join(' ')}\n`);
    io.stderr?.write('some stderr\n');
    return { exitCode: Number(req.cmd[1] ?? 0) };
  },
  portForward: async (_id, port) => dial(port),
};

beforeAll(async () => {
  server = await StreamServer.start({ log, now: () => now, backend });
});

afterAll(async () => {
  await server.close();
  for (const s of tcpServers) s.close();
});

const attachReq = { containerId: 'c1', tty: false, stdin: true, stdout: true, stderr: true };
const V4 = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];

describe('attach over SPDY/3.1 (v4.channel.k8s.io)', () => {
  it('streams both ways, answers PING, returns flow-control credit, and detaching leaves the console', async () => {
    const c = await SpdyClient.open(server.registerAttach(attachReq), V4);
    expect(c.protocol).toBe('v4.channel.k8s.io');
    // client-go's order: error first, then stdin, stdout, stderr.
    const error = await c.create({ streamtype: 'error' });
    const stdin = await c.create({ streamtype: 'stdin' });
    const stdout = await c.create({ streamtype: 'stdout' });
    const stderr = await c.create({ streamtype: 'stderr' });
    expect([error, stdin, stdout, stderr].every((s) => s.replied)).toBe(true);
    await waitFor('attached', () => consoleFake.openCount === 1);

    await c.write(stdin, 'hello');
    await c.waitText(stdout, 'echo:hello');
    consoleFake.guest.write('guest says hi\n');
    await c.waitText(stdout, 'guest says hi');
    // a larger payload than one window, both ways
    const big = 'x'.repeat(200 * 1024);
    await c.write(stdin, big);
    await waitFor('big echo', () => c.text(stdout).length >= 'echo:hello'.length + 'guest says hi\n'.length + 5 + big.length, { timeoutMs: 10000 });
    expect(c.windowUpdates.some(([id, d]) => id === 0 && d > 0)).toBe(true);
    expect(c.windowUpdates.some(([id]) => id === stdin.id)).toBe(true);

    await c.raw(encodePing(1));
    await waitFor('PING echoed', () => c.pings.includes(1));

    await c.write(stdin, '', true); // client closes stdin (FIN)
    await c.waitText(stderr, 'stdin closed');
    c.close();
    await waitFor('console released', () => consoleFake.openCount === 0);
  });

  it('ends with a Success status on the error stream, FIN on every stream and GOAWAY when the console ends', async () => {
    const own = new FakeConsole();
    const s2 = await StreamServer.start({ log, backend: { ...backend, attach: (r, io) => own.attach(r, io) } });
    try {
      const c = await SpdyClient.open(s2.registerAttach({ ...attachReq, stdin: false, stderr: false }), ['v4.channel.k8s.io']);
      const error = await c.create({ streamtype: 'error' });
      const stdout = await c.create({ streamtype: 'stdout' });
      await waitFor('attached', () => own.openCount === 1);
      own.guest.write('bye');
      await c.waitText(stdout, 'bye');
      own.guest.end();
      await waitFor('status', () => error.fin);
      expect(JSON.parse(c.text(error))).toEqual({ metadata: {}, status: 'Success' });
      await waitFor('stdout FIN, GOAWAY, close', () => stdout.fin && c.goaway && c.closed);
    } finally {
      await s2.close();
    }
  });

  it('honours the peer window once it does flow control, and resumes on WINDOW_UPDATE', async () => {
    const own = new FakeConsole();
    const s2 = await StreamServer.start({ log, backend: { ...backend, attach: (r, io) => own.attach(r, io) } });
    try {
      const c = await SpdyClient.open(s2.registerAttach({ ...attachReq, stdin: false, stderr: false }), ['v4.channel.k8s.io']);
      await c.raw(encodeSettings([{ id: 7, value: 1000 }]));
      await c.create({ streamtype: 'error' });
      const stdout = await c.create({ streamtype: 'stdout' });
      await waitFor('attached', () => own.openCount === 1);
      own.guest.write('y'.repeat(3000));
      await waitFor('first window', () => c.text(stdout).length === 1000);
      await new Promise((r) => setTimeout(r, 100));
      expect(c.text(stdout).length).toBe(1000);
      await c.raw(encodeWindowUpdate(stdout.id, 5000));
      await waitFor('rest', () => c.text(stdout).length === 3000);
      c.close();
    } finally {
      await s2.close();
    }
  });

  it('reports exec exit codes as NonZeroExitCode on the error stream', async () => {
    const c = await SpdyClient.open(
      server.registerExec({ containerId: 'c1', cmd: ['false', '3'], tty: false, stdin: false, stdout: true, stderr: true }),
      V4,
    );
    const error = await c.create({ streamtype: 'error' });
    const stdout = await c.create({ streamtype: 'stdout' });
    const stderr = await c.create({ streamtype: 'stderr' });
    await waitFor('status', () => error.fin && stdout.fin && stderr.fin);
    expect(c.text(stdout)).toBe('ran false 3\n');
    expect(c.text(stderr)).toBe('some stderr\n');
    expect(JSON.parse(c.text(error))).toMatchObject({
      status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] },
    });
  });

  it('delivers tty resize events from the resize stream', async () => {
    const c = await SpdyClient.open(server.registerAttach({ ...attachReq, tty: true, stderr: false }), V4);
    await c.create({ streamtype: 'error' });
    await c.create({ streamtype: 'stdin' });
    await c.create({ streamtype: 'stdout' });
    const resize = await c.create({ streamtype: 'resize' });
    await waitFor('attached', () => consoleFake.openCount === 1);
    await c.write(resize, '{"Width":100,"Height":30}\n');
    await waitFor('resize', () => consoleFake.resizes.some((s) => s.width === 100 && s.height === 30));
    c.close();
    await waitFor('console released', () => consoleFake.openCount === 0);
  });
});

describe('SPDY tokens and refusals', () => {
  it('refuses replayed, unknown, expired or wrong-kind tokens with 404', async () => {
    const url = server.registerAttach(attachReq);
    const c = await SpdyClient.open(url, V4);
    c.close();
    await expect(SpdyClient.open(url, V4)).rejects.toThrow('HTTP 404');
    await expect(SpdyClient.open(`${server.baseUrl}/attach/${'A'.repeat(43)}`, V4)).rejects.toThrow('HTTP 404');
    await expect(SpdyClient.open(server.registerAttach(attachReq).replace('/attach/', '/exec/'), V4)).rejects.toThrow('HTTP 404');
    const old = server.registerAttach(attachReq);
    now += 61_000;
    await expect(SpdyClient.open(old, V4)).rejects.toThrow('HTTP 404');
    now = Date.now();
  });

  it('answers an unsupported stream protocol with 400 and leaves the token usable', async () => {
    const url = server.registerAttach(attachReq);
    await expect(SpdyClient.open(url, ['channel.k8s.io'])).rejects.toThrow('HTTP 400');
    await expect(SpdyClient.open(url, [])).rejects.toThrow('HTTP 400');
    const c = await SpdyClient.open(url, ['v4.channel.k8s.io']);
    c.close();
    await waitFor('console released', () => consoleFake.openCount === 0);
  });
});

describe('port-forward over SPDY/3.1 (portforward.k8s.io)', () => {
  it('pipes each data stream to its own TCP connection, both ways, several at once', async () => {
    const p1 = await echoServer('one:');
    const p2 = await echoServer('two:');
    const c = await SpdyClient.open(server.registerPortForward({ podSandboxId: 'p1', ports: [p1, p2] }), ['portforward.k8s.io']);
    expect(c.protocol).toBe('portforward.k8s.io');
    const open = async (port: number, requestId: string) => {
      const error = await c.create({ streamtype: 'error', port: String(port), requestid: requestId });
      await c.write(error, '', true); // client-go closes its side of the error stream at once
      const data = await c.create({ streamtype: 'data', port: String(port), requestid: requestId });
      return { error, data };
    };
    const a = await open(p1, '0');
    const b = await open(p2, '1');
    const a2 = await open(p1, '2');
    await c.write(a.data, 'a');
    await c.write(b.data, 'b');
    await c.write(a2.data, 'c');
    await c.waitText(a.data, 'one:a');
    await c.waitText(b.data, 'two:b');
    await c.waitText(a2.data, 'one:c');
    const big = 'z'.repeat(300 * 1024);
    await c.write(b.data, big);
    // the echo server prefixes every chunk it reads: count the payload bytes that came back
    await waitFor('big echo', () => c.text(b.data).split('z').length - 1 === big.length, { timeoutMs: 10000 });
    // Client closes its side: the pod connection is half-closed, the echo server ends, FIN comes back.
    await c.write(a.data, '', true);
    await waitFor('data FIN', () => a.data.fin);
    expect(c.text(a.error)).toBe('');
    c.close();
  });

  it('reports a refused connection on the paired error stream', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    const port = (dead.address() as { port: number }).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const c = await SpdyClient.open(server.registerPortForward({ podSandboxId: 'p1', ports: [port] }), ['portforward.k8s.io']);
    const error = await c.create({ streamtype: 'error', port: String(port), requestid: '0' });
    const data = await c.create({ streamtype: 'data', port: String(port), requestid: '0' });
    await waitFor('error text', () => error.fin && data.fin);
    expect(c.text(error)).toMatch(new RegExp(`error forwarding port ${port} to pod p1: connecting to 127.0.0.1:${port}: .*ECONNREFUSED`));
    c.close();
  });

  it('reaches only the ports of the CRI request (any, when it names none, as the kubelet asks for SPDY)', async () => {
    const p1 = await echoServer('one:');
    const p2 = await echoServer('two:');
    const url = server.registerPortForward({ podSandboxId: 'p1', ports: [p1] });
    await expect(SpdyClient.open(`${url}?port=${p2}`, ['portforward.k8s.io'])).rejects.toThrow('HTTP 400');
    const c = await SpdyClient.open(url, ['portforward.k8s.io']);
    const error = await c.create({ streamtype: 'error', port: String(p2), requestid: '0' });
    const data = await c.create({ streamtype: 'data', port: String(p2), requestid: '0' });
    await c.write(data, 'x');
    await waitFor('error text', () => error.fin && data.fin);
    expect(c.text(error)).toBe(`port ${p2} was not part of the port-forward request`);
    expect(c.text(data)).toBe('');
    c.close();
    const any = await SpdyClient.open(server.registerPortForward({ podSandboxId: 'p1', ports: [] }), ['portforward.k8s.io']);
    await any.create({ streamtype: 'error', port: String(p2), requestid: '0' });
    const d2 = await any.create({ streamtype: 'data', port: String(p2), requestid: '0' });
    await any.write(d2, 'y');
    await any.waitText(d2, 'two:y');
    any.close();
  });

  it('resets streams without a valid port header', async () => {
    const c = await SpdyClient.open(server.registerPortForward({ podSandboxId: 'p1', ports: [80] }), ['portforward.k8s.io']);
    const s = await c.create({ streamtype: 'data', port: 'http' });
    expect(s.reset).toBe(true);
    c.close();
  });
});
