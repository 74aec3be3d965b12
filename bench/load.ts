// Benchmark and check: N VM pods (the kernel-boot test guest) under the kubelet's polling for a
// while, with pods created and removed in a loop; then every pod removed and what is left
// counted. Exits 1 if anything leaked or a call failed, so it can serve as a check.
//  - p50/p99/max of each polled call (ListPodSandbox and ListContainers every second,
//    PodSandboxStatus and ContainerStatus every second per pod, ListContainerStats and
//    ListPodSandboxStats every 10 s) and of the churn's calls;
//  - churn, every --churn-every-s: a new pod (RunPodSandbox, CreateContainer, StartContainer,
//    in a pod cgroup made first as the kubelet does) to its guest's ready marker, then the
//    oldest pod stopped and removed (StopPodSandbox, RemovePodSandbox) and its pod cgroup
//    removed, so the count stays at N: create→ready and stop+remove seconds;
//  - vmlet's RSS, open fds, threads, JS heap, active handles and CPU every 10 s;
//  - leaks once every pod is removed: vmlet's fds, inotify watches and handles against before
//    the first pod; domains, QEMU, netns, taps, veths, dnsmasq, IPAM leases and state dir
//    entries counted before and after; processes left in removed pods' cgroups. vmlet's heap
//    and RSS after a full GC, before, during and after; as the JIT's code and feedback grow by a
//    few MiB in the first minutes whatever the pods do, a leak is growth between the middle and
//    the end of the churn (N pods up at both) of what it holds (heap less compiled code and
//    bytecode, plus buffers) past --heap-leak-kib-per-pod, or of the RSS past --rss-leak-mib (RSS
//    swings by ±32 MiB even after a GC: that check only sees a gross native leak).
// Its own CNI network (bridge vmload0, 10.245.0.0/24), removed at the end.
//   npx tsx bench/load.ts [--pods 10] [--minutes 10] [--churn-every-s 15] [--memory-mib 128] [--parallel 2] [--heap-leak-kib-per-pod 32] [--rss-leak-mib 64]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { READY_MARKER } from '../test/helpers/guest.js';
import { ensureTestImages, pushImage, startRegistry, type TestRegistry } from '../test/helpers/registry.js';
import { stopVmSuite, vmletConfig, waitForConsoleLine } from '../test/helpers/vm-suite.js';
import { call, removeTempDirs, tempDir, type VmletProcess } from '../test/helpers/vmlet.js';
import { waitFor } from '../test/helpers/wait.js';
import { CallStats, cpuTicks, fdKinds, loadAvg, pct, poll, sleep, type PolledPod } from './kubelet-poll.js';
import { countLeftovers, makePodCgroup, podCgroupDirs, podCgroupProcs, removePodCgroup, type LeftoverScope } from './leftovers.js';
import { mib } from './qemu-memory.js';
import { collected, figures, startWatchedVmlet, type Figures, type Held } from './vmlet-watch.js';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '10' },
    minutes: { type: 'string', default: '10' },
    'churn-every-s': { type: 'string', default: '15' },
    'memory-mib': { type: 'string', default: '128' },
    parallel: { type: 'string', default: '2' },
    'heap-leak-kib-per-pod': { type: 'string', default: '32' },
    'rss-leak-mib': { type: 'string', default: '64' },
  },
});
const N = Number(values.pods);
const MINUTES = Number(values.minutes);
const CHURN_S = Number(values['churn-every-s']);
const GUEST_MIB = Number(values['memory-mib']);
const PARALLEL = Number(values.parallel);
const HEAP_LEAK_KIB_PER_POD = Number(values['heap-leak-kib-per-pod']);
const RSS_LEAK_MIB = Number(values['rss-leak-mib']);

const NS = 'loadbench';
const BRIDGE = 'vmload0';
const CNI_NETWORK = 'vmlet-load';
const SUBNET = '10.245.0.0/24';
/** Pod cgroups go below this (cgroupfs paths, as the kubelet's /kubepods/…/pod<uid>). */
const CGROUP_ROOT = '/vmlet-load';
const SAMPLE_MS = 10_000;
const READY_TIMEOUT_MS = 600_000;

const t0 = performance.now();
const elapsedS = () => (performance.now() - t0) / 1000;
const log = (msg: string) => console.log(`[${elapsedS().toFixed(0).padStart(5)} s] ${msg}`);

function writeCniConf(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, '10-load.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: CNI_NETWORK,
      plugins: [
        { type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: SUBNET }]] } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  return dir;
}

interface Sample extends Figures {
  t: number;
  pods: number;
  /** vmlet's CPU since the previous sample, % of a core. */
  cpuPct: number;
}

