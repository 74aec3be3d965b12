// The pod's DHCP server: one dnsmasq per pod, inside the pod netns, serving only the VM's MAC
// on the pod bridge with a static lease (pod IP, CNI gateway, DNS from the sandbox's
// dns_config, hostname, MTU). Why dnsmasq and which flags: see README.md in this directory.
//
// dnsmasq daemonises itself (fork, setsid, closes inherited fds, stdio → /dev/null) and its
// parent exits only once the child has bound its sockets, reporting startup errors through its
// exit code: so `nsenter --net=<netns> dnsmasq --conf-file=…` returning 0 means "serving". It
// outlives vmlet; on vmlet start ensureDhcp() checks the pid file's process is alive, is
// dnsmasq with this pod's config file and sits in this pod's netns, and starts it otherwise.
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../log.js';
import { VmletError } from '../errors.js';
import { atomicWrite } from '../util/atomic-write.js';
import { inSubnet, prefixToNetmask } from './ip-math.js';
import { NETNS_DIR } from './netns.js';

export interface DhcpRoute {
  /** CIDR, e.g. 10.0.0.0/8 or 0.0.0.0/0. */
  dst: string;
  /** Next hop; absent = on-link. */
  gw?: string;
}

export interface DhcpLease {
  /** Interface dnsmasq serves (the VM's tap; it may not exist yet: dnsmasq binds dynamically). */
  iface: string;
  mac: string;
  /** The IPv4 lease; absent on an IPv6-only pod. */
  ip?: string;
  prefix: number;
  /** The DHCPv6 lease (with router advertisements for its prefix, router lifetime 0). */
  ipv6?: { address: string; prefix: number };
  /** IPv6 DNS servers (DHCPv6 option 23). */
  dnsServers6?: string[];
  gateway?: string;
  /** Extra IPv4 routes besides the default one (sent as option 121 with the default route). */
  routes: DhcpRoute[];
  hostname?: string;
  dnsServers: string[];
  searches: string[];
  mtu?: number;
  /** 'infinite' (default): the guest never renews, so it never needs a route to the server. */
  leaseTime?: 'infinite' | number;
  /** The server's own address on `iface` (a link-local /32), for the renewal route. */
  serverAddress?: string;
}

export interface DhcpFiles {
  conf: string;
  pid: string;
  log: string;
}

export function dhcpFiles(stateDir: string): DhcpFiles {
  return { conf: join(stateDir, 'dnsmasq.conf'), pid: join(stateDir, 'dnsmasq.pid'), log: join(stateDir, 'dnsmasq.log') };
}

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME_RE = new RegExp(`^${LABEL}$`);
const DOMAIN_RE = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);

