// The pod cgroup (LinuxPodSandboxConfig.cgroup_parent): where a pod's QEMU and helpers run, so
// the kubelet's pod limits and accounting cover the VM. Why the process is moved after libvirt
// started it, and which controllers it moves in: docs/pod-cgroup.md. Pure path logic first, then
// the few filesystem reads and writes.
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { CgroupDriverSetting } from '../config.js';
import { invalidArgument, VmletError } from '../errors.js';

export type CgroupDriver = 'systemd' | 'cgroupfs';

export const CGROUP_ROOT = '/sys/fs/cgroup';
const FIELD = 'linux.cgroup_parent';
/** The leaves vmlet makes in a pod cgroup: its helpers' (dnsmasq), and a QEMU's when libvirt's name for it is unknown. */
const HELPERS_LEAF = 'vmlet-helpers';
const QEMU_LEAF_PREFIX = 'vmlet-qemu-';
const BIRTH_LEAF_PREFIX = 'vmlet-birth-';

/**
 * v1 controllers a pod's processes join. cpu and cpuset stay libvirt's (vCPU and emulator quota,
 * shares and pinning live in its per-thread cgroups: container-update.ts), devices and freezer
 * too (libvirt's device ACL); a hierarchy that mounts one of those with others stays as well.
 */
const V1_JOIN = ['memory', 'pids', 'hugetlb', 'blkio', 'cpuacct', 'net_cls', 'net_prio', 'perf_event'];
const V1_KEEP = ['cpu', 'cpuset', 'devices', 'freezer'];

export function systemdIsInit(): boolean {
  if (existsSync('/run/systemd/system')) return true;
  try {
    return readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd';
  } catch {
    return false;
  }
}

/** 'auto' is systemd when systemd is PID 1 (what the kubelet then uses), cgroupfs otherwise. */
export function resolveCgroupDriver(setting: CgroupDriverSetting, systemdInit: () => boolean = systemdIsInit): CgroupDriver {
  return setting === 'auto' ? (systemdInit() ? 'systemd' : 'cgroupfs') : setting;
}

/**
 * A systemd slice name → its cgroup path, as runc's ExpandSlice does: each '-' opens a parent
 * slice, so kubepods-burstable-pod1.slice is /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice.
 */
export function expandSlice(slice: string): string {
  const bad = (why: string) => invalidArgument(`${FIELD} ${JSON.stringify(slice)} is not a systemd slice name (${why}); with cgroupDriver systemd it looks like kubepods-burstable-pod<uid>.slice`);
  if (!slice.endsWith('.slice')) throw bad('no .slice suffix');
  if (slice.includes('/')) throw bad('contains /');
  const name = slice.slice(0, -'.slice'.length);
  if (name === '-') return '/';
  if (name === '' || name.startsWith('-') || name.endsWith('-') || name.includes('--')) throw bad('empty part between dashes');
  let path = '';
  let prefix = '';
  for (const part of name.split('-')) {
    prefix += (prefix ? '-' : '') + part;
    path += `/${prefix}.slice`;
  }
  return path;
}

/** The pod cgroup's path below each hierarchy's root, or undefined when cgroup_parent is empty (no pod cgroup: today's behaviour). */
export function podCgroupPath(parent: string | undefined, driver: CgroupDriver): string | undefined {
  if (!parent) return undefined;
  // eslint-disable-next-line no-control-regex -- control characters are what it refuses
  if (/[\x00-\x1f]/.test(parent)) throw invalidArgument(`${FIELD} ${JSON.stringify(parent)} contains control characters`);
  if (driver === 'systemd') return checkNameLengths(parent, expandSlice(parent));
  const parts = parent.split('/').filter(Boolean);
  if (parts.some((p) => p === '.' || p === '..')) throw invalidArgument(`${FIELD} ${JSON.stringify(parent)} has a . or .. component: a cgroup path stays below the cgroup root`);
  if (parts.length === 0) throw invalidArgument(`${FIELD} ${JSON.stringify(parent)} is the cgroup root: a pod needs a cgroup of its own`);
  if (parent.endsWith('.slice') && !parent.includes('/')) {
    throw invalidArgument(`${FIELD} ${JSON.stringify(parent)} is a systemd slice but vmlet's cgroupDriver is cgroupfs: set cgroupDriver: systemd (the kubelet's driver must match the runtime's)`);
  }
  return checkNameLengths(parent, '/' + parts.join('/'));
}

