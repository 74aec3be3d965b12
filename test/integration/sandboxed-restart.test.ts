// A sandboxed pod across a vmlet kill -9 and restart: the pod VM and its containers keep running,
// an exit that happened while vmlet was down is recorded with its exit code, and a container that
// still runs is stopped, exec'd into and logged as before. A pod VM's QEMU killed after a restart
// is heard from vmlet's own QMP monitor (watched again at start): the pod is NOTREADY at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { domainName } from '../../src/vm/spec.js';
import type { TestRegistry } from '../helpers/registry.js';
import { startVmSuite, stopVmSuite, TEST_GUEST_KIT } from '../helpers/vm-suite.js';
import { waitFor } from '../helpers/wait.js';
import { parseCriLogLine } from '../../src/stream/cri-log.js';

let v: VmletProcess;
let reg: TestRegistry;
let image = '';
let config = '';
const logDir = tempDir('vmlet-sbx-restart-');
const vol = join(logDir, 'vol');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const state = async (cid: string) => (await rt<{ status: { state: string; exit_code: number; reason: string } }>('ContainerStatus', { container_id: cid })).status;
const lines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => parseCriLogLine(l).content) : []);

beforeAll(async () => {
  const suite = await startVmSuite([['busybox-app', 'sbx/app:1']]);
  ({ reg } = suite);
  image = suite.refs[0]!;
  config = `registries:\n  insecure: ["${reg.host}"]\nguestKitDir: ${TEST_GUEST_KIT}\n`;
  await suite.v.stop();
  v = await startVmlet({ stateDir: suite.v.stateDir, config });
  mkdirSync(vol);
  chmodSync(vol, 0o777);
}, 300_000);

afterAll(async () => {
  await stopVmSuite(v, reg);
}, 120_000);

describe('sandboxed pod across a vmlet restart', () => {
  it('keeps the VM and its containers, and learns the exits that happened while vmlet was down', async () => {
    const uid = randomBytes(8).toString('hex');
    const sandbox = { metadata: { name: 'survivor', namespace: 'sbx', uid, attempt: 0 }, hostname: 'survivor', log_directory: join(logDir, uid) };
    const { pod_sandbox_id: pod } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: sandbox, runtime_handler: 'vmlet' });
    const make = async (name: string, script: string) => {
      const { container_id } = await rt<{ container_id: string }>('CreateContainer', {
        pod_sandbox_id: pod,
        config: { metadata: { name, attempt: 0 }, image: { image }, command: ['sh', '-c', script], log_path: `${name}.log`, mounts: [{ container_path: '/data', host_path: vol }] },
        sandbox_config: sandbox,
      });
      await rt('StartContainer', { container_id });
      return container_id;
    };
    // Ends on its own once the test says so, while vmlet is down.
    const quitter = await make('quitter', 'echo waiting; while [ ! -e /data/quit ]; do sleep 0.1; done; echo bye > /data/quitter-done; exit 9');
    // Runs throughout; answers SIGTERM with 3.
    const stayer = await make('stayer', 'trap "echo term; exit 3" TERM; echo up; while true; do sleep 0.2; done');
    await waitFor('both containers to print', () => lines(join(logDir, uid, 'quitter.log')).includes('waiting') && lines(join(logDir, uid, 'stayer.log')).includes('up'), { timeoutMs: 30_000 });

    v.proc.kill('SIGKILL');
    await new Promise((r) => v.proc.once('exit', r));
    writeFileSync(join(vol, 'quit'), '');
    await waitFor('the quitter to finish in the guest', () => existsSync(join(vol, 'quitter-done')), { timeoutMs: 30_000 });

    v = await startVmlet({ stateDir: v.stateDir, config });
    await waitFor('the quitter to be recorded EXITED', async () => ((await state(quitter)).state === 'CONTAINER_EXITED' ? true : undefined), { timeoutMs: 30_000 });
    expect(await state(quitter)).toMatchObject({ exit_code: 9, reason: 'Error' });
    expect((await state(stayer)).state).toBe('CONTAINER_RUNNING');
    const r = await rt<{ stdout: Buffer; exit_code: number }>('ExecSync', { container_id: stayer, cmd: ['cat', '/data/quitter-done'], timeout: 20 });
    expect(Buffer.from(r.stdout).toString()).toBe('bye\n');
    await rt('StopContainer', { container_id: stayer, timeout: 20 });
    expect(await state(stayer)).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 3 });
    // Output after the restart reaches the log again.
    await waitFor('"term" in the stayer log', () => lines(join(logDir, uid, 'stayer.log')).includes('term') || undefined, { timeoutMs: 10_000 });
    await rt('StopPodSandbox', { pod_sandbox_id: pod });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod });
  }, 240_000);

  it("hears its VM's QEMU killed with -9 from vmlet's own monitor, watched again after a vmlet restart: NOTREADY at once", async () => {
    const uid = randomBytes(8).toString('hex');
    const sandbox = { metadata: { name: 'victim', namespace: 'sbx', uid, attempt: 0 }, hostname: 'victim', log_directory: join(logDir, uid) };
    const { pod_sandbox_id: pod } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: sandbox, runtime_handler: 'vmlet' });
    const { container_id: cid } = await rt<{ container_id: string }>('CreateContainer', {
      pod_sandbox_id: pod,
      config: { metadata: { name: 'sleeper', attempt: 0 }, image: { image }, command: ['sh', '-c', 'echo up; exec sleep 1000'], log_path: 'sleeper.log' },
      sandbox_config: sandbox,
    });
    await rt('StartContainer', { container_id: cid });
    await waitFor('the sleeper to print', () => lines(join(logDir, uid, 'sleeper.log')).includes('up') || undefined, { timeoutMs: 30_000 });
    v.proc.kill('SIGKILL');
    await new Promise((r) => v.proc.once('exit', r));
    v = await startVmlet({ stateDir: v.stateDir, config });
    const logged = (msg: string) => parseLogLines(v.logLines).find((l) => l.msg === msg && l.podSandboxId === pod);
    await waitFor('the new vmlet to watch the pod VM', () => logged("watching QEMU through vmlet's monitor"), { timeoutMs: 30_000, intervalMs: 20 });

    const domain = domainName('victim', 'sbx', pod);
    process.kill(Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim()), 'SIGKILL');
    const killedAt = performance.now();
    await waitFor('the pod to turn NOTREADY', async () => (await rt<{ status: { state: string } }>('PodSandboxStatus', { pod_sandbox_id: pod })).status.state === 'SANDBOX_NOTREADY' || undefined, { timeoutMs: 30_000, intervalMs: 5 });
    const ms = performance.now() - killedAt;
    expect(logged("QEMU gone (vmlet's monitor closed)")).toMatchObject({ domain, end: 'crashed' });
    expect(await state(cid)).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 255, reason: 'Error' });
    console.log(`sandboxed-restart: pod VM's QEMU killed -9 → pod NOTREADY after ${ms.toFixed(0)} ms`);
    await rt('StopPodSandbox', { pod_sandbox_id: pod });
    await rt('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(existsSync(join(v.stateDir, 'pods', pod))).toBe(false);
  }, 240_000);
});
