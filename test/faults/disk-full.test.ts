// Fault: the state dir's filesystem fills up (a size-limited tmpfs mounted as vmlet's state dir,
// filled by a file of the test's) during PullImage and during CreateContainer, at several levels
// so the write that fails is a different one each time. Each answer is RESOURCE_EXHAUSTED with a
// message that says where space is short; nothing half-written is left (image store tmp/, blobs,
// boot files, container dirs, libvirt domains); once space is freed the same calls work, and the
// VM made then starts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { virsh } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';
import { faultCniConf, NAMESPACE, rt, startFaultVmlet, stopFleet } from './fleet.js';

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let kernelImage = '';
let diskImage = '';
// Made in beforeAll, not at import: collecting the file (vitest list) must leave nothing behind.
let mnt = '';
let filler = '';
let logDir = '';

beforeAll(async () => {
  mnt = tempDir('vmlet-faults-tmpfs-');
  filler = join(mnt, 'filler');
  logDir = tempDir('vmlet-faults-logs-');
  await ensureTestImages();
  reg = await startRegistry();
  kernelImage = (await pushImage(reg, 'kernelboot', 'faults/kernelboot:disk')).reference;
  diskImage = (await pushImage(reg, 'containerdisk', 'faults/containerdisk:disk')).reference;
  // Room for both images (~150 MiB unpacked) and the store's 512 MiB reserve, not much more.
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=768m,mode=0755', 'vmlet-faults', mnt]);
  v = await startFaultVmlet(reg, faultCniConf(), { stateDir: join(mnt, 'state') });
}, 120_000);

afterAll(async () => {
  await stopFleet(v, reg);
  if (mnt) await execa('umount', [mnt], { reject: false });
}, 120_000);

const free = () => {
  const s = statfsSync(mnt);
  return s.bavail * s.bsize;
};
/** Fills the filesystem up to `leave` bytes free. */
async function fill(leave: number): Promise<void> {
  await execa('fallocate', ['-l', String(Math.max(4096, Math.floor((free() - leave) / 4096) * 4096)), filler]);
}
const unfill = () => rmSync(filler, { force: true });

/** Every file under dir (relative paths), or [] when it does not exist. */
const files = (dir: string): string[] => (existsSync(dir) ? (readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => !d.isDirectory()).map((d) => join(d.parentPath, d.name).slice(dir.length + 1)).sort()) : []);
const store = () => files(join(v!.stateDir, 'images'));
const domains = () => virsh('list', '--all', '--name').split('\n').filter((n) => n.startsWith(`vmlet-${NAMESPACE}-`));

describe('the state dir fills up', () => {
  it('during PullImage: RESOURCE_EXHAUSTED saying so, nothing half-written, and the pull works once space is freed', async () => {
    const before = store();
    const images = await call<object, { images: unknown[] }>(v!.image, 'ListImages', {});
    // 20 MB free: under the store's reserve (refused as the layer is read); 1 MB: the download itself hits ENOSPC.
    for (const leave of [20e6, 1e6]) {
      await fill(leave);
      const err = await failure(call(v!.image, 'PullImage', { image: { image: kernelImage } }));
      expect({ leave, code: err.code, details: err.details }).toMatchObject({ leave, code: Status.RESOURCE_EXHAUSTED });
      expect(err.details).toMatch(new RegExp(`^image ${kernelImage}: not enough space for it in the image store ${join(v!.stateDir, 'images')} \\(\\d+ MiB free, of which vmlet keeps 512 MiB for the node\\): `));
      // The failed pull's blobs are collected once no pull runs.
      await waitFor(`the image store as before the pull (${leave} bytes free)`, () => JSON.stringify(store()) === JSON.stringify(before), { timeoutMs: 10_000 });
      expect(await call(v!.image, 'ListImages', {})).toEqual(images);
      unfill();
    }
    await call(v!.image, 'PullImage', { image: { image: kernelImage } });
    await call(v!.image, 'PullImage', { image: { image: diskImage } });
    const st = await call<object, { image: { id: string } | null }>(v!.image, 'ImageStatus', { image: { image: kernelImage } });
    expect(st.image?.id).toMatch(/^sha256:/);
    expect(files(join(v!.stateDir, 'images', 'tmp'))).toEqual([]);
  });

  it('during CreateContainer: RESOURCE_EXHAUSTED saying so, no container, file or domain left, and the create works once space is freed', async () => {
    const uid = randomBytes(8).toString('hex');
    const config = { metadata: { name: 'full', namespace: NAMESPACE, uid, attempt: 0 }, hostname: 'full', log_directory: join(logDir, uid), annotations: { 'vmlet.io/kernel-args': 'vmlet.test=ticker' } };
    const { pod_sandbox_id: pod } = await rt<{ pod_sandbox_id: string }>(v!, 'RunPodSandbox', { config, runtime_handler: 'vmlet' });
    const podFiles = files(join(v!.stateDir, 'pods', pod));
    const domainsBefore = domains();
    const create = (image: string) =>
      rt<{ container_id: string }>(v!, 'CreateContainer', { pod_sandbox_id: pod, config: { metadata: { name: 'vm', attempt: 0 }, image: { image }, log_path: 'vm.log' }, sandbox_config: config });
    // 0 bytes: the first write fails; 64 KiB: the records fit, the seed or the overlay does not.
    for (const leave of [0, 64 * 1024, 300 * 1024]) {
      for (const image of [kernelImage, diskImage]) {
        await fill(leave);
        const err = await failure(create(image));
        expect({ leave, image, code: err.code, details: err.details }).toMatchObject({ leave, image, code: Status.RESOURCE_EXHAUSTED });
        expect(err.details).toMatch(new RegExp(`^container vm in pod ${pod} cannot be created: no space left on the filesystem of ${v!.stateDir} \\(.+\\); free space there and retry$`));
        expect(files(join(v!.stateDir, 'pods', pod))).toEqual(podFiles);
        expect(domains()).toEqual(domainsBefore);
        expect((await rt<{ containers: unknown[] }>(v!, 'ListContainers', {})).containers).toEqual([]);
        unfill();
      }
    }
    const { container_id: cid } = await create(kernelImage);
    await rt(v!, 'StartContainer', { container_id: cid });
    expect((await rt<{ status: { state: string } }>(v!, 'ContainerStatus', { container_id: cid })).status.state).toBe('CONTAINER_RUNNING');
    expect((await rt<{ status: { state: string } }>(v!, 'PodSandboxStatus', { pod_sandbox_id: pod })).status.state).toBe('SANDBOX_READY');
  });
});
