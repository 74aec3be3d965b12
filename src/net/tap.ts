// The VM's tap in the pod netns, joined to the CNI interface by tc redirects (Kata Containers'
// default), not by a bridge: every frame that arrives on eth0 goes out of the tap to the guest,
// and every frame the guest sends goes out of eth0, except the few the pod's own DHCP/RA server
// must answer. Nothing in the pod learns MAC addresses, so a hairpin-mode node bridge that
// reflects the guest's broadcasts back into the pod cannot misdirect the guest's traffic (it did
// with a learning bridge: docs/networking.md).
//
// libvirt creates the tap in the host netns (the only place libvirtd can reach) when the domain
// starts; attachTap() moves it into the pod netns, gives it the DHCP server's link-local
// addresses and installs the filters. Each QEMU process makes a new tap, so this runs after
// every domain start; the filters on eth0 name the tap by ifindex and are replaced each time.
import { VmletError } from '../errors.js';
import { ip, linkInfo, type PodIp } from './pod-network.js';
import { ipv6Network } from './ip-math.js';
import { execa } from 'execa';

/** The DHCP server's address on the tap: link-local, so it never clashes with a pod subnet. */
export const DHCP_SERVER_ADDRESS = '169.254.75.10';

/** The host-netns name libvirt gives the tap before it moves: `vmt-` + 11 id chars (IFNAMSIZ 15). */
export function tapName(sandboxId: string): string {
  const id = sandboxId.replace(/[^A-Za-z0-9]/g, '').slice(0, 11);
  if (!id) throw new VmletError('internal', `tapName: no usable characters in id ${JSON.stringify(sandboxId)}`);
  return `vmt-${id}`;
}

export interface TapWiring {
  netnsName: string;
  /** The CNI interface in the pod netns (eth0). */
  ifName: string;
  tap: string;
  /** The tap's own MAC (the pod side of the link; the guest has eth0's MAC). */
  tapMac: string;
  ips: PodIp[];
  /** Set on pods wired by vmlet before tc redirects (a bridge in the netns): the tap joins it. */
  bridge?: string;
  /** eth0's MTU, given to the tap (libvirt set it already, except on a pool VM's tap: podvm-pool.ts). */
  mtu?: number;
}

/** fe80::/64 address from a MAC (modified EUI-64), the tap's link-local for RAs and DHCPv6. */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((x) => Number.parseInt(x, 16));
  if (b.length !== 6 || b.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new VmletError('internal', `not a MAC address: ${mac}`);
  const e = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const groups = [0, 2, 4, 6].map((i) => ((e[i]! << 8) | e[i + 1]!).toString(16));
  return `fe80::${groups.join(':')}`;
}

/** The IPv6 prefixes the pod's RA/DHCPv6 serves: each pod address's prefix, when it is a subnet. */
export function servedIpv6Prefixes(ips: PodIp[]): Array<{ network: string; prefix: number }> {
  const seen = new Set<string>();
  const out: Array<{ network: string; prefix: number }> = [];
  for (const i of ips) {
    if (i.family !== 6 || i.prefix >= 128) continue;
    const network = ipv6Network(i.address, i.prefix);
    if (!seen.has(`${network}/${i.prefix}`)) out.push({ network, prefix: i.prefix });
    seen.add(`${network}/${i.prefix}`);
  }
  return out;
}

/**
 * What makes a tap (already in the pod netns) the guest's link: `ip -batch` lines (address,
 * link-local, prefixes for RA, up) and `tc -batch` lines (eth0 → tap; tap → eth0 except what
 * the pod answers itself). Pure, so the rule set is unit-tested.
 */
export function tapCommands(w: TapWiring): { ip: string[]; tc: string[] } {
  const ipLines = [
    `link set ${w.tap} down`,
    `link set ${w.tap} address ${w.tapMac} addrgenmode none${w.mtu ? ` mtu ${w.mtu}` : ''}`,
    `addr replace ${DHCP_SERVER_ADDRESS}/32 dev ${w.tap}`,
  ];
  const v6 = servedIpv6Prefixes(w.ips);
  if (v6.length) {
    ipLines.push(`addr replace ${linkLocalFromMac(w.tapMac)}/64 dev ${w.tap} nodad`);
    // dnsmasq builds RAs and DHCPv6 replies from the prefixes on the interface it serves; the
    // subnet-router anycast address gives it the prefix without taking any host's address.
    for (const p of v6) ipLines.push(`addr replace ${p.network}/${p.prefix} dev ${w.tap} nodad noprefixroute`);
  }
  ipLines.push(`link set ${w.tap} up`);

  const pass = 'flowid ffff:1'; // a u32 match without an action ends classification: the frame goes up the tap's own stack
  const tcLines = [
    `qdisc replace dev ${w.ifName} ingress`,
    `filter replace dev ${w.ifName} parent ffff: prio 1 handle 800::800 protocol all u32 match u32 0 0 action mirred egress redirect dev ${w.tap}`,
    `qdisc add dev ${w.tap} ingress`,
    // Frames to the tap's own MAC (replies to the pod's DHCP server, NDP for its link-local).
    `filter add dev ${w.tap} parent ffff: prio 1 protocol all u32 match ether dst ${w.tapMac} ${pass}`,
    // DHCPv4 to the server port.
    `filter add dev ${w.tap} parent ffff: prio 2 protocol ip u32 match ip protocol 17 0xff match ip dport 67 0xffff ${pass}`,
  ];
  if (v6.length) {
    tcLines.push(
      // Router solicitations (ICMPv6 type 133) and DHCPv6 to the server port.
      `filter add dev ${w.tap} parent ffff: prio 3 protocol ipv6 u32 match ip6 protocol 58 0xff match u8 133 0xff at 40 ${pass}`,
      `filter add dev ${w.tap} parent ffff: prio 4 protocol ipv6 u32 match ip6 protocol 17 0xff match ip6 dport 547 0xffff ${pass}`,
    );
  }
  tcLines.push(`filter add dev ${w.tap} parent ffff: prio 9 protocol all u32 match u32 0 0 action mirred egress redirect dev ${w.ifName}`);
  return { ip: ipLines, tc: tcLines };
}

