// Fault: the node's libvirtd stopped and started again, then killed with -9, with VM pods
// running; virtlogd re-executed (real daemons, started again the way the installer starts them:
// daemons.ts). VMs keep running (same QEMU, same domain id), vmlet reconnects by itself, and exit
// detection and stats work again. While a stopped libvirtd is down, the calls that need it
// answer UNAVAILABLE with a message and leave nothing half done, the ones that do not (the
// kubelet's polling) answer as usual, and all of them work once it is back. A libvirtd killed
// with -9 (a crash) is started again by its keeper on a node without systemd, by itself; one
// restarted to apply qemu.conf (start-daemons.sh --restart-libvirtd) is restarted by its keeper
// under the same tini, which stays the running VMs' reaper. The daemons are shared with every VM
// on the node: each stop is kept short.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { status as Status } from '@grpc/grpc-js';
import { call, failure, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { waitFor } from '../helpers/wait.js';
import { waitForAgent } from '../helpers/vm-suite.js';
import { bootFleet, containerRecord, expectNothingLost, expectTicksComplete, faultCniConf, lastTicks, NAMESPACE, qemuPid, recordsNow, rt, secs, snapshot, startFaultVmlet, stopFleet, waitForTick, type FleetPod } from './fleet.js';
import { daemonPid, KEEPER, libvirtAnswers, reexecVirtlogd, restartLibvirtd, startDaemons, stopLibvirtd } from './daemons.js';

let reg: TestRegistry | undefined;
let v: VmletProcess | undefined;
let image = '';
/** Runs through every fault; `victims` are killed one per round, to see exits detected again. */
let keep: FleetPod;
const victims: FleetPod[] = [];
// Made in beforeAll, not at import: collecting the file (vitest list) must leave nothing behind.
let cni = '';
let logDir = '';

beforeAll(async () => {
  cni = faultCniConf();
  logDir = tempDir('vmlet-faults-logs-');
  await ensureTestImages();
  reg = await startRegistry();
  image = (await pushImage(reg, 'kernelboot', 'faults/kernelboot:libvirt')).reference;
  v = await startFaultVmlet(reg, cni);
  await call(v.image, 'PullImage', { image: { image } });
  const [k, victim] = (await bootFleet(v, image, logDir, 2, 'vm')) as [FleetPod, FleetPod];
  keep = k;
  victims.push(victim);
}, 300_000);

afterAll(async () => {
  // Whatever failed, libvirtd runs again for whoever comes next.
  if (!daemonPid('libvirtd')) await startDaemons();
  await stopFleet(v, reg);
}, 120_000);

interface Pod { id: string; name: string; uid: string; config: object }
const ppidOf = (pid: number) => Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

async function newPod(name: string): Promise<Pod> {
  const uid = randomBytes(8).toString('hex');
  const config = { metadata: { name, namespace: NAMESPACE, uid, attempt: 0 }, hostname: name, log_directory: join(logDir, uid), annotations: { 'vmlet.io/kernel-args': 'vmlet.test=ticker' } };
  const { pod_sandbox_id: id } = await rt<{ pod_sandbox_id: string }>(v!, 'RunPodSandbox', { config, runtime_handler: 'vmlet' });
  return { id, name, uid, config };
}
const create = (p: Pod) => rt<{ container_id: string }>(v!, 'CreateContainer', { pod_sandbox_id: p.id, config: { metadata: { name: 'vm', attempt: 0 }, image: { image }, log_path: 'vm.log' }, sandbox_config: p.config });
const asFleet = (p: Pod, cid: string): FleetPod => ({ id: p.id, cid, name: p.name, log: join(logDir, p.uid, 'vm.log'), domain: containerRecord(v!, p.id, cid).domainName as string });
const cstate = async (cid: string) => (await rt<{ status: { state: string } }>(v!, 'ContainerStatus', { container_id: cid })).status.state;
const cpuNs = async (cid: string) => BigInt((await rt<{ stats: { cpu: { usage_core_nano_seconds: { value: string } } } }>(v!, 'ContainerStats', { container_id: cid })).stats.cpu.usage_core_nano_seconds.value);
const containerDirs = (id: string) => (existsSync(join(v!.stateDir, 'pods', id, 'containers')) ? readdirSync(join(v!.stateDir, 'pods', id, 'containers')) : []);
/** Kills the next victim's QEMU; resolves with the ms until its container is EXITED, every console line in. */
async function killVictim(): Promise<number> {
  const victim = victims.shift()!;
  process.kill(qemuPid(victim.domain), 'SIGKILL');
  const killedAt = performance.now();
  await waitFor('the victim to turn EXITED', async () => (await cstate(victim.cid)) === 'CONTAINER_EXITED', { timeoutMs: 30_000, intervalMs: 10 });
  const exitMs = performance.now() - killedAt;
  expectTicksComplete(victim);
  return exitMs;
}
const reconnects = () => v!.logLines.filter((l) => l.includes('"libvirt connection back: domain events resume"')).length;

describe('virtlogd re-executed (its reload, as on a package upgrade) with VM pods running', () => {
  it('keeps every console line flowing into the CRI logs (the VMs started after it log through it: the libvirtd cases below)', async () => {
    const running = [keep, ...victims];
    const before = await snapshot(v!, running);
    const records = recordsNow(v!, running);
    const at = lastTicks(running);
    await reexecVirtlogd();
    await Promise.all(running.map((p) => waitForTick(p, at.get(p.id)! + 10)));
    await expectNothingLost(v!, running, before, records, lastTicks(running));
  });
});

describe('libvirtd restarted with VM pods running', () => {
  it.each(['SIGTERM', 'SIGKILL'] as const)('by %s: VMs run on, vmlet reconnects by itself, exits and stats work again; stopped (TERM), calls meanwhile answer UNAVAILABLE and leave nothing; crashed (KILL), its keeper starts it again', async (signal) => {
    // The pods whose calls are made while libvirtd is down: one without a container, one with a created one.
    const toCreate = await newPod(`create-${signal.toLowerCase()}`);
    const toStart = await newPod(`start-${signal.toLowerCase()}`);
    const { container_id: created } = await create(toStart);
    const running = [keep, ...victims];
    const before = await snapshot(v!, running);
    const records = recordsNow(v!, running);
    const cpuBefore = await cpuNs(keep.cid);
    const seen = reconnects();

    // A SIGKILL is a crash (or the OOM killer) to libvirtd's keeper (no systemd), which starts it
    // again by itself a second later: too soon for the calls below while it is down.
    const crash = signal === 'SIGKILL' && KEEPER;
    const killed = daemonPid('libvirtd');
    const t0 = performance.now();
    await stopLibvirtd(signal);
    const downAt = performance.now();
    const downWall = Date.now();
    if (!crash) {
      // The kubelet's polling is served from vmlet's own state.
      const listed = await rt<{ items: Array<{ id: string; state: string }> }>(v!, 'ListPodSandbox', {});
      expect(listed.items.filter((p) => p.id === keep.id).map((p) => p.state)).toEqual(['SANDBOX_READY']);
      expect(await cstate(keep.cid)).toBe('CONTAINER_RUNNING');
      // The calls that need libvirt: UNAVAILABLE with libvirt's words, nothing left half done.
      const attempts = {
        CreateContainer: await failure(create(toCreate)),
        StartContainer: await failure(rt(v!, 'StartContainer', { container_id: created })),
        ContainerStats: await failure(rt(v!, 'ContainerStats', { container_id: keep.cid })),
      };
      for (const [method, err] of Object.entries(attempts)) {
        expect({ method, code: err.code, details: err.details }).toMatchObject({ method, code: Status.UNAVAILABLE });
        expect(err.details, method).toMatch(/libvirt/);
      }
      // Status tells the kubelet the runtime is not ready (Status trusts a recent libvirt answer only on an open connection).
      const st = await rt<{ status: { conditions: Array<{ type: string; status: boolean; reason: string }> } }>(v!, 'Status', {});
      expect(st.status.conditions.find((c) => c.type === 'RuntimeReady')).toMatchObject({ status: false, reason: 'LibvirtUnreachable' });
      const { containers } = await rt<{ containers: Array<{ pod_sandbox_id: string }> }>(v!, 'ListContainers', { filter: { pod_sandbox_id: toCreate.id } });
      expect(containers).toEqual([]);
      expect(containerDirs(toCreate.id)).toEqual([]);
      expect(await cstate(created)).toBe('CONTAINER_CREATED');
    }

    if (crash) {
      // The installer run meanwhile (as an operator might, or the test's own clean-up) waits for
      // the keeper rather than starting a second libvirtd beside it.
      const tini = readFileSync('/run/vmlet/libvirtd-tini.pid', 'utf8').trim();
      await startDaemons();
      await waitFor('libvirtd started again by its keeper', () => {
        const now = daemonPid('libvirtd');
        return now !== undefined && now !== killed && libvirtAnswers();
      }, { timeoutMs: 30_000, intervalMs: 50 });
      const keeper = ppidOf(daemonPid('libvirtd')!);
      expect({ marker: readFileSync('/run/vmlet/libvirtd-tini.pid', 'utf8').trim(), tiniOfKeeper: String(ppidOf(keeper)) }).toEqual({ marker: tini, tiniOfKeeper: tini });
    } else {
      await startDaemons();
    }
    const backAt = performance.now();
    // Nobody calls vmlet meanwhile: its own retries bring the connection and the events back.
    await waitFor('vmlet to reconnect to libvirt by itself', () => reconnects() > seen, { timeoutMs: 30_000, intervalMs: 20 });
    const reconnectedMs = Date.parse((JSON.parse(v!.logLines.filter((l) => l.includes('"libvirt connection back: domain events resume"')).at(-1)!) as { time: string }).time) - downWall;

    // The VMs ran on: same QEMU processes, same domain ids, every console line, exec.
    await expectNothingLost(v!, running, before, records, lastTicks(running));
    // Stats work again and have moved on.
    expect(await cpuNs(keep.cid)).toBeGreaterThan(cpuBefore);
    // Exits are heard again: a QEMU killed now turns its container EXITED.
    const exitMs = await killVictim();
    // The calls refused while it was down work now; their VMs run the next round.
    const { container_id: made } = await create(toCreate);
    await rt(v!, 'StartContainer', { container_id: made });
    await rt(v!, 'StartContainer', { container_id: created });
    const late = [asFleet(toCreate, made), asFleet(toStart, created)];
    await Promise.all(late.map((p) => waitForTick(p, 1, 120_000)));
    for (const p of late) expect(await waitForAgent(v!, p.cid, 120_000)).toBe(true);
    victims.push(...late);
    console.log(
      `faults/libvirt-restart: libvirtd ${signal}: stopped in ${secs(downAt - t0)} s, answering again ${secs(backAt - downAt)} s later${crash ? ' (started by its keeper)' : ''}, vmlet's events back ${secs(reconnectedMs)} s after the stop, ` +
        `QEMU kill → EXITED ${secs(exitMs)} s after; ${running.length} VMs kept running`,
    );
  });

  it.skipIf(!KEEPER)("by start-daemons.sh --restart-libvirtd (qemu.conf changed): its keeper starts a new one under the same tini, still the running VMs' reaper; vmlet reconnects, nothing lost, exits heard", async () => {
    const running = [keep, ...victims];
    const before = await snapshot(v!, running);
    const records = recordsNow(v!, running);
    const seen = reconnects();
    const old = daemonPid('libvirtd')!;
    const keeper = ppidOf(old);
    const tini = Number(readFileSync('/run/vmlet/libvirtd-tini.pid', 'utf8').trim());
    const qemuParents = () => running.map((p) => ppidOf(qemuPid(p.domain)));
    // QEMU, double-forked by libvirtd, is tini's child (a subreaper): reaped the moment it ends.
    // Not the VMs that outlived a deliberate stop (the SIGTERM case above ended the tini they had).
    const parentsBefore = qemuParents();
    expect(parentsBefore.filter((p) => p === tini).length).toBeGreaterThan(0);
    const t0 = performance.now();
    const out = await restartLibvirtd();
    const backMs = performance.now() - t0;
    const now = daemonPid('libvirtd')!;
    expect(out).toContain(`libvirtd:      changed (restarted by its keeper ${keeper}, pid ${old} -> ${now}, under tini ${tini})`);
    expect({ keeper: ppidOf(now), tini: ppidOf(keeper), qemuParents: qemuParents() }).toEqual({ keeper, tini, qemuParents: parentsBefore });
    await waitFor('vmlet to reconnect to libvirt by itself', () => reconnects() > seen, { timeoutMs: 30_000, intervalMs: 20 });
    await expectNothingLost(v!, running, before, records, lastTicks(running));
    const exitMs = await killVictim();
    console.log(`faults/libvirt-restart: libvirtd restarted through its keeper: answering again ${secs(backMs)} s after start-daemons.sh --restart-libvirtd began; QEMU kill → EXITED ${secs(exitMs)} s after; ${running.length} VMs kept running, ${parentsBefore.filter((p) => p === tini).length} of them tini's children before and after`);
  });
});
