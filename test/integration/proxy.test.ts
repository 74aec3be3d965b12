// The converged node: one vmlet socket, VM pods served by vmlet, every other pod forwarded to a
// real containerd (test/helpers/containerd.ts). Real registry, libvirtd + QEMU (TCG), runc.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, type TestContainerd } from '../helpers/containerd.js';
import { waitFor } from '../helpers/wait.js';
import type { ContainerStatusResponse__Output } from '../../src/gen/runtime/v1/ContainerStatusResponse.js';
import type { ListContainersResponse__Output } from '../../src/gen/runtime/v1/ListContainersResponse.js';
import type { ListPodSandboxResponse__Output } from '../../src/gen/runtime/v1/ListPodSandboxResponse.js';
import type { PodSandboxStatusResponse__Output } from '../../src/gen/runtime/v1/PodSandboxStatusResponse.js';
import type { StatusResponse__Output } from '../../src/gen/runtime/v1/StatusResponse.js';
import type { ImageStatusResponse__Output } from '../../src/gen/runtime/v1/ImageStatusResponse.js';
import type { ListImagesResponse__Output } from '../../src/gen/runtime/v1/ListImagesResponse.js';
import type { VersionResponse__Output } from '../../src/gen/runtime/v1/VersionResponse.js';
import type { ExecResponse__Output } from '../../src/gen/runtime/v1/ExecResponse.js';

let reg: TestRegistry;
let ctr: TestContainerd;
let v: VmletProcess;
let kernelImage = '';
const BUSYBOX = 'docker.io/library/busybox:1.36';
const logDir = tempDir('vmlet-proxy-logs-');

const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const img = <T>(method: string, req: object) => call<object, T>(v.image, method, req);

function podConfig(name: string) {
  const uid = randomBytes(8).toString('hex');
  return {
    metadata: { name, namespace: 'proxy-test', uid, attempt: 0 },
    hostname: name,
    log_directory: join(logDir, `proxy-test_${name}_${uid}`),
    labels: { app: name, suite: 'proxy' },
    linux: {},
  };
}

// docker.io mirrored as containerd's is: a container pod's pull fills vmlet's store too.
const vmletConfig = () => `registries:\n  insecure: ["${reg.host}"]\n  mirrors:\n    docker.io: ["${reg.url}"]\ndownstream: ${ctr.endpoint}\n`;

/** The pods of this suite, as the ids the tests created. */
const ids = { plainPod: '', plainCtr: '', vmPod: '', vmCtr: '' };

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  kernelImage = (await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:v1')).reference;
  await pushImage(reg, 'rootfs', 'library/busybox:1.36');
  ctr = await startContainerd({ registry: reg });
  v = await startVmlet({ config: vmletConfig() });
});

afterAll(async () => {
  if (v) {
    for (const id of [ids.vmPod, ids.plainPod].filter(Boolean)) await rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    await v.stop();
  }
  await ctr?.stop();
  await reg?.stop();
});

