// Sandboxed pods end to end: a real vmlet, libvirtd and QEMU (TCG) boot the guest kit, the image
// rootfs comes from the loopback registry, and every container is a process tree in the pod VM run
// by vmlet's agent. One pod VM serves most cases, in the order a kubelet would call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, parseLogLines, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { podVmReady, startVmSuite, stopVmSuite, TEST_GUEST_KIT } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';
import { dommemstat, virsh } from '../helpers/virsh.js';
import { domainName, QBOOT_ROM } from '../../src/vm/spec.js';
import { findVirtiofsd } from '../../src/vm/virtiofs.js';
import { QEMU_LOG_DIR } from '../../src/vm/stop-reason.js';


let v: VmletProcess;
let reg: TestRegistry;
let image: string; // the busybox `rootfs` test image: User 1234, Cmd ["/bin/sh"]
let vmImage: string; // a kernel-boot VM image
let noCmdImage: string;
const logDir = tempDir('vmlet-sbx-logs-');
const emptyDir = join(logDir, 'empty-dir'); // the host side of an emptyDir both containers mount at /data
const dataMount = { container_path: '/data', host_path: emptyDir };
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

interface Pod {
  id: string;
  config: object;
  logs: string;
}

async function runPod(name: string, annotations: Record<string, string> = {}, hostname = name): Promise<Pod> {
  const uid = randomBytes(8).toString('hex');
  const config = {
    metadata: { name, namespace: 'sbx', uid, attempt: 0 },
    hostname,
    log_directory: join(logDir, uid),
    annotations,
    dns_config: { servers: ['10.96.0.10'], searches: ['sbx.svc.cluster.local'], options: ['ndots:5'] },
  };
  const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
  return { id, config, logs: join(logDir, uid) };
}

async function create(pod: Pod, name: string, config: object = {}, attempt = 0): Promise<string> {
  const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod.id,
    config: { metadata: { name, attempt }, image: { image }, log_path: `${name}_${attempt}.log`, ...config },
    sandbox_config: pod.config,
  });
  return container_id;
}

interface Status_ {
  state: string;
  exit_code: number;
  reason: string;
}
const status = async (cid: string) => (await rt<{ status: Status_ }>('ContainerStatus', { container_id: cid })).status;
const exited = (cid: string, timeoutMs = 60_000) =>
  waitFor(`container ${cid.slice(0, 8)} to exit`, async () => ((await status(cid)).state === 'CONTAINER_EXITED' ? status(cid) : undefined), { timeoutMs, intervalMs: 100 });

function logLines(path: string): Array<{ stream: string; content: string }> {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l));
}
const logHas = (path: string, stream: string, content: string) =>
  waitFor(`${stream} "${content}" in ${path}`, () => logLines(path).some((l) => l.stream === stream && l.content === content) || undefined, { timeoutMs: 30_000, intervalMs: 100 });

const execSync = (cid: string, cmd: string[], timeout = 20) =>
  rt<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('ExecSync', { container_id: cid, cmd, timeout }).then((r) => ({
    stdout: Buffer.from(r.stdout).toString(),
    stderr: Buffer.from(r.stderr).toString(),
    exitCode: r.exit_code,
  }));

beforeAll(async () => {
  const suite = await startVmSuite(
    [
      ['rootfs', 'sbx/busybox:1'],
      ['kernelboot', 'sbx/kernel:1'],
      ['uncompressed', 'sbx/nocmd:1'], // a layer with /hello.txt and no Entrypoint or Cmd
    ],
    { guestKit: true, allowAnnotations: ['vmlet.io/max-memory'] },
  );
  ({ v, reg } = suite);
  [image, vmImage, noCmdImage] = suite.refs as [string, string, string];
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
}, 120_000);

