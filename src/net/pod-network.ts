// Pod wiring: after CNI ADD gave the pod netns an `eth0` with the pod IP, the IP moves to the
// VM. eth0 loses its addresses and routes (kept in the state), joins a bridge `br0` created in
// the netns, and the VM's tap joins the same bridge. br0 carries only a link-local /32 for the
// DHCP server (as KubeVirt does); the pod IP belongs to the guest, the gateway to the host.
//
// The tap: libvirt creates it in the host netns (`<interface type='ethernet'>`, the only place
// libvirtd can reach), and attachTap() moves it into the pod netns right after the domain
// starts, while QEMU holds its fd. See README.md for the measurements behind this choice.
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { execa } from 'execa';
import type { CniResult } from './cni.js';
import { sandboxIps } from './cni.js';
import { NETNS_DIR } from './netns.js';

export const POD_IFNAME = 'eth0';
export const POD_BRIDGE = 'br0';
/** The DHCP server's address on br0: link-local, so it never clashes with a pod subnet. */
export const DHCP_SERVER_ADDRESS = '169.254.75.10';

export interface PodIp {
  family: 4 | 6;
  address: string;
  prefix: number;
  gateway?: string;
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
  /** eth0's own MAC (the CNI side keeps it; the VM has its own). */
  ifMac: string;
}

/** The host-netns name libvirt gives the tap before it moves: `vmt-` + 11 id chars (IFNAMSIZ 15). */
export function tapName(sandboxId: string): string {
  const id = sandboxId.replace(/[^A-Za-z0-9]/g, '').slice(0, 11);
  if (!id) throw new Error(`tapName: no usable characters in id ${JSON.stringify(sandboxId)}`);
  return `vmt-${id}`;
}

// ---------------------------------------------------------------------------------- ip(8)

export async function ip(args: string[], input?: string): Promise<string> {
  const r = await execa('ip', args, { ...(input !== undefined ? { input } : { stdin: 'ignore' }), reject: false, timeout: 15_000 });
  if (r.exitCode !== 0) {
    throw new Error(`ip ${args.join(' ')} failed: ${String(r.stderr ?? '').trim() || `exit code ${r.exitCode}`}`);
  }
  return String(r.stdout ?? '');
}

interface IpAddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
  scope?: string;
}
interface IpLink {
  ifname?: string;
  mtu?: number;
  address?: string;
  master?: string;
  addr_info?: IpAddrInfo[];
}
interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  type?: string;
}

