// VM pods end to end over vmlet's socket: real registry, real libvirtd and QEMU (TCG here),
// the project's test guests. The same sequence crictl runs: runp, create, start, ps, inspect,
// logs, stop, rm, stopp, rmp.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { startVmSuite, stopVmSuite, vmletConfig } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { DomainState, Libvirt } from '../../src/vm/libvirt.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';
import type { ContainerStatusResponse__Output } from '../../src/gen/runtime/v1/ContainerStatusResponse.js';
import type { PodSandboxStatusResponse__Output } from '../../src/gen/runtime/v1/PodSandboxStatusResponse.js';
import type { ListContainersResponse__Output } from '../../src/gen/runtime/v1/ListContainersResponse.js';
import type { ListPodSandboxResponse__Output } from '../../src/gen/runtime/v1/ListPodSandboxResponse.js';


let reg: TestRegistry;
let v: VmletProcess;
let kernelImage = '';
let diskImage = '';
let rootfsImage = '';
const lv = new Libvirt('qemu:///system', pino({ level: 'silent' }));
const logDir = tempDir('vmlet-podlogs-');

const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

function podConfig(name: string, annotations: Record<string, string> = {}) {
  const uid = randomBytes(8).toString('hex');
  return {
    metadata: { name, namespace: 'vmlet-test', uid, attempt: 0 },
    hostname: name,
    log_directory: join(logDir, `vmlet-test_${name}_${uid}`),
    labels: { app: name, suite: 'pods' },
    annotations,
  };
}

async function runPod(name: string, annotations: Record<string, string> = {}) {
  const config = podConfig(name, annotations);
  const { pod_sandbox_id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
  return { id: pod_sandbox_id, config };
}

async function createVm(pod: { id: string; config: object }, image: string, annotations: Record<string, string> = {}) {
  const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod.id,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image }, log_path: 'vm/0.log', labels: { role: 'vm' }, annotations },
    sandbox_config: pod.config,
  });
  return container_id;
}

const cstatus = (id: string, verbose = false) => rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: id, verbose });

function logLines(path: string): { stream: string; tag: string; content: string }[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l));
}

const waitForLog = (path: string, text: string, timeoutMs = 90_000) =>
  waitFor(`"${text}" in ${path}`, () => logLines(path).some((l) => l.content.includes(text)), { timeoutMs, intervalMs: 100 });

async function domainState(name: string): Promise<DomainState | 'gone'> {
  try {
    return (await lv.domainInfo(name)).state;
  } catch (err) {
    if ((err as { kind?: string }).kind === 'not-found') return 'gone';
    throw err;
  }
}

beforeAll(async () => {
  ({ reg, v, refs: [kernelImage = '', diskImage = '', rootfsImage = ''] } = await startVmSuite([
    ['kernelboot', 'vmlet/kernelboot:v1'],
    ['containerdisk', 'vmlet/containerdisk:v1'],
    ['rootfs', 'vmlet/rootfs:v1'],
  ], { allowAnnotations: ['vmlet.io/vcpus'] })); // 'boots a containerDisk with annotations' asks for 2 vCPUs without a CPU limit
});

afterAll(async () => {
  await stopVmSuite(v, reg);
  await lv.close();
});

