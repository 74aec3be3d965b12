// Benchmark (not a test): what the converged node's routing costs. ListPodSandbox and
// ListContainers with 10 container pods (containerd) + 2 VM pods (vmlet), asked through vmlet's
// socket (both backends, merged) and of containerd directly, interleaved in the same run.
//   npx tsx bench/proxy.ts [calls=50] [containerPods=10] [vmPods=2]
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, startVmlet, tempDir } from '../test/helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry } from '../test/helpers/registry.js';
import { startContainerd } from '../test/helpers/containerd.js';

const CALLS = Number(process.argv[2] ?? 50);
const CTR_PODS = Number(process.argv[3] ?? 10);
const VM_PODS = Number(process.argv[4] ?? 2);
const BUSYBOX = 'docker.io/library/busybox:1.36';
const logRoot = tempDir('vmlet-bench-logs-');

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const ms = (x: number) => `${x.toFixed(2)} ms`;

function podConfig(name: string) {
  const uid = randomBytes(8).toString('hex');
  return { metadata: { name, namespace: 'bench', uid, attempt: 0 }, hostname: name, log_directory: join(logRoot, uid), labels: { app: name }, linux: {} };
}

async function main(): Promise<void> {
  await ensureTestImages();
  const reg = await startRegistry();
  const ctr = await startContainerd({ registry: reg });
  const v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\ndownstream: ${ctr.endpoint}\n`, args: ['--log-level', 'info'] });
  const rt = <T>(m: string, req: object) => call<object, T>(v.runtime, m, req);
  const pods: string[] = [];
  try {
    await pushImage(reg, 'rootfs', 'library/busybox:1.36');
    const kernel = (await pushImage(reg, 'kernelboot', 'bench/kernel:v1')).reference;
    await call(v.image, 'PullImage', { image: { image: BUSYBOX } });
    await call(v.image, 'PullImage', { image: { image: kernel, runtime_handler: 'vmlet' } });
    for (let i = 0; i < CTR_PODS; i++) {
      const config = podConfig(`ctr-${i}`);
      const { pod_sandbox_id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config });
      pods.push(pod_sandbox_id);
      const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
        pod_sandbox_id, sandbox_config: config,
        config: { metadata: { name: 'sh', attempt: 0 }, image: { image: BUSYBOX }, command: ['/bin/sh', '-c', 'sleep 3600'], log_path: 'sh.log', linux: {} },
      });
      await rt('StartContainer', { container_id });
    }
    for (let i = 0; i < VM_PODS; i++) {
      const config = podConfig(`vm-${i}`);
      const { pod_sandbox_id } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: 'vmlet' });
      pods.push(pod_sandbox_id);
      const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
        pod_sandbox_id, sandbox_config: config, config: { metadata: { name: 'vm', attempt: 0 }, image: { image: kernel }, log_path: 'vm.log' },
      });
      await rt('StartContainer', { container_id });
    }
    // Let the guests finish booting (TCG): their CPU use would skew the first samples.
    await new Promise((r) => setTimeout(r, 8000));

    const targets = { 'vmlet (merged)': v.runtime, 'containerd direct': ctr.runtime } as const;
    console.log(`${CTR_PODS} container pods (containerd ${ctr.endpoint}) + ${VM_PODS} VM pods; ${CALLS} calls each, interleaved, after 5 warm-up calls`);
    for (const method of ['ListPodSandbox', 'ListContainers']) {
      const samples: Record<string, number[]> = {};
      for (const [name, client] of Object.entries(targets)) {
        samples[name] = [];
        for (let i = 0; i < 5; i++) await call(client, method, {});
      }
      let counts = '';
      for (let i = 0; i < CALLS; i++) {
        for (const [name, client] of Object.entries(targets)) {
          const t0 = performance.now();
          const res = await call<object, { items?: unknown[]; containers?: unknown[] }>(client, method, {});
          samples[name]!.push(performance.now() - t0);
          if (i === 0) counts += ` ${name}: ${(res.items ?? res.containers ?? []).length} items;`;
        }
      }
      console.log(`${method}:${counts}`);
      for (const [name, xs] of Object.entries(samples)) {
        console.log(`  ${name.padEnd(18)} median ${ms(pct(xs, 50))}  p90 ${ms(pct(xs, 90))}  min ${ms(Math.min(...xs))}`);
      }
    }
  } finally {
    for (const id of pods) await rt('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    await v.stop();
    await ctr.stop();
    await reg.stop();
  }
}

await main();
