// ContainerStats / ListContainerStats / PodSandboxStats / ListPodSandboxStats for VM pods: what
// `crictl stats`, `crictl statsp`, the kubelet's eviction manager and `kubectl top` read.
//
// Where each figure comes from (a container is one libvirt domain, i.e. one QEMU process):
// - CPU: the domain's CPU time (libvirt getInfo cpuTime: the whole QEMU process, vCPUs plus
//   emulator and I/O threads, in ns). usage_nano_cores is the rate between this sample and the
//   last kept one (see CpuRateTracker): left out until a sample at least 1 s older exists.
// - Memory: the QEMU process as the host sees it, from /proc/<pid>/status (pid from libvirt's
//   pid file). The host's view is what counts for eviction, and the guest's own view (free,
//   cache) would need balloon statistics polled in every guest (not enabled). So
//     working_set_bytes = usage_bytes = VmRSS (guest RAM the guest has touched, QEMU's own heap,
//       and its binary and libraries: all the VM holds in host RAM; never under-counts, which is
//       the safe side for eviction; the RuntimeClass overhead was sized with the same figure),
//     rss_bytes = RssAnon + RssShmem (guest RAM and heap, without file-backed pages),
//     available_bytes = guest memory (the balloon's current size) − working set (0 when QEMU's overhead pushes RSS past it),
//     page_faults = minflt + majflt, major_page_faults = majflt (/proc/<pid>/stat, all threads).
//   smaps_rollup (PSS, private vs shared) walks the page tables, costs time in proportion to the
//   guest's RAM, and is not read.
// - Writable layer: the files vmlet made for the container (qcow2 overlay, NVRAM, cloud-init
//   seed) by allocated blocks, inodes = how many of them exist; fs_id is the mount holding the
//   pods state dir (the same ImageFsInfo reports as container_filesystems).
// - Network (sandbox only): the VM tap's counters, which live in the pod netns. The pod's dnsmasq
//   runs in that netns, so /proc/<dnsmasq pid>/net/dev lists them without spawning anything;
//   `ip -n <netns> -s -j link show <tap>` only when dnsmasq is gone. Reported as the guest sees
//   its NIC, named eth0: the tap's tx is what the guest received (rx_*), the tap's rx what the
//   guest sent (tx_*).
// A list call costs one libvirt bulk stats call listing the running domains (their state only:
// the groups with CPU and memory make libvirt ask every QEMU, see Libvirt.activeDomainInfo), then
// getInfo per VM, sent at once, and /proc reads.
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { mountPointOf } from '../util/fs-usage.js';
import { unavailable } from '../errors.js';
import { DomainState, VirtError, type DomainSample } from '../vm/libvirt.js';
import { dhcpPid } from '../net/dhcp.js';
import { ip } from '../net/pod-network.js';
import type { PodNetworkState } from '../net/index.js';
import type { PodManager } from './manager.js';
import type { ContainerRecord, SandboxRecord } from './records.js';
import type { ContainerStats } from '../gen/runtime/v1/ContainerStats.js';
import type { PodSandboxStats } from '../gen/runtime/v1/PodSandboxStats.js';
import type { CpuUsage } from '../gen/runtime/v1/CpuUsage.js';
import type { MemoryUsage } from '../gen/runtime/v1/MemoryUsage.js';
import type { NetworkUsage } from '../gen/runtime/v1/NetworkUsage.js';
import type { FilesystemUsage } from '../gen/runtime/v1/FilesystemUsage.js';
import type { ContainerStatsFilter__Output } from '../gen/runtime/v1/ContainerStatsFilter.js';
import type { PodSandboxStatsFilter__Output } from '../gen/runtime/v1/PodSandboxStatsFilter.js';

/** Where libvirt's system QEMU driver keeps `<domain>.pid`. */
export const QEMU_RUN_DIR = '/run/libvirt/qemu';

