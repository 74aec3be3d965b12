// Benchmark (not a test): what operators size a node by, with N idle VM pods of the smallest
// test guest (the kernel-boot image) on this node:
//  - host memory per pod beyond guest RAM: QEMU (RSS and PSS, split by mapping) + the pod's
//    dnsmasq + vmlet's own growth divided by N;
//  - vmlet's RSS with N pods (target <= 150 MiB at 50);
//  - the kubelet's polling pattern for --poll-s seconds (ListPodSandbox and ListContainers every
//    second, PodSandboxStatus and ContainerStatus every second per pod, ListContainerStats and
//    ListPodSandboxStats every 10 s): p50/p99 per call (target: p99 of List* <= 5 ms);
//  - the CPU vmlet burns while nobody calls it (target <= 1% of a core).
//   npx tsx bench/density.ts [--pods 50] [--memory-mib 128] [--parallel 4] [--poll-s 30] [--idle-s 30] [--profile DIR] [--floor]
//     --profile DIR  V8 CPU profile of vmlet over the idle window (DIR/vmlet-<pid>.cpuprofile)
//     --floor        then the same polling of a bare grpc-js server answering vmlet's own answers
//                    (bench/floor-server.ts), under the same load: the reference for the p99
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { READY_MARKER } from '../test/helpers/guest.js';
import { runVmPod, startVmSuite, stopVmSuite, waitForConsoleLine, type VmPod } from '../test/helpers/vm-suite.js';
import { call, tempDir, type VmletProcess } from '../test/helpers/vmlet.js';
import { CallStats, cpuTicks, loadAvg as load, poll, procStatus as status, pss, sleep } from './kubelet-poll.js';
import { mib, split } from './qemu-memory.js';
import { profiled, profileWritten, toggleProfilers } from './profiler.js';
import { startFloorServer } from './floor-server.js';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '50' },
    'memory-mib': { type: 'string', default: '128' },
    parallel: { type: 'string', default: '4' },
    'poll-s': { type: 'string', default: '30' },
    'idle-s': { type: 'string', default: '30' },
    profile: { type: 'string' },
    floor: { type: 'boolean', default: false },
  },
});
const N = Number(values.pods);
const GUEST_MIB = Number(values['memory-mib']);
const PARALLEL = Number(values.parallel);
const POLL_S = Number(values['poll-s']);
const IDLE_S = Number(values['idle-s']);

/** Boots N pods, PARALLEL at a time, each to its guest's ready marker. */
async function bootPods(v: VmletProcess, image: string): Promise<VmPod[]> {
  const logDir = tempDir('vmlet-density-logs-');
  const pods: VmPod[] = [];
  let next = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      const pod = await runVmPod(v, { name: `density-${i}`, namespace: 'bench', image, logDir, resources: { memory_limit_in_bytes: String(GUEST_MIB * 1024 * 1024) } });
      await waitForConsoleLine(pod.log, READY_MARKER, 600_000);
      pods.push(pod);
      process.stdout.write(`\r  ${pods.length}/${N} pods ready`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, N) }, worker));
  process.stdout.write('\n');
  return pods;
}

async function qemuPid(v: VmletProcess, cid: string): Promise<number> {
  const st = await call<object, { info: Record<string, string> }>(v.runtime, 'ContainerStatus', { container_id: cid, verbose: true });
  const domain = (JSON.parse(st.info.info!) as { domain: string }).domain;
  return Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
}

/** The kubelet's polling of a bare grpc-js server that answers each call with vmlet's answer (same sizes). */
async function pollFloor(v: VmletProcess, pods: VmPod[]): Promise<CallStats> {
  const answers: Record<string, unknown> = {
    ListPodSandbox: await call(v.runtime, 'ListPodSandbox', {}),
    ListContainers: await call(v.runtime, 'ListContainers', {}),
    PodSandboxStatus: await call(v.runtime, 'PodSandboxStatus', { pod_sandbox_id: pods[0]!.id }),
    ContainerStatus: await call(v.runtime, 'ContainerStatus', { container_id: pods[0]!.cid }),
    ListContainerStats: await call(v.runtime, 'ListContainerStats', {}),
    ListPodSandboxStats: await call(v.runtime, 'ListPodSandboxStats', {}),
    ImageFsInfo: await call(v.image, 'ImageFsInfo', {}),
  };
  const floor = await startFloorServer(answers);
  try {
    const lat = new CallStats();
    await poll(floor, lat, { pods: () => pods, seconds: POLL_S });
    return lat;
  } finally {
    floor.stop();
  }
}

