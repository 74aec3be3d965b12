// The pod network in one place for pod/: setupPodNetwork at RunPodSandbox (CNI ADD, eth0
// wiring, DHCP server), the tap and MAC for the VM's <interface> (vm/domain-xml.ts),
// attachPodTap right after the domain starts, reattachPodNetwork when vmlet starts,
// teardownPodNetwork at Stop/RemovePodSandbox.
// The state is plain JSON: vmlet stores it with the sandbox (a copy also lives in
// <stateDir>/network.json, written before CNI ADD, so a crash mid-setup can still be torn down).
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import { atomicWrite, syncPaths } from '../util/atomic-write.js';
import { phases } from '../util/phases.js';
import {
  CniPluginError,
  cniAdd,
  cniArgs,
  cniDel,
  cniPortMappings,
  loadNetworkConfList,
  type CniAttachment,
  type CniConfList,
  type CniRuntimeConfig,
} from './cni.js';
import { dhcpFiles, dhcpPid, ensureDhcp, startDhcp, stopDhcp, type DhcpFiles, type DhcpLease } from './dhcp.js';
import { macFromId } from './mac.js';
import { NETNS_DIR } from './netns.js';
import { linkInfo, POD_IFNAME, primaryIpv4, primaryIpv6, unwirePodNetns, wirePodNetns, type PodIp, type PodRoute } from './pod-network.js';
import { attachTap, DHCP_SERVER_ADDRESS, tapName } from './tap.js';

export { type PodIp, type PodRoute } from './pod-network.js';
export { tapName } from './tap.js';
export { macFromId } from './mac.js';
export { checkPortMappings, CniPluginError, type CniResult } from './cni.js';

export interface PodDnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

/** CRI PortMapping (runtime.v1), as the generated types have it. */
export interface CriPortMapping {
  protocol?: string | number;
  container_port?: number;
  host_port?: number;
  host_ip?: string;
}

export interface SetupPodNetworkInput {
  sandboxId: string;
  netnsName: string;
  netnsPath: string;
  podName: string;
  namespace: string;
  podUid: string;
  /** The guest's hostname (PodSandboxConfig.hostname; the pod name when empty). */
  hostname: string;
  dnsConfig?: PodDnsConfig;
  portMappings?: CriPortMapping[];
  confDir: string;
  binDirs: string[];
  /** The pod's state dir: dnsmasq's config, pid file and log, and network.json go here. */
  stateDir: string;
  log: Logger;
  /** Deadline per CNI plugin call (default 60 s). */
  cniTimeoutMs?: number;
  /** Run the pod's DHCP/RA server (default true; false when the guest takes its addresses from the seed only). */
  dhcp?: boolean;
  /** cgroup.procs files of the pod cgroup the DHCP server joins before it starts (none: vmlet's own cgroup). */
  cgroupProcs?: string[];
}

export interface PodNetworkState {
  /** 2: tc redirects (tap.ts); 1: a bridge in the netns (kept working for pods made then). */
  version: 1 | 2;
  sandboxId: string;
  netnsName: string;
  netnsPath: string;
  /** The CNI interface in the pod netns: no addresses, its frames redirected to and from the tap. */
  ifName: string;
  /** The pod IPs (from CNI), each with prefix and gateway: the guest's addresses. */
  ips: PodIp[];
  /** Routes CNI put on eth0 (besides the prefix routes). */
  routes: PodRoute[];
  /** eth0's MTU: the tap's and the guest's. */
  mtu: number;
  /** The VM NIC's MAC: eth0's (empty until CNI ADD gave eth0). */
  mac: string;
  /** How the tap meets eth0: tc redirects (version 2); a version-1 pod has a `bridge` instead. */
  link?: 'tc-redirect';
  /** The tap's own MAC (from the sandbox id), the pod side of the guest's link. */
  tapMac?: string;
  /** Pods wired by vmlet 0.1 before tc redirects: the in-netns bridge (br0) the tap joins. */
  bridge?: string;
  /** The DHCP server's link-local address (CIDR), on the tap (on the bridge in version 1). */
  bridgeAddress: string;
  tap: string;
  hostname: string;
  dns: PodDnsConfig;
  dhcp: DhcpFiles;
  /** False when the pod has no DHCP server (network-config `static`); absent means it has one. */
  dhcpServer?: false;
  /** The pod cgroup's cgroup.procs files the DHCP server joins (also when restarted). */
  cgroupProcs?: string[];
  cni: {
    network: string;
    /** The config list as used at ADD: DEL uses the same, even if the node's file changed. */
    confList: CniConfList;
    binDirs: string[];
    containerId: string;
    ifName: string;
    args: string;
    runtimeConfig: CniRuntimeConfig;
    /** The raw ADD result (prevResult for DEL/CHECK); absent if ADD did not complete. */
    result?: unknown;
    timeoutMs?: number;
  };
}

