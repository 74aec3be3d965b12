// The streaming server end to end with a real WebSocket client: attach to a pty made by a tiny
// stand-in for QEMU (python's pty module: it holds the master, like QEMU, and echoes what the
// "guest" receives), port-forward to TCP servers on 127.0.0.1.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { request } from 'node:http';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { StreamServer } from '../../src/stream/server.js';
import { vmStreamBackend } from '../../src/stream/vm-backend.js';
import { ConsoleAttacher } from '../../src/stream/console-attach.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: 'silent' });

// Stand-in for QEMU's pty chardev: raw slave, echo every byte the guest receives as "echo:<bytes>",
// and write each line given on stdin as guest output. Exits (closing the master) when stdin closes.
const FAKE_QEMU = `
import os, pty, tty, select, sys
m, s = pty.openpty()
tty.setraw(s)
print(os.ttyname(s), flush=True)
while True:
    r, _, _ = select.select([m, 0], [], [])
    if 0 in r:
        line = os.read(0, 4096)
        if not line:
            break
        os.write(m, line)
    if m in r:
        try:
            d = os.read(m, 4096)
        except OSError:
            continue
        os.write(m, b"echo:" + d)
`;

interface FakeVm {
  proc: ChildProcessWithoutNullStreams;
  pty: string;
}

async function startFakeVm(): Promise<FakeVm> {
  const proc = spawn('python3', ['-c', FAKE_QEMU]);
  const pty = await new Promise<string>((resolve, reject) => {
    proc.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
    proc.once('error', reject);
  });
  return { proc, pty };
}

/** A WebSocket client that keeps every message as {channel, data}. */
class Client {
  readonly frames: { channel: number; data: Buffer }[] = [];
  closed = false;
  closeCode = 0;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => this.frames.push({ channel: d[0]!, data: d.subarray(1) }));
    ws.on('close', (code) => {
      this.closed = true;
      this.closeCode = code;
    });
  }
  static open(url: string, protocols: string[]): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      const c = new Client(ws);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }
  text(channel: number): string {
    return Buffer.concat(this.frames.filter((f) => f.channel === channel).map((f) => f.data)).toString();
  }
  send(channel: number, data: string | Buffer): void {
    this.ws.send(Buffer.concat([Buffer.from([channel]), Buffer.from(data)]));
  }
  waitText(channel: number, want: string): Promise<string> {
    return waitFor(`"${want}" on channel ${channel}`, () => this.text(channel).includes(want) && this.text(channel), { timeoutMs: 5000 });
  }
  status(): Promise<{ status: string; message?: string }> {
    return waitFor('a status on channel 3', () => {
      const t = this.text(3);
      return t ? (JSON.parse(t) as { status: string; message?: string }) : undefined;
    }, { timeoutMs: 5000 });
  }
}

