// The Go guest agent (src/guest/agent/) on this host in --connect mode, driven by AgentClient:
// a busybox image whose applets are ABSOLUTE symlinks (/bin/sh -> /bin/busybox, resolved inside
// the rootfs), real overlay/proc/devpts mounts, pipes and ptys, flow control, reconnects. Also
// runs the agent's `go vet` and `go test`. Needs root, Go and busybox-static.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmletError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { AgentClient, type CreateContainerParams, type ExitEvent } from '../../src/guest/agent-client.js';
import { ROOT } from '../helpers/vmlet.js';
import { waitFor } from '../helpers/wait.js';
import { mountsUnder } from '../../src/util/mountinfo.js';

const AGENT_SRC = join(ROOT, 'src/guest/agent');
const CACHE = join(ROOT, '.cache/guest-agent');
const BIN = join(CACHE, 'vmlet-agent');
const GO_ENV = { ...process.env, GOFLAGS: '-mod=mod', GOPROXY: 'off', GOCACHE: join(CACHE, 'gocache'), GOPATH: join(CACHE, 'gocache/gopath'), CGO_ENABLED: '0' };
const APPLETS = ['sh', 'cat', 'echo', 'sleep', 'id', 'stty', 'pwd', 'seq', 'true', 'ls', 'head', 'wc', 'tr', 'dd', 'grep', 'touch', 'chown', 'tty', 'ps'];

// linux/capability.h's bit numbers, and containerd's default set.
const CAP_BITS: Record<string, number> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7,
  CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9, CAP_NET_BIND_SERVICE: 10, CAP_NET_BROADCAST: 11, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15, CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17, CAP_SYS_CHROOT: 18, CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23, CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25, CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27,
  CAP_LEASE: 28, CAP_AUDIT_WRITE: 29, CAP_AUDIT_CONTROL: 30, CAP_SETFCAP: 31, CAP_MAC_OVERRIDE: 32, CAP_MAC_ADMIN: 33, CAP_SYSLOG: 34,
  CAP_WAKE_ALARM: 35, CAP_BLOCK_SUSPEND: 36, CAP_AUDIT_READ: 37, CAP_PERFMON: 38, CAP_BPF: 39, CAP_CHECKPOINT_RESTORE: 40,
};
const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

/** The /proc/PID/status hex of a capability set. */
function capMask(caps: string[]): string {
  let m = 0n;
  for (const c of caps) m |= 1n << BigInt(CAP_BITS[c]!);
  return m.toString(16).padStart(16, '0');
}

/** A field of /proc/PID/status text, e.g. CapEff. */
function statusField(text: string, name: string): string | undefined {
  return new RegExp(`^${name}:\\s+(\\S+)$`, 'm').exec(text)?.[1];
}
const log = createLogger('warn');

function newestSource(): number {
  return Math.max(...readdirSync(AGENT_SRC).map((f) => statSync(join(AGENT_SRC, f)).mtimeMs));
}

function buildAgent(): void {
  if (existsSync(BIN) && statSync(BIN).mtimeMs > newestSource()) return;
  execFileSync(join(AGENT_SRC, 'build.sh'), [BIN], { stdio: 'inherit', env: GO_ENV });
}

function cgroupParent(): string | undefined {
  for (const d of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    if (existsSync(join(d, 'cgroup.procs')) && existsSync(join(d, 'cgroup.subtree_control'))) return d;
  }
  return undefined;
}

let dir: string;
let server: Server;
let agent: ChildProcess;
let agentLog = '';
let client: AgentClient;
let cgroupRoot: string;
const sockets: Socket[] = [];
const socketWaiters: Array<(s: Socket) => void> = [];
let readyMs = 0;

function nextSocket(): Promise<Socket> {
  const s = sockets.shift();
  if (s) return Promise.resolve(s);
  return new Promise((resolve) => socketWaiters.push(resolve));
}

/** create_container's security fields (docs/guest-agent.md), all optional. */
interface SecurityParams { privileged?: boolean; capabilities?: string[]; noNewPrivs?: boolean; maskedPaths?: string[]; readonlyPaths?: string[]; pidNamespace?: 'container' | 'pod' }