export const STATE_FILE = 'network.json';

/**
 * Written atomically: after a crash the file is the old state or the new, never a torn one.
 * Synced unless `sync` is false: setupPodNetwork writes it three times and syncs it once at the
 * end (a vmlet that dies in between leaves the last version in the page cache; a host that
 * loses power loses the netns and DHCP server too, and the pod record says to release the rest).
 */
async function saveState(stateDir: string, s: PodNetworkState, sync = true): Promise<void> {
  await atomicWrite(join(stateDir, STATE_FILE), JSON.stringify(s, null, 2), 0o644, { sync });
}

/** The state setupPodNetwork left in `stateDir` (also a half-done one), if any. */
export function loadPodNetworkState(stateDir: string): PodNetworkState | undefined {
  const r = readPodNetworkState(stateDir);
  return 'state' in r ? r.state : undefined;
}

/** As loadPodNetworkState, but says why there is no state: no file, or one that cannot be used. */
export function readPodNetworkState(stateDir: string): { state: PodNetworkState } | { problem: string } {
  const file = join(stateDir, STATE_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { problem: (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${file} is missing` : `${file}: ${(err as Error).message}` };
  }
  try {
    const v = JSON.parse(text) as PodNetworkState;
    const cni = (v as Partial<PodNetworkState> | null)?.cni;
    if (typeof v?.netnsName !== 'string' || !Array.isArray(v.ips) || typeof v.dhcp?.pid !== 'string' || !cni || !Array.isArray(cni.confList?.plugins)) {
      return { problem: `${file} is not a pod network state (fields missing)` };
    }
    return { state: v };
  } catch (err) {
    return { problem: `${file} is corrupt: ${(err as Error).message}` };
  }
}

/**
 * What releasing a pod's network needs of its setup's input: netnsPath is empty when the pod has
 * no netns any more; confDir and binDirs are the node's CNI config, used when the pod's own copy
 * (network.json) is lost.
 */
export type ReleasePodNetworkInput = Pick<SetupPodNetworkInput, 'sandboxId' | 'netnsName' | 'netnsPath' | 'podName' | 'namespace' | 'podUid' | 'confDir' | 'binDirs' | 'stateDir' | 'log'>;

/**
 * Undoes a pod network whose setup may have been cut short (vmlet died during RunPodSandbox) or
 * whose state file is lost: CNI DEL with what is known (the saved state, else the node's CNI
 * config, the sandbox id as container id, the netns) so IPAM releases the lease, and the pod's
 * dnsmasq stopped by its pid file. Idempotent.
 */
export async function releasePodNetwork(i: ReleasePodNetworkInput, saved?: PodNetworkState): Promise<void> {
  const log = i.log.child({ podSandboxId: i.sandboxId });
  // The pid file is checked against the config path, so only this pod's dnsmasq is stopped.
  await stopDhcp(dhcpFiles(i.stateDir), log);
  const state = saved ?? initialState({ ...i, hostname: i.podName }, loadNetworkConfList(i.confDir, i.binDirs));
  await teardownPodNetwork(state, { log: i.log });
}

/** The DHCP lease the VM gets, from the state. */
export function dhcpLease(s: PodNetworkState): DhcpLease {
  const v4 = primaryIpv4(s.ips);
  const v6 = primaryIpv6(s.ips);
  return {
    iface: s.bridge ?? s.tap,
    mac: s.mac,
    ...(v4 ? { ip: v4.address } : {}),
    prefix: v4?.prefix ?? 32,
    ...(v6 ? { ipv6: { address: v6.address, prefix: v6.prefix } } : {}),
    ...(v4?.gateway ? { gateway: v4.gateway } : {}),
    routes: s.routes.filter((r) => r.family === 4).map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) })),
    ...(s.hostname ? { hostname: s.hostname } : {}),
    dnsServers: s.dns.servers,
    searches: s.dns.searches,
    mtu: s.mtu,
    leaseTime: 'infinite',
    serverAddress: s.bridgeAddress.split('/')[0]!,
  };
}

function attachment(s: PodNetworkState, netns: string): CniAttachment {
  return { containerId: s.cni.containerId, netns, ifName: s.cni.ifName, args: s.cni.args, runtimeConfig: s.cni.runtimeConfig };
}

const netnsExists = (s: { netnsName: string }) => existsSync(`${NETNS_DIR}/${s.netnsName}`);

/** The state before CNI ADD: everything DEL needs (config list, container id, netns, ifname, args). */
function initialState(
  i: Pick<SetupPodNetworkInput, 'sandboxId' | 'netnsName' | 'netnsPath' | 'podName' | 'namespace' | 'podUid' | 'hostname' | 'dnsConfig' | 'portMappings' | 'binDirs' | 'stateDir' | 'cniTimeoutMs' | 'dhcp' | 'cgroupProcs'>,
  confList: CniConfList,
): PodNetworkState {
  const dns: PodDnsConfig = { servers: [...(i.dnsConfig?.servers ?? [])], searches: [...(i.dnsConfig?.searches ?? [])], options: [...(i.dnsConfig?.options ?? [])] };
  const runtimeConfig: CniRuntimeConfig = {};
  const portMappings = cniPortMappings(i.portMappings ?? []);
  if (portMappings.length) runtimeConfig.portMappings = portMappings;
  if (dns.servers.length || dns.searches.length || dns.options.length) runtimeConfig.dns = dns;
  return {
    version: 2,
    sandboxId: i.sandboxId,
    netnsName: i.netnsName,
    netnsPath: i.netnsPath,
    ifName: POD_IFNAME,
    ips: [],
    routes: [],
    mtu: 1500,
    mac: '',
    link: 'tc-redirect',
    tapMac: macFromId(i.sandboxId),
    bridgeAddress: `${DHCP_SERVER_ADDRESS}/32`,
    tap: tapName(i.sandboxId),
    hostname: i.hostname || i.podName,
    dns,
    dhcp: dhcpFiles(i.stateDir),
    ...(i.dhcp === false ? { dhcpServer: false as const } : {}),
    ...(i.cgroupProcs?.length ? { cgroupProcs: i.cgroupProcs } : {}),
    cni: {
      network: confList.name,
      confList,
      binDirs: [...i.binDirs],
      containerId: i.sandboxId,
      ifName: POD_IFNAME,
      args: cniArgs({ namespace: i.namespace, name: i.podName, sandboxId: i.sandboxId, uid: i.podUid }),
      runtimeConfig,
      ...(i.cniTimeoutMs ? { timeoutMs: i.cniTimeoutMs } : {}),
    },
  };
}

/**
 * CNI ADD on the pod netns, moves the pod IP off eth0 to the VM side (tap.ts joins them) and
 * starts the pod's DHCP server. A failure undoes every step before it and throws.
 */
export async function setupPodNetwork(i: SetupPodNetworkInput): Promise<PodNetworkState> {
  const log = i.log.child({ podSandboxId: i.sandboxId });
  const { lap, fields } = phases();
  mkdirSync(i.stateDir, { recursive: true });
  const confList = loadNetworkConfList(i.confDir, i.binDirs);
  const state = initialState(i, confList);
  await saveState(i.stateDir, state, false);
  const opts = { binDirs: state.cni.binDirs, log, ...(i.cniTimeoutMs ? { timeoutMs: i.cniTimeoutMs } : {}) };
  try {
    const added = await cniAdd(confList, attachment(state, i.netnsPath), opts);
    state.cni.result = added.raw;
    await saveState(i.stateDir, state, false);
    lap('cniMs');
    const w = await wirePodNetns({ netnsName: i.netnsName, cni: added.result, ifName: state.ifName });
    state.mac = w.ifMac;
    state.ips = w.ips;
    state.routes = w.routes;
    state.mtu = w.mtu;
    await saveState(i.stateDir, state, false);
    lap('wireMs');
    if (state.dhcpServer !== false) {
      await startDhcp(i.netnsName, dhcpLease(state), state.dhcp, log, state.cgroupProcs, false);
      lap('dhcpMs');
    }
    // Durable once, together: the state, the DHCP server's config and the dir's renames.
    await syncPaths([join(i.stateDir, STATE_FILE), state.dhcp.conf, i.stateDir]);
    lap('syncMs');
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'pod network setup failed; undoing it');
    await teardownPodNetwork(state, { log }).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'undoing pod network setup failed'));
    // A plugin's own error and a refusal keep their message; the rest say which step failed.
    if (err instanceof CniPluginError || (err instanceof VmletError && err.kind !== 'internal')) throw err;
    throw new VmletError('internal', `pod network setup failed: ${(err as Error).message}`, { cause: err });
  }
  const v4 = primaryIpv4(state.ips);
  log.info({ ip: v4 && `${v4.address}/${v4.prefix}`, gateway: v4?.gateway, mac: state.mac, mtu: state.mtu, network: confList.name, ...fields() }, 'pod network ready');
  return state;
}

/**
 * Stops the DHCP server, undoes the wiring and runs CNI DEL (with CNI_NETNS='' when the netns
 * is already gone). Idempotent: safe to call again, after a half-done setup, or without a netns.
 */
export async function teardownPodNetwork(state: PodNetworkState, o: { log?: Logger } = {}): Promise<void> {
  const log = o.log?.child({ podSandboxId: state.sandboxId });
  await stopDhcp(state.dhcp, log);
  const hasNetns = netnsExists(state);
  if (hasNetns) await unwirePodNetns({ netnsName: state.netnsName, ips: state.ips, ifName: state.ifName, bridge: state.bridge, tap: state.tap });
  // A tap still in the host netns (domain started, never attached) goes with QEMU; nothing to do.
  await cniDel(state.cni.confList, attachment(state, hasNetns ? state.netnsPath : ''), state.cni.result, {
    binDirs: state.cni.binDirs,
    ...(log ? { log } : {}),
    ...(state.cni.timeoutMs ? { timeoutMs: state.cni.timeoutMs } : {}),
  });
  rmSync(state.dhcp.conf, { force: true });
  log?.info({ netns: hasNetns ? state.netnsPath : '(gone)' }, 'pod network torn down');
}

export interface ReattachResult {
  /** 'running': dnsmasq survived; 'restarted': it was started again from its config; 'none': the pod has no DHCP server. */
  dhcp: 'running' | 'restarted' | 'none';
  /** What attachTap found, or 'absent' when no tap exists (no VM running). */
  tap: 'moved' | 'attached' | 'absent';
}

/** vmlet start: the DHCP server runs again and a running VM's tap is on the bridge. */
export async function reattachPodNetwork(state: PodNetworkState, o: { log?: Logger } = {}): Promise<ReattachResult> {
  const log = o.log?.child({ podSandboxId: state.sandboxId });
  if (!netnsExists(state)) throw new VmletError('failed-precondition', `pod network of ${state.sandboxId}: netns ${state.netnsName} is gone`);
  const d = state.dhcpServer === false ? undefined : await ensureDhcp(state.netnsName, state.dhcp, log, state.cgroupProcs);
  let tap: ReattachResult['tap'] = 'absent';
  if ((await linkInfo(state.netnsName, state.tap)) || (await linkInfo(undefined, state.tap))) tap = await attachPodTap(state);
  const dhcp = d === undefined ? 'none' : d.started ? 'restarted' : 'running';
  if (dhcp === 'restarted' || tap === 'moved') log?.info({ dhcp, tap }, 'pod network re-attached');
  return { dhcp, tap };
}

/**
 * After every domain start: moves the VM's tap into the pod netns and joins it to eth0 (see
 * tap.ts). Idempotent; 'moved' when it was still in the host netns. `fresh` right after a
 * start or a pool VM's claim, when the tap is still in the host netns.
 */
export function attachPodTap(s: PodNetworkState, o: { fresh?: boolean } = {}): Promise<'moved' | 'attached'> {
  return attachTap(
    {
    netnsName: s.netnsName,
    ifName: s.ifName,
    tap: s.tap,
    tapMac: s.tapMac ?? macFromId(s.sandboxId),
    ips: s.ips,
    ...(s.mtu ? { mtu: s.mtu } : {}),
    ...(s.bridge ? { bridge: s.bridge } : {}),
    },
    o,
  );
}

/**
 * The pod's VM has another tap than the one its network was set up for (a warm-pool VM's,
 * pod/podvm-pool.ts): recorded before it is attached, so teardown and re-attach find it.
 */
export async function usePodTap(stateDir: string, s: PodNetworkState, tap: string): Promise<void> {
  s.tap = tap;
  await saveState(stateDir, s);
}

/** Whether the pod's DHCP server is running (for status/doctor). */
export function dhcpRunning(state: PodNetworkState): boolean {
  return dhcpPid(state.dhcp, state.netnsName) !== undefined;
}