/** The interface name the stats give the VM's NIC: the pod's eth0, as the guest sees it. */
export const POD_INTERFACE = 'eth0';

/** The shortest window usage_nano_cores is computed over (libvirt's CPU time may tick in 10 ms). */
export const MIN_RATE_WINDOW_MS = 1000;

// ---------------------------------------------------------------------------------- /proc parsing

export interface ProcMemory {
  rssBytes: number;
  rssAnonBytes: number;
  rssFileBytes: number;
  rssShmemBytes: number;
  swapBytes: number;
}

/** The memory lines of /proc/<pid>/status (kB → bytes); undefined without VmRSS (a zombie, a kernel thread). */
export function parseProcStatus(text: string): ProcMemory | undefined {
  const kb = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line.trim());
    if (m) kb.set(m[1]!, Number(m[2]) * 1024);
  }
  const rss = kb.get('VmRSS');
  if (rss === undefined) return undefined;
  return {
    rssBytes: rss,
    rssAnonBytes: kb.get('RssAnon') ?? 0,
    rssFileBytes: kb.get('RssFile') ?? 0,
    rssShmemBytes: kb.get('RssShmem') ?? 0,
    swapBytes: kb.get('VmSwap') ?? 0,
  };
}

/** Minor and major page faults of the whole process from /proc/<pid>/stat (fields 10 and 12). */
export function parseProcStatFaults(text: string): { minor: number; major: number } | undefined {
  // comm (field 2) may hold spaces and parentheses: the fields after it start past the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).trim().split(/\s+/);
  const minor = Number(rest[7]);
  const major = Number(rest[9]);
  if (rest.length < 10 || !Number.isFinite(minor) || !Number.isFinite(major)) return undefined;
  return { minor, major };
}

export interface LinkCounters {
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

/** /proc/net/dev (of some process's netns): counters by interface name. */
export function parseNetDev(text: string): Map<string, LinkCounters> {
  const out = new Map<string, LinkCounters>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue; // the two header lines have '|' and no ':'
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (!name || f.length < 16 || f.some((n) => !Number.isFinite(n))) continue;
    // Receive: bytes packets errs drop fifo frame compressed multicast; Transmit: bytes packets errs drop fifo colls carrier compressed
    out.set(name, { rxBytes: f[0]!, rxPackets: f[1]!, rxErrors: f[2]!, rxDropped: f[3]!, txBytes: f[8]!, txPackets: f[9]!, txErrors: f[10]!, txDropped: f[11]! });
  }
  return out;
}

/** `ip -s -j link show <dev>` output → the link's counters. */
export function parseIpLinkStats(json: string): LinkCounters | undefined {
  let links: unknown;
  try {
    links = JSON.parse(json);
  } catch {
    return undefined;
  }
  type Dir = { bytes?: number; packets?: number; errors?: number; dropped?: number };
  const s = (Array.isArray(links) ? (links[0] as { stats64?: { rx?: Dir; tx?: Dir } } | undefined) : undefined)?.stats64;
  if (!s?.rx || !s.tx) return undefined;
  return {
    rxBytes: s.rx.bytes ?? 0,
    rxPackets: s.rx.packets ?? 0,
    rxErrors: s.rx.errors ?? 0,
    rxDropped: s.rx.dropped ?? 0,
    txBytes: s.tx.bytes ?? 0,
    txPackets: s.tx.packets ?? 0,
    txErrors: s.tx.errors ?? 0,
    txDropped: s.tx.dropped ?? 0,
  };
}

/** A tap's counters seen from the guest's side of the link: what the tap sent, the guest received. */
export function guestView(tap: LinkCounters): LinkCounters {
  return {
    rxBytes: tap.txBytes,
    rxPackets: tap.txPackets,
    rxErrors: tap.txErrors,
    rxDropped: tap.txDropped,
    txBytes: tap.rxBytes,
    txPackets: tap.rxPackets,
    txErrors: tap.rxErrors,
    txDropped: tap.rxDropped,
  };
}

