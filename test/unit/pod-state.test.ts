// pod/'s container state machine through PodManager, over the in-memory VM driver and a temp
// state dir: no VMs, no CNI, no images. Containers are made the way CreateContainer ends (the
// domain defined, then the record saved and indexed: see makeContainer), since CreateContainer
// itself needs an image store and qemu-img; everything after it runs pod/'s own code.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmSpec } from '../../src/vm/spec.js';
import { PodManager } from '../../src/pod/manager.js';
import { newId } from '../../src/pod/ids.js';
import { createdContainer, type ContainerRecord, type SandboxRecord } from '../../src/pod/records.js';
import { startContainer } from '../../src/pod/container-start.js';
import { stopContainer } from '../../src/pod/container-stop.js';
import { removeContainer } from '../../src/pod/container-remove.js';
import { containerStatus } from '../../src/pod/container-status.js';
import { listContainerStats } from '../../src/pod/container-stats-list.js';
import { errorKind } from '../../src/pod/error-kind.js';
import { MemoryDriver } from '../helpers/memory-driver.js';
import { makeSandbox, startMemoryManager } from '../helpers/memory-manager.js';
import { waitFor } from '../helpers/wait.js';

let dir: string;
let vm: MemoryDriver;
let lines: Array<Record<string, unknown>>;
const managers: PodManager[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmlet-pod-state-'));
  vm = new MemoryDriver();
  lines = [];
});

afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function manager(): Promise<PodManager> {
  const m = await startMemoryManager({ stateDir: dir, vm, lines });
  managers.push(m);
  return m;
}

/** A created container as CreateContainer leaves it: domain defined, a file of its own, record saved and indexed. */
async function makeContainer(m: PodManager, s: SandboxRecord, name = 'vm'): Promise<ContainerRecord> {
  const id = newId();
  const domainName = `vmlet-${name}-${id.slice(0, 8)}`;
  await m.store.saveContainer({ id, sandboxId: s.id } as ContainerRecord); // makes its dir
  const file = join(m.store.containerDir(s.id, id), 'root.qcow2');
  writeFileSync(file, 'overlay');
  await vm.define({ name: domainName } as VmSpec);
  const c = createdContainer({
    id,
    sandboxId: s.id,
    config: { metadata: { name, attempt: 0 } } as ContainerRecord['config'],
    image: 'img',
    imageId: 'sha256:img',
    domainName,
    logPath: '',
    consoleLog: '',
    files: [file],
  });
  await m.store.saveContainer(c);
  m.containers.set(id, c);
  return c;
}

async function running(m: PodManager, name = 'vm'): Promise<ContainerRecord> {
  const c = await makeContainer(m, await makeSandbox(m), name);
  await startContainer(m, c.id);
  return c;
}

/** The kind cri/ maps the error of `p` to. */
const kindOf = (p: Promise<unknown>) => p.then(() => 'resolved', (err: unknown) => errorKind(err) ?? `unclassified: ${String(err)}`);

const exited = (m: PodManager, c: ContainerRecord) => waitFor(`${c.id} exited`, () => m.containers.get(c.id)?.state === 'exited', { timeoutMs: 5000, intervalMs: 10 });

