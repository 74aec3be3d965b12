// Pod wiring: after CNI ADD gave the pod netns an `eth0` with the pod IP, the IP moves to the
// VM. eth0 loses its addresses and routes (kept in the state) and stays as it is otherwise: its
// MAC becomes the guest's, and tap.ts joins it to the VM's tap with tc redirects. The pod IP
// belongs to the guest, the gateway to the host.
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { execa } from 'execa';
import type { CniResult } from './cni.js';
import { sandboxIps } from './cni.js';
import { NETNS_DIR } from './netns.js';
import { VmletError } from '../errors.js';
import { ipv4Network, ipv6Network } from './ip-math.js';

export const POD_IFNAME = 'eth0';

export interface PodIp {
  family: 4 | 6;
  address: string;
  /** The guest's prefix length: CNI's, or the full length when CNI left the subnet off-link. */
  prefix: number;
  gateway?: string;
  /** CNI's prefix length when `prefix` differs from it (restored on eth0 before CNI DEL). */
  cniPrefix?: number;
}

/** `10.1.2.0/24` for 10.1.2.3/24, as ip(8) prints a prefix route. */
export function networkCidr(i: Pick<PodIp, 'family' | 'address' | 'prefix'>): string {
  return `${i.family === 6 ? ipv6Network(i.address, i.prefix) : ipv4Network(i.address, i.prefix)}/${i.prefix}`;
}

export interface PodRoute {
  family: 4 | 6;
  /** CIDR ('0.0.0.0/0' / '::/0' for the default route). */
  dst: string;
  gw?: string;
}

export interface Wiring {
  ips: PodIp[];
  routes: PodRoute[];
  mtu: number;
  /** eth0's MAC: the guest's NIC carries it, so plugins that check source MACs pass its frames. */
  ifMac: string;
}

// ---------------------------------------------------------------------------------- ip(8)

export async function ip(args: string[], input?: string): Promise<string> {
  const r = await execa('ip', args, { ...(input !== undefined ? { input } : { stdin: 'ignore' }), reject: false, timeout: 15_000 });
  if (r.exitCode !== 0) {
    throw new VmletError('internal', `ip ${args.join(' ')} failed: ${String(r.stderr ?? '').trim() || `exit code ${r.exitCode}`}`);
  }
  return String(r.stdout ?? '');
}

export interface IpAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
  scope?: string;
}
export interface IpLink {
  ifname?: string;
  mtu?: number;
  address?: string;
  master?: string;
  flags?: string[];
  addr_info?: IpAddrInfo[];
}
export interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  type?: string;
}

/** The link in netns `ns` (undefined when it does not exist). */
export async function linkInfo(ns: string | undefined, dev: string): Promise<IpLink | undefined> {
  const r = await execa('ip', [...(ns ? ['-n', ns] : []), '-j', 'addr', 'show', 'dev', dev], { reject: false, stdin: 'ignore', timeout: 15_000 });
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(String(r.stdout || '[]')) as IpLink[])[0];
}

function normDst(dst: string | undefined, family: 4 | 6): string {
  if (!dst || dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  return dst.includes('/') ? dst : `${dst}/${family === 4 ? 32 : 128}`;
}

// ---------------------------------------------------------------------------------- wiring

/** What `ip -j -batch` printed: one JSON array per line, for each command that prints. */
export function batchJson(out: string): unknown[][] {
  return out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as unknown[]);
}

/**
 * The wiring from what eth0 had before it was rewired: its link (addresses, MTU, MAC), its
 * routes, and the CNI result. Pure (wirePodNetns reads eth0; this decides), so it is unit-tested.
 */
export function wiringFrom(o: { netnsName: string; ifName: string; cni: CniResult; link: IpLink; routes: { 4: IpRoute[]; 6: IpRoute[] } }): Wiring {
  const { netnsName: ns, ifName, link } = o;
  const mtu = link.mtu ?? 1500;
  const ifMac = link.address ?? '';
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(ifMac)) throw new VmletError('internal', `${ifName} in netns ${ns} has no Ethernet MAC (${JSON.stringify(ifMac)}): vmlet needs an Ethernet CNI interface`);
  const onLink = (link.addr_info ?? []).filter((a) => a.scope !== 'link' && a.scope !== 'host' && a.local && a.prefixlen !== undefined);

  const routes: PodRoute[] = [];
  const prefixRoutes = new Set<string>();
  for (const family of [4, 6] as const) {
    for (const r of o.routes[family]) {
      if (r.protocol === 'kernel' && r.dst) prefixRoutes.add(r.dst);
      if (r.protocol === 'kernel' || (r.type && r.type !== 'unicast')) continue; // prefix routes come with the address
      if (family === 6 && r.dst?.startsWith('fe80:')) continue;
      routes.push({ family, dst: normDst(r.dst, family), ...(r.gateway ? { gw: r.gateway } : {}) });
    }
  }

  // IPs: what the CNI result gives eth0; if it lists none, what is on eth0.
  let ips: PodIp[] = sandboxIps(o.cni, ifName).map((i) => ({ family: i.family, address: i.address, prefix: i.prefix, ...(i.gateway ? { gateway: i.gateway } : {}) }));
  if (ips.length === 0) {
    ips = onLink.map((a) => ({ family: a.family === 'inet6' ? 6 : 4, address: a.local!, prefix: a.prefixlen! }));
  }
  for (const i of ips) {
    if (i.gateway) continue;
    const def = routes.find((r) => r.family === i.family && (r.dst === '0.0.0.0/0' || r.dst === '::/0') && r.gw);
    if (def?.gw) i.gateway = def.gw;
  }
  if (ips.length === 0) throw new VmletError('internal', `CNI gave ${ifName} in netns ${ns} no IP address`);
  // A plugin that removed the subnet's on-link route (ptp and Calico-style plugins route the
  // subnet through the gateway) means no neighbour is on the link: the guest gets the address
  // alone (/32, /128), as it would otherwise ARP for pods it cannot reach directly.
  for (const i of ips) {
    const max = i.family === 4 ? 32 : 128;
    if (i.prefix < max && !prefixRoutes.has(networkCidr(i))) {
      i.cniPrefix = i.prefix;
      i.prefix = max;
    }
  }
  return { ips, routes, mtu, ifMac };
}