// ---------------------------------------------------------------------------------- CPU rate

interface CpuSample {
  cpuNs: number;
  atMs: number;
  rate?: number;
}

/**
 * usage_nano_cores from cumulative CPU time, per key (container id, or pod). The sample a rate
 * is computed against is replaced only once it is at least `minWindowMs` old, so callers that
 * poll faster (the kubelet, crictl, metrics agents at once) share one steady window instead of
 * dividing tick-sized differences by tiny intervals; between two such updates the last rate is
 * reported again. No rate before a second sample exists (the first call reports none: the
 * kubelet then computes one itself from usage_core_nano_seconds), and none after the counter
 * went backwards (a new QEMU process), until the window has passed again.
 */
export class CpuRateTracker {
  private readonly samples = new Map<string, CpuSample>();

  constructor(readonly minWindowMs = MIN_RATE_WINDOW_MS) {}

  /** Records a sample; returns nano cores, or undefined when no rate is known yet. */
  update(key: string, cpuNs: number, atMs: number): number | undefined {
    const prev = this.samples.get(key);
    if (!prev || cpuNs < prev.cpuNs || atMs < prev.atMs) {
      this.samples.set(key, { cpuNs, atMs });
      return undefined;
    }
    const dtMs = atMs - prev.atMs;
    if (dtMs < this.minWindowMs) return prev.rate;
    const rate = Math.round(((cpuNs - prev.cpuNs) * 1000) / dtMs); // ns of CPU per s = nano cores
    this.samples.set(key, { cpuNs, atMs, rate });
    return rate;
  }

  /** Forgets every key not in `keep` (removed containers and pods). */
  retain(keep: ReadonlySet<string>): void {
    for (const k of this.samples.keys()) if (!keep.has(k)) this.samples.delete(k);
  }

  get size(): number {
    return this.samples.size;
  }
}

// ---------------------------------------------------------------------------------- filters

function labelsMatch(labels: Record<string, string> | undefined, selector: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if (labels?.[k] !== v) return false;
  return true;
}

/** ContainerStatsFilter: every set field must match (ids by prefix, as ListContainers does). */
export function containerStatsMatches(c: ContainerRecord, f: ContainerStatsFilter__Output | null | undefined): boolean {
  if (!f) return true;
  if (f.id && !c.id.startsWith(f.id)) return false;
  if (f.pod_sandbox_id && !c.sandboxId.startsWith(f.pod_sandbox_id)) return false;
  return labelsMatch(c.config.labels, f.label_selector);
}

/** PodSandboxStatsFilter: every set field must match (id by prefix, as ListPodSandbox does). */
export function sandboxStatsMatches(s: SandboxRecord, f: PodSandboxStatsFilter__Output | null | undefined): boolean {
  if (!f) return true;
  if (f.id && !s.id.startsWith(f.id)) return false;
  return labelsMatch(s.config.labels, f.label_selector);
}

// ---------------------------------------------------------------------------------- wire helpers

const u64 = (n: number | bigint) => ({ value: (typeof n === 'bigint' ? n : BigInt(Math.max(0, Math.round(n)))).toString() });

/** ms since the epoch (sub-ms precision) → ns as the decimal string int64 fields take. */
export function nsString(atMs: number): string {
  return (BigInt(Math.round(atMs * 1000)) * 1000n).toString();
}

const nowMs = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------- sampling

interface StatsState {
  cpu: CpuRateTracker;
  mountpoint?: string;
}

const states = new WeakMap<PodManager, StatsState>();

function stateOf(m: PodManager): StatsState {
  let st = states.get(m);
  if (!st) {
    st = { cpu: new CpuRateTracker() };
    states.set(m, st);
  }
  return st;
}

const ACTIVE = new Set<DomainState>([DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED, DomainState.SHUTDOWN, DomainState.PMSUSPENDED]);