describe('sandboxed pod: containers of a plain OCI image inside one micro-VM', () => {
  let pod: Pod;
  let app: string;

  it('runs an init container to completion: exit 0, Completed, stdout and stderr apart in the CRI log', async () => {
    pod = await runPod('multi');
    const { chmodSync, mkdirSync, writeFileSync } = await import('node:fs');
    writeFileSync(join(logDir, 'config.txt'), 'key=value\n');
    mkdirSync(emptyDir);
    chmodSync(emptyDir, 0o777); // as the kubelet makes an emptyDir: the image's user (1234) writes there
    const init = await create(pod, 'init', { command: ['sh', '-c', 'echo init-out; echo init-err >&2; echo shared > /tmp/marker; echo from-init > /data/hello; exit 0'], mounts: [dataMount] });
    // The image's first container: its rootfs built by its pull (it names a command: config
    // imageRootfsAtPull), before the pod's VM booted, not after.
    const events = v.logLines.flatMap((l) => {
      try {
        return [JSON.parse(l) as { msg?: string; podSandboxId?: string; atPull?: boolean }];
      } catch {
        return [];
      }
    });
    const unpacked = events.findIndex((e) => e.msg === 'image rootfs unpacked');
    expect(unpacked).toBeGreaterThanOrEqual(0);
    expect(events[unpacked]!.atPull).toBe(true);
    expect(events.findIndex((e) => e.msg === 'pod VM ready' && e.podSandboxId === pod.id)).toBeGreaterThan(unpacked);
    await rt('StartContainer', { container_id: init });
    const st = await exited(init);
    expect(st.exit_code).toBe(0);
    expect(readFileSync(join(emptyDir, 'hello'), 'utf8')).toBe('from-init\n');
    expect(st.reason).toBe('Completed');
    const log = join(pod.logs, 'init_0.log');
    await logHas(log, 'stdout', 'init-out');
    await logHas(log, 'stderr', 'init-err');
    // Exactly one VM for the pod, and it is the guest kit's kernel.
    const xml = virsh('dumpxml', `vmlet-sbx-multi-${pod.id.slice(0, 8)}`);
    expect(xml).toContain(join(TEST_GUEST_KIT, 'vmlinux'));
  }, 240_000);

  it('gives the image its user, the pod its hostname, DNS and hosts file, and the env', async () => {
    app = await create(pod, 'app', {
      command: ['sh', '-c', 'trap "echo got-term; exit 7" TERM; echo ready; while true; do sleep 1; done'],
      envs: [{ key: 'GREETING', value: 'hello there' }],
      working_dir: '/tmp',
      mounts: [dataMount, { container_path: '/etc/config.txt', host_path: join(logDir, 'config.txt'), readonly: true }],
    });
    await rt('StartContainer', { container_id: app });
    await logHas(join(pod.logs, 'app_0.log'), 'stdout', 'ready');
    expect((await status(app)).state).toBe('CONTAINER_RUNNING');
    expect((await execSync(app, ['id', '-u'])).stdout.trim()).toBe('1234');
    expect((await execSync(app, ['hostname'])).stdout.trim()).toBe('multi');
    const resolv = (await execSync(app, ['cat', '/etc/resolv.conf'])).stdout;
    expect(resolv).toContain('nameserver 10.96.0.10');
    expect(resolv).toContain('search sbx.svc.cluster.local');
    expect((await execSync(app, ['cat', '/etc/hosts'])).stdout).toMatch(/127\.0\.0\.1\s+localhost/);
    expect((await execSync(app, ['sh', '-c', 'echo "$GREETING"; pwd'])).stdout).toBe('hello there\n/tmp\n');
    // The emptyDir the init container wrote; a read-only file mount stays read-only.
    expect((await execSync(app, ['cat', '/data/hello'])).stdout).toBe('from-init\n');
    expect((await execSync(app, ['cat', '/etc/config.txt'])).stdout).toBe('key=value\n');
    expect((await execSync(app, ['sh', '-c', 'echo x > /etc/config.txt'])).exitCode).not.toBe(0);
    // Each container has its own writable layer: the init container's file is not here.
    expect((await execSync(app, ['cat', '/tmp/marker'])).exitCode).not.toBe(0);
    // Its lower layer is the image's EROFS file (config imageRootfs' default), which the guest
    // mounted; on the host the image is that one file, no tree of its files.
    const hex = (await call<object, { image: { id: string } }>(v.image, 'ImageStatus', { image: { image } })).image.id.slice(7);
    expect((await execSync(app, ['cat', '/proc/mounts'])).stdout).toMatch(new RegExp(`^overlay / overlay \\S*lowerdir=/run/vmlet/img/${hex}[,:]`, 'm'));
    // (The `.unsynced` marker, if its sync has not ended yet: placeErofs.)
    expect(readdirSync(join(v.stateDir, 'images/rootfs')).filter((n) => !n.endsWith('.unsynced')).sort()).toEqual([`${hex}.erofs`, `${hex}.ids`]);
    // Its loop device reads the file with direct I/O: the guest caches the image's pages once.
    const loops = await execSync(app, ['sh', '-c', 'for d in /sys/block/loop*; do [ -s $d/loop/backing_file ] && echo "$(cat $d/loop/backing_file) dio=$(cat $d/loop/dio)"; done']);
    expect(loops.stdout).toBe(`/run/vmlet/images/${hex}.erofs dio=1\n`);
  }, 120_000);

  it('answers 40 ExecSync calls in a row and 10 at once, each with its own output', async () => {
    for (let i = 0; i < 40; i++) expect((await execSync(app, ['echo', `n${i}`])).stdout).toBe(`n${i}\n`);
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => execSync(app, ['sh', '-c', `echo c${i}; echo e${i} >&2`])));
    many.forEach((r, i) => expect(r).toMatchObject({ exitCode: 0, stdout: `c${i}\n`, stderr: `e${i}\n` }));
  }, 120_000);

  it('execs: exit codes, stderr, 127 for a missing command, DEADLINE_EXCEEDED at the timeout', async () => {
    const bad = await execSync(app, ['sh', '-c', 'echo oops >&2; exit 3']);
    expect(bad).toMatchObject({ exitCode: 3, stderr: 'oops\n' });
    expect((await execSync(app, ['no-such-command'])).exitCode).toBe(127);
    // The sleep outlives the test: only the 1 s timeout can end the call.
    const slow = await failure(execSync(app, ['sleep', '3600'], 1));
    expect(slow.code).toBe(Status.DEADLINE_EXCEEDED);
    // The timed-out command was killed: no sleep left behind.
    await waitFor('sleep 3600 to be gone', async () => !(await execSync(app, ['sh', '-c', 'ps -o args | grep -v grep | grep -q "sleep 3600" && echo yes || true'])).stdout.includes('yes') || undefined, { timeoutMs: 10_000, intervalMs: 200 });
  }, 120_000);

  it('streams exec with a TTY and a resize (WebSocket v5)', async () => {
    const { WebSocket } = await import('ws');
    const { url } = await rt<{ url: string }>('Exec', { container_id: app, cmd: ['sh', '-c', 'sleep 0.5; stty size; tty'], tty: true, stdin: true, stdout: true });
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    const out: Buffer[] = [];
    ws.on('message', (d: Buffer) => d[0] === 1 && out.push(d.subarray(1)));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    ws.send(Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify({ Width: 99, Height: 33 }))]));
    await new Promise((r) => ws.once('close', r));
    const text = Buffer.concat(out).toString();
    expect(text).toContain('33 99');
    expect(text).toMatch(/\/dev\/pts\/\d+/);
  }, 60_000);

  it('has a log file from the start even when silent; the kernel loads a module a root container asks for', async () => {
    const quiet = await create(pod, 'quiet', {
      command: ['sh', '-c', 'while true; do sleep 1; done'],
      linux: { security_context: { run_as_user: { value: 0 }, capabilities: { add_capabilities: ['NET_ADMIN'], drop_capabilities: [] } } },
    });
    await rt('StartContainer', { container_id: quiet });
    expect(existsSync(join(pod.logs, 'quiet_0.log'))).toBe(true);
    const br = await execSync(quiet, ['sh', '-c', 'ip link add vbr0 type bridge && ip -o link show vbr0']);
    expect(br.stderr).toBe('');
    expect(br.stdout).toContain('vbr0');
    // /init loads the 9p client only when a share is not virtiofs (node-install/guest/init).
    const modules = (await execSync(quiet, ['cat', '/proc/modules'])).stdout.split('\n').map((l) => l.split(' ')[0]);
    expect(modules).toEqual(expect.arrayContaining(['overlay', 'ext4', 'bridge']));
    if (findVirtiofsd()) {
      expect(modules).toContain('virtiofs');
      expect(modules.filter((m) => m === '9p' || m === '9pnet_virtio' || m === 'fscache')).toEqual([]);
    } else {
      expect(modules).toEqual(expect.arrayContaining(['9p', '9pnet_virtio']));
    }
    // The VM started qboot, not SeaBIOS (config podVmBios): the firmware's name is in its SMBIOS table.
    expect((await execSync(quiet, ['cat', '/sys/class/dmi/id/bios_vendor'])).stdout.trim()).toBe(existsSync(QBOOT_ROM) ? 'qboot' : 'SeaBIOS');
    await rt('StopContainer', { container_id: quiet, timeout: 0 });
    await rt('RemoveContainer', { container_id: quiet });
  }, 60_000);

  it('applies seccomp: the runtime default filter, and a profile file from the node', async () => {
    const { writeFileSync } = await import('node:fs');
    const profile = join(logDir, 'no-chmod.json');
    writeFileSync(profile, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod', 'fchmodat'], action: 'SCMP_ACT_ERRNO' }] }));
    const root = { run_as_user: { value: 0 } };
    const def = await create(pod, 'sc-default', { command: ['sleep', '600'], linux: { security_context: { ...root, seccomp: { profile_type: 'RuntimeDefault' } } } });
    const local = await create(pod, 'sc-local', { command: ['sleep', '600'], linux: { security_context: { ...root, seccomp: { profile_type: 'Localhost', localhost_ref: profile } } } });
    for (const c of [def, local]) await rt('StartContainer', { container_id: c });
    const sec = await execSync(def, ['cat', '/proc/self/status']);
    expect(sec.stdout, JSON.stringify(sec)).toMatch(/Seccomp:\s+2/);
    expect((await execSync(def, ['hostname', 'other'])).exitCode).not.toBe(0); // sethostname needs CAP_SYS_ADMIN under the default
    expect((await execSync(local, ['sh', '-c', 'touch /tmp/f; chmod 400 /tmp/f'])).exitCode).not.toBe(0);
    expect((await execSync(app, ['sh', '-c', 'touch /tmp/f; chmod 400 /tmp/f'])).exitCode).toBe(0); // unconfined
    for (const c of [def, local]) await rt('RemoveContainer', { container_id: c });
  }, 60_000);

  it('gives a container its own PID namespace when asked (the kubelet\'s default): its program is PID 1', async () => {
    const own = await create(pod, 'pidns', { command: ['sleep', '600'], linux: { security_context: { namespace_options: { pid: 'CONTAINER' } } } });
    await rt('StartContainer', { container_id: own });
    expect((await execSync(own, ['cat', '/proc/1/cmdline'])).stdout).toBe('sleep\x00600\x00');
    expect((await execSync(own, ['sh', '-c', 'echo $$'])).stdout.trim()).not.toBe('1');
    // The pod's shared namespace otherwise: PID 1 there is the guest's init, not a container's program.
    expect((await execSync(app, ['cat', '/proc/1/cmdline'])).stdout).not.toContain('sleep');
    await rt('RemoveContainer', { container_id: own });
  }, 60_000);

  it('attaches to a container: its stdin in, its stdout out (WebSocket v5)', async () => {
    const { WebSocket } = await import('ws');
    const talk = await create(pod, 'talk', { command: ['sh', '-c', 'while read line; do echo "got-$line"; done'], stdin: true });
    await rt('StartContainer', { container_id: talk });
    const { url } = await rt<{ url: string }>('Attach', { container_id: talk, stdin: true, stdout: true, stderr: true });
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    const out: Buffer[] = [];
    ws.on('message', (d: Buffer) => d[0] === 1 && out.push(d.subarray(1)));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello\n')]));
    await waitFor('the echo through attach', () => Buffer.concat(out).toString().includes('got-hello') || undefined, { timeoutMs: 20_000 });
    ws.close();
    await logHas(join(pod.logs, 'talk_0.log'), 'stdout', 'got-hello');
    await rt('RemoveContainer', { container_id: talk });
  }, 60_000);

  it('stops with the grace period: SIGTERM reaches the process, which exits 7', async () => {
    await rt('StopContainer', { container_id: app, timeout: 20 });
    const st = await status(app);
    expect(st.state).toBe('CONTAINER_EXITED');
    expect(st.exit_code).toBe(7);
    expect(st.reason).toBe('Error');
    await logHas(join(pod.logs, 'app_0.log'), 'stdout', 'got-term');
  }, 60_000);

  it('kills a process that ignores SIGTERM after the timeout: exit 137', async () => {
    const stubborn = await create(pod, 'stubborn', { command: ['sh', '-c', 'trap "" TERM; echo up; while true; do sleep 1; done'] });
    await rt('StartContainer', { container_id: stubborn });
    await logHas(join(pod.logs, 'stubborn_0.log'), 'stdout', 'up');
    const t0 = Date.now();
    await rt('StopContainer', { container_id: stubborn, timeout: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect((await status(stubborn)).exit_code).toBe(137);
    await rt('RemoveContainer', { container_id: stubborn });
  }, 60_000);

  it('restarts a container in the running pod VM (a new attempt, as the kubelet does)', async () => {
    await rt('RemoveContainer', { container_id: app });
    const again = await create(pod, 'app', { command: ['sh', '-c', 'echo second-run; exit 5'] }, 1);
    await rt('StartContainer', { container_id: again });
    expect((await exited(again)).exit_code).toBe(5);
    await logHas(join(pod.logs, 'app_1.log'), 'stdout', 'second-run');
  }, 60_000);

  it('refuses bad containers with containerd\'s errors and leaves nothing behind', async () => {
    const before = (await rt<{ containers: unknown[] }>('ListContainers', { filter: { pod_sandbox_id: pod.id } })).containers.length;
    const notFound = await failure(create(pod, 'nocmd', { command: ['/no/such/binary'] }));
    expect(notFound.code).toBe(Status.INVALID_ARGUMENT);
    expect(notFound.details).toMatch(/executable file not found|no such file/i);
    const noUser = await failure(create(pod, 'nouser', { linux: { security_context: { run_as_username: 'nobody-here' } } }));
    expect(noUser.code).toBe(Status.INVALID_ARGUMENT);
    expect(noUser.details).toMatch(/unable to find user nobody-here/);
    const noCmd = await failure(create(pod, 'nocmd-image', { image: { image: noCmdImage } }));
    expect(noCmd.code).toBe(Status.INVALID_ARGUMENT);
    expect(noCmd.details).toMatch(/no command specified/);
    const groupOnly = await failure(create(pod, 'grouponly', { linux: { security_context: { run_as_group: { value: 5 } } } }));
    expect(groupOnly.code).toBe(Status.INVALID_ARGUMENT);
    expect(groupOnly.details).toMatch(/run_as_group is set without run_as_user/);
    const vm = await failure(create(pod, 'vm', { image: { image: vmImage } }));
    expect(vm.code).toBe(Status.INVALID_ARGUMENT);
    expect(vm.details).toMatch(/sandboxed pod/);
    expect((await rt<{ containers: unknown[] }>('ListContainers', { filter: { pod_sandbox_id: pod.id } })).containers.length).toBe(before);
  }, 60_000);

  it('stops the pod: its VM is destroyed; removes it: the domain and scratch disk are gone', async () => {
    const name = `vmlet-sbx-multi-${pod.id.slice(0, 8)}`;
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    expect(virsh('domstate', name).trim()).toBe('shut off');
    const ps = await rt<{ status: { state: string } }>('PodSandboxStatus', { pod_sandbox_id: pod.id });
    expect(ps.status.state).toBe('SANDBOX_NOTREADY');
    // libvirt's logs of the domain: its QEMU's, and one per share's virtiofsd.
    const logsOf = () => readdirSync(QEMU_LOG_DIR).filter((f) => f === `${name}.log` || f.startsWith(`${name}-fs`));
    expect(logsOf().filter((f) => f.endsWith('-virtiofsd.log'))).toHaveLength(findVirtiofsd() ? 2 : 0);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    expect(() => virsh('domstate', name)).toThrow();
    expect(existsSync(join(v.stateDir, 'pods', pod.id))).toBe(false);
    expect(logsOf()).toEqual([]);
  }, 60_000);
});

describe('pod kind annotation', () => {
  it('vmlet.io/pod-kind: sandboxed boots the VM once RunPodSandbox has answered; a bad value is refused there', async () => {
    const bad = await failure(runPod('badkind', { 'vmlet.io/pod-kind': 'container' }));
    expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/vmlet\.io\/pod-kind/);
    // A pod name longer than a hostname may be (critest's are): the guest's is cut as the kubelet cuts it.
    const name = 'early-' + 'x'.repeat(70);
    const pod = await runPod(name, { 'vmlet.io/pod-kind': 'sandboxed' }, '');
    // It boots once RunPodSandbox has answered (a boot takes seconds here), with no container asked for.
    expect(parseLogLines(v.logLines).some((e) => e.msg === 'pod VM ready' && e.podSandboxId === pod.id)).toBe(false);
    await podVmReady(v, pod.id);
    expect(virsh('domstate', domainName(name, 'sbx', pod.id)).trim()).toBe('running');
    const c = await create(pod, 'c', { command: ['sh', '-c', 'echo quick; hostname'] });
    await rt('StartContainer', { container_id: c });
    expect((await exited(c)).exit_code).toBe(0);
    await logHas(join(pod.logs, 'c_0.log'), 'stdout', 'quick');
    await logHas(join(pod.logs, 'c_0.log'), 'stdout', name.slice(0, 63));
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  }, 240_000);
});

