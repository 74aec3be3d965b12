// The converged node's two image stores (src/proxy/images.ts) through one vmlet socket: vmlet's
// own and a real containerd's (test/helpers/containerd.ts), both pulling from the test registry.
// Without ImageSpec.runtime_handler the stores answer as one; with it, the handler's store alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, testImages, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, type TestContainerd } from '../helpers/containerd.js';
import type { ImageStatusResponse__Output } from '../../src/gen/runtime/v1/ImageStatusResponse.js';
import type { ListImagesResponse__Output } from '../../src/gen/runtime/v1/ListImagesResponse.js';
import type { PullImageResponse__Output } from '../../src/gen/runtime/v1/PullImageResponse.js';

let reg: TestRegistry;
let ctr: TestContainerd;
let v: VmletProcess;
/** Test images by role, as pushed in beforeAll: every test uses its own reference. */
const refs = { onlyCtr: '', both: '', vmletOnly: '', runcOnly: '', vmPod: '' };
let rootfsId = '';
let kernelId = '';
const logDir = tempDir('vmlet-proxy-images-logs-');

type Where = 'vmlet' | 'runc' | '';
const spec = (image: string, handler: Where = '') => ({ image, ...(handler ? { runtime_handler: handler } : {}) });
/** Through vmlet. */
const status = (image: string, handler: Where = '', verbose = false) => call<object, ImageStatusResponse__Output>(v.image, 'ImageStatus', { image: spec(image, handler), verbose });
const pull = (image: string, handler: Where = '', extra: object = {}) => call<object, PullImageResponse__Output>(v.image, 'PullImage', { image: spec(image, handler), ...extra });
const remove = (image: string, handler: Where = '') => call<object, object>(v.image, 'RemoveImage', { image: spec(image, handler) });
/** Straight from containerd's socket: what its own store holds. */
const ctrStatus = (image: string) => call<object, ImageStatusResponse__Output>(ctr.image, 'ImageStatus', { image: { image } });
/** vmlet's store alone, through the handler that names it. */
const vmletStatus = (image: string) => status(image, 'vmlet');

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  const push = async (name: 'rootfs' | 'kernelboot', repo: string) => (await pushImage(reg, name, repo)).reference;
  refs.onlyCtr = await push('rootfs', 'proxy/only-ctr:v1');
  refs.both = await push('rootfs', 'proxy/both:v1');
  refs.vmletOnly = await push('kernelboot', 'proxy/vmlet-only:v1');
  refs.runcOnly = await push('rootfs', 'proxy/runc-only:v1');
  refs.vmPod = await push('kernelboot', 'proxy/vm-pod:v1');
  rootfsId = testImages().rootfs.configDigest;
  kernelId = testImages().kernelboot.configDigest;
  ctr = await startContainerd({ registry: reg });
  v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\ndownstream: ${ctr.endpoint}\n` });
});

afterAll(async () => {
  await v?.stop();
  await ctr?.stop();
  await reg?.stop();
});

describe('converged node images', () => {
  it('answers absent for an image only containerd holds, until a pull through vmlet fills vmlet\'s store', async () => {
    // In containerd only, as a pull before vmlet was converged (or `crictl pull` straight to it) leaves it.
    expect((await call<object, PullImageResponse__Output>(ctr.image, 'PullImage', { image: { image: refs.onlyCtr } })).image_ref).toBe(rootfsId);
    expect((await ctrStatus(refs.onlyCtr)).image?.id).toBe(rootfsId);

    // The kubelet would skip the pull on "present", and a VM pod's CreateContainer would not find it.
    const st = await status(refs.onlyCtr, '', true);
    expect(st.image).toBeNull();
    expect(JSON.parse(st.info.stores!)).toEqual({ vmlet: null, downstream: rootfsId, downstreamEndpoint: ctr.endpoint });
    expect((await vmletStatus(refs.onlyCtr)).image).toBeNull();
    expect((await status(refs.onlyCtr, 'runc')).image?.id).toBe(rootfsId);
    // Listed all the same: the node holds it.
    const listed = (await call<object, ListImagesResponse__Output>(v.image, 'ListImages', {})).images;
    expect(listed.filter((i) => i.id === rootfsId).flatMap((i) => i.repo_tags)).toContain(refs.onlyCtr);

    // The pull the kubelet then makes fills the missing store; both hold the same image.
    expect((await pull(refs.onlyCtr)).image_ref).toBe(rootfsId);
    expect((await vmletStatus(refs.onlyCtr)).image?.id).toBe(rootfsId);
    const present = await status(refs.onlyCtr, '', true);
    expect(present.image).toMatchObject({ id: rootfsId, repo_tags: [refs.onlyCtr] });
    expect(JSON.parse(present.info.stores!)).toEqual({ vmlet: rootfsId, downstream: rootfsId, downstreamEndpoint: ctr.endpoint });
    expect(JSON.parse(present.info.info!)).toMatchObject({ boot: { kind: 'rootfs' } }); // vmlet's record
    expect(present.info['downstream.info']).toBeTruthy(); // containerd's verbose info
  });

  it('pulls into both stores without a handler, and removes from both', async () => {
    expect((await status(refs.both)).image).toBeNull();
    expect((await pull(refs.both)).image_ref).toBe(rootfsId);
    expect((await ctrStatus(refs.both)).image?.repo_tags).toContain(refs.both);
    expect((await vmletStatus(refs.both)).image?.repo_tags).toContain(refs.both);
    expect((await status(refs.both)).image?.id).toBe(rootfsId);

    await remove(refs.both);
    expect((await ctrStatus(refs.both)).image).toBeNull();
    expect((await vmletStatus(refs.both)).image).toBeNull();
    expect((await status(refs.both)).image).toBeNull();
    await remove(refs.both); // idempotent
  });

  it('keeps to vmlet\'s store with runtime_handler=vmlet and to containerd\'s with runc', async () => {
    expect((await pull(refs.vmletOnly, 'vmlet')).image_ref).toBe(kernelId);
    expect((await vmletStatus(refs.vmletOnly)).image?.id).toBe(kernelId);
    expect((await ctrStatus(refs.vmletOnly)).image).toBeNull();
    expect((await status(refs.vmletOnly)).image).toBeNull(); // a container pod could not use it

    expect((await pull(refs.runcOnly, 'runc')).image_ref).toBe(rootfsId);
    expect((await ctrStatus(refs.runcOnly)).image?.id).toBe(rootfsId);
    expect((await vmletStatus(refs.runcOnly)).image).toBeNull();
    expect((await status(refs.runcOnly, 'runc')).image?.id).toBe(rootfsId);

    // RemoveImage with a handler touches that store only.
    await remove(refs.runcOnly, 'vmlet');
    expect((await ctrStatus(refs.runcOnly)).image?.id).toBe(rootfsId);
    await remove(refs.runcOnly, 'runc');
    expect((await ctrStatus(refs.runcOnly)).image).toBeNull();
    await remove(refs.vmletOnly, 'vmlet');
    expect((await vmletStatus(refs.vmletOnly)).image).toBeNull();
  });

  it('says which store failed a pull', async () => {
    const missing = `${reg.host}/proxy/nothing-here:v1`;
    const err = await failure(pull(missing));
    expect(err.code).not.toBe(Status.OK);
    // Both failed: the message names each store and what it said.
    expect(err.details).toMatch(/^PullImage: vmlet's image store: .+; downstream CRI unix:\/\/.+: .+/);
    expect((await status(missing)).image).toBeNull();
  });

  it('fills vmlet\'s store for a VM pod\'s pull, and CreateContainer names an image vmlet lacks', async () => {
    const uid = randomBytes(8).toString('hex');
    const config = { metadata: { name: 'vm', namespace: 'proxy-images', uid, attempt: 0 }, hostname: 'vm', log_directory: join(logDir, uid), linux: {} };
    const pod = (await call<object, { pod_sandbox_id: string }>(v.runtime, 'RunPodSandbox', { config, runtime_handler: 'vmlet' })).pod_sandbox_id;
    try {
      // An image only containerd holds: the VM pod's CreateContainer cannot use it, and says so.
      await call(ctr.image, 'PullImage', { image: { image: refs.vmPod } });
      const create = () => call(v.runtime, 'CreateContainer', {
        pod_sandbox_id: pod, sandbox_config: config,
        config: { metadata: { name: 'c', attempt: 0 }, image: { image: refs.vmPod }, log_path: 'c/0.log' },
      });
      const err = await failure(create());
      expect(err.code).toBe(Status.NOT_FOUND);
      expect(err.details).toContain(refs.vmPod);
      expect(err.details).toMatch(/pull/);

      // So ImageStatus says absent, and the kubelet's pull for this pod (its sandbox config, no
      // handler) answers from vmlet's store; then both hold it.
      expect((await status(refs.vmPod)).image).toBeNull();
      expect((await pull(refs.vmPod, '', { sandbox_config: config })).image_ref).toBe(kernelId);
      expect((await vmletStatus(refs.vmPod)).image?.id).toBe(kernelId);
      expect((await status(refs.vmPod)).image?.id).toBe(kernelId);
    } finally {
      await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: pod }).catch(() => undefined);
    }
  });
});
