// Benchmark (not a test): the latency of CRI calls that boot no VM, vmlet against containerd on
// the same machine in the same run (issue 15, item 5). Three targets, asked with the same gRPC
// client code over their unix sockets, interleaved call by call:
//   vmlet     a vmlet of its own (no downstream) holding VM pods (kernel-boot test image)
//   containerd a private containerd 1.6 + runc (test/helpers/containerd.ts) holding container pods
//   proxy     a converged vmlet (`downstream:` that containerd) with no pods of its own: every
//             call about containerd's pods is forwarded, every list merged (vmlet's empty part
//             + containerd's), so proxy − containerd is what the routing adds
// Version is also asked of a bare grpc-js server answering with a constant (same proto loader,
// its own process): the floor any Node.js CRI server starts from; and of a node:http2 server
// doing the same with no gRPC library: what a call costs in Node.js itself.
// Each target holds --pods pods of one container each; the first pod's container is started (for
// vmlet a VM boot, waited for), the rest are only created. Per call: p50/p99 of each target,
// vmlet/containerd and the proxy's overhead, and each daemon's CPU per call (utime+stime).
// RunPodSandbox is measured as a cycle Run → Stop → Remove of a fresh pod (networking on: CNI
// bridge + host-local on 10.244.0.0/25 for vmlet, 10.244.0.128/25 for containerd).
//   npx tsx bench/cri-latency.ts [--calls N=200] [--warmup N=300] [--cycles N=20] [--pods N=5] [--json] [--profile DIR]
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { execa } from 'execa';
import { call, removeTempDirs, startVmlet, tempDir, type VmletProcess } from '../test/helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry } from '../test/helpers/registry.js';
import { startContainerd, type TestContainerd } from '../test/helpers/containerd.js';
import { waitFor } from '../test/helpers/wait.js';
import { removeCreated } from '../src/vm/pod-cgroup.js';
import { profiled, profileWritten, toggleProfilers } from './profiler.js';
import { startFloorServer, VERSION_ANSWER, type FloorServer } from './floor-server.js';