async function ipJson<T>(args: string[]): Promise<T> {
  const out = await ip(['-j', ...args]);
  return (out.trim() ? JSON.parse(out) : []) as T;
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

/**
 * Moves the pod IP off eth0 and puts eth0 on a new bridge. Records the IPs (from the CNI
 * result, completed from what is on eth0), the routes via eth0, and eth0's MTU.
 */
export async function wirePodNetns(o: { netnsName: string; cni: CniResult; ifName?: string; bridge?: string; serverAddress?: string }): Promise<Wiring> {
  const ns = o.netnsName;
  const ifName = o.ifName ?? POD_IFNAME;
  const bridge = o.bridge ?? POD_BRIDGE;
  const link = await linkInfo(ns, ifName);
  if (!link) throw new Error(`CNI ADD left no ${ifName} in netns ${ns}`);
  const mtu = link.mtu ?? 1500;
  const ifMac = link.address ?? '';
  const onLink = (link.addr_info ?? []).filter((a) => a.scope !== 'link' && a.scope !== 'host' && a.local && a.prefixlen !== undefined);

  const routes: PodRoute[] = [];
  for (const family of [4, 6] as const) {
    const rs = await ipJson<IpRoute[]>(['-n', ns, `-${family}`, 'route', 'show', 'dev', ifName]);
    for (const r of rs) {
      if (r.protocol === 'kernel' || (r.type && r.type !== 'unicast')) continue; // prefix routes come with the address
      if (family === 6 && r.dst?.startsWith('fe80:')) continue;
      routes.push({ family, dst: normDst(r.dst, family), ...(r.gateway ? { gw: r.gateway } : {}) });
    }
  }

  // IPs: what the CNI result gives eth0; if it lists none, what is on eth0.
  const fromResult = sandboxIps(o.cni, ifName);
  let ips: PodIp[] = fromResult.map((i) => ({ family: i.family, address: i.address, prefix: i.prefix, ...(i.gateway ? { gateway: i.gateway } : {}) }));
  if (ips.length === 0) {
    ips = onLink.map((a) => ({ family: a.family === 'inet6' ? 6 : 4, address: a.local!, prefix: a.prefixlen! }));
  }
  for (const i of ips) {
    if (i.gateway) continue;
    const def = routes.find((r) => r.family === i.family && (r.dst === '0.0.0.0/0' || r.dst === '::/0') && r.gw);
    if (def?.gw) i.gateway = def.gw;
  }
  if (!ips.some((i) => i.family === 4)) throw new Error(`CNI gave ${ifName} in netns ${ns} no IPv4 address (vmlet's DHCP serves IPv4 only)`);

  // One ip(8) batch: flush eth0, make the bridge (MAC pinned to eth0's so it never changes as
  // ports come and go; no STP, no forward delay; no IPv6 link-local chatter), enslave eth0.
  const serverAddr = o.serverAddress ?? DHCP_SERVER_ADDRESS;
  if (routes.some((r) => r.family === 6)) await ip(['-n', ns, '-6', 'route', 'flush', 'dev', ifName]);
  const batch = [
    ...(routes.some((r) => r.family === 4) ? [`route flush dev ${ifName}`] : []),
    `addr flush dev ${ifName}`,
    `link add ${bridge} type bridge stp_state 0 forward_delay 0`,
    `link set ${bridge} ${ifMac ? `address ${ifMac} ` : ''}mtu ${mtu} addrgenmode none`,
    `link set ${ifName} master ${bridge} addrgenmode none`,
    `addr add ${serverAddr}/32 dev ${bridge}`,
    `link set ${bridge} up`,
  ];
  await ip(['-n', ns, '-batch', '-'], batch.join('\n') + '\n');
  return { ips, routes, mtu, ifMac };
}

/**
 * Undoes wirePodNetns (so CNI DEL finds eth0 as its plugin left it): removes the bridge and any
 * tap, puts the addresses back on eth0. Best effort; a missing netns or link is fine.
 */
export async function unwirePodNetns(o: { netnsName: string; ips: PodIp[]; ifName?: string; bridge?: string; tap?: string }): Promise<void> {
  const ns = o.netnsName;
  if (!existsSync(`${NETNS_DIR}/${ns}`)) return;
  const ifName = o.ifName ?? POD_IFNAME;
  const bridge = o.bridge ?? POD_BRIDGE;
  const cmds: string[] = [];
  if (o.tap && (await linkInfo(ns, o.tap))) cmds.push(`link del ${o.tap}`);
  if (await linkInfo(ns, bridge)) cmds.push(`link del ${bridge}`);
  const eth = await linkInfo(ns, ifName);
  if (eth) {
    const have = new Set((eth.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
    for (const i of o.ips) if (!have.has(`${i.address}/${i.prefix}`)) cmds.push(`addr add ${i.address}/${i.prefix} dev ${ifName}`);
  }
  if (cmds.length) await ip(['-n', ns, '-force', '-batch', '-'], cmds.join('\n') + '\n').catch(() => undefined);
}

// ---------------------------------------------------------------------------------- tap

/**
 * Moves the VM's tap from the host netns into the pod netns and plugs it into the bridge. Call
 * right after the domain starts (and again on vmlet start: it is idempotent). Returns
 * 'moved' (was in the host netns), 'attached' (already in the pod netns; made sure it is on the
 * bridge and up); throws when the tap is in neither (the domain is not running).
 */
export async function attachTap(s: { tap: string; bridge: string; netnsName: string }, netnsName: string = s.netnsName): Promise<'moved' | 'attached'> {
  const inPod = await linkInfo(netnsName, s.tap);
  if (inPod) {
    if (inPod.master !== s.bridge || !(inPod as { flags?: string[] }).flags?.includes('UP')) {
      await ip(['-n', netnsName, 'link', 'set', s.tap, 'master', s.bridge, 'up']);
    }
    return 'attached';
  }
  const inHost = await linkInfo(undefined, s.tap);
  if (!inHost) throw new Error(`tap ${s.tap} is neither in the host netns nor in ${netnsName}: is the domain running?`);
  await ip(['link', 'set', s.tap, 'netns', netnsName]);
  await ip(['-n', netnsName, 'link', 'set', s.tap, 'master', s.bridge, 'up']);
  return 'moved';
}

/** IPv4 of the state, the one DHCP hands out. */
export function primaryIpv4(ips: PodIp[]): PodIp | undefined {
  return ips.find((i) => i.family === 4 && isIP(i.address) === 4);
}
