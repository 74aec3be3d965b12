// The operator's annotation allow-list over vmlet's socket (docs/annotations-policy.md): a pod or
// container whose annotation takes host resources is refused with INVALID_ARGUMENT naming the
// annotation and the config key, before anything is made (no state dir, netns, CNI lease or
// domain); with the config allowing it, the same request works. No VM is started.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { stopVmSuite, vmletConfig } from '../helpers/vm-suite.js';
import type { ListPodSandboxResponse__Output } from '../../src/gen/runtime/v1/ListPodSandboxResponse.js';
import type { ListContainersResponse__Output } from '../../src/gen/runtime/v1/ListContainersResponse.js';

// A network of this file's own, so its host-local leases can be counted whatever else runs.
const NETWORK = 'vmlet-policy-test';
const LEASES = `/var/lib/cni/networks/${NETWORK}`;
const MiB = 1024 * 1024;

let reg: TestRegistry | undefined;
let strict: VmletProcess | undefined; // the default: nothing gated allowed
let lenient: VmletProcess | undefined; // allowedAnnotations.vmlet: hugepages, vmlet.io/max-*
let image = '';

function cniConf(): string {
  const dir = tempDir('vmlet-policy-cni-');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, '10-policy.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: NETWORK,
      // Its own bridge and /24: 10.250-10.253 belong to the other tests and critest (test/critest/run.sh).
      plugins: [{ type: 'bridge', bridge: 'vmpol0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.254.0.0/24' }]] } }],
    }),
  );
  return dir;
}

/** The addresses host-local has handed out on this file's network. */
const leases = () => (existsSync(LEASES) ? readdirSync(LEASES).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []);

function podConfig(name: string, annotations: Record<string, string>, resources?: object) {
  const uid = randomBytes(8).toString('hex');
  return { metadata: { name, namespace: 'policy', uid, attempt: 0 }, hostname: name, annotations, ...(resources ? { linux: { resources } } : {}) };
}

const runPod = (v: VmletProcess, config: object) => call<object, { pod_sandbox_id: string }>(v.runtime, 'RunPodSandbox', { config, runtime_handler: 'vmlet' });

beforeAll(async () => {
  await ensureTestImages();
  reg = await startRegistry();
  image = (await pushImage(reg, 'kernelboot', 'policy/kernelboot:1')).reference;
  const cniConfDir = cniConf();
  strict = await startVmlet({ config: vmletConfig(reg), cniConfDir });
  lenient = await startVmlet({ config: vmletConfig(reg), cniConfDir, allowAnnotations: ['vmlet.io/hugepages', 'vmlet.io/max-*'] });
  await call(strict.image, 'PullImage', { image: { image } });
}, 300_000);

afterAll(async () => {
  await stopVmSuite(lenient, undefined);
  await stopVmSuite(strict, reg);
  // The bridge CNI made for this file: left behind it would hold the /24's route.
  spawnSync('ip', ['link', 'del', 'vmpol0']);
}, 120_000);

describe('annotation allow-list (config allowedAnnotations)', () => {
  it('refuses a gated pod annotation at RunPodSandbox and leaves nothing behind', async () => {
    const v = strict!;
    const before = leases();
    const err = await failure(runPod(v, podConfig('hp', { 'vmlet.io/hugepages': '2Mi' })));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain('pod annotation vmlet.io/hugepages is not allowed for runtime handler "vmlet"');
    expect(err.details).toContain('config allowedAnnotations.vmlet: ["vmlet.io/hugepages"]');
    const big = await failure(runPod(v, podConfig('big', { 'vmlet.io/memory': '4Gi' }, { memory_limit_in_bytes: String(1024 * MiB) })));
    expect(big.code).toBe(Status.INVALID_ARGUMENT);
    expect(big.details).toMatch(/vmlet\.io\/memory .*"4Gi" is 4096 MiB, above the 1024 MiB of the pod's memory limit/);
    expect((await call<object, ListPodSandboxResponse__Output>(v.runtime, 'ListPodSandbox', {})).items).toEqual([]);
    expect(existsSync(join(v.stateDir, 'pods')) ? readdirSync(join(v.stateDir, 'pods')) : []).toEqual([]);
    expect(leases()).toEqual(before);
  });

  it('runs the same pod where the config allows it', async () => {
    const v = lenient!;
    const { pod_sandbox_id: id } = await runPod(v, podConfig('hp-ok', { 'vmlet.io/hugepages': '2Mi', 'vmlet.io/max-memory': '2Gi' }));
    expect(existsSync(join(v.stateDir, 'pods', id))).toBe(true);
    expect(existsSync(`/run/netns/vmlet-${id.slice(0, 16)}`)).toBe(true);
    await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
    expect(existsSync(`/run/netns/vmlet-${id.slice(0, 16)}`)).toBe(false);
  });

  it('allows vCPUs and memory up to the limits by default, and refuses them above at CreateContainer', async () => {
    const v = strict!;
    // Within the pod's limits: runs. Above the container's (known only now): refused, nothing made.
    const config = podConfig('mem', { 'vmlet.io/memory': '768Mi', 'vmlet.io/vcpus': '2' }, { cpu_quota: '200000', cpu_period: '100000', memory_limit_in_bytes: String(1024 * MiB) });
    const { pod_sandbox_id: id } = await runPod(v, config);
    const create = (annotations: Record<string, string>, resources: object) =>
      call<object, { container_id: string }>(v.runtime, 'CreateContainer', {
        pod_sandbox_id: id,
        config: { metadata: { name: 'vm', attempt: 0 }, image: { image }, annotations, linux: { resources } },
        sandbox_config: config,
      });
    const err = await failure(create({}, { cpu_quota: '200000', cpu_period: '100000', memory_limit_in_bytes: String(512 * MiB) }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/pod annotation vmlet\.io\/memory is not allowed .*above the 512 MiB of the container's memory limit.*allowedAnnotations\.vmlet: \["vmlet\.io\/memory"\]/);
    const gated = await failure(create({ 'vmlet.io/machine': 'pc' }, { memory_limit_in_bytes: String(1024 * MiB), cpu_quota: '200000', cpu_period: '100000' }));
    expect(gated.code).toBe(Status.INVALID_ARGUMENT);
    expect(gated.details).toContain('container annotation vmlet.io/machine is not allowed for runtime handler "vmlet"');
    expect((await call<object, ListContainersResponse__Output>(v.runtime, 'ListContainers', { filter: { pod_sandbox_id: id } })).containers).toEqual([]);
    const containers = join(v.stateDir, 'pods', id, 'containers');
    expect(existsSync(containers) ? readdirSync(containers) : []).toEqual([]);
    // Within the container's limits: created (not started).
    const { container_id: cid } = await create({}, { cpu_quota: '200000', cpu_period: '100000', memory_limit_in_bytes: String(1024 * MiB) });
    expect(cid).toMatch(/^[0-9a-f]+$/);
    await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
  });
});