/** The running domains among `containers`: lookup + getInfo for one, the bulk list + getInfo each for several. */
async function sampleDomains(m: PodManager, containers: ContainerRecord[]): Promise<Map<string, DomainSample>> {
  const out = new Map<string, DomainSample>();
  // A created container's domain is defined but off; an exited one's is off or gone.
  const wanted = containers.filter((c) => c.state === 'running' || c.state === 'unknown');
  if (wanted.length === 0) return out;
  const lv = m.deps.libvirt;
  try {
    if (wanted.length === 1) {
      const d = await lv.domainSample(wanted[0]!.domainName);
      out.set(d.name, d);
    } else {
      for (const d of await lv.activeDomainInfo(new Set(wanted.map((c) => c.domainName)))) out.set(d.name, d);
    }
  } catch (err) {
    if (err instanceof VirtError && err.kind === 'not-found') return out; // removed meanwhile
    if (err instanceof VirtError && err.kind === 'connection') throw unavailable(`cannot read VM stats: ${err.message}`);
    throw err;
  }
  for (const [name, d] of out) if (!ACTIVE.has(d.state)) out.delete(name);
  return out;
}

interface QemuProc {
  mem: ProcMemory;
  faults?: { minor: number; major: number };
}

/**
 * The domain's QEMU process, from libvirt's pid file and /proc; undefined when it is gone. Read
 * synchronously: tmpfs and procfs never block, and three small sync reads cost ~30 µs where the
 * same reads through the thread pool cost ~0.2 ms (status + stat of 10 processes: 0.29 vs 1.9 ms).
 */
function readQemuProc(domainName: string): QemuProc | undefined {
  try {
    const pid = Number.parseInt(readFileSync(`${QEMU_RUN_DIR}/${domainName}.pid`, 'utf8'), 10);
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const mem = parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!mem) return undefined;
    let faults: { minor: number; major: number } | undefined;
    try {
      faults = parseProcStatFaults(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      faults = undefined;
    }
    return { mem, ...(faults ? { faults } : {}) };
  } catch {
    return undefined; // stopped between the libvirt call and here
  }
}

/** Allocated bytes and count of the container's own files (overlay, NVRAM, seed). */
export async function filesUsage(files: readonly string[]): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  for (const f of files) {
    try {
      const st = await stat(f);
      bytes += st.blocks * 512;
      inodes++;
    } catch {
      // not made (yet) or removed
    }
  }
  return { bytes, inodes };
}

function mountpoint(m: PodManager, st: StatsState): string {
  st.mountpoint ??= mountPointOf(m.store.root);
  return st.mountpoint;
}

/** Figures kept beside the wire message, for the pod's sums. */
interface Measured {
  c: ContainerRecord;
  wire: ContainerStats;
  cpuNs?: number;
  atMs?: number;
  mem?: { workingSet: number; rss: number; usage: number; available: number; faults?: number; majorFaults?: number };
  memAtMs?: number;
}

async function measureContainer(m: PodManager, st: StatsState, c: ContainerRecord, d: DomainSample | undefined): Promise<Measured> {
  const wire: ContainerStats = {
    attributes: { id: c.id, metadata: c.config.metadata, labels: c.config.labels ?? {}, annotations: c.config.annotations ?? {} },
  };
  const out: Measured = { c, wire };
  const proc = d ? readQemuProc(d.name) : undefined;
  const memAt = nowMs();
  const layer = await filesUsage(c.files);
  const layerAt = nowMs();
  if (d) {
    const rate = st.cpu.update(c.id, d.cpuTimeNs, d.sampledAtMs);
    const cpu: CpuUsage = { timestamp: nsString(d.sampledAtMs), usage_core_nano_seconds: u64(d.cpuTimeNs) };
    if (rate !== undefined) cpu.usage_nano_cores = u64(rate);
    wire.cpu = cpu;
    out.cpuNs = d.cpuTimeNs;
    out.atMs = d.sampledAtMs;
  }
  if (d && proc) {
    const guestBytes = d.memoryKiB * 1024;
    const ws = proc.mem.rssBytes;
    const mem: Measured['mem'] = {
      workingSet: ws,
      rss: proc.mem.rssAnonBytes + proc.mem.rssShmemBytes,
      usage: proc.mem.rssBytes,
      available: Math.max(0, guestBytes - ws),
      ...(proc.faults ? { faults: proc.faults.minor + proc.faults.major, majorFaults: proc.faults.major } : {}),
    };
    out.mem = mem;
    out.memAtMs = memAt;
    wire.memory = memoryWire(mem, memAt);
    wire.swap = { timestamp: nsString(memAt), swap_usage_bytes: u64(proc.mem.swapBytes) };
  }
  wire.writable_layer = fsWire(mountpoint(m, st), layer, layerAt);
  return out;
}

