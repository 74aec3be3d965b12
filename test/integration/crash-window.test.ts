// What a vmlet killed between libvirt's define and the record that names the VM leaves, against
// real libvirtd and QEMU: the state is made by a kill -9 after CreateContainer (or after a
// sandboxed pod's VM booted) and the record that would not have been written yet taken away.
// At the next start vmlet removes such a VM (and the crashed CreateContainer's dir), so the
// kubelet's retry works; a domain of a pod this vmlet does not serve (another vmlet's on the same
// libvirtd) is left alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, parseLogLines, startVmlet, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { podVmReady, startVmSuite, stopVmSuite, waitForConsoleLine } from '../helpers/vm-suite.js';
import { domainExists, virsh } from '../helpers/virsh.js';

let v: VmletProcess;
let reg: TestRegistry;
let kernelImage = '';
let appImage = '';
let config = '';
const logDir = tempDir('vmlet-crashwin-logs-');
const foreign = `vmlet-foreign-${randomBytes(4).toString('hex')}`;
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const domainOf = async (cid: string) => (JSON.parse((await rt<{ info: Record<string, string> }>('ContainerStatus', { container_id: cid, verbose: true })).info.info!) as { domain: string }).domain;

beforeAll(async () => {
  const suite = await startVmSuite(
    [
      ['kernelboot', 'crashwin/kernel:1'],
      ['busybox-app', 'crashwin/app:1'],
    ],
    { guestKit: true },
  );
  ({ reg, v, config } = suite);
  [kernelImage, appImage] = suite.refs as [string, string];
}, 300_000);

afterAll(async () => {
  if (domainExists(foreign)) virsh('undefine', foreign);
  await stopVmSuite(v, reg);
}, 120_000);

/** kill -9, then a start on the same state dir. */
async function crashAndRestart(between: () => void) {
  await v.stop('SIGKILL');
  between();
  v = await startVmlet({ stateDir: v.stateDir, config });
}

describe('a crash between defining a VM and recording it', () => {
  it('CreateContainer: the unrecorded domain and dir go at the next start; the retry creates and boots the VM', async () => {
    const uid = randomBytes(8).toString('hex');
    const sandbox = { metadata: { name: 'crashwin', namespace: 'crash', uid, attempt: 0 }, log_directory: join(logDir, uid) };
    const { pod_sandbox_id: pod } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: sandbox, runtime_handler: 'vmlet' });
    const container = { metadata: { name: 'vm', attempt: 0 }, image: { image: kernelImage }, log_path: 'vm.log' };
    const { container_id: cid } = await rt<{ container_id: string }>('CreateContainer', { pod_sandbox_id: pod, config: container, sandbox_config: sandbox });
    const domain = await domainOf(cid);
    const dir = join(v.stateDir, 'pods', pod, 'containers', cid);
    // Another vmlet's VM on the same libvirtd: the same kind of definition, for a pod this state dir has not.
    const xml = virsh('dumpxml', domain).replaceAll(pod, 'f'.repeat(64)).replace(/<uuid>[^<]*<\/uuid>/, '').replace(/<name>[^<]*<\/name>/, `<name>${foreign}</name>`);
    const xmlFile = join(logDir, 'foreign.xml');
    writeFileSync(xmlFile, xml);
    virsh('define', xmlFile);

    await crashAndRestart(() => rmSync(join(dir, 'container.json'))); // the record CreateContainer had not written yet
    expect(domainExists(domain)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(domainExists(foreign)).toBe(true);
    const swept = parseLogLines(v.logLines).filter((l) => l.msg === 'removed a VM no record names');
    expect(swept.map((l) => [l.domain, l.containerId])).toEqual([[domain, cid]]);

    // The kubelet's retry: the same container, the same domain name.
    const again = await rt<{ container_id: string }>('CreateContainer', { pod_sandbox_id: pod, config: container, sandbox_config: sandbox });
    expect(await domainOf(again.container_id)).toBe(domain);
    await rt('StartContainer', { container_id: again.container_id });
    await waitForConsoleLine(join(logDir, uid, 'vm.log'), 'VMLET-READY', 180_000);
    await rt('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('a sandboxed pod\'s own VM, booted but not yet in the pod\'s record: destroyed at the next start; the pod\'s next container boots it a new one', async () => {
    const uid = randomBytes(8).toString('hex');
    const sandbox = { metadata: { name: 'crashsbx', namespace: 'crash', uid, attempt: 0 }, log_directory: join(logDir, uid), annotations: { 'vmlet.io/pod-kind': 'sandboxed' } };
    const { pod_sandbox_id: pod } = await rt<{ pod_sandbox_id: string }>('RunPodSandbox', { config: sandbox, runtime_handler: 'vmlet' });
    await podVmReady(v, pod); // it boots once RunPodSandbox has answered
    const file = join(v.stateDir, 'pods', pod, 'sandbox.json');
    const rec = JSON.parse(readFileSync(file, 'utf8')) as { kind?: string; podVm?: { domainName: string } };
    const domain = rec.podVm!.domainName;
    expect(virsh('domstate', domain).trim()).toBe('running');

    await crashAndRestart(() => {
      delete rec.kind;
      delete rec.podVm;
      writeFileSync(file, JSON.stringify(rec) + '\n');
    });
    expect(domainExists(domain)).toBe(false);
    // The pod is served, and its next container boots it a VM of the same name.
    const { container_id: cid } = await rt<{ container_id: string }>('CreateContainer', {
      pod_sandbox_id: pod,
      config: { metadata: { name: 'app', attempt: 0 }, image: { image: appImage }, command: ['sleep', '300'], log_path: 'app.log' },
      sandbox_config: sandbox,
    });
    await rt('StartContainer', { container_id: cid });
    expect((await rt<{ status: { state: string } }>('ContainerStatus', { container_id: cid })).status.state).toBe('CONTAINER_RUNNING');
    expect((JSON.parse(readFileSync(file, 'utf8')) as { podVm?: { domainName: string } }).podVm?.domainName).toBe(domain);
    expect(virsh('domstate', domain).trim()).toBe('running');
    await rt('RemovePodSandbox', { pod_sandbox_id: pod });
  });
});