describe('container lifecycle over the VM driver', () => {
  it('Create → Start → Stop → Remove: the VM boots, powers off on ACPI (0 Completed), and goes with its files and record', async () => {
    const m = await manager();
    const c = await running(m);
    expect(c.state).toBe('running');
    expect(vm.vms.get(c.domainName)?.state).toBe('running');
    expect(lines.some((l) => l.msg === 'container started' && l.containerId === c.id)).toBe(true);

    await stopContainer(m, c.id, 10);
    expect(c).toMatchObject({ state: 'exited', exitCode: 0, reason: 'Completed', message: 'the guest powered off on ACPI shutdown' });
    expect(c.stopping).toBeUndefined();
    expect(vm.calls).toContain(`shutdown ${c.domainName}`);
    expect(vm.calls).not.toContain(`destroy ${c.domainName}`);

    await removeContainer(m, c.id);
    expect(m.containers.has(c.id)).toBe(false);
    expect(vm.vms.has(c.domainName)).toBe(false);
    expect(existsSync(c.files[0]!)).toBe(false);
    expect(existsSync(m.store.containerDir(c.sandboxId, c.id))).toBe(false);
  });

  it('Stop and Remove twice are no-ops the second time (CRI: idempotent), and Remove of an unknown id succeeds', async () => {
    const m = await manager();
    const c = await running(m);
    await stopContainer(m, c.id, 0);
    const first = { ...c };
    await stopContainer(m, c.id, 0);
    expect(c).toEqual(first);
    await removeContainer(m, c.id);
    await removeContainer(m, c.id);
    await expect(stopContainer(m, c.id, 0)).resolves.toBeUndefined();
    await expect(removeContainer(m, newId())).resolves.toBeUndefined();
  });

  it('Stop of a guest that ignores ACPI destroys it after the grace period: 137', async () => {
    const m = await manager();
    const c = await running(m);
    vm.ignoreAcpi = true;
    await stopContainer(m, c.id, 1);
    expect(c).toMatchObject({ state: 'exited', exitCode: 137, reason: 'Error', message: 'vmlet destroyed the VM (grace period over or no grace period)' });
    expect(vm.calls.filter((x) => /^(shutdown|destroy) /.test(x))).toEqual([`shutdown ${c.domainName}`, `destroy ${c.domainName}`]);
  });

  it('Start needs a created container: removed → NotFound, stopped or running → FailedPrecondition', async () => {
    const m = await manager();
    const c = await running(m);
    expect(await kindOf(startContainer(m, c.id))).toBe('failed-precondition');
    await stopContainer(m, c.id, 0);
    expect(await kindOf(startContainer(m, c.id))).toBe('failed-precondition');
    await removeContainer(m, c.id);
    expect(await kindOf(startContainer(m, c.id))).toBe('not-found');
  });

  it.each([
    ['shutdown', 0, 'Completed', 'the guest powered itself off'],
    ['destroyed', 137, 'Error', 'the VM was destroyed outside vmlet'],
    ['crashed', 1, 'Error', 'QEMU stopped unexpectedly (libvirt: crashed)'],
    ['failed', 1, 'Error', 'QEMU stopped unexpectedly (libvirt: failed)'],
  ])('an exit event (%s) marks the container Exited with %i %s', async (reason, exitCode, why, message) => {
    const m = await manager();
    const c = await running(m);
    vm.exit(c.domainName, reason);
    await exited(m, c);
    expect(c).toMatchObject({ exitCode, reason: why, message });
    expect(BigInt(c.finishedAt)).toBeGreaterThan(0n);
    // The record is saved, then the line logged: the state flips before both.
    await waitFor('the exit logged', () => lines.some((l) => l.msg === 'container exited'), { timeoutMs: 5000, intervalMs: 10 });
    expect(lines.find((l) => l.msg === 'container exited')).toMatchObject({ containerId: c.id, exitCode, reason: why });
  });

  it('ContainerStatus verbose shows the driver state under libvirt’s name', async () => {
    const m = await manager();
    const c = await running(m);
    const info = JSON.parse((await containerStatus(m, c.id, true)).info.info!) as { libvirtState: string; domain: string };
    expect(info).toMatchObject({ domain: c.domainName, libvirtState: 'RUNNING' });
    await stopContainer(m, c.id, 0);
    expect((JSON.parse((await containerStatus(m, c.id, true)).info.info!) as { libvirtState: string }).libvirtState).toBe('SHUTOFF');
  });
});

