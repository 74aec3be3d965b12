// The examples a user copies (examples/) keep working: the Pod manifests are valid Pods for the
// vmlet RuntimeClass whose annotations vmlet accepts under its default policy, and the crictl
// JSON files run as they are against a real vmlet (their public image names reach the loopback
// registry through registry mirrors, as on a node with a pull-through cache): the VM-image pod
// boots and runs its cloud-init user-data, the sandboxed pod serves HTTP on its pod IP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { call, ROOT, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { stopVmSuite, TEST_GUEST_KIT } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { READY_MARKER } from '../helpers/guest.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';
import { parsePodAnnotations } from '../../src/vm/annotations.js';
import { checkPodAnnotations } from '../../src/vm/annotation-policy.js';
import { parseQuantityBytes } from '../../src/vm/quantity.js';

const EXAMPLES = join(ROOT, 'examples');
const json = (name: string) => JSON.parse(readFileSync(join(EXAMPLES, 'crictl', name), 'utf8')) as Record<string, unknown> & { log_directory?: string };

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
const rt = <T>(method: string, req: object) => call<object, T>(v!.runtime, method, req);

/** A Pod's containers' limits as the kubelet sends them for the pod (LinuxPodSandboxConfig.resources). */
function podLimits(pod: { spec: { containers: Array<{ resources?: { limits?: { cpu?: string; memory?: string } } }> } }) {
  let quota = 0;
  let memory = 0;
  for (const c of pod.spec.containers) {
    const cpu = c.resources?.limits?.cpu;
    if (cpu) quota += cpu.endsWith('m') ? Number(cpu.slice(0, -1)) * 100 : Number(cpu) * 100_000;
    if (c.resources?.limits?.memory) memory += parseQuantityBytes(c.resources.limits.memory);
  }
  return { cpu_period: '100000', cpu_quota: String(quota), memory_limit_in_bytes: String(memory) };
}

describe('examples/*.yaml', () => {
  for (const file of ['vm-pod.yaml', 'sandboxed-pod.yaml']) {
    it(`${file} is a Pod for the vmlet RuntimeClass that vmlet's default policy accepts`, () => {
      const pod = parseYaml(readFileSync(join(EXAMPLES, file), 'utf8')) as { kind: string; metadata: { annotations?: Record<string, string> }; spec: { runtimeClassName: string; containers: [] } };
      expect(pod.kind).toBe('Pod');
      expect(pod.spec.runtimeClassName).toBe('vmlet');
      const annotations = pod.metadata.annotations ?? {};
      expect(() => parsePodAnnotations(annotations)).not.toThrow();
      expect(() => checkPodAnnotations({ allowed: {}, handler: 'vmlet', annotations, sandboxResources: podLimits(pod) })).not.toThrow();
    });
  }
});

describe('examples/crictl/*.json against a real vmlet', () => {
  beforeAll(async () => {
    await ensureTestImages();
    reg = await startRegistry();
    await pushImage(reg, 'kernelboot', 'containerdisks/fedora:39');
    await pushImage(reg, 'busybox-app', 'library/busybox:1.36');
    const mirror = `["http://${reg.host}"]`;
    v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\n  mirrors:\n    quay.io: ${mirror}\n    docker.io: ${mirror}\nguestKitDir: ${TEST_GUEST_KIT}\n` });
  }, 300_000);

  afterAll(async () => {
    await stopVmSuite(v, reg);
  }, 120_000);

  /** crictl runp + pull + create + start with the example's files; log_directory moved to a temp dir. */
  async function run(podFile: string, ctrFile: string) {
    const pod = { ...json(podFile), log_directory: tempDir('vmlet-example-logs-') };
    const ctr = json(ctrFile) as { image: { image: string }; log_path: string };
    const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: pod, runtime_handler: 'vmlet' });
    await call(v!.image, 'PullImage', { image: ctr.image, sandbox_config: pod });
    const { container_id: cid } = await rt<{ container_id: string }>('CreateContainer', { pod_sandbox_id: id, config: ctr, sandbox_config: pod });
    await rt('StartContainer', { container_id: cid });
    const log = join(pod.log_directory, ctr.log_path);
    const lines = () => {
      try {
        return readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l).content);
      } catch {
        return [];
      }
    };
    return { id, cid, lines };
  }

  it('vm-pod.json + vm-container.json: the VM boots and runs the user-data', async () => {
    const { id, lines } = await run('vm-pod.json', 'vm-container.json');
    await waitFor('the guest ready in the CRI log', () => lines().some((l) => l.includes(READY_MARKER)) || undefined, { timeoutMs: 120_000, intervalMs: 250 });
    // The test guest prints the user-data's first line, as cloud-init would read it.
    await waitFor('the user-data in the guest', () => lines().some((l) => l.includes('VMLET-USERDATA #cloud-config')) || undefined, { timeoutMs: 60_000, intervalMs: 250 });
    await rt('StopPodSandbox', { pod_sandbox_id: id });
    await rt('RemovePodSandbox', { pod_sandbox_id: id });
  }, 240_000);

  it('sandboxed-pod.json + sandboxed-container.json: the container serves HTTP on the pod IP', async () => {
    const { id, lines } = await run('sandboxed-pod.json', 'sandboxed-container.json');
    await waitFor('"serving" in the CRI log', () => lines().includes('serving') || undefined, { timeoutMs: 120_000, intervalMs: 250 });
    const st = await rt<{ status: { network: { ip: string } } }>('PodSandboxStatus', { pod_sandbox_id: id });
    const body = await waitFor(
      'HTTP from the pod IP',
      async () => {
        const res = await fetch(`http://${st.status.network.ip}:8080/`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        return res?.ok ? res.text() : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(body.trim()).toBe('hello-from-a-pod-vm');
    await rt('StopPodSandbox', { pod_sandbox_id: id });
    await rt('RemovePodSandbox', { pod_sandbox_id: id });
  }, 240_000);
});
