// What the fault-injection files share: vmlet on its own CNI network (bridge vmfault0,
// 10.243.0.0/24), a fleet of kernel-boot VM pods whose guest prints `VMLET-TICK <n>` every
// 0.1 s (test/images: vmlet.test=ticker), a snapshot of everything that must survive a fault,
// and the check that nothing was lost: every pod and container listed with the same state, the
// same QEMU process, intact records, a console log with every tick once, and ExecSync answering.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { call, startVmlet, tempDir, type StartOptions, type VmletProcess } from '../helpers/vmlet.js';
import { consoleLines, runVmPod, vmletConfig, waitForAgent, type VmPod } from '../helpers/vm-suite.js';
import { virsh } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { containerProblem, sandboxProblem } from '../../src/pod/records.js';

export const FAULT_BRIDGE = 'vmfault0';
export const FAULT_SUBNET = '10.243.0.0/24';
export const NAMESPACE = 'vmlet-faults';

/** A CNI config dir for the suite: its own bridge and subnet, host-local leases in the dir. */
export function faultCniConf(): string {
  const dir = tempDir('vmlet-faults-cni-');
  writeFileSync(
    join(dir, '10-faults.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'vmlet-faults',
      plugins: [{ type: 'bridge', bridge: FAULT_BRIDGE, isGateway: true, ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: FAULT_SUBNET }]] } }],
    }),
  );
  return dir;
}

/** The suite's bridge, once no pod is left on it (another fault file may still use it otherwise). */
export async function removeFaultBridge(): Promise<void> {
  const ports = `/sys/class/net/${FAULT_BRIDGE}/brif`;
  if (existsSync(ports) && readdirSync(ports).length === 0) await execa('ip', ['link', 'del', FAULT_BRIDGE], { reject: false });
}

/** vmlet pulling from `reg`, on the suite's CNI network. */
export function startFaultVmlet(reg: TestRegistry, cniConfDir: string, opts: StartOptions = {}): Promise<VmletProcess> {
  return startVmlet({ config: vmletConfig(reg), cniConfDir, ...opts });
}

export const rt = <T>(v: VmletProcess, method: string, req: object): Promise<T> => call<object, T>(v.runtime, method, req);

export interface FleetPod extends VmPod {
  name: string;
  /** The libvirt domain (from the container's record). */
  domain: string;
}

export interface FleetSetup {
  reg: TestRegistry;
  v: VmletProcess;
  /** The kernel-boot test image, pushed and pulled. */
  image: string;
  /** The suite's CNI config dir (faultCniConf) and the pods' log dir. */
  cni: string;
  logDir: string;
  pods: FleetPod[];
  /** How long booting the fleet took. */
  bootMs: number;
}

/**
 * What each fault file's beforeAll does: a registry with the kernel-boot image as
 * faults/kernelboot:`tag`, vmlet on the suite's network (its options from `vmletOptions`, which
 * may start what vmlet needs beside it first), the image pulled, and `n` ticker pods booted.
 */
export async function setupFleet(o: { tag: string; n: number; prefix?: string; vmletOptions?: (reg: TestRegistry) => Promise<StartOptions> }): Promise<FleetSetup> {
  const cni = faultCniConf();
  const logDir = tempDir('vmlet-faults-logs-');
  await ensureTestImages();
  const reg = await startRegistry();
  const image = (await pushImage(reg, 'kernelboot', `faults/kernelboot:${o.tag}`)).reference;
  let v: VmletProcess | undefined;
  try {
    v = await startFaultVmlet(reg, cni, (await o.vmletOptions?.(reg)) ?? {});
    await call(v.image, 'PullImage', { image: { image } });
    const t0 = performance.now();
    const pods = await bootFleet(v, image, logDir, o.n, o.prefix);
    return { reg, v, image, cni, logDir, pods, bootMs: performance.now() - t0 };
  } catch (err) {
    // The caller gets nothing to stop: remove the pods booted so far (domains, netns, DHCP servers) here.
    await stopFleet(v, reg);
    throw err;
  }
}