function container(id: string, args: string[], more: Partial<CreateContainerParams> & SecurityParams = {}): CreateContainerParams & SecurityParams {
  return {
    id, image: 'bb', args, env: ['PATH=/usr/local/bin:/usr/bin:/bin'], cwd: '/', user: { uid: 0, gid: 0, groups: [] },
    tty: false, stdin: false, stdinOnce: false, readonlyRootfs: false, mounts: [], memoryLimitBytes: 0, cpuQuotaUs: 0, cpuPeriodUs: 0,
    ...more,
  };
}

interface Run { stdout: () => string; stderr: () => string; exit: Promise<ExitEvent> }

/** Attaches a collecting sink to the stream and resolves its exit event. */
function watch(stream: number, onChunk?: (d: Buffer) => Promise<void> | void): Run {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  client.attachSink(stream, {
    stdout: (d) => {
      out.push(d);
      return onChunk?.(d);
    },
    stderr: (d) => void err.push(d),
  });
  const exit = new Promise<ExitEvent>((resolve) => {
    const on = (e: ExitEvent) => {
      if (e.stream !== stream) return;
      client.off('exit', on);
      resolve(e);
    };
    client.on('exit', on);
  });
  return { stdout: () => Buffer.concat(out).toString(), stderr: () => Buffer.concat(err).toString(), exit };
}

async function runContainer(p: CreateContainerParams, stream: number): Promise<Run & { e: ExitEvent }> {
  await client.createContainer(p);
  const r = watch(stream);
  await client.startContainer(p.id, stream);
  return { ...r, e: await r.exit };
}