describe('VM pod lifecycle', () => {
  it('runs a kernel-boot VM pod through the whole crictl sequence', async () => {
    const pod = await runPod('kernel');
    const cid = await createVm(pod, kernelImage);
    let st = (await cstatus(cid, true));
    expect(st.status!.state).toBe('CONTAINER_CREATED');
    const info = JSON.parse(st.info.info!) as { domain: string; domainXml: string; libvirtState: string };
    expect(info.libvirtState).toBe('SHUTOFF');
    expect(info.domainXml).toContain('vmlet.io'); // CRI metadata stored in the domain
    const logPath = st.status!.log_path;
    expect(logPath).toBe(join(pod.config.log_directory, 'vm/0.log'));

    await rt('StartContainer', { container_id: cid });
    st = await cstatus(cid);
    expect(st.status!.state).toBe('CONTAINER_RUNNING');
    expect(BigInt(st.status!.started_at)).toBeGreaterThan(BigInt(st.status!.created_at));
    await waitForLog(logPath, 'VMLET-READY');
    for (const l of logLines(logPath)) {
      expect(l.stream).toBe('stdout');
      expect(l.content).not.toContain('\r');
    }

    const listed = await rt<ListContainersResponse__Output>('ListContainers', { filter: { pod_sandbox_id: pod.id.slice(0, 12), state: { state: 'CONTAINER_RUNNING' } } });
    expect(listed.containers.map((c) => c.id)).toEqual([cid]);
    expect((await rt<ListContainersResponse__Output>('ListContainers', { filter: { label_selector: { role: 'nope' } } })).containers).toEqual([]);
    const pods = await rt<ListPodSandboxResponse__Output>('ListPodSandbox', { filter: { label_selector: { app: 'kernel' } } });
    expect(pods.items.map((p) => p.id)).toEqual([pod.id]);
    const ps = await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: pod.id.slice(0, 10) });
    expect(ps.status!.state).toBe('SANDBOX_READY');

    // The busybox guest ignores the ACPI button: the grace period runs out, then destroy → 137.
    const t0 = Date.now();
    await rt('StopContainer', { container_id: cid, timeout: 2 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    st = await cstatus(cid);
    expect(st.status).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 137, reason: 'Error' });
    expect(BigInt(st.status!.finished_at)).toBeGreaterThan(BigInt(st.status!.started_at));
    expect(await domainState(info.domain)).toBe(DomainState.SHUTOFF);

    await rt('StopContainer', { container_id: cid, timeout: 0 }); // idempotent
    await rt('RemoveContainer', { container_id: cid });
    expect(await domainState(info.domain)).toBe('gone');
    await rt('RemoveContainer', { container_id: cid }); // idempotent
    expect((await failure(cstatus(cid))).code).toBe(Status.NOT_FOUND);

    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    expect((await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: pod.id })).status!.state).toBe('SANDBOX_NOTREADY');
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    expect(existsSync(join(v.stateDir, 'pods', pod.id))).toBe(false);
    expect(existsSync(`/run/netns/vmlet-${pod.id.slice(0, 16)}`)).toBe(false);
  });

  it('boots a containerDisk with annotations on a qcow2 overlay', async () => {
    const pod = await runPod('disk', { 'vmlet.io/vcpus': '2', 'vmlet.io/memory': '384Mi', 'vmlet.io/root-disk-size': '64Mi' });
    const cid = await createVm(pod, diskImage);
    const st = await cstatus(cid, true);
    const info = JSON.parse(st.info.info!) as { domainXml: string; files: string[] };
    expect(info.domainXml).toMatch(/<vcpu[^>]*>2<\/vcpu>/);
    expect(info.domainXml).toMatch(/<memory unit='KiB'>393216<\/memory>/);
    const overlay = info.files.find((f) => f.endsWith('.qcow2'))!;
    expect(existsSync(overlay)).toBe(true);
    await rt('StartContainer', { container_id: cid });
    await waitForLog(st.status!.log_path, 'VMLET-READY', 120_000);
    await rt('StopContainer', { container_id: cid, timeout: 0 });
    expect((await cstatus(cid)).status).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 137 });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    expect(existsSync(overlay)).toBe(false);
  });

  it('follows log rotation through ReopenContainerLog', async () => {
    const { renameSync } = await import('node:fs');
    const pod = await runPod('ticker', { 'vmlet.io/kernel-args': 'vmlet.test=echo' });
    const cid = await createVm(pod, kernelImage);
    await rt('StartContainer', { container_id: cid });
    const logPath = (await cstatus(cid)).status!.log_path;
    await waitForLog(logPath, 'VMLET-TICK 2');
    renameSync(logPath, `${logPath}.1`); // what the kubelet's log rotation does
    await rt('ReopenContainerLog', { container_id: cid });
    await waitFor('ticks in the new log file', () => logLines(logPath).some((l) => /VMLET-TICK \d+/.test(l.content)), { timeoutMs: 30_000, intervalMs: 100 });
    const oldTicks = logLines(`${logPath}.1`).map((l) => /VMLET-TICK (\d+)/.exec(l.content)?.[1]).filter(Boolean).map(Number);
    const newTicks = logLines(logPath).map((l) => /VMLET-TICK (\d+)/.exec(l.content)?.[1]).filter(Boolean).map(Number);
    expect(Math.min(...newTicks)).toBe(Math.max(...oldTicks) + 1); // nothing lost, nothing repeated
    await rt('StopContainer', { container_id: cid, timeout: 0 });
    const err = await failure(rt('ReopenContainerLog', { container_id: cid }));
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it('shows a guest that powers itself off as EXITED with code 0, without a Stop', async () => {
    const pod = await runPod('poweroff', { 'vmlet.io/kernel-args': 'vmlet.test=poweroff' });
    const cid = await createVm(pod, kernelImage);
    await rt('StartContainer', { container_id: cid });
    const st = await waitFor('the guest to power off', async () => {
      const s = (await cstatus(cid)).status!;
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, { timeoutMs: 90_000, intervalMs: 200 });
    expect(st).toMatchObject({ exit_code: 0, reason: 'Completed' });
    expect(logLines(st.log_path).some((l) => l.content.includes('VMLET-POWEROFF'))).toBe(true);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});

describe('a QEMU that dies', () => {
  it('shows the container EXITED with a non-zero code and reason Error', async () => {
    const pod = await runPod('crash');
    const cid = await createVm(pod, kernelImage);
    await rt('StartContainer', { container_id: cid });
    const domain = (JSON.parse((await cstatus(cid, true)).info.info!) as { domain: string }).domain;
    const pid = Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
    process.kill(pid, 'SIGKILL'); // QEMU dies under libvirt: no guest power-off, no destroy
    const st = await waitFor('the container to exit', async () => {
      const s = (await cstatus(cid)).status!;
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    expect(st.exit_code).not.toBe(0);
    expect(st.reason).toBe('Error');
    expect(st.message).toMatch(/QEMU stopped unexpectedly|stopped/);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});

describe('VM pod errors', () => {
  it('refuses an unknown runtime handler and a duplicate pod', async () => {
    const err = await failure(rt('RunPodSandbox', { config: podConfig('h'), runtime_handler: 'kata' }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain('"kata"');
    const pod = await runPod('dup');
    const dup = await failure(rt('RunPodSandbox', { config: pod.config, runtime_handler: 'vmlet' }));
    expect(dup.code).toBe(Status.ALREADY_EXISTS);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it('refuses a bad annotation, naming it, and leaves nothing behind', async () => {
    // On the pod: refused at RunPodSandbox, before its netns, CNI lease or DHCP server exist.
    const netnsBefore = readdirSync('/run/netns').filter((n) => n.startsWith('vmlet-')).sort();
    const onPod = await failure(runPod('bad-pod', { 'vmlet.io/vcpus': '0' }));
    expect(onPod.code).toBe(Status.INVALID_ARGUMENT);
    expect(onPod.details).toBe('annotation vmlet.io/vcpus="0" is invalid: allowed an integer 1–256');
    const { items } = await rt<{ items: Array<{ metadata?: { name?: string } }> }>('ListPodSandbox', {});
    expect(items.some((p) => p.metadata?.name === 'bad-pod')).toBe(false);
    expect(readdirSync('/run/netns').filter((n) => n.startsWith('vmlet-')).sort()).toEqual(netnsBefore);
    // On the container: refused at CreateContainer, no domain or disk made.
    const pod = await runPod('bad');
    const before = (await lv.listDomains()).length;
    const err = await failure(createVm(pod, kernelImage, { 'vmlet.io/vcpus': '0' }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain('vmlet.io/vcpus');
    expect((await lv.listDomains()).length).toBe(before);
    expect(existsSync(join(v.stateDir, 'pods', pod.id, 'containers'))).toBe(false);
    const tooSmall = await failure(createVm(pod, diskImage, { 'vmlet.io/root-disk-size': '1Mi' }));
    expect(tooSmall.code).toBe(Status.INVALID_ARGUMENT);
    expect((await lv.listDomains()).length).toBe(before);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it('builds the cloud-init seed from annotations and the container config', async () => {
    const { execa } = await import('execa');
    const pod = await runPod('seeded', { 'vmlet.io/ssh-authorized-keys': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0test vmlet@test' });
    const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
      pod_sandbox_id: pod.id,
      config: {
        metadata: { name: 'vm', attempt: 0 },
        image: { image: kernelImage },
        envs: [{ key: 'GREETING', value: "it's here" }],
        command: ['/usr/bin/app'],
        args: ['--flag', 'two words'],
        annotations: { 'vmlet.io/user-data': '#cloud-config\npackages: [nginx]\n' },
      },
      sandbox_config: pod.config,
    });
    const info = JSON.parse((await cstatus(container_id, true)).info.info!) as { files: string[]; domainXml: string };
    const iso = info.files.find((f) => f.endsWith('seed.iso'))!;
    expect(info.domainXml).toContain(iso);
    const read = async (f: string) => (await execa('isoinfo', ['-i', iso, '-R', '-x', `/${f}`])).stdout;
    expect((await execa('isoinfo', ['-d', '-i', iso])).stdout).toContain('Volume id: cidata');
    const meta = await read('meta-data');
    expect(meta).toContain(`instance-id: ${pod.config.metadata.uid}`);
    expect(meta).toContain('local-hostname: seeded');
    const user = await read('user-data');
    expect(user.startsWith('#cloud-config')).toBe(true);
    expect(user).toContain('nginx');
    expect(user).toContain('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0test');
    expect(user).toContain('/usr/bin/app');
    expect(user).toContain('two words');
    expect(await read('network-config')).toContain(`${(await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: pod.id })).status!.network!.ip}/24`);
    const bad = await failure(createVm(await runPod('badseed'), kernelImage, { 'vmlet.io/user-data': '#cloud-config\nfoo: [unclosed\n' }));
    expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    expect(bad.details).toContain('vmlet.io/user-data');
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });

  it('refuses unpulled images, a second container, and a container image in a VM-image pod', async () => {
    const pod = await runPod('refusals');
    const unpulled = await failure(createVm(pod, `${reg.host}/vmlet/never:v1`));
    expect(unpulled.code).toBe(Status.NOT_FOUND);
    await createVm(pod, kernelImage);
    const second = await failure(
      rt('CreateContainer', { pod_sandbox_id: pod.id, config: { metadata: { name: 'other', attempt: 0 }, image: { image: kernelImage } }, sandbox_config: pod.config }),
    );
    expect(second.code).toBe(Status.FAILED_PRECONDITION);
    expect(second.details).toMatch(/a VM-image pod runs one VM/);
    // The pod's kind was fixed by its first container: a plain container image does not fit it.
    const mixed = await failure(
      rt('CreateContainer', { pod_sandbox_id: pod.id, config: { metadata: { name: 'app', attempt: 0 }, image: { image: rootfsImage } }, sandbox_config: pod.config }),
    );
    expect(mixed.code).toBe(Status.INVALID_ARGUMENT);
    expect(mixed.details).toMatch(/is a container image .* is a VM-image pod/);
    const inUse = await failure(call(v.image, 'RemoveImage', { image: { image: kernelImage } }));
    expect(inUse.code).toBe(Status.FAILED_PRECONDITION);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  });
});

describe('restart safety and concurrency', () => {
  it('keeps VMs running across kill -9 of vmlet, and sees a VM that stopped meanwhile', async () => {
    const a = await runPod('survivor');
    const aid = await createVm(a, kernelImage);
    await rt('StartContainer', { container_id: aid });
    const b = await runPod('leaver', { 'vmlet.io/kernel-args': 'vmlet.test=poweroff' });
    const bid = await createVm(b, kernelImage);
    const before = (await cstatus(aid, true)).status!;
    await waitForLog(before.log_path, 'VMLET-READY');
    const domainA = (JSON.parse((await cstatus(aid, true)).info.info!) as { domain: string }).domain;
    const domainB = (JSON.parse((await cstatus(bid, true)).info.info!) as { domain: string }).domain;

    await rt('StartContainer', { container_id: bid });
    expect(await v.stop('SIGKILL')).toBeNull();
    // B powers off while vmlet is down; A keeps running.
    await waitFor('B to power off', async () => (await domainState(domainB)) === DomainState.SHUTOFF, { timeoutMs: 90_000, intervalMs: 200 });
    expect(await domainState(domainA)).toBe(DomainState.RUNNING);

    v = await startVmlet({ stateDir: v.stateDir, config: vmletConfig(reg), allowAnnotations: ['vmlet.io/vcpus'] });
    const after = (await cstatus(aid)).status!;
    expect(after).toMatchObject({ id: aid, state: 'CONTAINER_RUNNING', created_at: before.created_at, started_at: before.started_at, log_path: before.log_path });
    expect((await cstatus(bid)).status).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 0 });
    const ids = (await rt<ListPodSandboxResponse__Output>('ListPodSandbox', {})).items.map((p) => p.id);
    expect(ids).toEqual(expect.arrayContaining([a.id, b.id]));
    // Console lines written while vmlet was down still reach the log, once.
    await waitForLog(before.log_path, 'VMLET-READY');
    expect(logLines(before.log_path).filter((l) => l.content.includes('VMLET-READY')).length).toBe(1);
    await rt('RemovePodSandbox', { pod_sandbox_id: a.id });
    await rt('RemovePodSandbox', { pod_sandbox_id: b.id });
    expect(await domainState(domainA)).toBe('gone');
  });

  it('creates and starts 10 pods concurrently; all come up', async () => {
    const pods = await Promise.all(Array.from({ length: 10 }, (_, i) => runPod(`many-${i}`, { 'vmlet.io/memory': '128Mi' })));
    const cids = await Promise.all(pods.map((p) => createVm(p, kernelImage)));
    await Promise.all(cids.map((id) => rt('StartContainer', { container_id: id })));
    const statuses = await Promise.all(cids.map((id) => cstatus(id)));
    for (const s of statuses) expect(s.status!.state).toBe('CONTAINER_RUNNING');
    await Promise.all(statuses.map((s) => waitForLog(s.status!.log_path, 'VMLET-READY', 240_000)));
    await Promise.all(pods.map((p) => rt('RemovePodSandbox', { pod_sandbox_id: p.id })));
    expect((await rt<ListContainersResponse__Output>('ListContainers', {})).containers).toEqual([]);
  }, 360_000); // a hang guard above the 240 s the guests get: 10 TCG boots at once on 2 loaded cores can pass 120 s
});