function memoryWire(mem: NonNullable<Measured['mem']>, atMs: number): MemoryUsage {
  return {
    timestamp: nsString(atMs),
    working_set_bytes: u64(mem.workingSet),
    available_bytes: u64(mem.available),
    usage_bytes: u64(mem.usage),
    rss_bytes: u64(mem.rss),
    ...(mem.faults !== undefined ? { page_faults: u64(mem.faults) } : {}),
    ...(mem.majorFaults !== undefined ? { major_page_faults: u64(mem.majorFaults) } : {}),
  };
}

function fsWire(mp: string, u: { bytes: number; inodes: number }, atMs: number): FilesystemUsage {
  return { timestamp: nsString(atMs), fs_id: { mountpoint: mp }, used_bytes: u64(u.bytes), inodes_used: u64(u.inodes) };
}

/** The pod's VM tap counters (tap's own direction), or undefined when no tap is up (VM not running). */
export async function readTapCounters(net: PodNetworkState): Promise<LinkCounters | undefined> {
  const pid = dhcpPid(net.dhcp, net.netnsName);
  if (pid !== undefined) {
    try {
      const c = parseNetDev(readFileSync(`/proc/${pid}/net/dev`, 'utf8')).get(net.tap);
      if (c) return c;
      // Not in the netns: the VM is not running, or its tap was never moved. Nothing to report.
      return undefined;
    } catch {
      // dnsmasq exited just now: ask ip(8) below
    }
  }
  try {
    return parseIpLinkStats(await ip(['-n', net.netnsName, '-s', '-j', 'link', 'show', 'dev', net.tap]));
  } catch {
    return undefined;
  }
}

async function networkOf(m: PodManager, s: SandboxRecord): Promise<NetworkUsage | undefined> {
  const net = m.networks.get(s.id);
  if (!net || s.state !== 'ready') return undefined;
  const tap = await readTapCounters(net);
  if (!tap) return undefined;
  const g = guestView(tap);
  const iface = { name: POD_INTERFACE, rx_bytes: u64(g.rxBytes), rx_errors: u64(g.rxErrors), tx_bytes: u64(g.txBytes), tx_errors: u64(g.txErrors) };
  return { timestamp: nsString(nowMs()), default_interface: iface, interfaces: [iface] };
}