async function tc(netnsName: string, lines: string[]): Promise<void> {
  const r = await execa('tc', ['-n', netnsName, '-batch', '-'], { input: lines.join('\n') + '\n', reject: false, timeout: 15_000 });
  if (r.exitCode !== 0) {
    throw new VmletError('internal', `tc in netns ${netnsName} failed: ${String(r.stderr ?? '').trim() || `exit code ${r.exitCode}`}`);
  }
}

/**
 * Whether the tap in the pod netns is already wired: up, eth0's redirect points at it and its
 * own redirect (installed last) points at eth0.
 */
async function isWired(w: TapWiring, flags: string[] | undefined): Promise<boolean> {
  if (!flags?.includes('UP')) return false;
  const redirects = async (dev: string, to: string) => {
    const r = await execa('tc', ['-n', w.netnsName, 'filter', 'show', 'dev', dev, 'ingress'], { reject: false, timeout: 15_000 });
    return r.exitCode === 0 && String(r.stdout).includes(`Redirect to device ${to})`);
  };
  return (await redirects(w.ifName, w.tap)) && (await redirects(w.tap, w.ifName));
}

/**
 * The whole attach of a tap that is where libvirt left it (host netns), in one process start
 * (`sh` running `ip link set netns`, `ip -batch`, `tc -batch`) instead of five from vmlet: each
 * costs a few ms of StartContainer from a Node process of vmlet's size. False when any step
 * failed (the tap was elsewhere, or a command failed): attachTap's checked path then finds
 * where the tap is and wires it afresh, or says what is wrong.
 */
const MOVE_AND_WIRE = 'ip link set "$1" netns "$2" || exit; printf %s "$3" | ip -n "$2" -batch - && printf %s "$4" | tc -n "$2" -batch -';

async function moveAndWire(w: TapWiring): Promise<boolean> {
  const c = tapCommands(w);
  const r = await execa('sh', ['-c', MOVE_AND_WIRE, 'vmlet-attach-tap', w.tap, w.netnsName, c.ip.join('\n') + '\n', c.tc.join('\n') + '\n'], { stdin: 'ignore', reject: false, timeout: 15_000 });
  return r.exitCode === 0;
}

/**
 * Moves the VM's tap from the host netns into the pod netns and joins it to eth0. Call right
 * after the domain starts (and again on vmlet start: it is idempotent). Returns 'moved' (was in
 * the host netns) or 'attached' (already in the pod netns; made sure it is wired); throws when
 * the tap is in neither (the domain is not running). `fresh`: the domain has just started, so
 * its tap is most likely still in the host netns (the one-process path is tried first).
 */
export async function attachTap(w: TapWiring, o: { fresh?: boolean } = {}): Promise<'moved' | 'attached'> {
  if (o.fresh && !w.bridge && (await moveAndWire(w))) return 'moved';
  const inPod = await linkInfo(w.netnsName, w.tap);
  let moved = false;
  if (!inPod) {
    const inHost = await linkInfo(undefined, w.tap);
    if (!inHost) throw new VmletError('internal', `tap ${w.tap} is neither in the host netns nor in ${w.netnsName}: is the domain running?`);
    await ip(['link', 'set', w.tap, 'netns', w.netnsName]);
    moved = true;
  }
  const flags = inPod?.flags;
  if (w.bridge) {
    // A pod wired before tc redirects: its tap goes back on the bridge, as then.
    if (moved || inPod?.master !== w.bridge || !flags?.includes('UP')) await ip(['-n', w.netnsName, 'link', 'set', w.tap, 'master', w.bridge, 'up']);
    return moved ? 'moved' : 'attached';
  }
  if (!moved && (await isWired(w, flags))) return 'attached';
  const c = tapCommands(w);
  // A tap found half-wired (vmlet stopped mid-way) starts its filters afresh.
  if (!moved) await execa('tc', ['-n', w.netnsName, 'qdisc', 'del', 'dev', w.tap, 'ingress'], { reject: false, timeout: 15_000 });
  await ip(['-n', w.netnsName, '-batch', '-'], c.ip.join('\n') + '\n');
  await tc(w.netnsName, c.tc);
  return moved ? 'moved' : 'attached';
}