/** `n` ticker VM pods, made and started concurrently; resolves once each guest ticks and its agent answers. */
export async function bootFleet(v: VmletProcess, image: string, logDir: string, n: number, prefix = 'tick'): Promise<FleetPod[]> {
  const pods = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const name = `${prefix}-${i}`;
      const p = await runVmPod(v, { name, namespace: NAMESPACE, image, logDir, annotations: { 'vmlet.io/kernel-args': 'vmlet.test=ticker' } });
      return { ...p, name, domain: containerRecord(v, p.id, p.cid).domainName as string };
    }),
  );
  await Promise.all(pods.map((p) => waitForTick(p, 1, 180_000)));
  await Promise.all(pods.map((p) => waitForAgent(v, p.cid, 120_000)));
  return pods;
}

const TICK = /^VMLET-TICK (\d+)$/;

/** The tick numbers in the pod's CRI log, in order. */
export function ticks(p: { log: string }): number[] {
  return consoleLines(p.log).flatMap((l) => {
    const m = TICK.exec(l);
    return m ? [Number(m[1])] : [];
  });
}

/** Resolves once the CRI log holds tick `n` (or a later one). */
export function waitForTick(p: { log: string }, n: number, timeoutMs = 60_000): Promise<number> {
  return waitFor(`VMLET-TICK ${n} in ${p.log}`, () => ticks(p).find((t) => t >= n), { timeoutMs, intervalMs: 100 });
}

/** The newest tick in the log now (0 before the first). */
export const lastTick = (p: { log: string }): number => ticks(p).at(-1) ?? 0;

/**
 * Each tick from 1 to the last exactly once, in order: nothing lost, nothing doubled. With
 * `consoleFile` (virtlogd's file), a failure also says which missing ticks that file holds: lost
 * by vmlet's copy, or before it.
 */
export function expectTicksComplete(p: { log: string; name?: string }, consoleFile?: string): number {
  const got = ticks(p);
  const missing: number[] = [];
  const doubled: number[] = [];
  const seen = new Set<number>();
  for (const t of got) {
    if (seen.has(t)) doubled.push(t);
    seen.add(t);
  }
  const last = Math.max(0, ...got);
  for (let i = 1; i <= last; i++) if (!seen.has(i)) missing.push(i);
  const file = missing.length && consoleFile && existsSync(consoleFile) ? readFileSync(consoleFile, 'utf8') : undefined;
  const inConsoleFile = file === undefined ? {} : { missingInConsoleFile: missing.filter((t) => file.includes(`VMLET-TICK ${t}\n`)) };
  expect({ log: p.name ?? p.log, missing, doubled, ordered: got.every((t, i) => i === 0 || t > got[i - 1]!), ...inConsoleFile }).toEqual({ log: p.name ?? p.log, missing: [], doubled: [], ordered: true });
  return last;
}

export function sandboxRecord(v: VmletProcess, id: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(v.stateDir, 'pods', id, 'sandbox.json'), 'utf8')) as Record<string, unknown>;
}

export function containerRecord(v: VmletProcess, id: string, cid: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(v.stateDir, 'pods', id, 'containers', cid, 'container.json'), 'utf8')) as Record<string, unknown>;
}