/** Each directory of a cgroup path is a file name: at most 255 bytes (mkdir fails with ENAMETOOLONG past it). */
function checkNameLengths(parent: string, path: string): string {
  const long = path.split('/').find((p) => Buffer.byteLength(p) > 255);
  if (long !== undefined) throw invalidArgument(`${FIELD} ${JSON.stringify(parent.slice(0, 80))}… has a path component of ${Buffer.byteLength(long)} bytes: each is at most 255`);
  return path;
}

export interface CgroupLayout {
  version: 1 | 2;
  /** v1: controller → its hierarchy's mount point (co-mounted controllers share one). v2: unused. */
  v1: Map<string, string>;
  /** v2: the unified mount point. */
  unified?: string;
}

/** The host's cgroup layout from /proc/self/mountinfo: v2 when /sys/fs/cgroup itself is cgroup2 (hybrid hosts are v1, as for the kubelet). */
export function parseMountinfo(text: string): CgroupLayout {
  const v1 = new Map<string, string>();
  let unified: string | undefined;
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const mountPoint = pre.split(' ')[4];
    const [fstype, , opts = ''] = post.split(' ');
    if (!mountPoint) continue;
    if (fstype === 'cgroup2' && mountPoint === CGROUP_ROOT) unified = mountPoint;
    if (fstype !== 'cgroup') continue;
    for (const o of opts.split(',')) {
      if (['rw', 'ro', 'relatime', 'nosuid', 'nodev', 'noexec', 'xattr', 'noprefix', 'clone_children'].includes(o) || o.startsWith('name=') || o.startsWith('release_agent')) continue;
      if (!v1.has(o)) v1.set(o, mountPoint);
    }
  }
  return unified ? { version: 2, v1: new Map(), unified } : { version: 1, v1 };
}

/** The cgroup directories a process of the pod joins: one per v1 hierarchy it moves in, or the one v2 leaf. */
export function joinDirs(layout: CgroupLayout, podPath: string, leaf: string): string[] {
  if (layout.version === 2) return [join(layout.unified!, podPath, leaf)];
  const keep = new Set<string>();
  for (const c of V1_KEEP) {
    const m = layout.v1.get(c);
    if (m) keep.add(m);
  }
  const dirs = new Set<string>();
  for (const c of V1_JOIN) {
    const m = layout.v1.get(c);
    if (m && !keep.has(m)) dirs.add(join(m, podPath, leaf));
  }
  return [...dirs];
}

/**
 * The name of the cgroup libvirt made for a QEMU (e.g. qemu-3-vmlet-ns-pod-1a2b3c4d.libvirt-qemu,
 * or a machined scope), from /proc/<pid>/cgroup. The leaf in the pod cgroup takes the same name:
 * after a libvirtd restart libvirt re-detects QEMU's cgroups and gives up on them (no tuning) when
 * a controller's last path component does not name the machine.
 */
export function libvirtLeafName(procCgroup: string): string | undefined {
  for (const line of procCgroup.split('\n')) {
    const path = line.split(':').slice(2).join(':');
    const leaf = path.split('/').find((p) => p.endsWith('.libvirt-qemu') || (p.startsWith('machine-qemu') && p.endsWith('.scope')));
    if (leaf) return leaf;
  }
  return undefined;
}

/** A leaf placeQemu or helperCgroup makes: libvirt's name for a machine, or vmlet's own. */
const isVmletLeaf = (name: string) => name === HELPERS_LEAF || name.startsWith(QEMU_LEAF_PREFIX) || name.startsWith(BIRTH_LEAF_PREFIX) || libvirtLeafName(`0::/${name}`) !== undefined;

// ------------------------------------------------------------------------------------ fs