interface LoadPod extends PolledPod {
  name: string;
  log: string;
  cgroup: string;
}

/** The kubelet's pod start: the pod cgroup, RunPodSandbox, CreateContainer, StartContainer; then the guest's ready marker. */
async function createPod(v: VmletProcess, image: string, logDir: string, seq: number, calls: CallStats, madeIds: Set<string>): Promise<LoadPod> {
  const uid = randomBytes(8).toString('hex');
  const name = `load-${seq}`;
  const cgroup = `${CGROUP_ROOT}/pod${uid}`;
  makePodCgroup(cgroup);
  const config = { metadata: { name, namespace: NS, uid, attempt: 0 }, hostname: name, log_directory: join(logDir, uid), annotations: {}, linux: { cgroup_parent: cgroup } };
  const { pod_sandbox_id: id } = await calls.timed<{ pod_sandbox_id: string }>(v.runtime, 'RunPodSandbox', { config, runtime_handler: 'vmlet' });
  madeIds.add(id);
  const pod: LoadPod = { id, cid: '', name, log: join(logDir, uid, 'vm.log'), cgroup };
  try {
    const { container_id: cid } = await calls.timed<{ container_id: string }>(v.runtime, 'CreateContainer', {
      pod_sandbox_id: id,
      config: { metadata: { name: 'vm', attempt: 0 }, image: { image }, log_path: 'vm.log', linux: { resources: { memory_limit_in_bytes: String(GUEST_MIB * 1024 * 1024) } } },
      sandbox_config: config,
    });
    pod.cid = cid;
    await calls.timed(v.runtime, 'StartContainer', { container_id: cid });
    await waitForConsoleLine(pod.log, READY_MARKER, READY_TIMEOUT_MS);
    return pod;
  } catch (err) {
    await removePod(v, pod, calls).catch(() => undefined);
    throw err;
  }
}

/** The kubelet's pod teardown: StopPodSandbox, RemovePodSandbox, then its pod cgroup; the processes found left in that cgroup. */
async function removePod(v: VmletProcess, p: LoadPod, calls: CallStats, beforeRemove: () => void = () => undefined): Promise<number> {
  await calls.timed(v.runtime, 'StopPodSandbox', { pod_sandbox_id: p.id });
  beforeRemove();
  await calls.timed(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: p.id });
  const left = podCgroupProcs(p.cgroup);
  removePodCgroup(p.cgroup);
  return left;
}

const fmtS = (xs: number[]) => {
  if (!xs.length) return 'none';
  const s = [...xs].sort((a, b) => a - b);
  return `p50 ${pct(s, 50).toFixed(1)} s, p99 ${pct(s, 99).toFixed(1)} s, max ${s.at(-1)!.toFixed(1)} s (n ${s.length})`;
};

function printSeries(samples: Sample[]): void {
  const rows: Array<[string, (s: Sample) => number, (x: number) => string]> = [
    ['pods', (s) => s.pods, String],
    ['RSS (MiB)', (s) => s.rssKiB, (x) => mib(x).toFixed(1)],
    ['open fds', (s) => s.fds, String],
    ['inotify watches', (s) => s.watches, String],
    ['threads', (s) => s.threads, String],
    ['JS heap used (MiB)', (s) => s.heapUsedBytes / 1024, (x) => mib(x).toFixed(1)],
    ['active handles', (s) => s.handles, String],
    ['CPU (% of a core)', (s) => s.cpuPct, (x) => x.toFixed(1)],
    ['event loop lag p99 (ms)', (s) => s.lagP99Ms, (x) => x.toFixed(1)],
  ];
  const mid = samples[Math.floor(samples.length / 2)]!;
  const cols = [`start`, `middle (${mid.t.toFixed(0)} s)`, `end`, 'max'];
  console.log(`\nvmlet every ${SAMPLE_MS / 1000} s (${samples.length} samples):`);
  console.log(`  ${''.padEnd(24)} ${cols.map((c) => c.padStart(16)).join('')}`);
  for (const [label, get, fmt] of rows) {
    const xs = [get(samples[0]!), get(mid), get(samples.at(-1)!), Math.max(...samples.map(get))];
    console.log(`  ${label.padEnd(24)} ${xs.map((x) => fmt(x).padStart(16)).join('')}`);
  }
}

