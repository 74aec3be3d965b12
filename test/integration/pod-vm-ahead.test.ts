// A sandboxed pod's VM booted before its first container, in the background (pod/podvm-ahead.ts):
// a pod whose kind its first container decides boots it at the kubelet's PullImage of an image
// that looks like a container image (config podVmAtPull), in a kubelet's order: RunPodSandbox,
// PullImage with the pod's config, CreateContainer, StartContainer; a pod annotated sandboxed
// boots it once RunPodSandbox has answered. Real vmlet, libvirtd, QEMU (TCG) and loopback
// registry; the images are pulled here for the first time, so the guess comes from their
// configs, before their layers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, parseLogLines, ROOT, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, freePort, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { pushLayers, tarOf } from '../helpers/oci-push.js';
import { podVmReady, stopVmSuite, TEST_GUEST_KIT, vmletConfig, waitForConsoleLine } from '../helpers/vm-suite.js';
import { domainExists, virsh } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';
import { READY_MARKER } from '../helpers/guest.js';
import { domainName } from '../../src/vm/spec.js';
import { podVmFiles } from '../../src/pod/podvm-files.js';

let v: VmletProcess;
let reg: TestRegistry;
let image: string; // the busybox `rootfs` test image: Cmd ["/bin/sh"]
let vmWithCmd: string; // the test guest's kernel and initrd at the default paths, with a Cmd
let kernelImage: string; // the kernel-boot test image: a vmlet.io/kernel label, no Cmd
let metrics: string; // vmlet's metrics address
const logDir = tempDir('vmlet-ahead-logs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);

interface Pod {
  id: string;
  config: { metadata: { name: string; namespace: string; uid: string; attempt: number }; log_directory: string };
}

async function runPod(name: string, annotations: Record<string, string> = {}): Promise<Pod> {
  const uid = randomBytes(8).toString('hex');
  const config = { metadata: { name, namespace: 'ahead', uid, attempt: 0 }, hostname: name, log_directory: join(logDir, uid), annotations };
  const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
  return { id, config };
}

const pull = (pod: Pod, ref: string) => call(v.image, 'PullImage', { image: { image: ref }, sandbox_config: pod.config });

async function create(pod: Pod, ref: string, command?: string[]): Promise<string> {
  const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod.id,
    config: { metadata: { name: 'c', attempt: 0 }, image: { image: ref }, log_path: 'c.log', ...(command ? { command } : {}) },
    sandbox_config: pod.config,
  });
  return container_id;
}

