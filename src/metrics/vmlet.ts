// vmlet's own metrics (docs/metrics.md), on the process-wide registry that /metrics serves. The
// places that move them call the small functions below, one line each, whether or not the
// endpoint is on: a counter is a number in memory, and turning the endpoint on later (or a test
// reading the registry) then sees everything since the start.
import { Counter, Gauge, Histogram, register } from './registry.js';

const registers = [register];

/** CRI calls take from a millisecond (List*) to minutes (PullImage of a big disk, a slow boot). */
const RPC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Boots: QEMU up in ~0.1–1 s; a pod VM to its agent in ~3–10 s under TCG, more on a busy node. */
const BOOT_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120];
const PULL_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export const criRequests = new Counter<'method' | 'code'>({
  name: 'vmlet_cri_requests_total',
  help: 'CRI calls vmlet answered, by method and gRPC status code.',
  labelNames: ['method', 'code'],
  registers,
});

export const criDuration = new Histogram<'method'>({
  name: 'vmlet_cri_request_duration_seconds',
  help: 'Time vmlet took to answer a CRI call, by method.',
  labelNames: ['method'],
  buckets: RPC_BUCKETS,
  registers,
});

/** One CRI call answered (src/cri/rpc.ts, through the hook src/serve.ts sets). */
export function observeRpc(method: string, code: string, seconds: number): void {
  criRequests.inc({ method, code });
  criDuration.observe({ method }, seconds);
}

export const vmBoot = new Histogram<'kind'>({
  name: 'vmlet_vm_boot_duration_seconds',
  help: "Time to boot a VM: kind=vm, a VM-image container's domain from StartContainer until QEMU runs; kind=sandboxed, a pod VM from define until its agent answers; kind=pooled, a warm-pool VM made the pod's (claimed, resized, set up).",
  labelNames: ['kind'],
  buckets: BOOT_BUCKETS,
  registers,
});

export function observeBoot(kind: 'vm' | 'sandboxed' | 'pooled', seconds: number): void {
  vmBoot.observe({ kind }, seconds);
}

/** Awaits `start` and records its time as a boot of `kind` when it succeeds. */
export async function timedBoot<T>(kind: 'vm' | 'sandboxed', start: Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await start;
  observeBoot(kind, (performance.now() - t0) / 1000);
  return out;
}

export const imagePullBytes = new Counter({
  name: 'vmlet_image_pull_bytes_total',
  help: 'Size of the images PullImage made available (their compressed layers and config), summed over pulls.',
  registers,
});

export const imagePullDuration = new Histogram({
  name: 'vmlet_image_pull_duration_seconds',
  help: 'Time a successful image pull took, download and unpacking included.',
  buckets: PULL_BUCKETS,
  registers,
});

export function observePull(bytes: number, seconds: number): void {
  imagePullBytes.inc(Math.max(0, bytes));
  imagePullDuration.observe(seconds);
}

export const libvirtReconnects = new Counter({
  name: 'vmlet_libvirt_reconnects_total',
  help: 'New connections to libvirtd after the first (libvirtd restarted or the connection dropped).',
  registers,
});

export function libvirtReconnected(): void {
  libvirtReconnects.inc();
}

export const guestAgentFailures = new Counter<'reason'>({
  name: 'vmlet_guest_agent_failures_total',
  help: "Failures of a sandboxed pod's guest agent connection, by reason.",
  labelNames: ['reason'],
  registers,
});

export function guestAgentFailed(reason: 'disconnect'): void {
  guestAgentFailures.inc({ reason });
}

export const podVmGuesses = new Counter<'outcome'>({
  name: 'vmlet_pod_vm_guesses_total',
  help: "Pod VMs booted at an image pull on the image's looks (config podVmAtPull), by how the pod's first container judged the guess.",
  labelNames: ['outcome'],
  registers,
});

/** `held`: the first container ran in the VM; `undone`: it was a VM image, and the VM was destroyed. */
export function podVmGuessed(outcome: 'held' | 'undone'): void {
  podVmGuesses.inc({ outcome });
}

/** How many pods or containers are in one state and of one kind. */
export interface StateCount {
  state: string;
  kind: string;
  count: number;
}

export interface PodCounts {
  pods: StateCount[];
  containers: StateCount[];
}

let podSource: (() => PodCounts) | undefined;

/** Where the pod gauges read from at scrape time (src/serve.ts: the PodManager's maps). */
export function countPodsWith(source: (() => PodCounts) | undefined): void {
  podSource = source;
}

function fill(g: Gauge<'state' | 'kind'>, counts: StateCount[] | undefined): void {
  g.reset(); // series of states that no longer exist go too
  for (const c of counts ?? []) g.set({ state: c.state, kind: c.kind }, c.count);
}

// Computed at scrape time so they can never drift from the index they describe.
export const podsGauge = new Gauge<'state' | 'kind'>({
  name: 'vmlet_pods',
  help: 'VM pods vmlet knows, by sandbox state (ready, notready) and kind (vm, sandboxed, undecided: no container yet).',
  labelNames: ['state', 'kind'],
  registers,
  collect() {
    fill(this, podSource?.().pods);
  },
});

let poolSource: (() => { idle: number; size: number }) | undefined;

/** Where the pool gauge reads from at scrape time (src/serve.ts: the pod VM pool). */
export function countPoolWith(source: (() => { idle: number; size: number }) | undefined): void {
  poolSource = source;
}

export const poolGauge = new Gauge<'state'>({
  name: 'vmlet_pod_vm_pool',
  help: "Sandboxed pods' VMs booted ahead of their pods (config podVmPool): idle (ready to be taken) and the configured size.",
  labelNames: ['state'],
  registers,
  collect() {
    const p = poolSource?.() ?? { idle: 0, size: 0 };
    this.set({ state: 'idle' }, p.idle);
    this.set({ state: 'size' }, p.size);
  },
});

export const containersGauge = new Gauge<'state' | 'kind'>({
  name: 'vmlet_containers',
  help: 'Containers of VM pods, by state (created, running, exited, unknown) and kind (vm: the container is a VM; sandboxed: a process tree in the pod VM).',
  labelNames: ['state', 'kind'],
  registers,
  collect() {
    fill(this, podSource?.().containers);
  },
});
