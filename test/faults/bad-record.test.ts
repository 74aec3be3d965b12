// Fault: records of running VM pods found corrupt or truncated when vmlet starts (real libvirtd,
// QEMU under TCG, the ticker test guest). vmlet starts, logs each bad record with its file,
// serves the other pods, and keeps everything of the pods it set aside (docs/design.md, "Restart:
// records vmlet cannot trust"): VMs running (same QEMU), netns, DHCP server, files; the kubelet's
// clean-up calls for a pod it no longer sees touch none of it. Once the operator puts the records
// back, the next start serves those pods again with nothing lost.
// test/integration/crash-consistency.test.ts covers the rest of start-up recovery (a RunPodSandbox
// cut short, a lost network.json, a record that is not a pod's, and `vmlet doctor`'s report).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLogLines, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { expectNothingLost, lastTicks, qemuProcess, recordsNow, rt, setupFleet, snapshot, startFaultVmlet, stopFleet, type FleetPod } from './fleet.js';

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let pods: FleetPod[] = [];
// Made in beforeAll, not at import: collecting the file (vitest list) must leave nothing behind.
let cni = '';

beforeAll(async () => {
  ({ reg, v, cni, pods } = await setupFleet({ tag: 'records', n: 3, prefix: 'rec' }));
}, 300_000);

afterAll(() => stopFleet(v, reg), 120_000);

const alive = (pid: number) => existsSync(`/proc/${pid}`);

describe('a corrupt or truncated record at start', () => {
  it('sets its pod aside, logged by file, keeping its VM, netns and DHCP server; serves the rest; serves it again once repaired', async () => {
    const [truncated, garbled, fine] = pods as [FleetPod, FleetPod, FleetPod];
    const before = await snapshot(v!, pods);
    const records = recordsNow(v!, pods);
    const dir = (p: FleetPod) => join(v!.stateDir, 'pods', p.id);
    const files = { truncated: join(dir(truncated), 'containers', truncated.cid, 'container.json'), garbled: join(dir(garbled), 'sandbox.json') };
    const good = { truncated: readFileSync(files.truncated), garbled: readFileSync(files.garbled) };
    const keptOf = (p: FleetPod) => ({
      qemu: qemuProcess(p.domain),
      netns: existsSync(`/run/netns/vmlet-${p.id.slice(0, 16)}`),
      dnsmasq: Number(readFileSync(join(dir(p), 'dnsmasq.pid'), 'utf8').trim()),
    });
    const kept = { truncated: keptOf(truncated), garbled: keptOf(garbled) };
    for (const k of Object.values(kept)) expect({ running: k.qemu !== undefined, netns: k.netns, dnsmasq: existsSync(`/proc/${k.dnsmasq}`) }).toEqual({ running: true, netns: true, dnsmasq: true });

    expect(await v!.stop('SIGKILL')).toBeNull();
    // A write cut short (what a crash without fsync leaves) and bytes that are no record at all.
    writeFileSync(files.truncated, good.truncated.subarray(0, Math.floor(good.truncated.length / 2)));
    writeFileSync(files.garbled, '\0\0\0\0garbage');
    v = await startFaultVmlet(reg!, cni, { stateDir: v!.stateDir });

    const logs = parseLogLines(v.logLines);
    for (const [p, file] of [[truncated, files.truncated], [garbled, files.garbled]] as const) {
      expect(logs.find((l) => l.file === file && l.podSandboxId === p.id && l.level === 50)?.msg).toMatch(/pod record unreadable: pod set aside/);
    }
    const { items } = await rt<{ items: Array<{ id: string }> }>(v, 'ListPodSandbox', {});
    expect(items.map((p) => p.id)).toEqual([fine.id]);
    // The kubelet, no longer seeing the pods, cleans up after them: OK, and nothing of theirs is touched.
    for (const p of [truncated, garbled]) {
      await rt(v, 'StopPodSandbox', { pod_sandbox_id: p.id });
      await rt(v, 'RemovePodSandbox', { pod_sandbox_id: p.id });
    }
    for (const [p, k] of [[truncated, kept.truncated], [garbled, kept.garbled]] as const) expect(keptOf(p)).toEqual(k);
    for (const pid of [kept.truncated.dnsmasq, kept.garbled.dnsmasq]) expect(alive(pid)).toBe(true);
    expect(readFileSync(files.truncated).length).toBe(Math.floor(good.truncated.length / 2)); // kept for the operator
    expect(readFileSync(files.garbled, 'utf8')).toBe('\0\0\0\0garbage');
    await expectNothingLost(v, [fine], { pods: { [fine.id]: before.pods[fine.id]! }, vms: { [fine.id]: before.vms[fine.id]! } }, records, lastTicks([fine]));

    // The operator repairs the records and restarts vmlet: every pod served, nothing lost meanwhile.
    writeFileSync(files.truncated, good.truncated);
    writeFileSync(files.garbled, good.garbled);
    await v.stop();
    v = await startFaultVmlet(reg!, cni, { stateDir: v.stateDir });
    await expectNothingLost(v, pods, before, records, lastTicks(pods));
  });
});
