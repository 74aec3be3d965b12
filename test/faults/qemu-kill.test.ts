// Fault: a VM pod's QEMU killed with -9 (real libvirtd, QEMU under TCG, the ticker test guest).
// Its container turns EXITED with an exit code and a message that says the VM died; the pod
// keeps its network, record and DHCP server; the kubelet's restart (CreateContainer with the
// next attempt, StartContainer, the dead container removed later by its GC) works; a pod beside
// it loses nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { waitFor } from '../helpers/wait.js';
import { containerRecord, expectNothingLost, expectTicksComplete, lastTicks, qemuPid, recordsNow, rt, sandboxRecord, secs, setupFleet, snapshot, stopFleet, waitForTick, type FleetPod } from './fleet.js';

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let image = '';
let pods: FleetPod[] = [];
// Made in beforeAll, not at import: collecting the file (vitest list) must leave nothing behind.
let logDir = '';

beforeAll(async () => {
  ({ reg, v, image, logDir, pods } = await setupFleet({ tag: 'qemu', n: 2, prefix: 'qemu' }));
}, 300_000);

afterAll(() => stopFleet(v, reg), 120_000);

interface Status { state: string; exit_code: number; reason: string; message: string; finished_at: string; started_at: string }
const cstatus = async (id: string) => (await rt<{ status: Status }>(v!, 'ContainerStatus', { container_id: id })).status;
const podStatus = async (id: string) => (await rt<{ status: { state: string; network: { ip: string } } }>(v!, 'PodSandboxStatus', { pod_sandbox_id: id })).status;
const dnsmasqPid = (id: string) => Number(readFileSync(join(v!.stateDir, 'pods', id, 'dnsmasq.pid'), 'utf8').trim());
const alive = (pid: number) => existsSync(`/proc/${pid}`);

describe('QEMU killed with -9', () => {
  it('turns the container EXITED saying the VM died, keeps the pod, lets the kubelet restart it, and the pod beside it loses nothing', async () => {
    const [victim, bystander] = pods as [FleetPod, FleetPod];
    const others = await snapshot(v!, [bystander]);
    const otherRecords = recordsNow(v!, [bystander]);
    const podBefore = await podStatus(victim.id);
    const sandboxBefore = sandboxRecord(v!, victim.id);
    const dnsmasq = dnsmasqPid(victim.id);

    process.kill(qemuPid(victim.domain), 'SIGKILL');
    const killedAt = performance.now();
    const st = await waitFor('the container to turn EXITED', async () => {
      const s = await cstatus(victim.cid);
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, { timeoutMs: 30_000, intervalMs: 10 });
    const detectMs = performance.now() - killedAt;
    expect(st.exit_code).not.toBe(0);
    expect(st.reason).toBe('Error');
    expect(st.message).toMatch(/^QEMU stopped unexpectedly \(libvirt: (crashed|failed)\)$/);
    expect(BigInt(st.finished_at)).toBeGreaterThan(BigInt(st.started_at));
    // The record is saved just after the state flips in memory (what ContainerStatus answers from).
    await waitFor('the exit saved in the record', () => containerRecord(v!, victim.id, victim.cid).state === 'exited' || undefined, { timeoutMs: 10_000, intervalMs: 10 });
    expect(containerRecord(v!, victim.id, victim.cid)).toMatchObject({ state: 'exited', exitCode: st.exit_code, message: st.message });
    // What the guest printed up to its death is in the log, once.
    expectTicksComplete(victim);

    // The pod itself is untouched: READY, same address, same record, its DHCP server running.
    expect(await podStatus(victim.id)).toEqual(podBefore);
    expect(sandboxRecord(v!, victim.id)).toEqual(sandboxBefore);
    expect(alive(dnsmasq)).toBe(true);

    // The kubelet's restart: the next attempt in the same pod; the dead container stays until its GC.
    const { container_id: next } = await rt<{ container_id: string }>(v!, 'CreateContainer', {
      pod_sandbox_id: victim.id,
      config: { metadata: { name: 'vm', attempt: 1 }, image: { image }, log_path: 'vm-1.log' },
      sandbox_config: { metadata: { name: victim.name, namespace: 'vmlet-faults', uid: 'x', attempt: 0 } },
    });
    await rt(v!, 'StartContainer', { container_id: next });
    const restarted: FleetPod = { ...victim, cid: next, log: join(logDir, victim.log.split('/').at(-2)!, 'vm-1.log'), domain: containerRecord(v!, victim.id, next).domainName as string };
    await waitForTick(restarted, 3, 120_000);
    expect((await cstatus(victim.cid)).state).toBe('CONTAINER_EXITED');
    await rt(v!, 'RemoveContainer', { container_id: victim.cid }); // the kubelet's container GC
    expect((await cstatus(next)).state).toBe('CONTAINER_RUNNING');
    expect(alive(qemuPid(restarted.domain))).toBe(true);

    await expectNothingLost(v!, [bystander], others, otherRecords, lastTicks([bystander]));
    const now = await snapshot(v!, [restarted]);
    const records = recordsNow(v!, [restarted]);
    await expectNothingLost(v!, [restarted], now, records, lastTicks([restarted]));
    console.log(`faults/qemu-kill: QEMU killed -9 → container EXITED (code ${st.exit_code}, "${st.message}") in ${secs(detectMs)} s; restarted by a new attempt in the same pod`);
  });
});