function checkPath(p: string): string {
  if (/[\s,#]/.test(p)) throw new VmletError('internal', `dnsmasq cannot take the path ${JSON.stringify(p)} (whitespace, ',' or '#')`);
  return p;
}

const isDefault = (dst: string) => dst === '0.0.0.0/0' || dst === 'default';

/** The classless static routes (option 121) the guest needs, or [] when option 3 alone does. */
export function classlessRoutes(l: DhcpLease): DhcpRoute[] {
  if (l.ip === undefined) return [];
  const extra = l.routes.filter((r) => !isDefault(r.dst) && isIP(r.dst.split('/')[0] ?? '') === 4);
  const gwOffLink = l.gateway !== undefined && !inSubnet(l.gateway, l.ip, l.prefix);
  const renewRoute = l.leaseTime !== undefined && l.leaseTime !== 'infinite' && l.serverAddress !== undefined;
  if (extra.length === 0 && !gwOffLink && !renewRoute) return [];
  const out: DhcpRoute[] = [];
  // Option 121 replaces option 3 (RFC 3442), so the default route goes in as well.
  if (gwOffLink && l.gateway) out.push({ dst: `${l.gateway}/32` });
  if (renewRoute && l.serverAddress) out.push({ dst: `${l.serverAddress}/32` });
  out.push(...extra);
  const def = l.routes.find((r) => isDefault(r.dst))?.gw ?? l.gateway;
  if (def) out.push({ dst: '0.0.0.0/0', gw: def });
  const seen = new Set<string>();
  return out.filter((r) => !seen.has(r.dst) && seen.add(r.dst));
}

/** dnsmasq's config file for one pod (every line is a long option without its leading --). */
export function dnsmasqConf(l: DhcpLease, files: DhcpFiles, log?: Logger): string {
  if (l.ip !== undefined && isIP(l.ip) !== 4) throw new VmletError('internal', `DHCP: pod IP ${JSON.stringify(l.ip)} is not IPv4`);
  if (l.ipv6 && isIP(l.ipv6.address) !== 6) throw new VmletError('internal', `DHCPv6: pod IP ${JSON.stringify(l.ipv6.address)} is not IPv6`);
  if (l.ip === undefined && !l.ipv6) throw new VmletError('internal', 'DHCP: the pod has no IP address to hand out');
  const lease = l.leaseTime === undefined || l.leaseTime === 'infinite' ? 'infinite' : `${Math.max(120, Math.floor(l.leaseTime))}`;
  let hostname = l.hostname;
  if (hostname !== undefined && !HOSTNAME_RE.test(hostname)) {
    log?.warn({ hostname }, 'DHCP: hostname is not a valid DNS label, not sent');
    hostname = undefined;
  }
  const searches = l.searches.filter((s) => {
    const ok = DOMAIN_RE.test(s) && s.length <= 253;
    if (!ok) log?.warn({ search: s }, 'DHCP: search domain is not a valid domain name, not sent');
    return ok;
  });
  const servers = l.dnsServers.filter((s) => isIP(s) === 4);
  const servers6 = [...(l.dnsServers6 ?? []), ...l.dnsServers].filter((s) => isIP(s) === 6);
  const addrs = [...(l.ip !== undefined ? [l.ip] : []), ...(l.ipv6 ? [`[${l.ipv6.address}]`] : [])];
  const lines = [
    '# vmlet: DHCP for one pod VM (generated; see src/net/dhcp.ts)',
    `pid-file=${checkPath(files.pid)}`,
    `log-facility=${checkPath(files.log)}`,
    'log-dhcp',
    'port=0', // no DNS
    'no-resolv',
    'no-hosts',
    `interface=${l.iface}`,
    // The tap comes and goes with each QEMU process: bind-dynamic follows it (bind-interfaces
    // refuses to start without it).
    'bind-dynamic',
    'dhcp-authoritative',
    'leasefile-ro', // the lease is static: nothing to remember across restarts
    'no-ping',
    `dhcp-host=${l.mac},${addrs.join(',')}${hostname ? `,${hostname}` : ''},${lease}`,
    'dhcp-ignore=tag:!known', // answer the VM's MAC only
  ];
  if (l.ip !== undefined) {
    // The tap only has a link-local /32: shared-network (by that address, which works before
    // the tap exists) lets dnsmasq serve the pod subnet there.
    lines.push(`shared-network=${l.serverAddress ?? l.iface},${l.ip}`);
    lines.push(`dhcp-range=${l.ip},static,${prefixToNetmask(l.prefix)}`);
    if (l.gateway) lines.push(`dhcp-option=option:router,${l.gateway}`);
    const cl = classlessRoutes(l);
    if (cl.length) lines.push(`dhcp-option-force=option:classless-static-route,${cl.map((r) => `${r.dst},${r.gw ?? '0.0.0.0'}`).join(',')}`);
    if (servers.length) lines.push(`dhcp-option=option:dns-server,${servers.join(',')}`);
    if (searches.length) {
      lines.push(`dhcp-option-force=option:domain-search,${searches.join(',')}`);
      lines.push(`dhcp-option-force=option:domain-name,${searches[0]}`);
    }
    if (l.mtu) lines.push(`dhcp-option-force=option:mtu,${l.mtu}`);
  }
  if (l.ipv6) {
    // RAs announce the prefix on-link and "managed" (take the address from DHCPv6), with router
    // lifetime 0: the pod has no router of its own to offer, the default route is the CNI
    // gateway's and reaches the guest through the seed's network-config.
    lines.push(
      `dhcp-range=${l.ipv6.address},static,${l.ipv6.prefix},${lease}`,
      'enable-ra',
      `ra-param=${l.iface},${l.mtu ? `mtu:${l.mtu},` : ''}60,0`,
    );
    if (servers6.length) lines.push(`dhcp-option=option6:dns-server,${servers6.map((s) => `[${s}]`).join(',')}`);
    if (searches.length) lines.push(`dhcp-option=option6:domain-search,${searches.join(',')}`);
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------- process

function dnsmasqBinary(): string {
  for (const p of ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq', '/sbin/dnsmasq']) if (existsSync(p)) return p;
  return 'dnsmasq';
}

function readPid(file: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** True when `pid` is a live dnsmasq started with this config file (and, if given, in that netns). */
export function isOurDnsmasq(pid: number, files: DhcpFiles, netnsName?: string): boolean {
  if (!alive(pid)) return false;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  const exe = argv[0]?.split('/').pop();
  if (exe !== 'dnsmasq' || !argv.includes(`--conf-file=${files.conf}`)) return false;
  if (netnsName) {
    try {
      return statSync(`/proc/${pid}/ns/net`).ino === statSync(`${NETNS_DIR}/${netnsName}`).ino;
    } catch {
      return false;
    }
  }
  return true;
}

/** The pid of this pod's running dnsmasq, if any. */
export function dhcpPid(files: DhcpFiles, netnsName?: string): number | undefined {
  const pid = readPid(files.pid);
  return pid !== undefined && isOurDnsmasq(pid, files, netnsName) ? pid : undefined;
}

/**
 * Writes the config and starts dnsmasq in the netns; resolves once it serves. Returns its pid.
 * `sync` false: the caller syncs the config itself (with the pod's other files, at once).
 */
export async function startDhcp(netnsName: string, lease: DhcpLease, files: DhcpFiles, log?: Logger, cgroupProcs: string[] = [], sync = true): Promise<number> {
  // Durable: dnsmasq is started again from this file after a reboot or a vmlet restart.
  await atomicWrite(files.conf, dnsmasqConf(lease, files, log), 0o644, { sync });
  return launch(netnsName, files, log, cgroupProcs);
}

/**
 * `sh -c CGEXEC vmlet-cgexec <cgroup.procs files…> -- cmd…`: the shell joins the pod's cgroups
 * before exec'ing, so dnsmasq and the daemon it forks are born there (never charged elsewhere).
 */
const CGEXEC = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

async function launch(netnsName: string, files: DhcpFiles, log?: Logger, cgroupProcs: string[] = []): Promise<number> {
  rmSync(files.pid, { force: true });
  const t0 = performance.now();
  // nsenter joins the netns only; `ip netns exec` also makes a mount namespace and remounts /sys
  // for it, which dnsmasq does not read (its /proc/sys/net is the netns' own): 2-3x the start.
  const cmd = ['nsenter', `--net=${NETNS_DIR}/${netnsName}`, dnsmasqBinary(), `--conf-file=${files.conf}`];
  const [file, ...args] = cgroupProcs.length ? ['sh', '-c', CGEXEC, 'vmlet-cgexec', ...cgroupProcs, '--', ...cmd] : cmd;
  const r = await execa(file!, args, {
    stdin: 'ignore',
    reject: false,
    timeout: 15_000,
    cleanup: false, // the daemon must outlive vmlet
  });
  if (r.exitCode !== 0) {
    const why = [String(r.stderr ?? '').trim(), String(r.stdout ?? '').trim()].filter(Boolean).join('; ') || `exit code ${r.exitCode}`;
    throw new VmletError('internal', `DHCP server (dnsmasq) in netns ${netnsName} did not start: ${why}`);
  }
  const pid = readPid(files.pid);
  if (pid === undefined || !isOurDnsmasq(pid, files)) {
    throw new VmletError('internal', `DHCP server (dnsmasq) in netns ${netnsName} started but ${files.pid} names no running dnsmasq; see ${files.log}`);
  }
  log?.debug({ pid, netns: netnsName, ms: Math.round(performance.now() - t0) }, 'DHCP server started');
  return pid;
}

/** Re-attach after a vmlet restart: keeps a running dnsmasq, starts it again from its config otherwise. */
export async function ensureDhcp(netnsName: string, files: DhcpFiles, log?: Logger, cgroupProcs: string[] = []): Promise<{ pid: number; started: boolean }> {
  const pid = dhcpPid(files, netnsName);
  if (pid !== undefined) return { pid, started: false };
  if (!existsSync(files.conf)) throw new VmletError('internal', `DHCP server config ${files.conf} is missing`);
  const stale = readPid(files.pid);
  if (stale !== undefined && isOurDnsmasq(stale, files)) {
    // Ours but in the wrong netns (the netns was recreated): replace it.
    await stopPid(stale);
  }
  return { pid: await launch(netnsName, files, log, cgroupProcs), started: true };
}

async function stopPid(pid: number): Promise<void> {
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  send('SIGTERM');
  const deadline = Date.now() + 3000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (alive(pid)) send('SIGKILL');
}

/** Stops this pod's dnsmasq (if running) and removes its pid file. Idempotent. */
export async function stopDhcp(files: DhcpFiles, log?: Logger): Promise<void> {
  const pid = readPid(files.pid);
  if (pid !== undefined && isOurDnsmasq(pid, files)) {
    await stopPid(pid);
    log?.debug({ pid }, 'DHCP server stopped');
  }
  rmSync(files.pid, { force: true });
}