/** vmlet's log lines about the pod. */
const events = (pod: Pod) => parseLogLines(v.logLines).filter((e) => e.podSandboxId === pod.id);
const readyLines = (pod: Pod) => events(pod).filter((e) => e.msg === 'pod VM ready');
/** Waits for the pod's VM, which must be the one booted at the pull. */
const bootedAtPull = async (pod: Pod) => expect((await podVmReady(v, pod.id)).atPull).toBe(true);
/** Stop and Remove, as a kubelet ends a pod; no domain of it stays. */
async function endPod(pod: Pod): Promise<void> {
  await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
  await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
  expect(domainExists(podDomain(pod))).toBe(false);
}
const podDomain = (pod: Pod) => domainName(pod.config.metadata.name, pod.config.metadata.namespace, pod.id);
const record = (pod: Pod) => JSON.parse(readFileSync(join(v.stateDir, 'pods', pod.id, 'sandbox.json'), 'utf8')) as { kind?: string; guessed?: boolean; podVm?: object };
/** vmlet_pod_vm_guesses_total{outcome}, from vmlet's metrics endpoint (0 before it first moves). */
const guesses = async (outcome: 'held' | 'undone') => {
  const text = await (await fetch(`http://${metrics}/metrics`)).text();
  return Number(new RegExp(`^vmlet_pod_vm_guesses_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
};
const podState = async (pod: Pod) => (await rt<{ status: { state: string } }>('PodSandboxStatus', { pod_sandbox_id: pod.id })).status.state;

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  image = (await pushImage(reg, 'rootfs', 'ahead/busybox:1')).reference;
  kernelImage = (await pushImage(reg, 'kernelboot', 'ahead/kernel:1')).reference;
  // As a kernel image built FROM a base image that names a command: it looks like a container image.
  const guest = join(ROOT, '.cache/test-images/kernel-guest');
  const boot = tarOf([
    { path: 'boot/', type: 'Directory' },
    { path: 'boot/vmlinuz', data: readFileSync(join(guest, 'vmlinux')) },
    { path: 'boot/initrd.img', data: readFileSync(join(guest, 'initrd.img')) },
  ]);
  vmWithCmd = (await pushLayers(reg, 'ahead/vm-with-cmd', [boot], { Cmd: ['/init'], Labels: { 'vmlet.io/cmdline': readFileSync(join(guest, 'cmdline'), 'utf8').trim() } })).reference;
  // Images are pulled by the tests, with their pods' configs: not here.
  metrics = `127.0.0.1:${await freePort()}`;
  v = await startVmlet({ config: `${vmletConfig(reg)}guestKitDir: ${TEST_GUEST_KIT}\nmetricsAddress: "${metrics}"\n` });
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
}, 120_000);

describe('a pod of no kind boots its VM at the pull of a container image (podVmAtPull)', () => {
  it('boots at PullImage; the first container runs in that VM, and the pod\'s kind is fixed', async () => {
    const pod = await runPod('guessed');
    await pull(pod, image);
    // The VM comes up with no CreateContainer asked for: the boot began at the pull.
    await bootedAtPull(pod);
    expect(record(pod)).toMatchObject({ kind: 'sandboxed', guessed: true });
    expect(await podState(pod)).toBe('SANDBOX_READY');
    const cid = await create(pod, image, ['sh', '-c', 'echo ran-in-the-guessed-vm; sleep 300']);
    await rt('StartContainer', { container_id: cid });
    await waitFor('the container\'s output', () => (existsSync(join(pod.config.log_directory, 'c.log')) && readFileSync(join(pod.config.log_directory, 'c.log'), 'utf8').includes('ran-in-the-guessed-vm')) || undefined, { timeoutMs: 60_000, intervalMs: 100 });
    // One VM for the pod, the one booted at the pull; the guess is now the pod's kind.
    expect(readyLines(pod)).toHaveLength(1);
    expect(record(pod).kind).toBe('sandboxed');
    expect(record(pod).guessed).toBeUndefined();
    expect(await guesses('held')).toBe(1);
    expect(virsh('dumpxml', podDomain(pod))).toContain(join(TEST_GUEST_KIT, 'vmlinux'));
    await endPod(pod);
  }, 240_000);

  it('a VM image that names a command: the VM booted at its pull goes, and the pod runs the image as its VM', async () => {
    const pod = await runPod('misguessed');
    await pull(pod, vmWithCmd);
    await bootedAtPull(pod);
    const scratch = podVmFiles(join(v.stateDir, 'pods', pod.id), pod.id).scratch;
    expect(existsSync(scratch)).toBe(true);
    const cid = await create(pod, vmWithCmd);
    expect(events(pod).filter((e) => e.msg === 'the pod VM booted at the image pull is destroyed: the first container\'s image boots a VM of its own')).toHaveLength(1);
    // The pod is what it would have been without the guess: a VM-image pod, its VM the image's.
    expect(record(pod).kind).toBe('vm');
    expect(record(pod).guessed).toBeUndefined();
    expect(record(pod).podVm).toBeUndefined();
    expect(await guesses('undone')).toBe(1);
    expect(await guesses('held')).toBe(1); // the first test's
    expect(existsSync(scratch)).toBe(false);
    expect(virsh('dumpxml', podDomain(pod))).not.toContain(join(TEST_GUEST_KIT, 'vmlinux'));
    // vmlet's own destroy of the guessed VM is no death of the pod.
    expect(await podState(pod)).toBe('SANDBOX_READY');
    await rt('StartContainer', { container_id: cid });
    const consoleLog = join(pod.config.log_directory, 'c.log');
    await waitForConsoleLine(consoleLog, READY_MARKER);
    // Its NIC was the guessed VM's first: the VM-image pod's guest still gets the pod IP by DHCP.
    const ip = (await rt<{ status: { network: { ip: string } } }>('PodSandboxStatus', { pod_sandbox_id: pod.id })).status.network.ip;
    expect(await waitForConsoleLine(consoleLog, 'VMLET-DHCP eth0')).toMatch(new RegExp(`^VMLET-DHCP eth0 ${ip.replace(/\./g, '\\.')} `));
    expect((await rt<{ status: { state: string } }>('ContainerStatus', { container_id: cid })).status.state).toBe('CONTAINER_RUNNING');
    await endPod(pod);
  }, 240_000);

  it('boots nothing for an image that looks like a VM image, nor in a pod of kind vm', async () => {
    const auto = await runPod('vm-image');
    await pull(auto, kernelImage);
    const cid = await create(auto, kernelImage);
    // CreateContainer ran under the pod's lock, after any boot the pull began: none did.
    expect(readyLines(auto)).toEqual([]);
    expect(record(auto).kind).toBe('vm');
    await rt('RemoveContainer', { container_id: cid });
    const vmKind = await runPod('kind-vm', { 'vmlet.io/pod-kind': 'vm' });
    await pull(vmKind, image);
    const refused = await failure(create(vmKind, image));
    expect(refused.code).toBe(Status.INVALID_ARGUMENT);
    expect(readyLines(vmKind)).toEqual([]);
    expect(domainExists(podDomain(vmKind))).toBe(false);
    for (const p of [auto, vmKind]) await rt('RemovePodSandbox', { pod_sandbox_id: p.id });
  }, 120_000);

  it('a pod stopped while its VM boots at the pull: the stop waits for the boot, then nothing of the VM stays', async () => {
    const pod = await runPod('stopped-early');
    await pull(pod, image);
    await rt('StopPodSandbox', { pod_sandbox_id: pod.id });
    expect(await podState(pod)).toBe('SANDBOX_NOTREADY');
    // The boot had begun (the image is known from the first test's pull: no config to read).
    expect(readyLines(pod).filter((e) => e.atPull)).toHaveLength(1);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod.id });
    expect(domainExists(podDomain(pod))).toBe(false);
    expect(existsSync(join(v.stateDir, 'pods', pod.id))).toBe(false);
  }, 240_000);
});

describe('a pod annotated sandboxed boots its VM once RunPodSandbox has answered', () => {
  /** A vmlet booting sandboxed pods from `kit`, on the suite's registry. */
  const vmletWithKit = (kit: string) => startVmlet({ config: `${vmletConfig(reg)}guestKitDir: ${kit}\n` });

  it('refuses the pod at RunPodSandbox when no guest kit is there, naming guestKitDir, and leaves nothing behind', async () => {
    const other = await vmletWithKit(join(tempDir('vmlet-nokit-'), 'missing'));
    try {
      const config = { metadata: { name: 'nokit', namespace: 'ahead', uid: randomBytes(8).toString('hex'), attempt: 0 }, log_directory: tempDir('vmlet-nokit-logs-'), annotations: { 'vmlet.io/pod-kind': 'sandboxed' } };
      const err = await failure(call(other.runtime, 'RunPodSandbox', { config, runtime_handler: 'vmlet' }));
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.details).toMatch(/guestKitDir/);
      expect((await call<object, { items: object[] }>(other.runtime, 'ListPodSandbox', {})).items).toEqual([]);
      // Refused before anything was made: no pod dir (its record, its netns's name) was ever written.
      const pods = join(other.stateDir, 'pods');
      expect(existsSync(pods) ? readdirSync(pods) : []).toEqual([]);
    } finally {
      await other.stop();
    }
  }, 60_000);

  it('a boot that fails after the answer: logged, the pod stays ready, and its first container boots again and gets the error; nothing of either VM stays', async () => {
    // A kit whose kernel QEMU cannot load: the checks at RunPodSandbox pass, the boot fails.
    const kit = tempDir('vmlet-badkit-');
    for (const f of ['initrd.img', 'cmdline', 'VERSION']) if (existsSync(join(TEST_GUEST_KIT, f))) copyFileSync(join(TEST_GUEST_KIT, f), join(kit, f));
    writeFileSync(join(kit, 'vmlinux'), '');
    const other = await vmletWithKit(kit);
    const ort = <T>(method: string, req: object) => call<object, T>(other.runtime, method, req);
    try {
      await call(other.image, 'PullImage', { image: { image } });
      const uid = randomBytes(8).toString('hex');
      const config = { metadata: { name: 'badkit', namespace: 'ahead', uid, attempt: 0 }, log_directory: join(logDir, uid), annotations: { 'vmlet.io/pod-kind': 'sandboxed' } };
      const { pod_sandbox_id: id } = await ort<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
      await waitFor('the failed boot logged', () => parseLogLines(other.logLines).find((e) => e.msg === 'the pod VM booted at RunPodSandbox failed; the first container boots one' && e.podSandboxId === id), { timeoutMs: 60_000, intervalMs: 50 });
      expect((await ort<{ status: { state: string } }>('PodSandboxStatus', { pod_sandbox_id: id })).status.state).toBe('SANDBOX_READY');
      const domain = domainName('badkit', 'ahead', id);
      expect(domainExists(domain)).toBe(false);
      const err = await failure(ort('CreateContainer', { pod_sandbox_id: id, config: { metadata: { name: 'c', attempt: 0 }, image: { image }, log_path: 'c.log' }, sandbox_config: config }));
      expect(err.code).not.toBe(Status.OK);
      expect(err.details).toMatch(/kernel|vmlinux/i);
      expect(domainExists(domain)).toBe(false);
      expect(existsSync(podVmFiles(join(other.stateDir, 'pods', id), id).scratch)).toBe(false);
      await ort('RemovePodSandbox', { pod_sandbox_id: id });
    } finally {
      await other.stop();
    }
  }, 120_000);
});