/** The `ip -j -batch` lines that read `ifName` and then strip it, and bring the loopback up (the reads print the state before). */
export function wiringBatch(ifName: string): string[] {
  return [`addr show dev ${ifName}`, `route show dev ${ifName}`, `route flush dev ${ifName}`, `link set ${ifName} addrgenmode none`, `addr flush dev ${ifName}`, 'link set lo up'];
}

/**
 * Moves the pod IP off eth0 and stops eth0 taking part in the pod netns' own stack (no
 * addresses; no IPv6 link-local either, which would clash with the guest's: it has eth0's MAC),
 * and brings the netns' loopback up. Records the IPs (from the CNI result, completed from what
 * is on eth0), the routes via eth0, eth0's MTU and MAC.
 *
 * One `ip -batch` reads eth0 and then rewires it (its reads print the state before the
 * changes); a pod with IPv6 takes one more before it, as batch lines cannot pick a family.
 * Each process start costs milliseconds of the pod's start (bench/pod-start.ts). So eth0 is
 * already stripped when wiringFrom refuses it (no Ethernet MAC, no IP): the caller's teardown
 * still runs CNI DEL, which finds eth0 by name.
 */
export async function wirePodNetns(o: { netnsName: string; cni: CniResult; ifName?: string }): Promise<Wiring> {
  const ns = o.netnsName;
  const ifName = o.ifName ?? POD_IFNAME;
  const listed = sandboxIps(o.cni, ifName);
  // IPv6 routes need their own `ip -6`: asked only when the pod may have IPv6 (the result says
  // so, or lists no IPs and eth0's own addresses decide).
  const v6 = listed.length === 0 || listed.some((i) => i.family === 6);
  const run = async (args: string[], lines: string[]) => {
    try {
      return batchJson(await ip(['-n', ns, ...args, '-j', '-batch', '-'], lines.join('\n') + '\n'));
    } catch (err) {
      if (/does not exist|Cannot find device/.test((err as Error).message)) throw new VmletError('internal', `CNI ADD left no ${ifName} in netns ${ns}`);
      throw err;
    }
  };
  const [routes6] = v6 ? ((await run(['-6'], [`route show dev ${ifName}`, `route flush dev ${ifName}`])) as [IpRoute[]]) : [[]];
  const [links, routes4] = (await run([], wiringBatch(ifName))) as [IpLink[], IpRoute[]];
  const link = links?.[0];
  if (!link) throw new VmletError('internal', `CNI ADD left no ${ifName} in netns ${ns}`);
  return wiringFrom({ netnsName: ns, ifName, cni: o.cni, link, routes: { 4: routes4 ?? [], 6: routes6 ?? [] } });
}

/**
 * Undoes wirePodNetns (so CNI DEL finds eth0 as its plugin left it): removes the tap and the
 * redirect, a legacy bridge if any, puts the addresses back on eth0. Best effort; a missing
 * netns or link is fine.
 */
export async function unwirePodNetns(o: { netnsName: string; ips: PodIp[]; ifName?: string; bridge?: string; tap?: string }): Promise<void> {
  const ns = o.netnsName;
  if (!existsSync(`${NETNS_DIR}/${ns}`)) return;
  const ifName = o.ifName ?? POD_IFNAME;
  const cmds: string[] = [];
  if (o.tap && (await linkInfo(ns, o.tap))) cmds.push(`link del ${o.tap}`);
  if (o.bridge && (await linkInfo(ns, o.bridge))) cmds.push(`link del ${o.bridge}`);
  const eth = await linkInfo(ns, ifName);
  if (eth) {
    const have = new Set((eth.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
    for (const i of o.ips) {
      const prefix = i.cniPrefix ?? i.prefix;
      if (!have.has(`${i.address}/${prefix}`)) cmds.push(`addr add ${i.address}/${prefix} dev ${ifName}${i.family === 6 ? ' nodad' : ''}`);
    }
  }
  if (cmds.length) await ip(['-n', ns, '-force', '-batch', '-'], cmds.join('\n') + '\n').catch(() => undefined);
  if (eth) await execa('tc', ['-n', ns, 'qdisc', 'del', 'dev', ifName, 'ingress'], { reject: false, timeout: 15_000 });
}

/** IPv4 of the state, the one DHCP hands out. */
export function primaryIpv4(ips: PodIp[]): PodIp | undefined {
  return ips.find((i) => i.family === 4 && isIP(i.address) === 4);
}

/** IPv6 of the state, the one DHCPv6 hands out. */
export function primaryIpv6(ips: PodIp[]): PodIp | undefined {
  return ips.find((i) => i.family === 6 && isIP(i.address) === 6);
}
