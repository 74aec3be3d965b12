// Fault: vmlet killed with -9 while 10 VM pods run (real libvirtd, QEMU under TCG, the ticker
// test guest), then started again on the same state dir. Nothing may be lost: every pod and
// container listed as before, the same QEMU processes (no VM restarted), intact records, every
// console tick in the CRI log once (those printed while vmlet was down too), ExecSync answering.
// Then the worst moment for the console copy: vmlet killed just as it appended to a CRI log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, watch } from 'node:fs';
import { join } from 'node:path';
import { type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { waitFor } from '../helpers/wait.js';
import { expectNothingLost, expectTicksComplete, lastTick, lastTicks, recordsNow, secs, setupFleet, snapshot, startFaultVmlet, stopFleet, waitForTick, type FleetPod } from './fleet.js';

/** FAULTS_PODS overrides the fleet size (the figure is 10). */
const N = Number(process.env.FAULTS_PODS ?? 10);

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let pods: FleetPod[] = [];
// Made in beforeAll, not at import: collecting the file (vitest list) must leave nothing behind.
let cni = '';

beforeAll(async () => {
  let bootMs = 0;
  ({ reg, v, cni, pods, bootMs } = await setupFleet({ tag: 'kill', n: N }));
  console.log(`faults/vmlet-kill: ${N} VM pods booted (ticking, agent answering) in ${secs(bootMs)} s`);
}, 300_000);

afterAll(() => stopFleet(v, reg), 120_000);

/** Lines of virtlogd's console file (what the guest printed, copied or not). */
const consoleFileTicks = (p: FleetPod) => readFileSync(join(v!.stateDir, 'pods', p.id, 'containers', p.cid, 'console.log'), 'utf8').split('\n').filter((l) => l.startsWith('VMLET-TICK')).length;

describe('kill -9 of vmlet', () => {
  it(`with ${N} VM pods running, then a restart: 0 pods lost, 0 VMs restarted, every console line once, exec works`, async () => {
    const before = await snapshot(v!, pods);
    expect(Object.values(before.pods).map((p) => [p.state, p.containers.map((c) => c.state)])).toEqual(pods.map(() => ['SANDBOX_READY', ['CONTAINER_RUNNING']]));
    expect(Object.values(before.vms).every((m) => m.qemu !== undefined)).toBe(true);
    const records = recordsNow(v!, pods);

    expect(await v!.stop('SIGKILL')).toBeNull();
    const killedAt = performance.now();
    const ticksAtKill = lastTicks(pods);
    // The guests go on printing while nothing copies their console: those lines must arrive after.
    await waitFor('each guest to print 5 ticks more while vmlet is down', () => pods.every((p) => consoleFileTicks(p) >= ticksAtKill.get(p.id)! + 5), { timeoutMs: 60_000, intervalMs: 100 });
    const startAt = performance.now();
    v = await startFaultVmlet(reg!, cni, { stateDir: v!.stateDir });
    const servingMs = performance.now() - startAt;
    const recovered = await waitFor('pod state recovered', () => v!.logLines.find((l) => l.includes('"pod state recovered"')));
    expect(JSON.parse(recovered)).toMatchObject({ sandboxes: N, containers: N, setAside: 0 });

    await expectNothingLost(v, pods, before, records, ticksAtKill);
    console.log(
      `faults/vmlet-kill: ${N} pods, 0 lost, 0 VMs restarted; vmlet down ${secs(startAt - killedAt)} s, restart to serving ${secs(servingMs)} s, ` +
        `console lines printed while down or since, all copied once: ${pods.reduce((n, p) => n + consoleFileTicks(p) - ticksAtKill.get(p.id)!, 0)}`,
    );
  });

  it('right after it appended console lines to a CRI log, 3 times: every line once', async () => {
    const before = await snapshot(v!, pods);
    const records = recordsNow(v!, pods);
    const p = pods[0]!;
    for (let round = 0; round < 3; round++) {
      // The append is seen through inotify: the kill lands between it and anything vmlet does next.
      await new Promise<void>((resolve) => {
        const w = watch(p.log, () => {
          v!.proc.kill('SIGKILL');
          w.close();
          resolve();
        });
      });
      expect(await v!.stop('SIGKILL')).toBeNull();
      v = await startFaultVmlet(reg!, cni, { stateDir: v!.stateDir });
      await waitForTick(p, lastTick(p) + 3);
      expectTicksComplete(p);
    }
    await expectNothingLost(v!, pods, before, records, lastTicks(pods));
  });
});