function httpStatus(url: string, headers: Record<string, string>, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

let now = Date.now();
const attacher = new ConsoleAttacher();
let vm: FakeVm;
let server: StreamServer;
const tcpServers: Server[] = [];

async function echoServer(prefix: string): Promise<number> {
  const srv = createServer((sock) => sock.on('data', (d) => sock.write(prefix + d.toString())));
  tcpServers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return (srv.address() as { port: number }).port;
}

beforeAll(async () => {
  vm = await startFakeVm();
  server = await StreamServer.start({
    log,
    now: () => now,
    backend: vmStreamBackend({ consolePty: async () => vm.pty, podAddress: async () => '127.0.0.1' }, attacher),
  });
});

afterAll(async () => {
  await server.close();
  vm.proc.kill();
  for (const s of tcpServers) s.close();
});

afterEach(() => {
  now = Date.now();
});

const attachReq = { containerId: 'c1', tty: false, stdin: true, stdout: true, stderr: true };

describe('attach (v5.channel.k8s.io) to a serial pty', () => {
  it('streams both ways, and detaching leaves the console (VM) running', async () => {
    const url = server.registerAttach(attachReq);
    expect(url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${server.port}/attach/[A-Za-z0-9_-]{43}$`));
    const c = await Client.open(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
    expect(c.ws.protocol).toBe('v5.channel.k8s.io');
    await waitFor('opening frame', () => c.frames.length > 0);
    expect(c.frames[0]).toEqual({ channel: 1, data: Buffer.alloc(0) });

    c.send(0, 'hello');
    await c.waitText(1, 'echo:hello');
    vm.proc.stdin.write('guest says hi\n');
    await c.waitText(1, 'guest says hi');
    c.send(255, Buffer.from([0])); // v5: client closed stdin
    c.ws.close();
    await waitFor('console released', () => attacher.openCount === 0);
    expect(vm.proc.exitCode).toBeNull();

    // Attach again (new token): the same console still answers.
    const c2 = await Client.open(server.registerAttach(attachReq), ['v5.channel.k8s.io']);
    c2.send(0, 'again');
    await c2.waitText(1, 'echo:again');
    c2.ws.close();
    await waitFor('console released', () => attacher.openCount === 0);
  });

  it('fans the console out to two clients attached at once', async () => {
    const a = await Client.open(server.registerAttach(attachReq), ['v4.channel.k8s.io']);
    const b = await Client.open(server.registerAttach(attachReq), ['v5.channel.k8s.io']);
    expect(a.ws.protocol).toBe('v4.channel.k8s.io');
    expect(attacher.openCount).toBe(1);
    vm.proc.stdin.write('to both\n');
    await a.waitText(1, 'to both');
    await b.waitText(1, 'to both');
    b.send(0, 'from-b');
    await a.waitText(1, 'echo:from-b');
    a.ws.close();
    b.ws.close();
    await waitFor('console released', () => attacher.openCount === 0);
  });

  it('ends with a Success status when the console goes away (VM stopped)', async () => {
    const own = await startFakeVm();
    const s2 = await StreamServer.start({
      log,
      backend: vmStreamBackend({ consolePty: async () => own.pty, podAddress: async () => '127.0.0.1' }),
    });
    try {
      const c = await Client.open(s2.registerAttach(attachReq), ['v5.channel.k8s.io']);
      c.send(0, 'x');
      await c.waitText(1, 'echo:x');
      own.proc.stdin.end(); // the fake QEMU exits, closing the pty master
      expect(await c.status()).toEqual({ metadata: {}, status: 'Success' });
      await waitFor('close', () => c.closed);
      expect(c.closeCode).toBe(1000);
    } finally {
      own.proc.kill();
      await s2.close();
    }
  });

  it('reports a console that cannot be opened on the error channel', async () => {
    const s2 = await StreamServer.start({
      log,
      backend: vmStreamBackend({ consolePty: async () => '/dev/pts/does-not-exist', podAddress: async () => '127.0.0.1' }),
    });
    try {
      const c = await Client.open(s2.registerAttach(attachReq), ['v5.channel.k8s.io']);
      const st = await c.status();
      expect(st.status).toBe('Failure');
      expect(st.message).toMatch(/ENOENT/);
    } finally {
      await s2.close();
    }
  });
});

describe('tokens and refusals', () => {
  it('refuses a replayed, unknown, expired or wrong-kind token with 404 before upgrading', async () => {
    const url = server.registerAttach(attachReq);
    const c = await Client.open(url, ['v5.channel.k8s.io']);
    c.ws.close();
    await expect(Client.open(url, ['v5.channel.k8s.io'])).rejects.toThrow('HTTP 404');
    await expect(Client.open(`${server.baseUrl}/attach/${'A'.repeat(43)}`, ['v5.channel.k8s.io'])).rejects.toThrow('HTTP 404');
    const wrongKind = server.registerAttach(attachReq).replace('/attach/', '/exec/');
    await expect(Client.open(wrongKind, ['v5.channel.k8s.io'])).rejects.toThrow('HTTP 404');
    const old = server.registerAttach(attachReq);
    now += 61_000;
    await expect(Client.open(old, ['v5.channel.k8s.io'])).rejects.toThrow('HTTP 404');
    await waitFor('console released', () => attacher.openCount === 0);
  });

  it('answers an unknown subprotocol (WebSocket or SPDY) with 400 and leaves the token usable', async () => {
    const url = server.registerAttach(attachReq);
    // SPDY is served (spdy-*.ts), but not the old unversioned channel.k8s.io protocol.
    expect(await httpStatus(url, { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': 'channel.k8s.io' }, 'POST')).toBe(400);
    await expect(Client.open(url, ['v9.channel.k8s.io'])).rejects.toThrow('HTTP 400');
    expect(await httpStatus(url, {})).toBe(400); // plain GET: live token, but needs an upgrade
    const c = await Client.open(url, ['v5.channel.k8s.io']);
    c.ws.close();
    expect(await httpStatus(url, {})).toBe(404);
    await waitFor('console released', () => attacher.openCount === 0);
  });
});

describe('exec', () => {
  it('is not available yet: a Failure status saying so', async () => {
    const c = await Client.open(
      server.registerExec({ containerId: 'c1', cmd: ['ls'], tty: false, stdin: false, stdout: true, stderr: true }),
      ['v5.channel.k8s.io'],
    );
    const st = await c.status();
    expect(st).toMatchObject({ status: 'Failure', message: 'exec streaming is not available yet' });
    await waitFor('close', () => c.closed);
  });
});

describe('port-forward (v4.channel.k8s.io)', () => {
  it('forwards several ports in one session, each opened by its port prefix', async () => {
    const p1 = await echoServer('one:');
    const p2 = await echoServer('two:');
    const url = server.registerPortForward({ podSandboxId: 'p1', ports: [p1, p2] });
    const c = await Client.open(`${url}?port=${p1}&port=${p2}`, ['v4.channel.k8s.io']);
    expect(c.ws.protocol).toBe('v4.channel.k8s.io');
    const le = (p: number) => Buffer.from([p & 0xff, p >> 8]);
    await waitFor('port prefixes', () => c.frames.length >= 4);
    expect(c.frames.slice(0, 4)).toEqual([
      { channel: 0, data: le(p1) },
      { channel: 1, data: le(p1) },
      { channel: 2, data: le(p2) },
      { channel: 3, data: le(p2) },
    ]);
    c.send(0, 'a');
    c.send(2, 'b');
    await c.waitText(0, 'one:a');
    await c.waitText(2, 'two:b');
    c.ws.close();
  });

  it('reaches only the ports of the CRI request: a ?port= outside them is refused, one among them picks', async () => {
    let reached = 0;
    const other = createServer((sock) => {
      reached++;
      sock.destroy();
    });
    tcpServers.push(other);
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    const otherPort = (other.address() as { port: number }).port;
    const p1 = await echoServer('one:');
    const p2 = await echoServer('two:');
    const url = server.registerPortForward({ podSandboxId: 'p1', ports: [p1, p2] });
    await expect(Client.open(`${url}?port=${otherPort}`, ['v4.channel.k8s.io'])).rejects.toThrow('HTTP 400');
    await expect(Client.open(`${url}?port=${p2}&port=${otherPort}`, ['v4.channel.k8s.io'])).rejects.toThrow('HTTP 400');
    expect(reached).toBe(0);
    // The refusal did not use the token up: the same URL still forwards the request's own ports.
    const c = await Client.open(`${url}?port=${p2}`, ['v4.channel.k8s.io']);
    await waitFor('port prefixes', () => c.frames.length >= 2);
    c.send(0, 'b');
    await c.waitText(0, 'two:b');
    c.ws.close();
    // A request with no port forwards nothing, whatever the query says.
    await expect(Client.open(`${server.registerPortForward({ podSandboxId: 'p1', ports: [] })}?port=${otherPort}`, ['v4.channel.k8s.io'])).rejects.toThrow('HTTP 400');
    expect(reached).toBe(0);
  });

  it('says why a ?port= is refused', async () => {
    const url = server.registerPortForward({ podSandboxId: 'p1', ports: [8080] });
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(`${url}?port=22`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': 'v4.channel.k8s.io' } });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${text.trim()}`));
      });
      req.on('upgrade', (res, sock) => {
        sock.destroy();
        resolve(`${res.statusCode} (upgraded)`);
      });
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('400 port 22 was not part of the PortForward request (ports 8080)');
  });

  it('uses the request ports without ?port=, and reports a refused connection on the error channel', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    const port = (dead.address() as { port: number }).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const c = await Client.open(server.registerPortForward({ podSandboxId: 'p1', ports: [port] }), []);
    await c.waitText(1, 'ECONNREFUSED');
    expect(c.text(1)).toMatch(new RegExp(`error forwarding port ${port} to pod p1: connecting to 127.0.0.1:${port}`));
    await waitFor('close', () => c.closed);
  });

  it('closes the session when the pod side closes the connection', async () => {
    const srv = createServer((sock) => sock.end('bye'));
    tcpServers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    const c = await Client.open(server.registerPortForward({ podSandboxId: 'p1', ports: [port] }), ['v4.channel.k8s.io']);
    await c.waitText(0, 'bye');
    await waitFor('close', () => c.closed);
  });
});