let layoutCache: CgroupLayout | undefined;
export function hostLayout(): CgroupLayout {
  layoutCache ??= parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
  return layoutCache;
}

/**
 * Makes `dirs` (and any missing parent, as runc creates a missing cgroup_parent); returns the
 * directories made, deepest last, for removeCreated. On v2 each made level gets its parent's
 * controllers enabled, or a leaf could not use them.
 */
export function makeDirs(dirs: string[]): string[] {
  const made: string[] = [];
  for (const dir of dirs) {
    const missing: string[] = [];
    for (let d = dir; !existsSync(d) && d !== '/'; d = posix.dirname(d)) missing.unshift(d);
    for (const d of missing) {
      mkdirSync(d);
      made.push(d);
      enableControllers(posix.dirname(d));
    }
  }
  return made;
}

function enableControllers(parent: string): void {
  const file = join(parent, 'cgroup.subtree_control');
  if (!existsSync(join(parent, 'cgroup.controllers')) || !existsSync(file)) return;
  const have = readFileSync(join(parent, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
  if (have.length) {
    try {
      writeFileSync(file, have.map((c) => `+${c}`).join(' '));
    } catch {
      // a controller the parent cannot delegate (e.g. threaded): the leaf gets what it can
    }
  }
}

/** Removes what makeDirs made (deepest first) with any empty cgroup below it (a VM's leaf); one still in use stays. */
export function removeCreated(made: string[]): void {
  for (const d of [...made].reverse()) removeTree(d);
}

function removeTree(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeTree(join(dir, e.name));
    rmdirSync(dir);
  } catch {
    // busy or gone
  }
}

/** Moves a process (all its threads) into each dir. */
export function moveProcess(dirs: string[], pid: number): void {
  for (const d of dirs) writeFileSync(join(d, 'cgroup.procs'), String(pid));
}

/** The cgroup.procs files a helper writes its own pid into before exec'ing (src/net/dhcp.ts). */
export const procsFiles = (dirs: string[]): string[] => dirs.map((d) => join(d, 'cgroup.procs'));

export interface Placement {
  /** The pod cgroup's path below each hierarchy's root. */
  pod: string;
  /** Where the process now runs. */
  dirs: string[];
  /** Directories made for it (removeCreated undoes a failed start). */
  made: string[];
}

/**
 * Right after libvirt started a VM: its QEMU (every thread) into a leaf of the pod cgroup named
 * as libvirt's own (libvirtLeafName), undefined when the pod has no cgroup_parent.
 */
export function placeQemu(parent: string | undefined, driver: CgroupDriverSetting, pid: number | undefined, birth: string[] = [], layout: CgroupLayout = hostLayout()): Placement | undefined {
  const pod = podCgroupPath(parent, resolveCgroupDriver(driver));
  if (!pod) return undefined;
  if (pid === undefined) throw new VmletError('internal', 'the VM\'s QEMU does not run: cannot place it in the pod cgroup');
  const procCgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  const leaf = libvirtLeafName(procCgroup) ?? `${QEMU_LEAF_PREFIX}${pid}`;
  const dirs = joinDirs(layout, pod, leaf);
  if (renameBirthLeaf(birth, leaf, procCgroup)) {
    sweepStaleLeaves(dirs, leaf);
    return { pod, dirs, made: [...dirs] };
  }
  const made = makeDirs(dirs);
  try {
    moveProcess(dirs, pid);
  } catch (err) {
    removeCreated(made);
    throw err;
  }
  sweepStaleLeaves(dirs, leaf);
  return { pod, dirs, made };
}

/**
 * Whether a pod VM's QEMU can be born in the pod cgroup (emulator-wrapper.ts): the pod has a
 * cgroup_parent and the host is cgroup v1. Not on v2: there libvirt moves QEMU's threads into
 * threaded cgroups of its own after the exec, which a thread of a process outside libvirt's cgroup
 * cannot enter (the start would fail); QEMU is moved after the start only.
 */
export function canBeBornInPod(parent: string | undefined, driver: CgroupDriverSetting, layout: CgroupLayout = hostLayout()): boolean {
  return layout.version === 1 && podCgroupPath(parent, resolveCgroupDriver(driver)) !== undefined;
}

/** The leaf a QEMU is born in, renamed to libvirt's name for it once known (placeQemu). */
export const birthLeaf = (domain: string): string => `${BIRTH_LEAF_PREFIX}${domain}`;

/**
 * Before such a start: QEMU's birth leaf in each pod cgroup dir it joins, made (with any missing
 * level: removeCreated undoes them) and its cgroup.procs given to QEMU's user, who writes its own
 * pid there (libvirt execs the emulator as that user; placeQemu takes the file back).
 */
export function birthDirs(parent: string | undefined, driver: CgroupDriverSetting, domain: string, owner: { uid: number; gid: number }, layout: CgroupLayout = hostLayout()): Placement | undefined {
  if (!canBeBornInPod(parent, driver, layout)) return undefined;
  const pod = podCgroupPath(parent, resolveCgroupDriver(driver))!;
  const dirs = joinDirs(layout, pod, birthLeaf(domain));
  for (const d of dirs) if (existsSync(d)) removeTree(d); // an earlier start's, left by a crash
  const made = makeDirs(dirs);
  try {
    for (const d of dirs) chownSync(join(d, 'cgroup.procs'), owner.uid, owner.gid);
  } catch (err) {
    removeCreated(made);
    throw err;
  }
  return { pod, dirs, made };
}

/**
 * After a start in the birth leaf: the leaf takes libvirt's name (a rename keeps what was charged
 * to it; a move would not, and v1 no longer moves charges) and root's cgroup.procs again. False
 * when QEMU is not in it (its start did not run the wrapper).
 */
function renameBirthLeaf(birth: string[], leaf: string, procCgroup: string): boolean {
  const name = posix.basename(birth[0] ?? '');
  if (!birth.length || !procCgroup.split('\n').some((l) => l.endsWith(`/${name}`))) return false;
  for (const d of birth) {
    const to = join(posix.dirname(d), leaf);
    if (existsSync(to)) removeTree(to); // an empty leaf of an earlier run of the same name; a busy one makes the rename fail
    renameSync(d, to);
    chownSync(join(to, 'cgroup.procs'), 0, 0);
  }
  return true;
}

/** A VM's leaf outlives its QEMU (libvirt numbers each start anew): empty leaves of earlier runs go; a busy one stays (rmdir refuses it). */
function sweepStaleLeaves(dirs: string[], keep: string): void {
  for (const d of dirs) {
    const parent = posix.dirname(d);
    for (const e of readdirSync(parent, { withFileTypes: true })) {
      if (e.isDirectory() && e.name !== keep && e.name.endsWith('.libvirt-qemu')) removeTree(join(parent, e.name));
    }
  }
}

/** The leaf the pod's helpers (dnsmasq) run in, made if missing; undefined without a cgroup_parent. */
export function helperCgroup(parent: string | undefined, driver: CgroupDriverSetting, layout: CgroupLayout = hostLayout()): Placement | undefined {
  const pod = podCgroupPath(parent, resolveCgroupDriver(driver));
  if (!pod) return undefined;
  const dirs = joinDirs(layout, pod, HELPERS_LEAF);
  return { pod, dirs, made: makeDirs(dirs) };
}

/**
 * At RemovePodSandbox: the leaves vmlet made in the pod cgroup (its VMs', its helpers'), as runc
 * removes a container's cgroup at delete; the pod cgroup itself is the kubelet's. A leaf still in
 * use stays (rmdir refuses it).
 */
export function removePodLeaves(parent: string | undefined, driver: CgroupDriverSetting, layout: CgroupLayout = hostLayout()): void {
  const pod = podCgroupPath(parent, resolveCgroupDriver(driver));
  if (!pod) return;
  for (const d of joinDirs(layout, pod, '')) {
    if (!existsSync(d)) continue;
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory() && isVmletLeaf(e.name)) removeTree(join(d, e.name));
  }
}