async function main(): Promise<void> {
  console.log(`density benchmark: ${N} idle VM pods (kernel-boot test guest, ${GUEST_MIB} MiB), ${PARALLEL} booting at a time; load ${load()}`);
  const suite = await profiled(values.profile, 'vmlet', () => startVmSuite([['kernelboot', 'vmlet/kernelboot:v1']]));
  const { v, refs } = suite;
  try {
    const vmletPid = v.proc.pid!;
    const rssBefore = status(vmletPid, 'VmRSS');
    const t0 = performance.now();
    const pods = await bootPods(v, refs[0]!);
    const bootS = (performance.now() - t0) / 1000;
    console.log(`booted ${N} pods in ${bootS.toFixed(1)} s (${(bootS / N).toFixed(2)} s per pod at ${PARALLEL} in parallel); load ${load()}`);

    // Let boot-time work settle before reading memory and idle CPU.
    await sleep(10_000);
    let rssBeyond = 0, pssBeyond = 0, tcg = 0, anon = 0, file = 0, dnsmasqRss = 0, dnsmasqPss = 0;
    for (const p of pods) {
      const pid = await qemuPid(v, p.cid);
      const s = split(pid, GUEST_MIB);
      rssBeyond += s.rss - s.guestRam;
      pssBeyond += pss(pid) - s.guestRam;
      tcg += s.tcg;
      anon += s.anon;
      file += s.file;
      const dpid = Number(readFileSync(join(v.stateDir, 'pods', p.id, 'dnsmasq.pid'), 'utf8').trim());
      dnsmasqRss += status(dpid, 'VmRSS');
      dnsmasqPss += pss(dpid);
    }
    const rssAfter = status(vmletPid, 'VmRSS');
    const vmletShare = (rssAfter - rssBefore) / N;

    const ticks0 = cpuTicks(vmletPid);
    const tIdle = performance.now();
    if (values.profile) toggleProfilers([v.proc]);
    await sleep(IDLE_S * 1000);
    const idleCpu = ((cpuTicks(vmletPid) - ticks0) * 10) / (performance.now() - tIdle) * 100; // ticks are 10 ms
    if (values.profile) {
      toggleProfilers([v.proc]);
      console.log(`idle profile: ${await profileWritten(values.profile, 'vmlet', v.proc)}`);
    }

    const lat = new CallStats();
    const ticksPoll = cpuTicks(vmletPid);
    const tPoll = performance.now();
    await poll(v, lat, { pods: () => pods, seconds: POLL_S });
    const polledCpu = ((cpuTicks(vmletPid) - ticksPoll) * 10) / (performance.now() - tPoll) * 100;
    const rssPolled = status(vmletPid, 'VmRSS');
    const floorLat = values.floor ? await pollFloor(v, pods) : undefined;

    console.log(`\nper pod, beyond guest RAM (mean of ${N}, MiB):`);
    console.log(`  QEMU RSS ${mib(rssBeyond / N)} (TCG cache ${mib(tcg / N)}, QEMU anon ${mib(anon / N)}, binary/libs ${mib(file / N)}); QEMU PSS ${mib(pssBeyond / N)} (shared libs divided among the ${N})`);
    console.log(`  dnsmasq RSS ${mib(dnsmasqRss / N)}, PSS ${mib(dnsmasqPss / N)}`);
    console.log(`  vmlet's share: ${mib(vmletShare)} (RSS ${mib(rssBefore)} with the image pulled, ${mib(rssAfter)} with ${N} pods)`);
    console.log(`  total (PSS): ${mib(pssBeyond / N + dnsmasqPss / N + vmletShare)}`);
    console.log(`vmlet RSS with ${N} pods: ${mib(rssAfter)} MiB idle, ${mib(rssPolled)} MiB after ${POLL_S} s of polling, VmHWM ${mib(status(vmletPid, 'VmHWM'))} MiB (target <= 150)`);
    console.log(`vmlet CPU while idle: ${idleCpu.toFixed(2)}% of a core over ${IDLE_S} s (target <= 1%); ${polledCpu.toFixed(2)}% under the kubelet's polling (${POLL_S} s)`);
    console.log(`\nkubelet polling for ${POLL_S} s with ${N} pods (ms; target: p99 of List* <= 5):`);
    for (const line of lat.table()) console.log(line);
    if (floorLat) {
      console.log(`the same polling of a bare grpc-js server answering vmlet's answers, next ${POLL_S} s, load ${load()} (the floor):`);
      for (const line of floorLat.table()) console.log(line);
    }
  } finally {
    await stopVmSuite(suite.v, suite.reg);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
