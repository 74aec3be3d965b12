// Stats, network (pods only): the VM tap's counters, which live in the pod netns. The pod's
// dnsmasq runs in that netns, so /proc/<dnsmasq pid>/net/dev lists them without spawning
// anything; `ip -n <netns> -s -j link show <tap>` only when dnsmasq is gone. Reported as the
// guest sees its NIC, named eth0: the tap's tx is what the guest received (rx_*), the tap's rx
// what the guest sent (tx_*).
import { readFileSync } from 'node:fs';
import { dhcpPid } from '../net/dhcp.js';
import { ip } from '../net/pod-network.js';
import type { PodNetworkState } from '../net/index.js';
import type { PodManager } from './manager.js';
import { nowMs, type SandboxRecord } from './records.js';

/** The interface name the stats give the VM's NIC: the pod's eth0, as the guest sees it. */
export const POD_INTERFACE = 'eth0';

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

export interface InterfaceStats extends LinkCounters {
  name: string;
}

export interface NetworkStats {
  /** When the counters were read: ms since the epoch. */
  atMs: number;
  /** The pod's interfaces, the default (eth0) first. */
  interfaces: InterfaceStats[];
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

/** A ready pod's network as its guest sees it; undefined without a network or a running VM. */
export async function podNetwork(m: PodManager, s: SandboxRecord): Promise<NetworkStats | undefined> {
  const net = m.networks.get(s.id);
  if (!net || s.state !== 'ready') return undefined;
  const tap = await readTapCounters(net);
  if (!tap) return undefined;
  return { atMs: nowMs(), interfaces: [{ name: POD_INTERFACE, ...guestView(tap) }] };
}
