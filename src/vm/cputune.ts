// CRI LinuxContainerResources → the VM's CPU tuning (libvirt <cputune>/<numatune>), validated
// here once for CreateContainer and UpdateContainerResources. A container's CPU limit is a CFS
// quota on all its threads; for a VM that is libvirt's global_quota/global_period (the whole
// domain: vCPUs, emulator and I/O threads), so a pod limited to 500m gets half a CPU of time
// whatever its vCPU count. cpu_shares is the request's weight; cpuset_cpus pins every vCPU and
// the emulator threads, as a container's cpuset confines all its threads.
import { readFileSync, existsSync } from 'node:fs';
import { invalidArgument } from '../errors.js';

export interface CpuTune {
  /** cgroup v1 cpu.shares units as the kubelet sends them (2–262144). */
  shares?: number;
  periodUs?: number;
  /** CFS quota in µs per period; undefined = no limit. */
  quotaUs?: number;
  /** Host CPUs every vCPU and the emulator may run on; undefined = all. */
  cpuset?: number[];
  /** Host NUMA nodes the guest's memory must come from; undefined = any. */
  memNodes?: number[];
}

/** The CRI fields this module reads (int64 as decimal strings with longs: String). */
export interface CpuResources {
  cpu_shares?: string | number;
  cpu_period?: string | number;
  cpu_quota?: string | number;
  cpuset_cpus?: string;
  cpuset_mems?: string;
}

// libvirt's accepted ranges (virCgroup, conf/domain_validate): quota/period in µs.
const PERIOD = { min: 1000, max: 1_000_000 };
const QUOTA = { min: 1000, max: 17_592_186_044_415 };
const SHARES = { min: 2, max: 262_144 };
const CPULIST_MAX = 8192;

function int64(v: string | number | undefined): number {
  if (typeof v === 'number') return v;
  return typeof v === 'string' && /^-?\d{1,19}$/.test(v) ? Number(v) : 0;
}

/** "0-3,6" → [0,1,2,3,6]; the kernel's cpulist format. Throws with `what` named. */
export function parseCpuList(text: string, what: string, max: number): number[] {
  const out = new Set<number>();
  const allowed = `a list like "0-3,6" of numbers 0–${max - 1}`;
  for (const part of text.trim().split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part.trim());
    if (!m) throw invalidArgument(`${what}=${JSON.stringify(text)} is invalid: allowed ${allowed}`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi >= max) throw invalidArgument(`${what}=${JSON.stringify(text)} is invalid: allowed ${allowed} (this node has ${max})`);
    for (let i = lo; i <= hi; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/** [0,1,2,3,6] → "0-3,6". */
export function formatCpuList(xs: readonly number[]): string {
  const sorted = [...new Set(xs)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** How many CPU / NUMA node ids the host has (highest online id + 1), from sysfs. */
export function hostTopology(sys = '/sys/devices/system'): { cpus: number; numaNodes: number } {
  const highest = (file: string, dflt: number) => {
    try {
      const ids = parseCpuList(readFileSync(file, 'utf8'), file, CPULIST_MAX);
      return ids.length ? ids[ids.length - 1]! + 1 : dflt;
    } catch {
      return dflt;
    }
  };
  return { cpus: highest(`${sys}/cpu/online`, 1), numaNodes: highest(`${sys}/node/online`, 1) };
}

export function parseCpuTune(res: CpuResources | null | undefined, field: string, host = hostTopology()): CpuTune {
  const tune: CpuTune = {};
  if (!res) return tune;
  const shares = int64(res.cpu_shares);
  if (shares > 0) {
    if (shares < SHARES.min || shares > SHARES.max) throw invalidArgument(`${field}.cpu_shares=${shares} is invalid: allowed ${SHARES.min}–${SHARES.max} (0 = unset)`);
    tune.shares = shares;
  }
  const quota = int64(res.cpu_quota);
  const period = int64(res.cpu_period);
  if (period !== 0 && (period < PERIOD.min || period > PERIOD.max)) {
    throw invalidArgument(`${field}.cpu_period=${period} is invalid: allowed ${PERIOD.min}–${PERIOD.max} µs (0 = default 100000)`);
  }
  if (quota > 0) {
    if (quota < QUOTA.min || quota > QUOTA.max) throw invalidArgument(`${field}.cpu_quota=${quota} is invalid: allowed ${QUOTA.min}–${QUOTA.max} µs, or 0/-1 for no limit`);
    tune.quotaUs = quota;
    tune.periodUs = period || 100_000;
  } else if (period) {
    tune.periodUs = period;
  }
  if (res.cpuset_cpus?.trim()) tune.cpuset = parseCpuList(res.cpuset_cpus, `${field}.cpuset_cpus`, host.cpus);
  if (res.cpuset_mems?.trim()) tune.memNodes = parseCpuList(res.cpuset_mems, `${field}.cpuset_mems`, host.numaNodes);
  return tune;
}

/** True on a cgroup v2 (unified) host, where libvirt writes <shares> to cpu.weight (1–10000). */
export function cgroupV2(root = '/sys/fs/cgroup'): boolean {
  return existsSync(`${root}/cgroup.controllers`);
}

/** cpu.shares → what libvirt's <shares> needs on this host: runc's conversion to cpu.weight on cgroup v2. */
export function hostShares(shares: number, v2 = cgroupV2()): number {
  if (!v2) return shares;
  return 1 + Math.floor(((shares - 2) * 9999) / 262_142);
}