/** The running QEMU of a domain: its pid and start time (clock ticks since boot), so a restarted QEMU with a reused pid still differs. */
export function qemuProcess(domain: string): string | undefined {
  const file = `/run/libvirt/qemu/${domain}.pid`;
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return `${pid}@${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;
  } catch {
    return undefined;
  }
}

export const qemuPid = (domain: string): number => Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());

/** libvirt's id of the running domain (a new one each boot), as virsh sees it. */
export const domainId = (domain: string): string => virsh('domid', domain).trim();

interface PodView {
  id: string;
  state: string;
  containers: Array<{ id: string; state: string; created_at: string; started_at: string; finished_at: string; exit_code: number; log_path: string }>;
}

export interface FleetSnapshot {
  pods: Record<string, PodView>;
  /** Per pod: QEMU pid@start and libvirt domain id. */
  vms: Record<string, { qemu: string | undefined; domid: string }>;
}

/** What vmlet lists and libvirt runs for the fleet, now. */
export async function snapshot(v: VmletProcess, pods: FleetPod[]): Promise<FleetSnapshot> {
  const { items: sandboxes } = await rt<{ items: Array<{ id: string; state: string }> }>(v, 'ListPodSandbox', {});
  const { containers } = await rt<{ containers: Array<{ id: string; pod_sandbox_id: string }> }>(v, 'ListContainers', {});
  const out: FleetSnapshot = { pods: {}, vms: {} };
  for (const p of pods) {
    const s = sandboxes.find((x) => x.id === p.id);
    const mine = [];
    for (const c of containers.filter((x) => x.pod_sandbox_id === p.id)) {
      const { status } = await rt<{ status: PodView['containers'][number] }>(v, 'ContainerStatus', { container_id: c.id });
      const { id, state, created_at, started_at, finished_at, exit_code, log_path } = status;
      mine.push({ id, state, created_at, started_at, finished_at, exit_code, log_path });
    }
    out.pods[p.id] = { id: p.id, state: s?.state ?? 'NOT LISTED', containers: mine };
    out.vms[p.id] = { qemu: qemuProcess(p.domain), domid: domainId(p.domain) };
  }
  return out;
}

/** Each pod's and container's record on disk is valid and says what it said before the fault. */
export function expectRecordsIntact(v: VmletProcess, pods: FleetPod[], before: Map<string, Record<string, unknown>>): void {
  for (const p of pods) {
    const s = sandboxRecord(v, p.id);
    const c = containerRecord(v, p.id, p.cid);
    expect(sandboxProblem(s, p.id)).toBeUndefined();
    expect(containerProblem(c, p.id, p.cid)).toBeUndefined();
    const was = before.get(p.cid);
    if (was) {
      const keep = (r: Record<string, unknown>) => ({ state: r.state, createdAt: r.createdAt, startedAt: r.startedAt, domainName: r.domainName, logPath: r.logPath, files: r.files, config: r.config });
      expect(keep(c)).toEqual(keep(was));
    }
  }
}

/** The container records now, by container id (for expectRecordsIntact after the fault). */
export function recordsNow(v: VmletProcess, pods: FleetPod[]): Map<string, Record<string, unknown>> {
  return new Map(pods.map((p) => [p.cid, containerRecord(v, p.id, p.cid)]));
}

/**
 * Nothing lost: the same pods and containers listed with the same states and times, the same
 * QEMU processes and domain ids, intact records, each log's ticks moving on past `pastTick`
 * with none missing or doubled, and ExecSync answering in every pod.
 */
export async function expectNothingLost(v: VmletProcess, pods: FleetPod[], before: FleetSnapshot, records: Map<string, Record<string, unknown>>, pastTick: Map<string, number>): Promise<void> {
  expect(await snapshot(v, pods)).toEqual(before);
  expectRecordsIntact(v, pods, records);
  await Promise.all(pods.map((p) => waitForTick(p, (pastTick.get(p.id) ?? 0) + 5)));
  for (const p of pods) expectTicksComplete(p, join(v.stateDir, 'pods', p.id, 'containers', p.cid, 'console.log'));
  for (const p of pods) {
    const r = await rt<{ stdout: Buffer; exit_code: number }>(v, 'ExecSync', { container_id: p.cid, cmd: ['echo', `alive-${p.name}`], timeout: 30 });
    expect({ pod: p.name, exit: r.exit_code, out: r.stdout.toString().trim() }).toEqual({ pod: p.name, exit: 0, out: `alive-${p.name}` });
  }
}

/** The last tick of each pod's log now, by pod id. */
export const lastTicks = (pods: FleetPod[]): Map<string, number> => new Map(pods.map((p) => [p.id, lastTick(p)]));

/** Seconds with 1 decimal, for the figures each file prints. */
export const secs = (ms: number): string => (ms / 1000).toFixed(1);

/** Removes the fleet's pods, then stops vmlet and the registry (whatever failed before). */
export async function stopFleet(v: VmletProcess | undefined, reg: TestRegistry | undefined): Promise<void> {
  if (v) {
    const pods = await rt<{ items: { id: string }[] }>(v, 'ListPodSandbox', {}).catch(() => ({ items: [] }));
    await Promise.all(pods.items.map((p) => rt(v, 'RemovePodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined)));
    await v.stop();
  }
  await reg?.stop();
  await removeFaultBridge();
}