function flag(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs a positive integer`);
  return n;
}
const CALLS = flag('calls', 200);
const CYCLES = flag('cycles', 20);
const PODS = flag('pods', 5);
const JSON_OUT = process.argv.includes('--json');
const WARMUP = flag('warmup', 300);
const PROFILE_DIR = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1] : undefined;


const BUSYBOX = 'docker.io/library/busybox:1.36';
const MARKER = 'VMLET-READY';
// Bridges and subnets of this benchmark alone (the tests use 10.250-10.254).
const VMLET_NET = { bridge: 'vmlat0', subnet: '10.244.0.0/25' };
const CTR_NET = { bridge: 'vmlat1', subnet: '10.244.0.128/25' };
// Every pod gets a cgroup_parent below this, as the kubelet gives one (containerd's pod stats need it).
const CGROUP_TOP = `/vmlet-bench-${randomBytes(4).toString('hex')}`;

type Target = 'vmlet' | 'containerd' | 'proxy';
const TARGETS: Target[] = ['vmlet', 'containerd', 'proxy'];

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

function conflist(dir: string, name: string, net: { bridge: string; subnet: string }, file = '10-bench.conflist'): void {
  writeFileSync(
    join(dir, file),
    JSON.stringify({
      cniVersion: '1.0.0',
      name,
      plugins: [
        { type: 'bridge', bridge: net.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: net.subnet }]], dataDir: join(dir, 'ipam') } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
}

/** utime + stime of a process, ms (clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}


interface Side {
  runtime: unknown;
  image: unknown;
  /** The pod whose container is started, and that container. */
  pod: string;
  container: string;
  image_ref: string;
  handler: string;
  /** Annotations of a fresh pod (RunPodSandbox cycles). */
  annotations: Record<string, string>;
}

interface Figures {
  p50: number;
  p99: number;
  mean: number;
  /** The daemon's CPU per call, ms (proxy: the converged vmlet's own; containerd: half of what it spent serving both). */
  cpuMs: number;
}

/** The bare servers Version is also asked of (bench/floor-server.ts), as the rows name them. */
const FLOORS = ['floor', 'http2'] as const;
type Floor = (typeof FLOORS)[number];
const FLOOR_KIND: Record<Floor, 'grpc-js' | 'http2'> = { floor: 'grpc-js', http2: 'http2' };
const FLOOR_LABEL: Record<Floor, string> = {
  floor: 'a bare grpc-js server answering a constant (the Node.js floor)',
  http2: 'a bare node:http2 server answering a constant (no gRPC library)',
};

interface Row {
  call: string;
  note: string;
  n: number;
  targets: Record<Target, Figures>;
  /** vmlet p50 / containerd p50, and the same for p99. */
  ratioP50: number;
  ratioP99: number;
  /** proxy − containerd, ms. */
  proxyOverheadP50: number;
  proxyOverheadP99: number;
  /** Version only: the bare grpc-js server's, and the bare node:http2 server's. */
  floor?: Figures;
  http2?: Figures;
}

async function main(): Promise<void> {
  await ensureTestImages();
  const logRoot = tempDir('vmlet-bench-logs-');
  const cniDir = tempDir('vmlet-bench-cni-');
  conflist(cniDir, 'vmlet-bench', VMLET_NET);
  const reg = await startRegistry();
  let ctr: TestContainerd | undefined;
  let solo: VmletProcess | undefined;
  let conv: VmletProcess | undefined;
  const floors: Partial<Record<Floor, FloorServer>> = {};
  const vmPods: string[] = [];
  try {
    ctr = await startContainerd({ registry: reg });
    // containerd's CRI plugin watches its CNI dir: a config that sorts first replaces the helper's.
    const ctrCni = join(ctr.dir, 'cni');
    conflist(ctrCni, 'containerd-bench', CTR_NET, '05-bench.tmp');
    renameSync(join(ctrCni, '05-bench.tmp'), join(ctrCni, '05-bench.conflist'));
    for (const f of readdirSync(ctrCni)) if (f !== '05-bench.conflist' && f.endsWith('.conflist')) rmSync(join(ctrCni, f));
    await waitFor('containerd to load the benchmark\'s CNI config', async () => {
      const st = await call<object, { info: Record<string, string> }>(ctr!.runtime, 'Status', { verbose: true });
      return (st.info.cniconfig ?? '').includes('"Name":"containerd-bench"');
    }, { timeoutMs: 30_000, intervalMs: 100 });

    const registries = `registries:\n  insecure: ["${reg.host}"]\n  mirrors:\n    docker.io: ["${reg.url}"]\n`;
    solo = await profiled(PROFILE_DIR, 'vmlet', () => startVmlet({ cniConfDir: cniDir, config: registries, args: ['--log-level', 'info'] }));
    conv = await profiled(PROFILE_DIR, 'proxy', () => startVmlet({ cniConfDir: cniDir, config: `${registries}downstream: ${ctr!.endpoint}\n`, args: ['--log-level', 'info'] }));
    for (const f of FLOORS) floors[f] = await startFloorServer({ Version: VERSION_ANSWER }, FLOOR_KIND[f]);
    const floor = (f: Floor) => floors[f]!;

    await pushImage(reg, 'rootfs', 'library/busybox:1.36');
    const kernel = (await pushImage(reg, 'kernelboot', 'bench/kernel:v1')).reference;
    const kernelRef = (await call<object, { image_ref: string }>(solo.image, 'PullImage', { image: { image: kernel } })).image_ref;
    // Through the converged vmlet: both stores hold it, as after a kubelet's pull on such a node.
    const busyboxRef = (await call<object, { image_ref: string }>(conv.image, 'PullImage', { image: { image: BUSYBOX } })).image_ref;

    const podConfig = (name: string, annotations: Record<string, string> = {}) => {
      const uid = randomBytes(8).toString('hex');
      return {
        metadata: { name, namespace: 'bench', uid, attempt: 0 }, hostname: name, log_directory: join(logRoot, uid), labels: { app: name }, annotations,
        linux: { cgroup_parent: `${CGROUP_TOP}/pod${uid}` },
      };
    };
    const vmAnnotations = { 'vmlet.io/memory': '256Mi' };

    // vmlet's pods: VM containers, the first started (one boot, waited for), the rest created.
    let vm: { pod: string; container: string; log: string } | undefined;
    for (let i = 0; i < PODS; i++) {
      const config = podConfig(`vm-${i}`, vmAnnotations);
      const { pod_sandbox_id } = await call<object, { pod_sandbox_id: string }>(solo.runtime, 'RunPodSandbox', { config, runtime_handler: 'vmlet' });
      vmPods.push(pod_sandbox_id);
      const { container_id } = await call<object, { container_id: string }>(solo.runtime, 'CreateContainer', {
        pod_sandbox_id, sandbox_config: config, config: { metadata: { name: 'vm', attempt: 0 }, image: { image: kernel }, log_path: 'vm.log' },
      });
      if (i === 0) {
        await call(solo.runtime, 'StartContainer', { container_id });
        vm = { pod: pod_sandbox_id, container: container_id, log: join(config.log_directory, 'vm.log') };
      }
    }
    // containerd's pods: runc containers, the first started, the rest created.
    let ct: { pod: string; container: string } | undefined;
    for (let i = 0; i < PODS; i++) {
      const config = podConfig(`ctr-${i}`);
      const { pod_sandbox_id } = await call<object, { pod_sandbox_id: string }>(ctr.runtime, 'RunPodSandbox', { config });
      const { container_id } = await call<object, { container_id: string }>(ctr.runtime, 'CreateContainer', {
        pod_sandbox_id, sandbox_config: config,
        config: { metadata: { name: 'sh', attempt: 0 }, image: { image: BUSYBOX }, command: ['/bin/sh', '-c', 'sleep 3600'], log_path: 'sh.log', linux: {} },
      });
      if (i === 0) {
        await call(ctr.runtime, 'StartContainer', { container_id });
        ct = { pod: pod_sandbox_id, container: container_id };
      }
    }
    // The pods got their addresses from this benchmark's CNI configs.
    for (const [client, id, net] of [[solo.runtime, vm!.pod, VMLET_NET], [ctr.runtime, ct!.pod, CTR_NET]] as const) {
      const st = await call<object, { status: { network?: { ip?: string } } }>(client, 'PodSandboxStatus', { pod_sandbox_id: id });
      const ip = st.status.network?.ip ?? '';
      const base = Number(net.subnet.split('.')[3]!.split('/')[0]);
      if (!ip.startsWith('10.244.0.') || Number(ip.split('.')[3]) < base || Number(ip.split('.')[3]) >= base + 128) {
        throw new Error(`pod ${id} got IP ${JSON.stringify(ip)}, not one of ${net.subnet}: the benchmark's CNI config was not used`);
      }
    }
    await waitFor('the started VM pod to reach its ready marker', () => existsSync(vm!.log) && readFileSync(vm!.log, 'utf8').includes(MARKER), { timeoutMs: 180_000, intervalMs: 50 });
    // Let the guest settle (TCG): its boot-time CPU use would skew the first samples.
    await new Promise((r) => setTimeout(r, 3000));

    const sides: Record<Target, Side> = {
      vmlet: { runtime: solo.runtime, image: solo.image, pod: vm!.pod, container: vm!.container, image_ref: kernelRef, handler: 'vmlet', annotations: vmAnnotations },
      containerd: { runtime: ctr.runtime, image: ctr.image, pod: ct!.pod, container: ct!.container, image_ref: busyboxRef, handler: '', annotations: {} },
      proxy: { runtime: conv.runtime, image: conv.image, pod: ct!.pod, container: ct!.container, image_ref: busyboxRef, handler: '', annotations: {} },
    };
    const pids: Record<Target, () => number | undefined> = { vmlet: () => solo!.proc.pid, containerd: () => ctr!.pid(), proxy: () => conv!.proc.pid };

    interface CallSpec {
      name: string;
      note: string;
      service: 'runtime' | 'image';
      method: string;
      req: (s: Side) => object;
      /** Asked of the bare grpc-js server too. */
      floor?: boolean;
    }
    const specs: CallSpec[] = [
      { name: 'Version', note: 'proxy: answered by vmlet', service: 'runtime', method: 'Version', req: () => ({ version: 'v1' }), floor: true },
      { name: 'Status', note: 'proxy: both, merged', service: 'runtime', method: 'Status', req: () => ({}) },
      { name: 'ListPodSandbox', note: 'proxy: merged', service: 'runtime', method: 'ListPodSandbox', req: () => ({}) },
      { name: 'ListContainers', note: 'proxy: merged', service: 'runtime', method: 'ListContainers', req: () => ({}) },
      { name: 'PodSandboxStatus', note: 'proxy: forwarded', service: 'runtime', method: 'PodSandboxStatus', req: (s) => ({ pod_sandbox_id: s.pod }) },
      { name: 'ContainerStatus', note: 'running container; proxy: forwarded', service: 'runtime', method: 'ContainerStatus', req: (s) => ({ container_id: s.container }) },
      { name: 'ListImages', note: 'proxy: merged', service: 'image', method: 'ListImages', req: () => ({}) },
      { name: 'ImageStatus', note: 'by id; proxy: both stores', service: 'image', method: 'ImageStatus', req: (s) => ({ image: { image: s.image_ref } }) },
      { name: 'ImageFsInfo', note: 'proxy: merged', service: 'image', method: 'ImageFsInfo', req: () => ({}) },
      { name: 'ListPodSandboxStats', note: 'proxy: merged', service: 'runtime', method: 'ListPodSandboxStats', req: () => ({}) },
      { name: 'ListContainerStats', note: 'proxy: merged', service: 'runtime', method: 'ListContainerStats', req: () => ({}) },
    ];

    const cpuNow = () => Object.fromEntries(TARGETS.map((t) => [t, cpuMs(pids[t]())])) as Record<Target, number>;
    const cpuSince = (before: Record<Target, number>) => {
      const now = cpuNow();
      return Object.fromEntries(TARGETS.map((t) => [t, now[t] - before[t]])) as Record<Target, number>;
    };
    // What each daemon burns with nobody calling: it lands in the per-call CPU figures too.
    const idleBefore = cpuNow();
    const idleT0 = performance.now();
    await new Promise((r) => setTimeout(r, 5000));
    const idleSpent = cpuSince(idleBefore);
    const idleSeconds = (performance.now() - idleT0) / 1000;
    const idle = Object.fromEntries(TARGETS.map((t) => [t, idleSpent[t] / idleSeconds])) as Record<Target, number>;

    const rows: Row[] = [];
    const unavailable: string[] = [];
    const figures = (xs: number[], cpu: number, calls: number): Figures => ({
      p50: pct(xs, 50), p99: pct(xs, 99), mean: xs.reduce((a, b) => a + b, 0) / xs.length, cpuMs: cpu / calls,
    });
    const row = (name: string, note: string, samples: Record<Target, number[]>, cpu: Record<Target, number>): Row => {
      const n = samples.vmlet.length;
      const t = {
        vmlet: figures(samples.vmlet, cpu.vmlet, n),
        // containerd served the proxy's forwarded calls too.
        containerd: figures(samples.containerd, cpu.containerd, 2 * n),
        proxy: figures(samples.proxy, cpu.proxy, n),
      };
      return {
        call: name, note, n, targets: t,
        ratioP50: t.vmlet.p50 / t.containerd.p50, ratioP99: t.vmlet.p99 / t.containerd.p99,
        proxyOverheadP50: t.proxy.p50 - t.containerd.p50, proxyOverheadP99: t.proxy.p99 - t.containerd.p99,
      };
    };

    // The profiles (--profile) cover the measured calls and cycles only.
    const toggle = () => PROFILE_DIR && toggleProfilers([solo!.proc, conv!.proc]);
    toggle();
    for (const spec of specs) {
      const order: (Target | Floor)[] = spec.floor ? [...TARGETS, ...FLOORS] : TARGETS;
      const isFloor = (t: Target | Floor): t is Floor => (FLOORS as readonly string[]).includes(t);
      const ask = (t: Target | Floor) => (isFloor(t) ? call(floor(t).runtime, spec.method, spec.req(sides.vmlet)) : call(sides[t][spec.service], spec.method, spec.req(sides[t])));
      try {
        for (const t of order) for (let i = 0; i < WARMUP; i++) await ask(t);
      } catch (err) {
        unavailable.push(`${spec.name}: ${(err as Error).message}`);
        continue;
      }
      const samples: Record<Target | Floor, number[]> = { vmlet: [], containerd: [], proxy: [], floor: [], http2: [] };
      const before = cpuNow();
      const floorsBefore = FLOORS.map((f) => cpuMs(floor(f).proc.pid));
      for (let i = 0; i < CALLS; i++) {
        // A different target first each round: none always follows the same one.
        for (let k = 0; k < order.length; k++) {
          const t = order[(i + k) % order.length]!;
          const t0 = performance.now();
          await ask(t);
          samples[t].push(performance.now() - t0);
        }
      }
      const r = row(spec.name, spec.note, samples, cpuSince(before));
      if (spec.floor) FLOORS.forEach((f, i) => (r[f] = figures(samples[f], cpuMs(floor(f).proc.pid) - floorsBefore[i]!, CALLS)));
      rows.push(r);
    }

    // RunPodSandbox → StopPodSandbox → RemovePodSandbox of a fresh pod, each call timed.
    const cycle = { RunPodSandbox: { vmlet: [], containerd: [], proxy: [] }, StopPodSandbox: { vmlet: [], containerd: [], proxy: [] }, RemovePodSandbox: { vmlet: [], containerd: [], proxy: [] } } as Record<string, Record<Target, number[]>>;
    const oneCycle = async (t: Target, i: number, record: boolean) => {
      const s = sides[t];
      const config = podConfig(`cycle-${t}-${i}`, s.annotations);
      const timed = async <R>(m: string, req: object): Promise<R> => {
        const t0 = performance.now();
        const r = await call<object, R>(s.runtime, m, req);
        if (record) cycle[m]![t].push(performance.now() - t0);
        return r;
      };
      const { pod_sandbox_id } = await timed<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: s.handler });
      if (t === 'vmlet') vmPods.push(pod_sandbox_id); // removed at the end if a call below fails
      await timed('StopPodSandbox', { pod_sandbox_id });
      await timed('RemovePodSandbox', { pod_sandbox_id });
    };
    for (const t of TARGETS) for (let i = 0; i < 2; i++) await oneCycle(t, -1 - i, false);
    const before = cpuNow();
    for (let i = 0; i < CYCLES; i++) for (let k = 0; k < TARGETS.length; k++) await oneCycle(TARGETS[(i + k) % TARGETS.length]!, i, true);
    const cpu = cpuSince(before);
    toggle();
    if (PROFILE_DIR) {
      const files = [await profileWritten(PROFILE_DIR, 'vmlet', solo.proc), await profileWritten(PROFILE_DIR, 'proxy', conv.proc)];
      console.error(`profiles: ${files.join(', ')}`);
    }
    const cycleCpu = { vmlet: cpu.vmlet / 3, containerd: cpu.containerd / 3, proxy: cpu.proxy / 3 }; // per call of the three
    for (const m of Object.keys(cycle)) rows.push(row(m, m === 'RunPodSandbox' ? 'fresh pod, CNI on; proxy: forwarded' : 'proxy: forwarded', cycle[m]!, cycleCpu));

    const load = loadavg().map((x) => x.toFixed(2)).join(' ');
    const ctrVersion = await call<object, { runtime_version: string }>(ctr.runtime, 'Version', {});
    if (JSON_OUT) {
      console.log(JSON.stringify({ calls: CALLS, warmup: WARMUP, cycles: CYCLES, pods: PODS, loadavg: loadavg(), containerd: ctrVersion.runtime_version, idleCpuMsPerS: idle, rows, unavailable }, null, 2));
      return;
    }
    const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
    console.log(`CRI call latency, ms over the unix socket (same grpc-js client for all); ${PODS} pods of one container each per target (one running: a VM for vmlet, runc for containerd)`);
    console.log(`${CALLS} calls per target (interleaved, after ${WARMUP} warm-up calls each); Run/Stop/Remove: ${CYCLES} cycles each; containerd ${ctrVersion.runtime_version}; load average ${load}`);
    console.log(`cpu = the daemon's utime+stime per call, ms (10 ms ticks; containerd's is halved: it serves the proxy's calls too); idle, ms of CPU per s: vmlet ${f(idle.vmlet)}, containerd ${f(idle.containerd)}, proxy ${f(idle.proxy)}`);
    const head = ['call', 'vmlet p50', 'p99', 'cpu', 'containerd p50', 'p99', 'cpu', 'ratio p50', 'p99', 'proxy p50', 'p99', 'cpu', 'overhead p50', 'p99'];
    const lines = rows.map((r) => [
      r.call,
      f(r.targets.vmlet.p50), f(r.targets.vmlet.p99), f(r.targets.vmlet.cpuMs),
      f(r.targets.containerd.p50), f(r.targets.containerd.p99), f(r.targets.containerd.cpuMs),
      f(r.ratioP50), f(r.ratioP99),
      f(r.targets.proxy.p50), f(r.targets.proxy.p99), f(r.targets.proxy.cpuMs),
      f(r.proxyOverheadP50), f(r.proxyOverheadP99),
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
    const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    console.log(fmt(head));
    for (const l of lines) console.log(fmt(l));
    for (const r of rows.filter((x) => x.floor)) {
      for (const fl of FLOORS) console.log(`${r.call} of ${FLOOR_LABEL[fl]}: p50 ${f(r[fl]!.p50)}, p99 ${f(r[fl]!.p99)}, cpu ${f(r[fl]!.cpuMs)}`);
    }
    console.log('notes:');
    for (const r of rows) console.log(`  ${r.call}: ${r.note}`);
    for (const u of unavailable) console.log(`  not measured: ${u}`);
  } finally {
    for (const id of vmPods) await call(solo!.runtime, 'RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    for (const f of FLOORS) floors[f]?.stop();
    await conv?.stop();
    await solo?.stop();
    await ctr?.stop();
    await reg.stop();
    for (const net of [VMLET_NET, CTR_NET]) await execa('ip', ['link', 'del', net.bridge]).catch(() => undefined);
    // Every cgroup mount: runc also makes the pods' cgroups in name=systemd and a hybrid host's cgroup2.
    const roots = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).filter((f) => /^cgroup2?$/.test(f[f.indexOf('-') + 1] ?? '')).map((f) => f[4]!);
    removeCreated(roots.map((r) => join(r, CGROUP_TOP)).filter((d) => existsSync(d)));
    removeTempDirs('cri-latency');
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
