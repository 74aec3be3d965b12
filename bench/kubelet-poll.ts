// What the benchmarks that hold pods for a while share (density.ts, load.ts): the kubelet's
// polling of the runtime with every call's latency recorded, percentiles, and the /proc figures
// of a process (RSS, PSS, open fds, threads, CPU ticks).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import { call } from '../test/helpers/vmlet.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A "Key: <number>" field of /proc/<pid>/status (VmRSS and VmHWM in KiB, Threads a count). */
export const procStatus = (pid: number, key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

/** Proportional set size (KiB): shared pages divided among the processes that map them. */
export const pss = (pid: number): number => Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);

/** utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux: 10 ms each). */
export function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

/** The process's open file descriptors. */
export const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/**
 * Watches on the process's inotify instances (one "inotify wd:" line each in fdinfo). libuv
 * makes one instance per event loop with the first fs.watch and keeps it; the watches come and go.
 */
export function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:inotify') continue;
      n += readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').split('\n').filter((l) => l.startsWith('inotify wd:')).length;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/** The process's open fds by what they are: socket, pipe, anon_inode:[eventfd], …, or the file's path. */
export function fdKinds(pid: number): Map<string, number> {
  const kinds = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const kind = target.replace(/^(socket|pipe):\[\d+\]$/, '$1');
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  return kinds;
}

export const loadAvg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** The p-th percentile (nearest rank) of ascending `sorted`. */
export function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** Latencies (ms) and failures (by gRPC code name) of the calls made, per method. */
export class CallStats {
  readonly ms = new Map<string, number[]>();
  readonly failures = new Map<string, Map<string, number>>();

  /** Calls `method` on `client`, records how long it took; a failure is recorded and rethrown. */
  async timed<T = unknown>(client: unknown, method: string, req: object): Promise<T> {
    const t0 = performance.now();
    try {
      const res = await call<object, T>(client, method, req);
      this.record(method, performance.now() - t0);
      return res;
    } catch (err) {
      const code = (err as ServiceError).code;
      const name = typeof code === 'number' ? (Status[code] ?? String(code)) : 'ERROR';
      const m = this.failures.get(method) ?? new Map<string, number>();
      m.set(name, (m.get(name) ?? 0) + 1);
      this.failures.set(method, m);
      throw err;
    }
  }

  record(method: string, ms: number): void {
    const xs = this.ms.get(method);
    if (xs) xs.push(ms);
    else this.ms.set(method, [ms]);
  }

  /** "call n p50 p99 max" lines, one per method (ms), each indented by `indent`. */
  table(indent = '  '): string[] {
    const lines = [`${indent}${'call'.padEnd(22)} ${'n'.padStart(6)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)}`];
    for (const [method, xs] of [...this.ms.entries()].sort()) {
      const s = [...xs].sort((a, b) => a - b);
      lines.push(`${indent}${method.padEnd(22)} ${String(s.length).padStart(6)} ${pct(s, 50).toFixed(2).padStart(8)} ${pct(s, 99).toFixed(2).padStart(8)} ${s.at(-1)!.toFixed(2).padStart(8)}`);
    }
    return lines;
  }
}

/** A pod the kubelet polls: its sandbox and its one container. */
export interface PolledPod {
  id: string;
  cid: string;
}

export interface PollOptions {
  /** The pods polled this second (read anew each second: pods may come and go). */
  pods: () => readonly PolledPod[];
  /** Stop after this many seconds… */
  seconds?: number;
  /** …or once this says so (checked each second). */
  done?: () => boolean;
  /**
   * Failed calls are only counted (in stats.failures), as the kubelet logs and retries them;
   * without it the first failure ends the polling with its error.
   */
  tolerateFailures?: boolean;
}

/**
 * The kubelet's polling, once a second: the PLEG relist (ListPodSandbox and ListContainers
 * together), then every pod worker's PodSandboxStatus and ContainerStatus at once, and every
 * 10 s the stats (ListContainerStats and ListPodSandboxStats) and, given an image client, the
 * image filesystem's (ImageFsInfo: the eviction manager's and the summary API's).
 */
export async function poll(v: { runtime: unknown; image?: unknown }, stats: CallStats, o: PollOptions): Promise<void> {
  const timed = (method: string, req: object, client = v.runtime): Promise<unknown> => {
    const p = stats.timed(client, method, req);
    return o.tolerateFailures ? p.catch(() => undefined) : p;
  };
  for (let s = 0; (o.seconds === undefined || s < o.seconds) && !o.done?.(); s++) {
    const tick = performance.now();
    await Promise.all([timed('ListPodSandbox', {}), timed('ListContainers', {})]);
    await Promise.all(o.pods().flatMap((p) => [timed('PodSandboxStatus', { pod_sandbox_id: p.id }), timed('ContainerStatus', { container_id: p.cid })]));
    if (s % 10 === 0) await Promise.all([timed('ListContainerStats', {}), timed('ListPodSandboxStats', {}), ...(v.image ? [timed('ImageFsInfo', {}, v.image)] : [])]);
    await sleep(Math.max(0, 1000 - (performance.now() - tick)));
  }
}