describe('converged node', () => {
  it('runs a container pod on containerd and a VM pod on vmlet through one socket', async () => {
    // The container pod: no RuntimeClass → containerd.
    const plain = podConfig('plain');
    ids.plainPod = (await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: plain, runtime_handler: '' })).pod_sandbox_id;
    expect((await call<object, PodSandboxStatusResponse__Output>(ctr.runtime, 'PodSandboxStatus', { pod_sandbox_id: ids.plainPod })).status!.state).toBe('SANDBOX_READY');
    await img('PullImage', { image: { image: BUSYBOX }, sandbox_config: plain });
    ids.plainCtr = (await rt<{ container_id: string }>('CreateContainer', {
      pod_sandbox_id: ids.plainPod,
      sandbox_config: plain,
      config: { metadata: { name: 'sh', attempt: 0 }, image: { image: BUSYBOX }, command: ['/bin/sh', '-c', 'sleep 3600'], log_path: 'sh/0.log', linux: {} },
    })).container_id;
    await rt('StartContainer', { container_id: ids.plainCtr });

    // The VM pod: handler vmlet → vmlet. Its image is already in containerd's store only: as a
    // kubelet without RuntimeClassInImageCriApi does (imagePullPolicy IfNotPresent), ask
    // ImageStatus with no handler, pull on "absent" with the pod's config, create from the ref.
    await call(ctr.image, 'PullImage', { image: { image: kernelImage } });
    const vm = podConfig('vm');
    ids.vmPod = (await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: vm, runtime_handler: 'vmlet' })).pod_sandbox_id;
    expect((await img<ImageStatusResponse__Output>('ImageStatus', { image: { image: kernelImage } })).image).toBeNull();
    const kernelRef = (await img<{ image_ref: string }>('PullImage', { image: { image: kernelImage }, sandbox_config: vm })).image_ref;
    ids.vmCtr = (await rt<{ container_id: string }>('CreateContainer', {
      pod_sandbox_id: ids.vmPod,
      sandbox_config: vm,
      config: { metadata: { name: 'vm', attempt: 0 }, image: { image: kernelRef }, log_path: 'vm/0.log' },
    })).container_id;
    await rt('StartContainer', { container_id: ids.vmCtr });

    // containerd never heard of the VM pod; vmlet's state holds no container pod.
    expect((await failure(call(ctr.runtime, 'PodSandboxStatus', { pod_sandbox_id: ids.vmPod }))).code).toBe(Status.NOT_FOUND);
    const pods = await rt<ListPodSandboxResponse__Output>('ListPodSandbox', {});
    const byId = new Map(pods.items.map((p) => [p.id, p]));
    expect(byId.get(ids.plainPod)).toMatchObject({ state: 'SANDBOX_READY', runtime_handler: '', metadata: { name: 'plain' } });
    expect(byId.get(ids.vmPod)).toMatchObject({ state: 'SANDBOX_READY', runtime_handler: 'vmlet', metadata: { name: 'vm' } });
    const ctrs = await rt<ListContainersResponse__Output>('ListContainers', {});
    expect(new Map(ctrs.containers.map((c) => [c.id, c.state]))).toEqual(new Map([[ids.plainCtr, 'CONTAINER_RUNNING'], [ids.vmCtr, 'CONTAINER_RUNNING']]));
    // Filters reach both sides.
    const onlyPlain = await rt<ListPodSandboxResponse__Output>('ListPodSandbox', { filter: { label_selector: { app: 'plain' } } });
    expect(onlyPlain.items.map((p) => p.id)).toEqual([ids.plainPod]);
    const onlyVm = await rt<ListContainersResponse__Output>('ListContainers', { filter: { pod_sandbox_id: ids.vmPod } });
    expect(onlyVm.containers.map((c) => c.id)).toEqual([ids.vmCtr]);

    // Per-id calls reach the owner, with short prefixes too.
    expect((await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: ids.plainCtr.slice(0, 12) })).status).toMatchObject({ id: ids.plainCtr, state: 'CONTAINER_RUNNING' });
    expect((await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: ids.vmCtr })).status).toMatchObject({ id: ids.vmCtr, state: 'CONTAINER_RUNNING' });
    expect((await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: ids.plainPod })).status!.network!.ip).toMatch(/^10\.251\.0\./);
    const exec = await rt<ExecResponse__Output>('Exec', { container_id: ids.plainCtr, cmd: ['true'], stdout: true });
    expect(exec.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/exec\//); // containerd's own streaming server

    // Images: without a handler an image is present only when both stores hold it
    // (docs/converged-images.md); each pod's pull filled the other store in the background.
    expect((await img<ImageStatusResponse__Output>('ImageStatus', { image: { image: kernelImage } })).image?.repo_tags).toContain(kernelImage);
    expect((await img<ImageStatusResponse__Output>('ImageStatus', { image: { image: kernelImage, runtime_handler: 'vmlet' } })).image?.repo_tags).toContain(kernelImage);
    expect((await img<ImageStatusResponse__Output>('ImageStatus', { image: { image: BUSYBOX, runtime_handler: 'runc' } })).image?.repo_tags).toContain(BUSYBOX);
    await waitFor('busybox in both stores', async () =>
      (await img<ImageStatusResponse__Output>('ImageStatus', { image: { image: BUSYBOX } })).image?.repo_tags.includes(BUSYBOX));
    expect((await img<ImageStatusResponse__Output>('ImageStatus', { image: { image: 'docker.io/library/nope:1' } })).image).toBeNull();
    const tags = (await img<ListImagesResponse__Output>('ListImages', {})).images.flatMap((i) => i.repo_tags);
    expect(tags).toEqual(expect.arrayContaining([kernelImage, BUSYBOX, 'docker.io/library/pause:3.6']));
    const fs = await img<{ image_filesystems: { fs_id: { mountpoint: string } }[] }>('ImageFsInfo', {});
    expect(fs.image_filesystems.length).toBe(2);

    // Version answers as vmlet; Status covers both.
    expect((await rt<VersionResponse__Output>('Version', {})).runtime_name).toBe('vmlet');
    const st = await rt<StatusResponse__Output>('Status', {});
    expect(st.status!.conditions.find((c) => c.type === 'RuntimeReady')!.status).toBe(true);
    expect(st.runtime_handlers.map((h) => h.name)).toContain('vmlet');

    // One log line per forwarded call, naming the backend.
    await waitFor('the forwarded RunPodSandbox log line', () =>
      parseLogLines(v.logLines).some((l) => l.rpc === 'RunPodSandbox' && l.backend === 'downstream' && l.name === 'plain'));
  });

  it('answers GetContainerEvents UNIMPLEMENTED: vmlet\'s events alone would hide containerd\'s from a kubelet on Evented PLEG', async () => {
    const stream = (v.runtime as unknown as { GetContainerEvents(req: object): NodeJS.EventEmitter }).GetContainerEvents({});
    const err = await new Promise<{ code: number; details: string }>((resolve) => stream.once('error', resolve));
    expect(err.code).toBe(12); // UNIMPLEMENTED
    expect(err.details).toMatch(/GetContainerEvents: .*does not merge its stream with the downstream's/);
  });

  it('keeps routing right across a vmlet restart', async () => {
    expect(ids.vmCtr).not.toBe('');
    const stateDir = v.stateDir;
    await v.stop();
    v = await startVmlet({ config: vmletConfig(), stateDir });
    const pods = await rt<ListPodSandboxResponse__Output>('ListPodSandbox', {});
    expect(pods.items.map((p) => p.id).sort()).toEqual([ids.plainPod, ids.vmPod].sort());
    expect((await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: ids.plainCtr })).status!.state).toBe('CONTAINER_RUNNING');
    expect((await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: ids.vmCtr })).status!.state).toBe('CONTAINER_RUNNING');
  });

  it('fails List* with UNAVAILABLE naming containerd while it is down; VM calls keep working', async () => {
    expect(ids.vmCtr).not.toBe('');
    await ctr.stopDaemon();
    try {
      for (const m of ['ListPodSandbox', 'ListContainers']) {
        const err = await failure(rt(m, {}));
        expect(err.code).toBe(Status.UNAVAILABLE);
        expect(err.details).toContain(ctr.endpoint);
      }
      expect((await failure(img('ListImages', {}))).code).toBe(Status.UNAVAILABLE);
      expect((await rt<ContainerStatusResponse__Output>('ContainerStatus', { container_id: ids.vmCtr })).status!.state).toBe('CONTAINER_RUNNING');
      expect((await rt<PodSandboxStatusResponse__Output>('PodSandboxStatus', { pod_sandbox_id: ids.vmPod })).status!.state).toBe('SANDBOX_READY');
      expect((await rt<VersionResponse__Output>('Version', {})).runtime_name).toBe('vmlet');
      const ready = (await rt<StatusResponse__Output>('Status', {})).status!.conditions.find((c) => c.type === 'RuntimeReady')!;
      expect(ready.status).toBe(false);
      expect(ready.message).toContain(ctr.endpoint);
      const err = await failure(rt('ContainerStatus', { container_id: ids.plainCtr }));
      expect(err.code).toBe(Status.UNAVAILABLE);
      expect(err.details).toContain(ctr.endpoint);
    } finally {
      await ctr.restartDaemon();
    }
    // Reconnects by itself (backoff ≤ 2 s), and the container survived on its shim.
    const ctrs = await waitFor('ListContainers through vmlet again', () =>
      rt<ListContainersResponse__Output>('ListContainers', {}).catch(() => undefined), { timeoutMs: 15_000, intervalMs: 200 });
    expect(new Map(ctrs.containers.map((c) => [c.id, c.state]))).toEqual(new Map([[ids.plainCtr, 'CONTAINER_RUNNING'], [ids.vmCtr, 'CONTAINER_RUNNING']]));
  });

  it('stops and removes both pods through vmlet; Stop/Remove stay idempotent', async () => {
    expect(ids.vmCtr).not.toBe('');
    await rt('StopContainer', { container_id: ids.plainCtr, timeout: 0 });
    await rt('StopContainer', { container_id: ids.vmCtr, timeout: 0 });
    const ctrs = await rt<ListContainersResponse__Output>('ListContainers', {});
    expect(ctrs.containers.map((c) => c.state)).toEqual(['CONTAINER_EXITED', 'CONTAINER_EXITED']);
    for (const id of [ids.plainCtr, ids.vmCtr]) {
      await rt('RemoveContainer', { container_id: id });
      await rt('RemoveContainer', { container_id: id });
    }
    for (const id of [ids.plainPod, ids.vmPod]) {
      await rt('StopPodSandbox', { pod_sandbox_id: id });
      await rt('RemovePodSandbox', { pod_sandbox_id: id });
      await rt('RemovePodSandbox', { pod_sandbox_id: id });
      await rt('StopPodSandbox', { pod_sandbox_id: id });
    }
    const unknown = randomBytes(32).toString('hex');
    await rt('StopPodSandbox', { pod_sandbox_id: unknown });
    await rt('RemoveContainer', { container_id: unknown });
    expect((await rt<ListPodSandboxResponse__Output>('ListPodSandbox', {})).items).toEqual([]);
    expect((await call<object, ListPodSandboxResponse__Output>(ctr.runtime, 'ListPodSandbox', {})).items).toEqual([]);
    ids.plainPod = ids.vmPod = '';
  });
});
