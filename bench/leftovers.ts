// What VM pods leave on the host, counted independently of vmlet (libvirt, ip, /proc, the
// state dir, CNI's IPAM store), scoped to one benchmark's own pods so that other VM work on the
// node does not count; and the pod cgroups a kubelet makes and removes around its pods.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { netnsName } from '../src/net/netns.js';
import { tapName } from '../src/net/tap.js';
import { hostLayout, joinDirs } from '../src/vm/pod-cgroup.js';
import { virsh } from '../test/helpers/virsh.js';

export interface LeftoverScope {
  stateDir: string;
  /** The CNI bridge only this benchmark's pods use. */
  bridge: string;
  /** The CNI network's name (host-local keeps its leases in /var/lib/cni/networks/<name>). */
  cniNetwork: string;
  /** Libvirt domain names of the benchmark's pods start with this (vmlet-<namespace>-). */
  domainPrefix: string;
  /** Every sandbox id the benchmark's vmlet has made (netns and tap names derive from it). */
  sandboxIds: () => Iterable<string>;
}

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Every file and directory below `dir` but those named in `skip` at its top (0 when it does not exist). */
function entriesBelow(dir: string, skip: string[] = []): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (skip.includes(e.name)) continue;
    n++;
    if (e.isDirectory()) n += entriesBelow(join(dir, e.name));
  }
  return n;
}

/** Live processes' argv (a process gone while read is skipped). */
function processes(): string[][] {
  const out: string[][] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv.length) out.push(argv);
    } catch {
      // exited
    }
  }
  return out;
}

/** Counts by kind, in a fixed order: what a removed pod must not leave behind. */
export function countLeftovers(s: LeftoverScope): Array<[string, number]> {
  const ids = [...s.sandboxIds()];
  const netns = new Set(sh('ip', 'netns', 'list').split('\n').map((l) => l.split(' ')[0]!).filter(Boolean));
  const links = new Set(sh('ip', '-o', 'link', 'show').split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).filter((x): x is string => !!x));
  const onBridge = links.has(s.bridge) ? sh('ip', '-o', 'link', 'show', 'master', s.bridge).split('\n').filter(Boolean).length : 0;
  const procs = processes();
  const exe = (argv: string[]) => argv[0]!.split('/').pop()!;
  const dnsmasq = procs.filter((a) => exe(a) === 'dnsmasq' && a.some((x) => x.startsWith(`--conf-file=${s.stateDir}/`))).length;
  const qemu = procs.filter((a) => exe(a).startsWith('qemu-system') && a.some((x) => x.startsWith(`guest=${s.domainPrefix}`))).length;
  const leaseDir = join('/var/lib/cni/networks', s.cniNetwork);
  const leases = existsSync(leaseDir) ? readdirSync(leaseDir).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')).length : 0;
  return [
    ['libvirt domains', virsh('list', '--all', '--name').split('\n').filter((n) => n.startsWith(s.domainPrefix)).length],
    ['QEMU processes', qemu],
    ['netns', ids.filter((id) => netns.has(netnsName(id))).length],
    ['taps in the host netns', ids.filter((id) => links.has(tapName(id))).length],
    [`veths on ${s.bridge}`, onBridge],
    ['dnsmasq processes', dnsmasq],
    ['IPAM leases', leases],
    // Records, disks and seeds of pods and their containers (pods/<id>/containers/<id>).
    ['state dir pods/ entries', entriesBelow(join(s.stateDir, 'pods'))],
    ['other state dir entries', entriesBelow(s.stateDir, ['pods', 'images'])],
  ];
}

// --------------------------------------------------------------------------- pod cgroups

/** The pod cgroup's directory in each hierarchy vmlet moves pod processes into (cgroupfs path, e.g. /bench/pod1). */
export function podCgroupDirs(path: string): string[] {
  return joinDirs(hostLayout(), path, 'x').map((d) => posix.dirname(d));
}

/** Makes the pod cgroup before RunPodSandbox, as the kubelet does. */
export function makePodCgroup(path: string): void {
  for (const d of podCgroupDirs(path)) mkdirSync(d, { recursive: true });
}

/** Processes still in the pod cgroup or below it (none once its sandbox is removed). */
export function podCgroupProcs(path: string): number {
  const procsBelow = (dir: string): number => {
    if (!existsSync(dir)) return 0;
    let n = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).length;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) n += procsBelow(join(dir, e.name));
    return n;
  };
  return Math.max(0, ...podCgroupDirs(path).map(procsBelow));
}

/** Removes the pod cgroup and the empty ones below it (runc's RemovePath, which the kubelet uses); false if one is busy. */
export function removePodCgroup(path: string): boolean {
  const rm = (dir: string): boolean => {
    if (!existsSync(dir)) return true;
    let ok = true;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) ok = rm(join(dir, e.name)) && ok;
    try {
      rmdirSync(dir);
      return ok;
    } catch {
      return false;
    }
  };
  return podCgroupDirs(path).map(rm).every(Boolean);
}