async function measureSandbox(m: PodManager, st: StatsState, s: SandboxRecord, members: Measured[]): Promise<PodSandboxStats> {
  const network = await networkOf(m, s);
  const linux: NonNullable<PodSandboxStats['linux']> = { containers: members.map((x) => x.wire) };
  const running = members.filter((x) => x.cpuNs !== undefined && x.atMs !== undefined);
  if (running.length > 0) {
    const cpuNs = running.reduce((a, x) => a + x.cpuNs!, 0);
    const atMs = Math.max(...running.map((x) => x.atMs!));
    const rate = st.cpu.update(`pod/${s.id}`, cpuNs, atMs);
    linux.cpu = { timestamp: nsString(atMs), usage_core_nano_seconds: u64(cpuNs), ...(rate !== undefined ? { usage_nano_cores: u64(rate) } : {}) };
  }
  const withMem = members.filter((x) => x.mem);
  if (withMem.length > 0) {
    const sum = (k: 'workingSet' | 'rss' | 'usage' | 'available') => withMem.reduce((a, x) => a + x.mem![k], 0);
    const allFaults = withMem.every((x) => x.mem!.faults !== undefined);
    linux.memory = memoryWire(
      {
        workingSet: sum('workingSet'),
        rss: sum('rss'),
        usage: sum('usage'),
        available: sum('available'),
        ...(allFaults ? { faults: withMem.reduce((a, x) => a + x.mem!.faults!, 0), majorFaults: withMem.reduce((a, x) => a + x.mem!.majorFaults!, 0) } : {}),
      },
      Math.max(...withMem.map((x) => x.memAtMs ?? 0)),
    );
  }
  if (network) linux.network = network;
  return {
    attributes: { id: s.id, metadata: s.config.metadata, labels: s.config.labels ?? {}, annotations: s.config.annotations ?? {} },
    linux,
  };
}

/** Containers that get stats: all but exited ones (CRI-O's choice; containerd lists running ones). */
const listed = (c: ContainerRecord) => c.state !== 'exited';

/** Drops rate samples of containers and pods vmlet no longer knows. */
function prune(m: PodManager, st: StatsState): void {
  const keep = new Set<string>();
  for (const id of m.containers.keys()) keep.add(id);
  for (const id of m.sandboxes.keys()) keep.add(`pod/${id}`);
  st.cpu.retain(keep);
}

async function measureAll(m: PodManager, st: StatsState, containers: ContainerRecord[]): Promise<Measured[]> {
  const domains = await sampleDomains(m, containers);
  return Promise.all(containers.map((c) => measureContainer(m, st, c, domains.get(c.domainName))));
}

// ---------------------------------------------------------------------------------- the four calls

/** ContainerStats: one container by id (or unique prefix), in any state; NotFound (from mustContainer) if unknown. */
export async function containerStats(m: PodManager, id: string): Promise<ContainerStats> {
  const c = m.mustContainer(id);
  const st = stateOf(m);
  const [x] = await measureAll(m, st, [c]);
  return x!.wire;
}

/** ListContainerStats: every created or running container matching the filter. */
export async function listContainerStats(m: PodManager, filter: ContainerStatsFilter__Output | null | undefined): Promise<ContainerStats[]> {
  const st = stateOf(m);
  prune(m, st);
  const containers = [...m.containers.values()].filter((c) => listed(c) && containerStatsMatches(c, filter));
  return (await measureAll(m, st, containers)).map((x) => x.wire);
}

/** PodSandboxStats: one pod by id (or unique prefix); NotFound if unknown. A stopped pod has no CPU, memory or network. */
export async function podSandboxStats(m: PodManager, id: string): Promise<PodSandboxStats> {
  const s = m.mustSandbox(id);
  const st = stateOf(m);
  const members = await measureAll(m, st, m.containersOf(s.id).filter(listed));
  return measureSandbox(m, st, s, members);
}

/** ListPodSandboxStats: every ready pod matching the filter (as containerd: stopped pods are left out). */
export async function listPodSandboxStats(m: PodManager, filter: PodSandboxStatsFilter__Output | null | undefined): Promise<PodSandboxStats[]> {
  const st = stateOf(m);
  prune(m, st);
  const sandboxes = [...m.sandboxes.values()].filter((s) => s.state === 'ready' && sandboxStatsMatches(s, filter));
  const ids = new Set(sandboxes.map((s) => s.id));
  const containers = [...m.containers.values()].filter((c) => ids.has(c.sandboxId) && listed(c));
  const measured = await measureAll(m, st, containers);
  return Promise.all(sandboxes.map((s) => measureSandbox(m, st, s, measured.filter((x) => x.c.sandboxId === s.id))));
}