function haveGo(): boolean {
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const HAVE = process.getuid?.() === 0 && existsSync('/bin/busybox') && haveGo();

// Root (mounts), Go (the build) and busybox-static (the image) are needed.
describe.skipIf(!HAVE)('vmlet guest agent on this host', () => {
  beforeAll(async () => {
    buildAgent();
    dir = mkdtempSync('/tmp/vmlet-agent-');
    const img = join(dir, 'images/bb');
    for (const d of ['bin', 'usr/bin', 'etc', 'tmp']) mkdirSync(join(img, d), { recursive: true });
    copyFileSync('/bin/busybox', join(img, 'bin/busybox'));
    for (const a of APPLETS) symlinkSync('/bin/busybox', join(img, 'bin', a));
    symlinkSync('/bin/busybox', join(img, 'usr/bin/env'));
    writeFileSync(join(img, 'etc/secret'), 's3cret\n');
    mkdirSync(join(img, 'srv/dir'), { recursive: true });
    writeFileSync(join(img, 'srv/dir/entry'), 'x\n');
    writeFileSync(join(img, 'bin/notelf'), 'not a program\n', { mode: 0o755 });
    mkdirSync(join(dir, 'sysctl/net/ipv4'), { recursive: true });
    const parent = cgroupParent();
    cgroupRoot = parent ? join(parent, `vmlet-test-${process.pid}`) : join(dir, 'no-cgroup/vmlet');

    server = createServer((s) => {
      const w = socketWaiters.shift();
      if (w) w(s);
      else sockets.push(s);
    });
    const sock = join(dir, 'agent.sock');
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    const t0 = performance.now();
    agent = spawn(BIN, ['--connect', sock, '--run-dir', join(dir, 'run'), '--images', join(dir, 'images'), '--scratch', join(dir, 'scratch'), '--cgroup-root', cgroupRoot, '--sysctl-dir', join(dir, 'sysctl')], { stdio: ['ignore', 'inherit', 'pipe'] });
    agent.stderr!.on('data', (d: Buffer) => (agentLog += d.toString()));
    client = AgentClient.over(await nextSocket(), { log });
    await new Promise<void>((resolve) => client.once('ready', () => resolve()));
    readyMs = performance.now() - t0;
  });

  afterAll(async () => {
    try {
      const h = await client.hello({ timeoutMs: 2000 });
      for (const c of h.containers) await client.removeContainer(c.id, { timeoutMs: 10_000 }).catch(() => undefined);
    } catch {
      // the agent is gone already: what it left is cleaned up below
    }
    client?.close();
    if (agent?.pid) {
      agent.kill('SIGKILL');
      await waitFor('the agent to exit', () => agent.exitCode !== null || agent.signalCode !== null, { timeoutMs: 5000 });
    }
    server?.close();
    if (dir) {
      for (const mp of mountsUnder(dir)) execFileSync('umount', ['-l', mp]);
      rmSync(dir, { recursive: true, force: true });
    }
    if (cgroupRoot && existsSync(cgroupRoot)) {
      for (const d of readdirSync(cgroupRoot, { withFileTypes: true })) if (d.isDirectory()) rmdirSync(join(cgroupRoot, d.name));
      rmdirSync(cgroupRoot);
    }
    if (process.env.VMLET_AGENT_LOG) console.log(agentLog);
  });

  // The agent's console, for whoever reads a failure.
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(agentLog);
  });

  it('passes go vet and go test', () => {
    execFileSync('go', ['vet', './...'], { cwd: AGENT_SRC, env: GO_ENV, stdio: 'pipe' });
    execFileSync('go', ['test', './...'], { cwd: AGENT_SRC, env: GO_ENV, stdio: 'pipe' });
  });

  it('says hello, ready, and how big it is', async () => {
    const h = await client.hello();
    expect(h).toMatchObject({ version: 1, containers: [] });
    expect(h.agent).toMatch(/^vmlet-agent /);
    expect(h.bootNs).toBeGreaterThan(1_600_000_000n * 1_000_000_000n);
    expect(agentLog).toContain('VMLET-AGENT-READY');
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1];
    console.log(`vmlet-agent: ${statSync(BIN).size} bytes, idle RSS ${rss} kB, spawn to ready ${readyMs.toFixed(1)} ms`);
  });

  it('sets up the pod: files, sysctls, and refuses a sysctl that is not namespaced', async () => {
    await client.setupPod({ hostname: 'pod-1', hosts: '10.1.2.3 pod-1\n', resolvConf: 'nameserver 10.96.0.10\n', sysctls: { 'net.ipv4.ip_forward': '1' } });
    expect(readFileSync(join(dir, 'sysctl/net/ipv4/ip_forward'), 'utf8')).toBe('1');
    await expect(client.setupPod({ hostname: 'x', hosts: '', resolvConf: '', sysctls: { 'kernel.panic': '1' } })).rejects.toMatchObject({ kind: 'invalid-argument' });
    await client.setupPod({ hostname: 'pod-1', hosts: '10.1.2.3 pod-1\n', resolvConf: 'nameserver 10.96.0.10\n', sysctls: {} });
    const r = await runContainer(container('files', ['cat', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname']), 10);
    expect(r.stdout()).toBe('10.1.2.3 pod-1\nnameserver 10.96.0.10\npod-1\n');
  });

  it('runs a container: stdout and stderr apart, exit code 3', async () => {
    const r = await runContainer(container('c1', ['sh', '-c', 'echo out; echo err >&2; exit 3']), 1);
    expect(r.stdout()).toBe('out\n');
    expect(r.stderr()).toBe('err\n');
    expect(r.e).toMatchObject({ id: 'c1', stream: 1, exec: false, exitCode: 3, signal: 0, oomKilled: false });
    expect(r.e.finishedAt).toBeGreaterThan(0n);
  });

  it('runs as the given user and groups', async () => {
    const r = await runContainer(container('c2', ['id'], { user: { uid: 1234, gid: 1234, groups: [2000, 3000] } }), 2);
    expect(r.stdout()).toMatch(/^uid=1234 gid=1234 groups=(1234,)?2000,3000\n$/);
  });

  it('passes env and makes the cwd', async () => {
    const r = await runContainer(container('c3', ['/usr/bin/env', 'sh', '-c', 'echo $FOO; pwd'], { env: ['FOO=bar baz'], cwd: '/work/dir' }), 3);
    expect(r.stdout()).toBe('bar baz\n/work/dir\n');
    expect(r.e.exitCode).toBe(0);
  });

  it('signals: TERM to sleep is exit 143, signal 15', async () => {
    await client.createContainer(container('c4', ['sleep', '100']));
    const r = watch(4);
    const { pid, startedAt } = await client.startContainer('c4', 4);
    expect(pid).toBeGreaterThan(0);
    expect(startedAt).toBeGreaterThan(0n);
    expect((await client.hello()).containers.find((c) => c.id === 'c4')).toMatchObject({ state: 'running', pid, stream: 4 });
    await client.signal('c4', 15);
    expect(await r.exit).toMatchObject({ exitCode: 143, signal: 15 });
    await expect(client.signal('c4', 15)).rejects.toMatchObject({ kind: 'failed-precondition' });
  });

  it('execs with a tty and resizes it; execs with stdin; kills an exec by its stream', async () => {
    await client.createContainer(container('c5', ['sleep', '100']));
    const main = watch(5);
    await client.startContainer('c5', 5);

    const tty = 2 ** 31 + 1;
    const t = watch(tty);
    await client.exec({ id: 'c5', stream: tty, args: ['sh'], env: [], tty: true, stdin: true });
    await client.resize(tty, 100, 40);
    client.writeStdin(tty, Buffer.from('stty size; exit 7\n'));
    expect(await t.exit).toMatchObject({ exec: true, exitCode: 7 });
    expect(t.stdout()).toContain('40 100');
    expect(t.stderr()).toBe('');

    const cat = 2 ** 31 + 2;
    const c = watch(cat);
    await client.exec({ id: 'c5', stream: cat, args: ['cat'], env: [], tty: false, stdin: true });
    client.writeStdin(cat, Buffer.from('hello\n'));
    await waitFor('cat to echo', () => c.stdout() === 'hello\n');
    client.closeStdin(cat);
    expect(await c.exit).toMatchObject({ exitCode: 0 });

    const sl = 2 ** 31 + 3;
    const s = watch(sl);
    await client.exec({ id: 'c5', stream: sl, args: ['sleep', '100'], env: [], tty: false, stdin: false });
    await client.signal('c5', 9, sl);
    expect(await s.exit).toMatchObject({ exitCode: 137, signal: 9 });

    await expect(client.exec({ id: 'c5', stream: 2 ** 31 + 4, args: ['nope'], env: [], tty: false, stdin: false })).rejects.toMatchObject({
      kind: 'not-found',
      message: 'exec: "nope": executable file not found in $PATH',
    });
    await client.signal('c5', 9);
    expect(await main.exit).toMatchObject({ exitCode: 137 });
  });

  it('gives a stdinOnce container its stdin until the first close', async () => {
    await client.createContainer(container('c8', ['cat'], { stdin: true, stdinOnce: true }));
    const r = watch(8);
    await client.startContainer('c8', 8);
    client.writeStdin(8, Buffer.from('one\n'));
    client.closeStdin(8);
    expect(await r.exit).toMatchObject({ exitCode: 0 });
    expect(r.stdout()).toBe('one\n');
  });

  it('refuses a command that is not in the image and leaves nothing behind', async () => {
    const err = await client.createContainer(container('c6', ['nonexistent'])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmletError);
    expect(err).toMatchObject({ kind: 'invalid-argument', message: 'exec: "nonexistent": executable file not found in $PATH' });
    expect(existsSync(join(dir, 'run/c/c6'))).toBe(false);
    expect(existsSync(join(dir, 'scratch/c6'))).toBe(false);
    expect(mountsUnder(join(dir, 'run/c/c6'))).toEqual([]);
    await expect(client.createContainer(container('c1', ['true']))).rejects.toMatchObject({ kind: 'already-exists' });
    await expect(client.startContainer('nope', 99)).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('holds a fast writer to the window of a slow reader, and loses nothing', async () => {
    const n = 600_000; // seq 1 600000: 4.4 MB
    const expected = Array.from({ length: n }, (_, i) => `${i + 1}\n`).join('');
    let gate: () => void = () => {};
    const paused = new Promise<void>((resolve) => (gate = resolve));
    let first = true;
    const r = watch(7, async () => {
      if (first) {
        first = false;
        await paused;
      } else if (Math.random() < 0.05) await sleep(2);
    });
    await client.createContainer(container('c7', ['seq', '1', String(n)]));
    const socket = (client as unknown as { socket: Socket }).socket;
    let received = 0;
    const count = (d: Buffer) => (received += d.length);
    socket.on('data', count);
    await client.startContainer('c7', 7);
    await sleep(500);
    socket.off('data', count);
    // Stopped by the window: 256 KiB of output plus frame headers and the start response.
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(256 * 1024 + 2048);
    gate();
    expect(await r.exit).toMatchObject({ exitCode: 0 });
    expect(r.stdout().length).toBe(expected.length);
    expect(r.stdout() === expected).toBe(true);
  });

  it('applies a capability set to the main process and its execs: bounding, effective, permitted', async () => {
    const want = capMask(DEFAULT_CAPS);
    const r = await runContainer(container('k1', ['grep', 'Cap', '/proc/self/status'], { capabilities: DEFAULT_CAPS }), 20);
    expect(r.e.exitCode).toBe(0);
    expect(want).toBe('00000000a80425fb'); // docker's and containerd's well-known default
    for (const f of ['CapBnd', 'CapEff', 'CapPrm']) expect(statusField(r.stdout(), f)).toBe(want);
    expect(statusField(r.stdout(), 'CapInh')).toBe('0000000000000000');
    expect(statusField(r.stdout(), 'CapAmb')).toBe('0000000000000000');

    const admin = await runContainer(container('k2', ['grep', 'Cap', '/proc/self/status'], { capabilities: [...DEFAULT_CAPS, 'CAP_SYS_ADMIN'] }), 21);
    expect(statusField(admin.stdout(), 'CapEff')).toBe(capMask([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']));
    expect(BigInt('0x' + statusField(admin.stdout(), 'CapEff')) & (1n << 21n)).toBe(1n << 21n);

    // An exec inherits the container's set, and its no_new_privs.
    await client.createContainer(container('k3', ['sleep', '100'], { capabilities: DEFAULT_CAPS, noNewPrivs: true }));
    const main = watch(22);
    await client.startContainer('k3', 22);
    const ex = watch(2 ** 31 + 20);
    await client.exec({ id: 'k3', stream: 2 ** 31 + 20, args: ['grep', '-E', 'Cap|NoNewPrivs', '/proc/self/status'], env: [], tty: false, stdin: false });
    expect(await ex.exit).toMatchObject({ exitCode: 0 });
    expect(statusField(ex.stdout(), 'CapBnd')).toBe(want);
    expect(statusField(ex.stdout(), 'CapEff')).toBe(want);
    expect(statusField(ex.stdout(), 'NoNewPrivs')).toBe('1');
    await client.signal('k3', 9);
    expect(await main.exit).toMatchObject({ exitCode: 137 });
  });

  it('with an empty capability set root cannot chown; a non-root user has no effective capabilities', async () => {
    const r = await runContainer(container('k4', ['sh', '-c', 'grep CapEff /proc/self/status; touch /tmp/f; chown 1234 /tmp/f; echo rc=$?'], { capabilities: [] }), 23);
    expect(statusField(r.stdout(), 'CapEff')).toBe('0000000000000000');
    expect(r.stdout()).toMatch(/rc=[1-9]/);
    expect(r.stderr()).toMatch(/Operation not permitted/);

    const u = await runContainer(container('k5', ['grep', 'Cap', '/proc/self/status'], { capabilities: DEFAULT_CAPS, user: { uid: 1234, gid: 1234, groups: [] } }), 24);
    expect(statusField(u.stdout(), 'CapEff')).toBe('0000000000000000');
    expect(statusField(u.stdout(), 'CapPrm')).toBe('0000000000000000');
    expect(statusField(u.stdout(), 'CapBnd')).toBe(capMask(DEFAULT_CAPS));

    // Without `capabilities` (an older host): as before, root has all the agent has.
    const agentBnd = statusField(readFileSync(`/proc/${agent.pid}/status`, 'utf8'), 'CapBnd');
    const old = await runContainer(container('k6', ['grep', '-E', 'CapEff|NoNewPrivs', '/proc/self/status']), 25);
    expect(statusField(old.stdout(), 'CapEff')).toBe(agentBnd);
    expect(statusField(old.stdout(), 'NoNewPrivs')).toBe('0');
  });

  it('sets no_new_privs', async () => {
    const r = await runContainer(container('k7', ['grep', 'NoNewPrivs', '/proc/self/status'], { noNewPrivs: true, user: { uid: 1234, gid: 1234, groups: [] } }), 26);
    expect(r.stdout()).toBe('NoNewPrivs:\t1\n');
  });

  it('masks paths and makes paths read-only, skipping what does not exist', async () => {
    const script = 'cat /etc/secret; ls -A /srv/dir; echo ---; touch /srv/new && echo wrote srv; touch /tmp/new && echo wrote tmp; echo x > /etc/secret && echo wrote secret; true';
    const plain = await runContainer(container('m1', ['sh', '-c', script]), 27);
    expect(plain.stdout()).toBe('s3cret\nentry\n---\nwrote srv\nwrote tmp\nwrote secret\n');
    const r = await runContainer(container('m2', ['sh', '-c', script], { maskedPaths: ['/etc/secret', '/srv/dir', '/no/such/path', '/etc/hosts/x'], readonlyPaths: ['/srv', '/nope'] }), 28);
    expect(r.e.exitCode).toBe(0);
    // A masked file is /dev/null: what is written there is lost, the file is untouched.
    expect(r.stdout()).toBe('---\nwrote tmp\nwrote secret\n');
    expect(r.stderr()).toMatch(/Read-only file system/);
    expect(existsSync(join(dir, 'scratch/m2/upper/etc/secret'))).toBe(false);
    expect(existsSync(join(dir, 'scratch/m2/upper/srv'))).toBe(false);
    // A privileged container has no masked or read-only paths.
    const p = await runContainer(container('m3', ['sh', '-c', 'cat /etc/secret; ls -A /srv/dir'], { privileged: true, maskedPaths: ['/etc/secret', '/srv/dir'], readonlyPaths: ['/srv'] }), 29);
    expect(p.stdout()).toBe('s3cret\nentry\n');
  });

  it('gives a container its own PID namespace with pidNamespace "container": PID 1, its proc, execs inside it', async () => {
    await client.createContainer(container('n1', ['sh', '-c', 'echo pid=$$; exec sleep 100'], { pidNamespace: 'container', maskedPaths: ['/proc/timer_list'], readonlyPaths: ['/proc/sys'] }));
    const main = watch(40);
    await client.startContainer('n1', 40);
    await waitFor('the main process to print its pid', () => main.stdout() !== '');
    expect(main.stdout()).toBe('pid=1\n');
    const run = async (stream: number, args: string[]) => {
      const r = watch(stream);
      await client.exec({ id: 'n1', stream, args, env: [], tty: false, stdin: false });
      return { ...r, e: await r.exit };
    };
    // critest's "runtime should support ContainerPID": /proc/1 is the container's program.
    const cmd = await run(2 ** 31 + 40, ['cat', '/proc/1/cmdline']);
    expect(cmd.stdout()).toBe('sleep\0' + '100\0');
    expect(cmd.e).toMatchObject({ exec: true, exitCode: 0, signal: 0 });
    const ps = await run(2 ** 31 + 41, ['sh', '-c', 'echo $$; ps -o pid,args']);
    const [execPid, ...rows] = ps.stdout().trim().split('\n');
    expect(Number(execPid)).toBeGreaterThan(1);
    expect(rows[1]).toMatch(/^\s*1\s+sleep 100$/);
    expect(rows.length).toBeLessThanOrEqual(4); // header, sleep, sh, ps: nothing of the host's
    // Exit codes, output and signals pass through the launcher that waits for the exec.
    const code = await run(2 ** 31 + 42, ['sh', '-c', 'echo out; echo err >&2; exit 5']);
    expect(code.stdout()).toBe('out\n');
    expect(code.stderr()).toBe('err\n');
    expect(code.e).toMatchObject({ exitCode: 5, signal: 0 });
    // The masked and read-only paths under /proc apply to the container's proc.
    const sec = await run(2 ** 31 + 43, ['sh', '-c', 'wc -c < /proc/timer_list; h=$(cat /proc/sys/kernel/hostname); echo "$h" > /proc/sys/kernel/hostname; echo rc=$?']);
    expect(sec.stdout()).toBe('0\nrc=1\n');
    expect(sec.stderr()).toMatch(/Read-only file system/);
    for (const [sig, stream] of [[15, 2 ** 31 + 44], [9, 2 ** 31 + 45]] as const) {
      const s = watch(stream);
      // It would sleep past the test: the exit, with the signal's number, is the signal's doing.
      await client.exec({ id: 'n1', stream, args: ['sleep', '3600'], env: [], tty: false, stdin: false });
      await client.signal('n1', sig, stream);
      expect(await s.exit).toMatchObject({ exitCode: 128 + sig, signal: sig });
    }
    // Nothing of them runs (a zombie at most: the container's PID 1, sleep, reaps nothing).
    const left = await run(2 ** 31 + 48, ['ps', '-o', 'stat,args']);
    expect(left.stdout().split('\n').filter((l) => l.includes('sleep 3600') && !/^\s*Z/.test(l))).toEqual([]);
    const tty = 2 ** 31 + 46;
    const t = watch(tty);
    await client.exec({ id: 'n1', stream: tty, args: ['sh'], env: [], tty: true, stdin: true });
    client.writeStdin(tty, Buffer.from('tr "\\0" " " < /proc/1/cmdline; echo; exit 7\n'));
    expect(await t.exit).toMatchObject({ exitCode: 7 });
    expect(t.stdout()).toContain('sleep 100 ');
    // An interactive shell (its own process group, job control) running a job, killed by its stream.
    const sh = 2 ** 31 + 49;
    const k = watch(sh);
    await client.exec({ id: 'n1', stream: sh, args: ['sh', '-i'], env: [], tty: true, stdin: true });
    client.writeStdin(sh, Buffer.from('echo ready; sleep 31\n'));
    await waitFor('the shell to run its job', () => k.stdout().includes('ready\r\n'));
    await sleep(200);
    await client.signal('n1', 9, sh);
    expect(await k.exit).toMatchObject({ exitCode: 137, signal: 9 });
    await waitFor('the shell and its job to end', async () => {
      const r = await run(2 ** 31 + 50 + Math.floor(Math.random() * 1e6), ['ps', '-o', 'stat,args']);
      return r.stdout().split('\n').filter((l) => /sleep 31|sh -i/.test(l) && !/^\s*Z/.test(l)).length === 0;
    });
    await client.signal('n1', 9);
    expect(await main.exit).toMatchObject({ exitCode: 137, signal: 9 });
    // Started again (a restart): a new namespace, a new proc.
    const again = watch(41);
    await client.startContainer('n1', 41);
    await waitFor('the restarted main process', () => again.stdout() !== '');
    expect(again.stdout()).toBe('pid=1\n');
    expect((await run(2 ** 31 + 47, ['cat', '/proc/1/cmdline'])).stdout()).toBe('sleep\0' + '100\0');
    await client.signal('n1', 9);
    expect(await again.exit).toMatchObject({ exitCode: 137 });
    await client.removeContainer('n1');
    expect(mountsUnder(join(dir, 'run/c/n1'))).toEqual([]);

    // Without the field (or "pod"): the pod's PID namespace, PID 1 is not the container's.
    for (const [id, more] of [['n2', {}], ['n3', { pidNamespace: 'pod' as const }]] as const) {
      const r = await runContainer(container(id, ['sh', '-c', 'echo $$; cat /proc/1/cmdline'], more), id === 'n2' ? 42 : 43);
      const [pid, cmdline] = r.stdout().split('\n');
      expect(Number(pid)).toBeGreaterThan(1);
      expect(cmdline).not.toContain('echo $$');
      await client.removeContainer(id);
    }
    await expect(client.createContainer(container('n4', ['true'], { pidNamespace: 'host' as 'pod' }))).rejects.toMatchObject({ kind: 'invalid-argument' });
  });

  it('runs a privileged container: every capability, the host devices, a writable /sys, its own ptys', async () => {
    const agentBnd = statusField(readFileSync(`/proc/${agent.pid}/status`, 'utf8'), 'CapBnd');
    const hostDevMounts = mountsUnder('/dev');
    // A device of this host's devtmpfs that the standard /dev lacks.
    const device = ['loop-control', 'kvm', 'fuse', 'kmsg', 'tty0', 'loop0', 'mem'].find((d) => existsSync(join('/dev', d)))!;
    expect(device).toBeDefined();
    const script = `grep CapEff /proc/self/status; ls /dev/zero /dev/${device}; grep ' /sys ' /proc/mounts; grep ' /dev/pts ' /proc/mounts`;
    await client.createContainer(container('p1', ['sh', '-c', `${script}; sleep 100`], { privileged: true, capabilities: ['CAP_CHOWN'] }));
    const r = watch(30);
    await client.startContainer('p1', 30);
    await waitFor('the privileged container to report', () => r.stdout().includes('devpts'));
    expect(statusField(r.stdout(), 'CapEff')).toBe(agentBnd);
    expect(r.stdout().split('\n')).toEqual(expect.arrayContaining(['/dev/zero', `/dev/${device}`]));
    expect(r.stdout()).toMatch(/^sysfs \/sys sysfs rw[,\s]/m);
    expect(r.stdout()).toMatch(/^devpts \/dev\/pts devpts .*ptmxmode=0?666/m);
    // An exec's TTY is a pty of the container's own devpts, under the bind of the host's /dev.
    const t = watch(2 ** 31 + 30);
    await client.exec({ id: 'p1', stream: 2 ** 31 + 30, args: ['tty'], env: [], tty: true, stdin: false });
    expect(await t.exit).toMatchObject({ exitCode: 0 });
    expect(t.stdout()).toMatch(/^\/dev\/pts\/\d+\r?\n$/);
    await client.signal('p1', 9);
    expect(await r.exit).toMatchObject({ exitCode: 137 });

    const n = await runContainer(container('p2', ['sh', '-c', `ls /dev; grep ' /sys ' /proc/mounts`]), 31);
    expect(n.stdout().split('\n')).not.toContain(device);
    expect(n.stdout()).toMatch(/^sysfs \/sys sysfs ro[,\s]/m);
    await client.removeContainer('p1');
    await client.removeContainer('p2');
    expect(mountsUnder(join(dir, 'run/c/p1'))).toEqual([]);
    // Nothing mounted in the container's /dev (a bind of the host's) propagated to the host's.
    expect(mountsUnder('/dev')).toEqual(hostDevMounts);
  });

  it('reports a program that cannot be executed at start, with nothing running', async () => {
    await client.createContainer(container('x1', ['/bin/notelf']));
    await expect(client.startContainer('x1', 32)).rejects.toMatchObject({ kind: 'failed-precondition', message: 'start [/bin/notelf]: exec format error' });
    expect((await client.hello()).containers.find((c) => c.id === 'x1')).toMatchObject({ state: 'created', pid: 0 });
    await client.removeContainer('x1');
  });

  it('reports stats', async () => {
    const s = await client.stats();
    expect(s.memTotalBytes).toBeGreaterThan(0);
    expect(s.timeNs).toBeGreaterThan(0n);
    expect(s.containers.map((c) => c.id)).toContain('c3');
    expect(s.containers.find((c) => c.id === 'c3')!.writableLayerInodes).toBeGreaterThan(1); // made /work/dir
  });

  it('keeps its state across a host reconnect', async () => {
    const closed = new Promise((resolve) => client.once('close', resolve));
    client.close();
    await closed;
    client = AgentClient.over(await nextSocket(), { log });
    const h = await client.hello();
    expect(h.containers.find((c) => c.id === 'c1')).toMatchObject({ state: 'exited', exitCode: 3, stream: 1 });
    expect(h.containers.find((c) => c.id === 'c4')).toMatchObject({ state: 'exited', exitCode: 143, signal: 15 });
    await expect(client.hello()).resolves.toMatchObject({ version: 1 });
  });

  it('removes containers with all their mounts, idempotently', async () => {
    await client.createContainer(container('c9', ['sleep', '100'], { readonlyRootfs: true, mounts: [{ source: join(dir, 'images/bb/etc'), target: '/data', readonly: true }] }));
    const r = watch(9);
    await client.startContainer('c9', 9);
    expect(mountsUnder(join(dir, 'run/c/c9')).length).toBeGreaterThanOrEqual(8);
    const h = await client.hello();
    for (const c of h.containers) await client.removeContainer(c.id);
    expect(await r.exit).toMatchObject({ exitCode: 137 });
    await client.removeContainer('c9');
    expect((await client.hello()).containers).toEqual([]);
    expect(mountsUnder(join(dir, 'run/c'))).toEqual([]);
    expect(mountsUnder(join(dir, 'scratch'))).toEqual([]);
    expect(readdirSync(join(dir, 'run/c'))).toEqual([]);
    expect(readdirSync(join(dir, 'scratch'))).toEqual([]);
    expect(existsSync(join(dir, 'images/bb/etc'))).toBe(true); // the bind mount's source survived
  });
});
