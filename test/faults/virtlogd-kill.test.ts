// Fault: virtlogd killed with -9 with VM pods running (real daemons, ticker guests). libvirt cannot
// give a running QEMU a new console pipe, so without vmlet the VM-image pods' consoles, and their
// CRI logs, would go silent until the VMs restart, virtlogd back or not. vmlet sees QEMU's console
// pipe without a reader and reads it itself (src/stream/console-rescue.ts): the ticks go on in the
// CRI logs, none doubled, only those QEMU wrote before vmlet took over missing; a vmlet restart
// takes over again; once virtlogd is started again (as the installer starts it) a new pod starts
// and logs through it. (A re-executed virtlogd keeps its pipes: libvirt-restart.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readlinkSync } from 'node:fs';
import { type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { waitFor } from '../helpers/wait.js';
import { consoleLogPipe, LOST_MARK, virtlogdPipes } from '../../src/stream/console-rescue.js';
import { consoleLines } from '../helpers/vm-suite.js';
import { bootFleet, expectRecordsIntact, lastTicks, qemuPid, recordsNow, rt, secs, setupFleet, snapshot, startFaultVmlet, stopFleet, ticks, waitForTick, type FleetPod } from './fleet.js';
import { daemonPid, startDaemons } from './daemons.js';

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let image = '';
let cni = '';
let logDir = '';
let pods: FleetPod[] = [];

beforeAll(async () => {
  ({ reg, v, image, cni, logDir, pods } = await setupFleet({ tag: 'virtlogd', n: 2, prefix: 'vlog' }));
}, 300_000);

afterAll(async () => {
  // Whatever failed, virtlogd runs again for whoever comes next (libvirt starts no VM without it).
  if (!daemonPid('virtlogd')) await startDaemons();
  await stopFleet(v, reg);
}, 120_000);

/** The pipes a vmlet process holds. */
function vmletPipes(vm: VmletProcess): Set<string> {
  const links = readdirSync(`/proc/${vm.proc.pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${vm.proc.pid}/fd/${fd}`);
    } catch {
      return ''; // closed meanwhile
    }
  });
  return new Set(links.filter((t) => t.startsWith('pipe:')));
}
const TAKEOVER = 'virtlogd no longer reads this VM\'s console';
const takeovers = (vm: VmletProcess) => vm.logLines.filter((l) => l.includes(TAKEOVER)).length;

/** Ticks never doubled nor out of order; the missing ones form one run, after `from` (the fault) and before `to`. */
function expectOneGap(p: FleetPod, from: number, to: number): number[] {
  const got = ticks(p);
  const missing: number[] = [];
  for (let i = 1; i <= Math.max(...got); i++) if (!got.includes(i)) missing.push(i);
  const oneRun = missing.every((t, i) => i === 0 || t === missing[i - 1]! + 1);
  expect({ pod: p.name, ordered: got.every((t, i) => i === 0 || t > got[i - 1]!), oneRun, within: missing.every((t) => t > from && t < to) }).toEqual({ pod: p.name, ordered: true, oneRun: true, within: true });
  return missing;
}

describe('virtlogd killed with -9', () => {
  it('the consoles go on into the CRI logs: vmlet reads them in virtlogd\'s place; pods, records and exec intact', async () => {
    const before = await snapshot(v!, pods);
    const records = recordsNow(v!, pods);
    const at = lastTicks(pods);
    const pid = daemonPid('virtlogd');
    expect(pid, 'virtlogd runs (node-install/start-daemons.sh)').toBeDefined();
    const t0 = performance.now();
    process.kill(pid!, 'SIGKILL');
    await waitFor('virtlogd to be gone', () => daemonPid('virtlogd') === undefined, { timeoutMs: 10_000, intervalMs: 20 });
    await waitFor('vmlet to read both consoles', () => takeovers(v!) >= pods.length || undefined, { timeoutMs: 30_000, intervalMs: 50 });
    const tookMs = performance.now() - t0;
    const resumed = await Promise.all(pods.map((p) => waitForTick(p, at.get(p.id)! + 30)));
    const lost = pods.map((p, i) => expectOneGap(p, at.get(p.id)!, resumed[i]!).length);
    // The CRI log says where output was lost.
    for (const p of pods) expect(consoleLines(p.log).filter((l) => l.endsWith(LOST_MARK))).toHaveLength(1);
    // vmlet is the reader now, and the VMs are the same ones.
    for (const p of pods) expect(vmletPipes(v!).has(consoleLogPipe(qemuPid(p.domain))!.pipe)).toBe(true);
    expect(await snapshot(v!, pods)).toEqual(before);
    expectRecordsIntact(v!, pods, records);
    for (const p of pods) {
      const r = await rt<{ stdout: Buffer; exit_code: number }>(v!, 'ExecSync', { container_id: p.cid, cmd: ['echo', `alive-${p.name}`], timeout: 30 });
      expect(r.stdout.toString().trim()).toBe(`alive-${p.name}`);
    }
    console.log(`faults/virtlogd-kill: virtlogd killed -9; vmlet reading both consoles ${secs(tookMs)} s after; ticks (100 ms apart) lost meanwhile: ${lost.join(', ')}; none doubled`);
  });

  it('after a vmlet restart, vmlet reads them again', async () => {
    const at = lastTicks(pods);
    await v!.stop();
    v = await startFaultVmlet(reg!, cni, { stateDir: v!.stateDir });
    await waitFor('the restarted vmlet to read both consoles', () => takeovers(v!) >= pods.length || undefined, { timeoutMs: 30_000, intervalMs: 50 });
    const resumed = await Promise.all(pods.map((p) => waitForTick(p, at.get(p.id)! + 30)));
    pods.forEach((p, i) => expect(ticks(p).filter((t) => t > at.get(p.id)! && t <= resumed[i]!).length).toBeGreaterThan(0));
    for (const p of pods) {
      const got = ticks(p);
      expect(got.every((t, i) => i === 0 || t > got[i - 1]!), `${p.name}: ticks doubled or out of order`).toBe(true);
    }
  });

  it('virtlogd started again as the installer does: a new pod starts and logs through it, the others stay vmlet\'s', async () => {
    await startDaemons();
    expect(daemonPid('virtlogd')).toBeDefined();
    const seen = takeovers(v!);
    const [fresh] = (await bootFleet(v!, image, logDir, 1, 'vlog-new')) as [FleetPod];
    await waitForTick(fresh, 20);
    expect(takeovers(v!)).toBe(seen);
    expect(virtlogdPipes(Date.now() + 60_000)?.has(consoleLogPipe(qemuPid(fresh.domain))!.pipe)).toBe(true);
    const at = lastTicks(pods);
    await Promise.all(pods.map((p) => waitForTick(p, at.get(p.id)! + 10)));
    await rt(v!, 'RemovePodSandbox', { pod_sandbox_id: fresh.id });
  });
});
