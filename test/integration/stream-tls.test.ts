// The streaming server where config `streaming` puts it: its TLS listener (a self-signed
// certificate made here with openssl, trusted by the test's clients as its CA), its bind address
// and the URL the CRI answers carry. Part one drives StreamServer directly with a stand-in exec
// backend (the command runs on the host, where the real backend runs it in the guest through
// qemu-guest-agent, which needs a booted VM); part two is the real `vmlet serve` with a real pod
// sandbox (netns + CNI; no VM needed for PortForward's URL and upgrade).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { isLoopback, nodeAddress, StreamServer } from '../../src/stream/server.js';
import type { StreamBackend } from '../../src/stream/backend.js';
import { streamingCheck } from '../../src/doctor.js';
import { call, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';

const log = pino({ level: 'silent' });

interface Cert {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/** A self-signed server certificate for the given IPs (the kubelet's kubelet.crt is one too). */
async function selfSigned(ips: string[]): Promise<Cert> {
  const dir = tempDir('vmlet-tls-');
  const certFile = join(dir, 'node.crt');
  const keyFile = join(dir, 'node.key');
  await execa('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=vmlet-test-node', '-addext', `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}`,
    '-keyout', keyFile, '-out', certFile,
  ]);
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/** Stand-in exec: runs the command on the host with the session's stdin/stdout/stderr. */
const hostExec: StreamBackend = {
  attach: () => Promise.reject(new Error('no console here')),
  portForward: () => Promise.reject(new Error('no pod here')),
  exec: (req, io) =>
    new Promise((resolve, reject) => {
      const p = spawn(req.cmd[0]!, req.cmd.slice(1), { stdio: 'pipe' });
      p.once('error', reject);
      if (io.stdin) io.stdin.pipe(p.stdin);
      else p.stdin.end();
      if (io.stdout) p.stdout.pipe(io.stdout, { end: false });
      if (io.stderr) p.stderr.pipe(io.stderr, { end: false });
      p.once('close', (code) => resolve({ exitCode: code ?? 255 }));
    }),
};

/** A v5.channel.k8s.io client that keeps every message's bytes per channel. */
function openV5(url: string, ca: Buffer): Promise<{ ws: WebSocket; text: (ch: number) => string; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['v5.channel.k8s.io'], { ca });
    const got: { ch: number; data: Buffer }[] = [];
    let closed = false;
    ws.on('message', (d: Buffer) => got.push({ ch: d[0]!, data: d.subarray(1) }));
    ws.on('close', () => (closed = true));
    ws.once('open', () => resolve({ ws, text: (ch) => Buffer.concat(got.filter((g) => g.ch === ch).map((g) => g.data)).toString(), closed: () => closed }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** An HTTPS GET trusting `ca`: the status code. */
function httpsStatus(url: string, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A plain-HTTP GET: how it failed (a TLS listener does not speak HTTP). */
function plainHttpFails(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest(url.replace(/^https:/, 'http:'), (res) => {
      res.resume();
      resolve(`answered ${res.statusCode}`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

function tcpRefused(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, host);
    s.once('connect', () => (s.destroy(), resolve('connected')));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

let cert: Cert;

beforeAll(async () => {
  cert = await selfSigned(['127.0.0.1', '127.0.0.2']);
});

describe('StreamServer with TLS (stand-in exec backend)', () => {
  let server: StreamServer;
  beforeAll(async () => {
    server = await StreamServer.start({ log, backend: hostExec, tls: { cert: cert.cert, key: cert.key } });
  });
  afterAll(() => server.close());

  it('hands out https URLs', () => {
    expect(server.baseUrl).toBe(`https://127.0.0.1:${server.port}`);
    expect(server.registerExec({ containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: true })).toMatch(
      new RegExp(`^https://127\\.0\\.0\\.1:${server.port}/exec/[A-Za-z0-9_-]{43}$`),
    );
  });

  it('runs an exec over wss end to end: stdin in, stdout and stderr out, the exit code in the status', async () => {
    const url = server.registerExec({ containerId: 'c1', cmd: ['sh', '-c', 'read l; echo "out:$l"; echo err >&2; exit 3'], tty: false, stdin: true, stdout: true, stderr: true });
    const c = await openV5(url, cert.cert);
    c.ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello over tls\n')]));
    c.ws.send(Buffer.from([255, 0])); // v5 close: stdin ends
    const status = await waitFor('the exec status', () => (c.text(3) ? (JSON.parse(c.text(3)) as { status: string; details?: { causes?: { message: string }[] } }) : undefined), { timeoutMs: 10_000 });
    expect(c.text(1)).toBe('out:hello over tls\n');
    expect(c.text(2)).toBe('err\n');
    expect(status).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } });
    await waitFor('the session to close', () => c.closed());
  });

  it('serves the SPDY/3.1 upgrade (the kubelet\'s transport) over TLS too', async () => {
    const url = new URL(server.registerExec({ containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: true }));
    const head = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: url.hostname, port: Number(url.port), ca: cert.cert, servername: '' }, () => {
        s.write(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
      });
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (buf.includes('\r\n\r\n')) {
          s.destroy();
          resolve(buf.slice(0, buf.indexOf('\r\n\r\n')));
        }
      });
      s.once('error', reject);
    });
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toMatch(/X-Stream-Protocol-Version: v4\.channel\.k8s\.io/i);
  });

  it('refuses plain HTTP on the TLS port, and a client that does not trust the certificate', async () => {
    const url = server.registerExec({ containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: true });
    expect(await plainHttpFails(url)).toMatch(/ECONNRESET|HPE_|socket hang up/);
    await expect(openV5(url, Buffer.from(''))).rejects.toThrow(/self-signed certificate|unable to verify/);
    expect(await httpsStatus(url, cert.cert)).toBe(400); // the token is still live: opening it needs an upgrade
  });
});

describe('StreamServer bind address and advertised host', () => {
  it('listens on every address for host "" and advertises a non-loopback address of the node', async () => {
    const s = await StreamServer.start({ log, backend: hostExec, host: '' });
    try {
      const adv = nodeAddress();
      expect(s.baseUrl).toBe(`http://${adv.includes(':') ? `[${adv}]` : adv}:${s.port}`);
      expect(await tcpRefused('127.0.0.1', s.port)).toBe('connected');
      if (!isLoopback(adv)) expect(await tcpRefused(adv, s.port)).toBe('connected');
    } finally {
      await s.close();
    }
  });

  it("the node's address is the IPv4 of the default route's interface, as `ip` shows it", async () => {
    const dev = /\bdev (\S+)/.exec((await execa('ip', ['-4', 'route', 'show', 'default'])).stdout)?.[1];
    if (!dev) return expect(nodeAddress()).toBeTruthy(); // no default route here: any non-loopback address
    const inet = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec((await execa('ip', ['-4', '-o', 'addr', 'show', 'dev', dev])).stdout)?.[1];
    expect(nodeAddress()).toBe(inet);
  });

  it('writes advertiseHost into the URLs, whatever it listens on', async () => {
    const s = await StreamServer.start({ log, backend: hostExec, host: '127.0.0.2', advertiseHost: 'node-1.example' });
    try {
      expect(s.registerPortForward({ podSandboxId: 'p', ports: [80] })).toMatch(new RegExp(`^http://node-1\\.example:${s.port}/portforward/`));
      expect(await tcpRefused('127.0.0.1', s.port)).toBe('ECONNREFUSED');
    } finally {
      await s.close();
    }
  });
});

describe('vmlet doctor: streaming', () => {
  it('is OK on loopback, WARNs off loopback without TLS, is OK with usable TLS files and FAILs with unusable ones', async () => {
    expect(await streamingCheck({ address: '127.0.0.1:0', advertiseAddress: '' })).toMatchObject({ verdict: 'OK' });
    expect(await streamingCheck({ address: '[::1]:10010', advertiseAddress: '' })).toMatchObject({ verdict: 'OK' });
    const open = await streamingCheck({ address: '0.0.0.0:10010', advertiseAddress: '' });
    expect(open.verdict).toBe('WARN');
    expect(open.detail).toMatch(/not loopback/);
    expect(open.fix).toMatch(/streaming\.tls\.certFile/);
    expect(await streamingCheck({ address: ':10010', advertiseAddress: '' })).toMatchObject({ verdict: 'WARN' });
    expect(await streamingCheck({ address: '0.0.0.0:10010', advertiseAddress: '', tls: { certFile: cert.certFile, keyFile: cert.keyFile } })).toMatchObject({ verdict: 'OK' });
    const missing = await streamingCheck({ address: '0.0.0.0:10010', advertiseAddress: '', tls: { certFile: '/nonexistent/node.crt', keyFile: cert.keyFile } });
    expect(missing.verdict).toBe('FAIL');
    expect(missing.detail).toMatch(/streaming\.tls\.certFile \/nonexistent\/node\.crt: ENOENT/);
    const other = await selfSigned(['127.0.0.1']);
    const mismatched = await streamingCheck({ address: '0.0.0.0:10010', advertiseAddress: '', tls: { certFile: cert.certFile, keyFile: other.keyFile } });
    expect(mismatched.verdict).toBe('FAIL');
    expect(mismatched.detail).toMatch(/are not a PEM certificate and its key/);
  });
});

describe('vmlet serve with streaming on 127.0.0.2 over TLS', () => {
  const BRIDGE = `vmst${randomBytes(3).toString('hex')}`;
  let v: VmletProcess | undefined;
  let podId = '';
  const rt = <T>(method: string, req: object) => call<object, T>(v!.runtime, method, req);

  beforeAll(async () => {
    const cni = tempDir('vmlet-stls-cni-');
    writeFileSync(
      join(cni, '10-stls.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: `vmlet-stls-${BRIDGE}`,
        // Its own bridge and /24 (10.250-10.254 belong to other tests).
        plugins: [{ type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', dataDir: join(cni, 'ipam'), ranges: [[{ subnet: '10.247.0.0/24' }]] } }],
      }),
    );
    v = await startVmlet({
      cniConfDir: cni,
      config: `streaming:\n  address: 127.0.0.2:0\n  tls:\n    certFile: ${cert.certFile}\n    keyFile: ${cert.keyFile}\n`,
    });
    const config = { metadata: { name: 'stls', namespace: 'vmlet-stls', uid: randomBytes(8).toString('hex'), attempt: 0 }, hostname: 'stls' };
    ({ pod_sandbox_id: podId } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' }));
  });

  afterAll(async () => {
    if (v) {
      if (podId) await rt('StopPodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
      if (podId) await rt('RemovePodSandbox', { pod_sandbox_id: podId }).catch(() => undefined);
      await v.stop();
    }
    await execa('ip', ['link', 'del', BRIDGE], { reject: false });
  });

  const listening = () => parseLogLines(v!.logLines).find((l) => l.msg === 'streaming server listening') as { url: string; listen: string; tls: boolean };

  it('listens where the config says, with TLS, and logs it', async () => {
    const l = listening();
    expect(l.url).toMatch(/^https:\/\/127\.0\.0\.2:\d+$/);
    expect(l.tls).toBe(true);
    const port = Number(new URL(l.url).port);
    expect(l.listen).toBe(`127.0.0.2:${port}`);
    expect(await tcpRefused('127.0.0.1', port)).toBe('ECONNREFUSED'); // not on every address
  });

  it('PortForward answers an https URL on 127.0.0.2, and the session opens over TLS', async () => {
    const { url } = await rt<{ url: string }>('PortForward', { pod_sandbox_id: podId, port: [8080] });
    expect(url).toMatch(new RegExp(`^${listening().url.replace(/\./g, '\\.')}/portforward/[A-Za-z0-9_-]{43}$`));
    expect(await plainHttpFails(url)).toMatch(/ECONNRESET|HPE_|socket hang up/);
    expect(await httpsStatus(url, cert.cert)).toBe(400); // live token, wants an upgrade
    const ws = new WebSocket(url, ['v4.channel.k8s.io'], { ca: cert.cert });
    const first: Buffer[] = [];
    ws.on('message', (d: Buffer) => first.push(d));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    // The server opens both channels of the port with its number (uint16 LE): 8080 = 0x1f90.
    await waitFor('the port prefixes', () => first.length >= 2);
    expect(first.slice(0, 2).map((d) => [...d])).toEqual([[0, 0x90, 0x1f], [1, 0x90, 0x1f]]);
    ws.close();
    expect(await httpsStatus(url, cert.cert)).toBe(404); // single use
  });

  it('refuses to start when a TLS file cannot be read, naming the key', async () => {
    await expect(startVmlet({ config: `streaming:\n  address: 127.0.0.1:0\n  tls:\n    certFile: /nonexistent/node.crt\n    keyFile: ${cert.keyFile}\n` })).rejects.toThrow(
      /config streaming\.tls\.certFile \/nonexistent\/node\.crt: ENOENT/,
    );
  });
});