describe('restart recovery', () => {
  it('a new PodManager over the same state dir finds the containers; exits while it was away are recorded with the reason libvirt kept', async () => {
    const m1 = await manager();
    const s = await makeSandbox(m1);
    const [keeps, vanishes, poweredOff, created] = [await makeContainer(m1, s, 'a'), await makeContainer(m1, s, 'b'), await makeContainer(m1, s, 'c'), await makeContainer(m1, s, 'd')];
    for (const c of [keeps, vanishes, poweredOff]) await startContainer(m1, c.id);
    await m1.stop();
    vm.vanish(vanishes.domainName);
    vm.exit(poweredOff.domainName, 'shutdown', { silent: true });

    const m2 = await manager();
    expect([...m2.containers.keys()].sort()).toEqual([keeps, vanishes, poweredOff, created].map((c) => c.id).sort());
    expect(m2.containers.get(keeps.id)?.state).toBe('running');
    expect(m2.containers.get(created.id)?.state).toBe('created');
    expect(m2.containers.get(vanishes.id)).toMatchObject({ state: 'exited', exitCode: 1, reason: 'Error', message: 'the VM stopped (libvirt: reason unknown)' });
    expect(m2.containers.get(poweredOff.id)).toMatchObject({ state: 'exited', exitCode: 0, reason: 'Completed' });
    // It listens: a later exit is heard.
    vm.exit(keeps.domainName, 'crashed');
    await exited(m2, m2.containers.get(keeps.id)!);
  });

  it('a start vmlet died in (VM started, paused for its tap, the record still "created") is undone: its VM is stopped, ready to be started again', async () => {
    const m1 = await manager();
    const s = await makeSandbox(m1);
    const [inStart, never] = [await makeContainer(m1, s, 'a'), await makeContainer(m1, s, 'b')];
    await m1.stop();
    await vm.start(inStart.domainName, { paused: true });

    const m2 = await manager();
    expect(vm.vms.get(inStart.domainName)?.state).toBe('shutoff');
    expect(vm.vms.get(never.domainName)?.state).toBe('shutoff');
    expect(m2.containers.get(inStart.id)?.state).toBe('created');
    expect(lines.filter((l) => l.msg === 'stopped the VM of a container not started').map((l) => l.containerId)).toEqual([inStart.id]);
    // The kubelet's retry can start it again (libvirt refuses to start a running domain).
    await vm.start(inStart.domainName);
  });

  it('a stop vmlet was making when it died is finished as that stop (destroy → 137)', async () => {
    const m1 = await manager();
    const c = await running(m1);
    c.stopping = 'destroy';
    await m1.store.saveContainer(c);
    await m1.stop();
    vm.exit(c.domainName, 'destroyed', { silent: true });
    const m2 = await manager();
    expect(m2.containers.get(c.id)).toMatchObject({ state: 'exited', exitCode: 137, message: 'vmlet destroyed the VM (grace period over or no grace period)' });
  });
});

describe('libvirt down', () => {
  it('verbs that need libvirt answer Unavailable and change nothing', async () => {
    const m = await manager();
    const c = await running(m);
    const other = await makeContainer(m, await makeSandbox(m), 'other');
    vm.down = true;
    expect(await kindOf(stopContainer(m, c.id, 0))).toBe('unavailable');
    expect(await kindOf(startContainer(m, other.id))).toBe('unavailable');
    expect(await kindOf(listContainerStats(m, null))).toBe('unavailable');
    expect(c.state).toBe('running');
    expect(other.state).toBe('created');
    vm.down = false;
    await stopContainer(m, c.id, 0);
    expect(c).toMatchObject({ state: 'exited', exitCode: 137 });
  });

  it('at start the check waits; once events flow again (resync) an exit missed meanwhile is recorded', async () => {
    const m1 = await manager();
    const c = await running(m1);
    await m1.stop();
    vm.exit(c.domainName, 'shutdown', { silent: true });
    vm.down = true;
    const m2 = await manager();
    expect(m2.containers.get(c.id)?.state).toBe('running');
    expect(lines.some((l) => l.msg === 'cannot check VM states at start (libvirt down?); will retry')).toBe(true);
    vm.down = false;
    vm.resync();
    await exited(m2, m2.containers.get(c.id)!);
    expect(m2.containers.get(c.id)).toMatchObject({ exitCode: 0, reason: 'Completed', message: 'the guest powered itself off' });
  });
});