describe('pod VM growth', () => {
  it('grows the VM through the balloon when a container\'s memory limit needs it, up to vmlet.io/max-memory', async () => {
    const pod = await runPod('grow', { 'vmlet.io/max-memory': '1Gi' });
    const small = await create(pod, 'small', { command: ['sleep', '600'] });
    await rt('StartContainer', { container_id: small });
    const memTotalKiB = async () => Number(/MemTotal:\s+(\d+)/.exec((await execSync(small, ['cat', '/proc/meminfo'])).stdout)?.[1]);
    // The VM is defined with 1 GiB and ballooned down to 512 MiB once the guest's balloon driver
    // is up: MemTotal falls while it inflates, so wait for QEMU's 'actual' (what the guest's
    // driver reports done) before reading it.
    const dom = domainName('grow', 'sbx', pod.id);
    const balloonAt = (mib: number) =>
      waitFor(`the balloon of ${dom} at ${mib} MiB`, () => dommemstat(dom).actual === mib * 1024, { timeoutMs: 60_000, intervalMs: 200 });
    await balloonAt(512);
    const before = await memTotalKiB();
    const limit = 600 * 2 ** 20;
    const big = await create(pod, 'big', { command: ['sleep', '600'], linux: { resources: { memory_limit_in_bytes: String(limit) } } });
    await rt('StartContainer', { container_id: big });
    // 512 MiB (the default) → 256 MiB for the guest + the 600 MiB limit = 856 MiB: 344 MiB more.
    await balloonAt(856);
    const grown = await memTotalKiB();
    expect(grown - before).toBeGreaterThanOrEqual(340 * 1024);
    expect(grown - before).toBeLessThanOrEqual(345 * 1024);
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  }, 120_000);

  it('UpdatePodSandboxResources grows the running pod VM to the pod\'s new resources; refused once the pod is stopped', async () => {
    const pod = await runPod('podresize', { 'vmlet.io/max-memory': '1Gi' });
    const c = await create(pod, 'c', { command: ['sleep', '600'] });
    await rt('StartContainer', { container_id: c });
    const dom = domainName('podresize', 'sbx', pod.id);
    const memTotalKiB = async () => Number(/MemTotal:\s+(\d+)/.exec((await execSync(c, ['cat', '/proc/meminfo'])).stdout)?.[1]);
    await waitFor(`the balloon of ${dom} at 512 MiB`, () => dommemstat(dom).actual === 512 * 1024, { timeoutMs: 60_000, intervalMs: 200 });
    const before = await memTotalKiB();
    // The kubelet's in-place pod resize: 600 MiB for the pod's containers → 600 + 256 MiB.
    await rt('UpdatePodSandboxResources', { pod_sandbox_id: pod.id, resources: { memory_limit_in_bytes: String(600 * 2 ** 20) } });
    await waitFor(`the balloon of ${dom} at 856 MiB`, () => dommemstat(dom).actual === 856 * 1024, { timeoutMs: 60_000, intervalMs: 200 });
    const grown = (await memTotalKiB()) - before;
    expect(grown).toBeGreaterThanOrEqual(340 * 1024);
    expect(grown).toBeLessThanOrEqual(345 * 1024);
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    const stopped = await failure(rt('UpdatePodSandboxResources', { pod_sandbox_id: pod.id, resources: { memory_limit_in_bytes: String(700 * 2 ** 20) } }));
    expect(stopped.code).toBe(Status.FAILED_PRECONDITION);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  }, 120_000);

  it("hot-adds vCPUs for a container's CPU limit, and UpdateContainerResources resizes a container's cgroup in the guest", async () => {
    const pod = await runPod('cpus', { 'vmlet.io/max-vcpus': '2' });
    // Privileged root: it may mount the guest's cgroup2 to show what the agent wrote (the image's user is 1234).
    const a = await create(pod, 'a', { command: ['sleep', '600'], linux: { security_context: { privileged: true, run_as_user: { value: '0' } } } });
    await rt('StartContainer', { container_id: a });
    const sh = async (cmd: string) => {
      const r = await execSync(a, ['sh', '-c', cmd]);
      return { out: r.stdout.trim(), err: r.stderr, exitCode: r.exitCode };
    };
    expect((await sh('cat /sys/devices/system/cpu/online')).out).toBe('0');
    const b = await create(pod, 'b', { command: ['sleep', '600'], linux: { resources: { cpu_period: '100000', cpu_quota: '150000' } } });
    // Online when CreateContainer answers: the agent waited for the guest to see the new vCPU.
    expect((await sh('cat /sys/devices/system/cpu/online')).out).toBe('0-1');
    expect(virsh('vcpucount', domainName('cpus', 'sbx', pod.id), '--live', '--active').trim()).toBe('2');

    const cg = `/tmp/cg/vmlet/${a}`;
    const limits = () => sh(`mkdir -p /tmp/cg; grep -q ' /tmp/cg ' /proc/mounts || mount -t cgroup2 none /tmp/cg; cat ${cg}/memory.max ${cg}/cpu.max ${cg}/cpu.weight`);
    const l0 = await limits();
    expect(l0.out.split('\n'), l0.err).toEqual(['max', 'max 100000', '100']);
    // 64 MiB in one buffer fits before the update and is OOM-killed after it (exit 137).
    expect((await sh('dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null')).exitCode).toBe(0);
    const limited = { memory_limit_in_bytes: String(32 * 2 ** 20), cpu_period: '100000', cpu_quota: '50000', cpu_shares: '512' };
    await rt('UpdateContainerResources', { container_id: a, linux: limited });
    expect((await limits()).out.split('\n')).toEqual([String(32 * 2 ** 20), '50000 100000', String(1 + Math.floor((512 - 2) * 9999 / 262142))]);
    expect((await sh('dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null')).exitCode).toBe(137);
    // Back to no limit; the container keeps running throughout.
    await rt('UpdateContainerResources', { container_id: a, linux: { memory_limit_in_bytes: '0', cpu_quota: '0', cpu_shares: '0' } });
    expect((await limits()).out.split('\n').slice(0, 2)).toEqual(['max', 'max 100000']);
    expect((await status(a)).state).toBe('CONTAINER_RUNNING');

    // Refusals name the field, and change nothing.
    const pinned = await failure(rt('UpdateContainerResources', { container_id: a, linux: { cpuset_cpus: '0' } }));
    expect(pinned.code).toBe(Status.INVALID_ARGUMENT);
    expect(pinned.details).toMatch(/linux\.cpuset_cpus/);
    await rt('StartContainer', { container_id: b });
    await rt('StopContainer', { container_id: b, timeout: 0 });
    const stopped = await failure(rt('UpdateContainerResources', { container_id: b, linux: limited }));
    expect(stopped.code).toBe(Status.FAILED_PRECONDITION);
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  }, 180_000);
});