async function main(): Promise<void> {
  console.log(`load benchmark: ${N} VM pods (kernel-boot test guest, ${GUEST_MIB} MiB) polled as the kubelet does for ${MINUTES} min, a pod created and the oldest removed every ${CHURN_S} s; load ${loadAvg()}`);
  let reg: TestRegistry | undefined;
  let v: VmletProcess | undefined;
  const live: LoadPod[] = [];
  try {
    await ensureTestImages();
    reg = await startRegistry();
    const image = (await pushImage(reg, 'kernelboot', 'vmlet/kernelboot:v1')).reference;
    const w = await startWatchedVmlet({
      config: vmletConfig(reg),
      cniConfDir: writeCniConf(tempDir('vmlet-load-cni-')),
      args: ['--log-level', 'info'], // as on a node: the polled calls are not logged
    });
    v = w.v;
    const { v: vm, port, gcReport } = w;
    await call(vm.image, 'PullImage', { image: { image } });
    const pid = vm.proc.pid!;
    const logDir = tempDir('vmlet-load-logs-');
    const madeIds = new Set<string>();
    const scope: LeftoverScope = { stateDir: vm.stateDir, bridge: BRIDGE, cniNetwork: CNI_NETWORK, domainPrefix: `vmlet-${NS}-`, sandboxIds: () => madeIds };
    for (const d of podCgroupDirs(CGROUP_ROOT)) mkdirSync(d, { recursive: true });

    // One round of every polled call first, so what vmlet makes on first use is in the baseline.
    await poll(vm, new CallStats(), { pods: () => [], seconds: 1 });
    const gcBefore = await collected(vm, gcReport);
    const before = await figures(vm, port);
    const fdsBefore = fdKinds(pid);
    const hostBefore = countLeftovers(scope);
    log(`vmlet before the first pod: RSS ${mib(before.rssKiB)} MiB, ${before.fds} fds, ${before.threads} threads, ${before.handles} active handles`);

    const calls = new CallStats(); // the pods' own: start and teardown
    const polls = new CallStats();
    const failures: string[] = [];
    let seq = 0;
    let cgroupProcsLeft = 0;
    const removing = new Set<LoadPod>();
    const polled = () => live.filter((p) => !removing.has(p));

    // N pods, PARALLEL at a time.
    const tBoot = performance.now();
    await Promise.all(Array.from({ length: Math.min(PARALLEL, N) }, async () => {
      while (seq < N) live.push(await createPod(vm, image, logDir, seq++, calls, madeIds));
    }));
    log(`${N} pods ready in ${((performance.now() - tBoot) / 1000).toFixed(1)} s; load ${loadAvg()}`);
    // The same counts with the pods up: shows that each counter sees what a pod makes.
    const gcDuring = await collected(vm, gcReport);
    const during = await figures(vm, port);
    const hostDuring = countLeftovers(scope);
    const cgroupProcsDuring = live.reduce((n, p) => n + podCgroupProcs(p.cgroup), 0);

    let done = false;
    const churnStart = performance.now();
    const deadline = churnStart + MINUTES * 60_000;
    const samples: Sample[] = [];
    const sampler = (async () => {
      let ticks = cpuTicks(pid);
      let last = performance.now();
      while (!done) {
        await sleep(Math.max(0, SAMPLE_MS - (performance.now() - last)));
        const [now, t] = [cpuTicks(pid), performance.now()];
        samples.push({ t: elapsedS(), pods: live.length, ...(await figures(vm, port)), cpuPct: ((now - ticks) * 10 * 100) / (t - last) }); // ticks are 10 ms
        [ticks, last] = [now, t];
      }
    })();
    const poller = poll(vm, polls, { pods: polled, done: () => done, tolerateFailures: true });

    const createReadyS: number[] = [];
    const removeS: number[] = [];
    let gcMid: (Held & { churned: number }) | undefined;
    while (performance.now() < deadline) {
      if (vm.proc.exitCode !== null || vm.proc.signalCode !== null) throw new Error(`vmlet exited (${vm.proc.exitCode ?? vm.proc.signalCode}):\n${vm.logLines.slice(-20).join('\n')}`);
      const cycle = performance.now();
      try {
        const p = await createPod(vm, image, logDir, seq++, calls, madeIds);
        createReadyS.push((performance.now() - cycle) / 1000);
        live.push(p);
        const old = live[0]!; // polled until its RemovePodSandbox, as the kubelet does
        const tr = performance.now();
        const left = await removePod(vm, old, calls, () => removing.add(old));
        removeS.push((performance.now() - tr) / 1000);
        live.shift();
        removing.delete(old);
        cgroupProcsLeft += left;
        const s = samples.at(-1);
        log(`churn: ${p.name} ready in ${createReadyS.at(-1)!.toFixed(1)} s, ${old.name} removed in ${removeS.at(-1)!.toFixed(1)} s${left ? `, ${left} processes left in its cgroup` : ''}; ${live.length} pods${s ? `, vmlet RSS ${mib(s.rssKiB)} MiB, ${s.fds} fds` : ''}; load ${loadAvg()}`);
      } catch (err) {
        failures.push(`churn: ${String(err)}`);
        log(`churn failed: ${String(err)}`);
      }
      if (!gcMid && performance.now() - churnStart >= (deadline - churnStart) / 2) gcMid = { ...(await collected(vm, gcReport)), churned: createReadyS.length };
      await sleep(Math.max(0, CHURN_S * 1000 - (performance.now() - cycle)));
    }
    done = true;
    await Promise.all([sampler, poller]);
    const gcEnd = { ...(await collected(vm, gcReport)), churned: createReadyS.length };
    const churnMin = (performance.now() - churnStart) / 60_000;

    // Every pod removed, one more round of polling, then the figures once transient fds and
    // handles (a call's socket read, a timer about to fire) have had the chance to go.
    const tRemoveAll = performance.now();
    while (live.length) {
      const p = live.shift()!;
      cgroupProcsLeft += await removePod(vm, p, calls).catch((err: unknown) => {
        failures.push(`remove ${p.name}: ${String(err)}`);
        return 0;
      });
    }
    log(`all pods removed in ${((performance.now() - tRemoveAll) / 1000).toFixed(1)} s`);
    await poll(vm, new CallStats(), { pods: () => [], seconds: 1 });
    // libuv's inotify instance is made by the first fs.watch and kept for the process's life: one, not a leak.
    const loopInotify = () => (fdKinds(pid).get('anon_inode:inotify') ?? 0) > 0 && !fdsBefore.has('anon_inode:inotify') ? 1 : 0;
    await waitFor('vmlet fds, watches and handles back to their count before the first pod', async () => {
      const f = await figures(vm, port);
      return f.fds - loopInotify() <= before.fds && f.watches <= before.watches && f.handles <= before.handles;
    }, { timeoutMs: 30_000, intervalMs: 1000 }).catch(() => undefined);
    const gcAfter = await collected(vm, gcReport);
    const after = await figures(vm, port);
    const fdsAfter = fdKinds(pid);
    const inotifyAllowance = loopInotify();
    const hostAfter = countLeftovers(scope);

    // ------------------------------------------------------------------------- report
    console.log(`\n${churnMin.toFixed(1)} min of polling and churn: ${createReadyS.length} pods created and as many removed (${seq} pods in all); load ${loadAvg()} (the machine is shared: other VM work shows in the figures)`);
    console.log(`\nkubelet polling with ${N} pods (ms):`);
    for (const line of polls.table()) console.log(line);
    console.log(`\nthe pods' own calls: the first N, the churn, the final removal (ms):`);
    for (const line of calls.table()) console.log(line);
    console.log(`\nchurn: create→ready ${fmtS(createReadyS)}; stop+remove ${fmtS(removeS)}`);
    // A status call already under way when its pod's RemovePodSandbox ran may find it gone, as
    // the kubelet's may: NOT_FOUND there is listed, not a failure.
    const raced = (m: string, c: string) => c === 'NOT_FOUND' && (m === 'PodSandboxStatus' || m === 'ContainerStatus');
    const failed: string[] = [];
    for (const [m, codes] of [...polls.failures, ...calls.failures]) {
      for (const [c, n] of codes) {
        console.log(`failed: ${m} ${n}× ${c}${raced(m, c) ? ' (its pod being removed)' : ''}`);
        if (!raced(m, c)) failed.push(`${m} ${n}× ${c}`);
      }
    }
    if (!polls.failures.size && !calls.failures.size) console.log('failed calls: none');
    if (samples.length) printSeries(samples);

    const leaks: string[] = [];
    const row = (label: string, b: number, d: number, a: number, leaked: boolean, fmt: (x: number) => string = String, note = '') => {
      console.log(`  ${label.padEnd(32)} ${fmt(b).padStart(9)} ${fmt(d).padStart(12)} ${fmt(a).padStart(9)}${leaked ? '   LEAK' : ''}${note}`);
      if (leaked) leaks.push(label);
    };
    console.log(`\nleaks: before the first pod, with the first ${N} up, after removing every pod`);
    console.log(`  ${''.padEnd(32)} ${'before'.padStart(9)} ${`${N} pods`.padStart(12)} ${'after'.padStart(9)}`);
    row('vmlet open fds', before.fds, during.fds, after.fds, after.fds - inotifyAllowance > before.fds, String, inotifyAllowance ? '   (+1: libuv\'s inotify instance, made by the first fs.watch and kept)' : '');
    row('vmlet inotify watches', before.watches, during.watches, after.watches, after.watches > before.watches);
    row('vmlet active handles', before.handles, during.handles, after.handles, after.handles > before.handles);
    row('vmlet threads', before.threads, during.threads, after.threads, after.threads > before.threads);
    for (const [i, [label, b]] of hostBefore.entries()) row(label, b, hostDuring[i]![1], hostAfter[i]![1], hostAfter[i]![1] > b);
    row('processes in the pod cgroups', 0, cgroupProcsDuring, cgroupProcsLeft, cgroupProcsLeft > 0, String, '   (after: left in each pod\'s cgroup at its removal, summed)');
    if (after.fds - inotifyAllowance > before.fds) {
      const kinds = new Set([...fdsBefore.keys(), ...fdsAfter.keys()]);
      for (const k of [...kinds].sort()) {
        const [b, a] = [fdsBefore.get(k) ?? 0, fdsAfter.get(k) ?? 0];
        if (a !== b) console.log(`    fd ${k}: ${b} → ${a}`);
      }
    }

    const MiB = 1024 * 1024;
    const points: Array<[string, Held | undefined]> = [['before', gcBefore], [`${N} pods up`, gcDuring], ['churn middle', gcMid], ['churn end', gcEnd], ['after', gcAfter]];
    console.log(`\nvmlet memory after a full GC (MiB):`);
    console.log(`  ${''.padEnd(12)}${points.map(([l]) => l.padStart(14)).join('')}`);
    // What the program holds: its objects and buffers, not the JIT's code.
    const held = (h: Held) => h.heapUsed - h.code + h.external;
    const memRows: Array<[string, (h: Held) => number]> = [['JS heap', (h) => h.heapUsed], ['  of it code', (h) => h.code], ['buffers', (h) => h.external], ['held', held], ['RSS', (h) => h.rss]];
    for (const [label, get] of memRows) {
      console.log(`  ${label.padEnd(12)}${points.map(([, h]) => (h ? (get(h) / MiB).toFixed(1) : '-').padStart(14)).join('')}`);
    }
    // Fewer pods than this between the middle and the end, and the JIT's growth of the first
    // minutes (tens of KiB per pod in a 2-minute run) would pass for a leak.
    const MIN_WINDOW = 15;
    if (gcMid && gcEnd.churned - gcMid.churned >= MIN_WINDOW) {
      const pods = gcEnd.churned - gcMid.churned;
      const heapKiBPerPod = (held(gcEnd) - held(gcMid)) / 1024 / pods;
      const rssMiB = (gcEnd.rss - gcMid.rss) / MiB;
      const heapLeak = heapKiBPerPod > HEAP_LEAK_KIB_PER_POD;
      const rssLeak = rssMiB > RSS_LEAK_MIB;
      console.log(`  from the churn's middle to its end (${pods} pods created and removed, ${N} up at both): held ${heapKiBPerPod >= 0 ? '+' : ''}${heapKiBPerPod.toFixed(1)} KiB per pod${heapLeak ? '   LEAK' : ''} (a leak past ${HEAP_LEAK_KIB_PER_POD}), RSS ${rssMiB >= 0 ? '+' : ''}${rssMiB.toFixed(1)} MiB${rssLeak ? '   LEAK' : ''} (a leak past ${RSS_LEAK_MIB})`);
      if (heapLeak) leaks.push('vmlet JS heap');
      if (rssLeak) leaks.push('vmlet RSS');
    } else {
      console.log(`  (fewer than ${MIN_WINDOW} pods created between the churn's middle and its end: no memory leak check; the defaults make ~20)`);
    }
    for (const f of failures) console.log(`failure: ${f}`);
    const ok = leaks.length === 0 && failures.length === 0 && failed.length === 0;
    console.log(ok ? '\nOK: nothing leaked, no call failed' : `\nFAILED: ${[...leaks.map((l) => `leaked ${l}`), ...failures, ...failed].join('; ')}`);
    if (!ok) process.exitCode = 1;
  } finally {
    if (v && process.env.BENCH_VMLET_LOG) writeFileSync(process.env.BENCH_VMLET_LOG, v.logLines.join('\n') + '\n');
    await stopVmSuite(v, reg);
    for (const p of live) removePodCgroup(p.cgroup);
    removePodCgroup(CGROUP_ROOT);
    try {
      execFileSync('ip', ['link', 'del', BRIDGE], { stdio: 'ignore' });
    } catch {
      // never made
    }
    rmSync(join('/var/lib/cni/networks', CNI_NETWORK), { recursive: true, force: true });
    removeTempDirs('load');
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
