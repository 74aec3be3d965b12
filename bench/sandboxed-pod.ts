// Benchmark (not a test): sandboxed pods (a plain OCI image run as a process tree in one micro-VM
// per pod, booted from vmlet's guest kit) against what a node has today. All in one run on this
// machine, N runs of each, median / min / max:
//   1. sandboxed pod start through vmlet's CRI: RunPodSandbox → CreateContainer → StartContainer →
//      first log line in the CRI log, per phase; in auto mode (the VM boots at CreateContainer) and
//      with vmlet.io/pod-kind: sandboxed (the VM boots once RunPodSandbox has answered). Plus where the time of
//      the auto start goes: host-side times of the pod VM's console markers, the guest's own
//      VMLET-TIMES and vmlet's "pod VM ready" bootMs.
//   2. ExecSync `echo hi` in a running sandboxed container (30 after 3 warm-ups).
//   3. a VM-image pod (kernel-boot test image) to VMLET-READY in its CRI log, as bench/pod-start.ts.
//   4. containerd + runc (test/helpers/containerd.ts) with the same busybox image: pod start to the
//      first log line, and ExecSync.
//   5. bare QEMU booting the same guest kit (kernel, initrd, cmdline, -m, -smp, -cpu of vmlet's pod
//      VM; agent port, both 9p shares, scratch disk, a NIC) to VMLET-AGENT-READY on its console,
//      one boot right after each auto-mode pod of 1; the ratio sandboxed start / bare boot, of the
//      medians and per round.
//   6. memory of a sandboxed pod with one idle container: QEMU's VmRSS and the guest's meminfo.
// The first pod of each kind is a warm-up (image rootfs unpack, pause image pull, cold caches),
// reported apart. Every pod is removed after its run.
//   npx tsx bench/sandboxed-pod.ts [--runs N]
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decideAccel, probeHost } from '../src/vm/accel.js';
import { call, parseLogLines, removeTempDirs, ROOT, startVmlet, tempDir, type VmletProcess } from '../test/helpers/vmlet.js';
import { ensureTestImages, pushImage, startRegistry } from '../test/helpers/registry.js';
import { startContainerd } from '../test/helpers/containerd.js';
import { waitFor } from '../test/helpers/wait.js';
import { FIRST_LINE, FIRST_LINE_COMMAND, removePod, startPod as startPodIn, type PodToRun } from './pod-run.js';
import { mib, split } from './qemu-memory.js';

const { values: opts } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const N = Number(opts.runs);
if (!Number.isInteger(N) || N < 1) throw new Error(`--runs ${opts.runs}: a positive integer`);
const KIT_SRC = process.env.VMLET_GUEST_KIT ?? join(ROOT, '.cache/guest-kit');
const logRoot = tempDir('vmlet-bench-sbx-logs-');

// --- figures ------------------------------------------------------------------------------------
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sorted(xs)[Math.floor((xs.length - 1) / 2)]!;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const stat = (xs: number[], f: (x: number) => string = ms) => {
  if (!xs.length) return 'n/a';
  const s = sorted(xs);
  return `median ${f(median(xs))}  min ${f(s[0]!)}  max ${f(s[s.length - 1]!)}`;
};
type Phases = Record<string, number[]>;
const push = (p: Phases, k: string, x: number) => (p[k] ??= []).push(x);
function printPhases(title: string, p: Phases): void {
  console.log(title);
  const w = Math.max(...Object.keys(p).map((k) => k.length));
  for (const [k, xs] of Object.entries(p)) console.log(`  ${k.padEnd(w)}  ${stat(xs)}`);
}

// --- files ----------------------------------------------------------------------------------
const rssKiB = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
/** When the process started, as Date.now() (clock-tick resolution, 10 ms). */
function processStartMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const startTicks = Number(fields[19]); // field 22 of stat; fields[0] is field 3
  const hz = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() - (uptime - startTicks / hz) * 1000;
}
/** A QEMU process's RSS by mapping (bench/qemu-memory.ts), with the kernel file it mapped apart. */
function rssBreakdown(pid: number, guestKiB: number): string {
  const q = split(pid, guestKiB / 1024);
  return `guest RAM ${mib(q.guestRam)} MiB, TCG code buffer ${mib(q.tcg)} MiB, mapped kernel ${mib(q.kernel)} MiB (${mib(q.kernelDirty)} private dirty), rest ${mib(q.rss - q.guestRam - q.tcg - q.kernel)} MiB`;
}
const qemuPid = (domain: string) => Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8').trim());
const qemuArgs = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
/** QEMU's -m ("512", "512M", "size=524288k") in KiB. */
const memKiBOf = (m: string) => {
  const x = /(\d+)([kKmMgG]?)/.exec(m.replace(/^size=/, ''));
  const n = Number(x?.[1] ?? 0);
  const u = (x?.[2] ?? '').toLowerCase();
  return u === 'k' ? n : u === 'g' ? n * 1024 * 1024 : n * 1024;
};
const argAfter = (args: string[], flag: string) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};

/**
 * Polls every 5 ms for the console log of the one pod vmlet has (<stateDir>/pods/<id>/console.log)
 * and notes when each marker first appears in it (Date.now()).
 */
function watchConsole(podsDir: string, markers: string[]) {
  const seen: Record<string, number> = {};
  let text = '';
  const timer = setInterval(() => {
    try {
      for (const id of readdirSync(podsDir)) {
        const f = join(podsDir, id, 'console.log');
        if (!existsSync(f)) continue;
        text = readFileSync(f, 'utf8');
        for (const m of markers) if (seen[m] === undefined && text.includes(m)) seen[m] = Date.now();
      }
    } catch {
      // the pod dir comes and goes
    }
  }, 5);
  return { seen, text: () => text, stop: () => clearInterval(timer) };
}

// --- CRI pods: bench/pod-run.ts -----------------------------------------------------------------
const startPod = (runtime: unknown, o: Omit<PodToRun, 'logRoot'>) => startPodIn(runtime, { ...o, logRoot });

/** ExecSync `echo hi`: 3 warm-ups, then 30 timed; `wrong` counts answers other than exit 0 and "hi\n". */
async function execLatency(runtime: unknown, container: string): Promise<{ ms: number[]; wrong: string[] }> {
  const xs: number[] = [];
  const wrong: string[] = [];
  for (let i = 0; i < 33; i++) {
    const t0 = performance.now();
    const r = await call<object, { stdout: Buffer; stderr: Buffer; exit_code: number }>(runtime, 'ExecSync', { container_id: container, cmd: ['echo', 'hi'], timeout: 20 });
    const dt = performance.now() - t0;
    const stdout = Buffer.from(r.stdout).toString();
    if (r.exit_code !== 0 || stdout !== 'hi\n') wrong.push(`#${i}: exit ${r.exit_code}, stdout ${JSON.stringify(stdout)}, stderr ${JSON.stringify(Buffer.from(r.stderr).toString())}`);
    if (i >= 3) xs.push(dt);
  }
  return { ms: xs, wrong };
}
const execStat = (r: { ms: number[]; wrong: string[] }) =>
  `${stat(r.ms, (x) => `${x.toFixed(1)} ms`)}${r.wrong.length ? `; ${r.wrong.length}/33 WRONG answers: ${r.wrong.join('; ')}` : ''}`;

// --- bare QEMU ----------------------------------------------------------------------------------
async function bareBoot(o: { kit: string; accel: string; mem: string; smp: string; cpu: string | undefined; bios: string | undefined; images: string; dir: string }): Promise<{ ms: number; times: string; rssKiB: number; rssParts: string }> {
  const scratch = join(o.dir, 'scratch.img');
  const shared = join(o.dir, 'shared');
  const log = join(o.dir, 'console.log');
  rmSync(scratch, { force: true });
  mkdirSync(shared, { recursive: true });
  writeFileSync(scratch, '');
  spawnSync('truncate', ['-s', '10G', scratch]);
  spawnSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'lazy_itable_init=1,nodiscard', '-L', 'vmlet-scratch', scratch]);
  const cmdline = `${readFileSync(join(o.kit, 'cmdline'), 'utf8').trim()} vmlet.ip=10.0.2.15/24 vmlet.gw=10.0.2.2`;
  const fd = openSync(log, 'w');
  const t0 = performance.now();
  const qemu = spawn('qemu-system-x86_64', [
    // The firmware vmlet's pod VM started (config podVmBios): the same boot path, minus vmlet.
    '-machine', `q35,accel=${o.accel}`, ...(o.cpu ? ['-cpu', o.cpu] : []), ...(o.bios ? ['-bios', o.bios] : []), '-m', o.mem, '-smp', o.smp,
    '-display', 'none', '-no-reboot', '-nodefaults', '-no-user-config', '-serial', 'stdio',
    '-kernel', join(o.kit, 'vmlinux'), '-initrd', join(o.kit, 'initrd.img'), '-append', cmdline,
    '-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0,romfile=',
    '-device', 'virtio-serial', '-chardev', `socket,path=${join(o.dir, 'agent.sock')},server=on,wait=off,id=ag`,
    '-device', 'virtserialport,chardev=ag,name=vmlet.agent.0',
    '-fsdev', `local,id=img,path=${o.images},security_model=none,readonly=on`, '-device', 'virtio-9p-pci,fsdev=img,mount_tag=vmlet-images',
    '-fsdev', `local,id=shr,path=${shared},security_model=none`, '-device', 'virtio-9p-pci,fsdev=shr,mount_tag=vmlet-shared',
    '-drive', `file=${scratch},format=raw,if=none,id=s0`, '-device', 'virtio-blk-pci,drive=s0,serial=vmlet-scratch',
  ], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  try {
    const text = await waitFor('VMLET-AGENT-READY on the bare QEMU console', () => {
      if (qemu.exitCode !== null) throw new Error(`QEMU exited ${qemu.exitCode}: ${readFileSync(log, 'utf8').slice(-1000)}`);
      const t = readFileSync(log, 'utf8');
      return t.includes('VMLET-AGENT-READY') ? t : undefined;
    }, { timeoutMs: 120_000, intervalMs: 5 });
    const dt = performance.now() - t0;
    return { ms: dt, times: guestTimes(text), rssKiB: rssKiB(qemu.pid!), rssParts: rssBreakdown(qemu.pid!, memKiBOf(o.mem)) };
  } finally {
    if (qemu.exitCode === null) {
      const gone = new Promise((r) => qemu.once('exit', r));
      qemu.kill('SIGKILL');
      await gone;
    }
  }
}

/** VMLET-TIMES (guest uptime, s, at the end of each /init phase) and the agent's start. */
function guestTimes(text: string): string {
  const line = (p: string) => text.replace(/\r/g, '').split('\n').find((l) => l.startsWith(p))?.slice(p.length).trim() ?? '?';
  return `init=${line('VMLET-INIT ')} ${line('VMLET-TIMES ')} agent-start=${line('VMLET-AGENT-START ')}`;
}
const guestUptime = (text: string, p: string) => Number(new RegExp(`${p}[ =]([0-9.]+)`).exec(text)?.[1] ?? NaN);

// --- main ----------------------------------------------------------------------------------------
async function main(): Promise<void> {
  const accel = decideAccel('auto', probeHost()).accel;
  const load0 = loadavg();
  await ensureTestImages();
  // A copy of the guest kit: a rebuild of .cache/guest-kit during the run must not change it.
  const kit = tempDir('vmlet-bench-kit-');
  chmodSync(kit, 0o755);
  for (const f of ['vmlinux', 'initrd.img', 'cmdline', 'VERSION']) {
    if (!existsSync(join(KIT_SRC, f))) throw new Error(`no guest kit in ${KIT_SRC}: run node-install/build-guest-kit.sh ${KIT_SRC}`);
    copyFileSync(join(KIT_SRC, f), join(kit, f));
  }
  const kitVersion = readFileSync(join(kit, 'VERSION'), 'utf8').trim();
  const reg = await startRegistry();
  let v: VmletProcess | undefined;
  let ctr: Awaited<ReturnType<typeof startContainerd>> | undefined;
  const out: string[] = [];
  const say = (l: string) => {
    out.push(l);
    console.error(`[bench] ${l}`);
  };
  try {
    const busybox = (await pushImage(reg, 'rootfs', 'bench/busybox:1')).reference;
    const kernel = (await pushImage(reg, 'kernelboot', 'bench/kernel:1')).reference;
    v = await startVmlet({ config: `registries:\n  insecure: ["${reg.host}"]\nguestKitDir: ${kit}\n` });
    const vm = v;
    for (const image of [busybox, kernel]) await call(vm.image, 'PullImage', { image: { image } });
    const podsDir = join(vm.stateDir, 'pods');
    const markers = ['VMLET-INIT', 'VMLET-TIMES', 'VMLET-AGENT-READY'];
    const podVmReadyMs = (pod: string) => {
      const l = parseLogLines(vm.logLines).find((x) => x.msg === 'pod VM ready' && x.podSandboxId === pod);
      return typeof l?.bootMs === 'number' ? l.bootMs : NaN;
    };

    // --- 1. sandboxed pods ---
    const sbx = async (name: string, annotations: Record<string, string>) => startPod(vm.runtime, { name, handler: 'vmlet', image: busybox, command: FIRST_LINE_COMMAND, marker: FIRST_LINE, annotations });
    const warm = await sbx('sbx-warm', {});
    say(`sandboxed warm-up pod (rootfs unpack, cold caches): total ${ms(warm.phases.total!)}`);
    await removePod(vm.runtime, warm.pod);

    const auto: Phases = {};
    const breakdown: Phases = {};
    // Section 5's bare boots run one after each auto-mode pod, so a drift of the machine during
    // the bench weighs on both halves of a round alike (each round's ratio is printed too).
    const bare: number[] = [];
    const bareLines: string[] = [];
    const rounds: number[] = [];
    let bareRss = 0;
    let bareParts = '';
    const bareDir = tempDir('vmlet-bench-bare-');
    const guestLines: string[] = [];
    let qemuInfo = { mem: '512', smp: '1', cpu: undefined as string | undefined, machine: '?', bios: undefined as string | undefined };
    for (let i = 0; i < N; i++) {
      const w = watchConsole(podsDir, markers);
      const t0 = Date.now();
      const r = await sbx(`sbx-auto-${i}`, {});
      w.stop();
      for (const [k, x] of Object.entries(r.phases)) push(auto, k, x);
      // Where CreateContainer's time goes (host clock; QEMU's start from /proc, 10 ms ticks).
      const domain = `vmlet-bench-sbx-auto-${i}-${r.pod.slice(0, 8)}`;
      const pid = qemuPid(domain);
      const args = qemuArgs(pid);
      qemuInfo = { mem: argAfter(args, '-m') ?? '512', smp: argAfter(args, '-smp') ?? '1', cpu: argAfter(args, '-cpu'), machine: argAfter(args, '-machine') ?? '?', bios: argAfter(args, '-bios') };
      const qemuStart = processStartMs(pid);
      const createStart = t0 + r.phases.RunPodSandbox!;
      const createEnd = createStart + r.phases.CreateContainer!;
      const text = w.text();
      const initUptime = guestUptime(text, 'VMLET-INIT') * 1000;
      push(breakdown, 'CreateContainer start → QEMU process start (scratch mkfs, share, define, libvirt start)', qemuStart - createStart);
      push(breakdown, 'QEMU start → kernel start (QEMU init, firmware, kernel+initrd load; = INIT seen − guest uptime)', w.seen['VMLET-INIT']! - initUptime - qemuStart);
      push(breakdown, 'kernel start → /init runs (kernel boot, initramfs unpack; guest uptime at VMLET-INIT)', initUptime);
      push(breakdown, '/init runs → VMLET-AGENT-READY seen (mounts, modules, net, 9p+scratch, agent start)', w.seen['VMLET-AGENT-READY']! - w.seen['VMLET-INIT']!);
      push(breakdown, 'VMLET-AGENT-READY seen → CreateContainer returns (hello, setup_pod, rootfs, create_container)', createEnd - w.seen['VMLET-AGENT-READY']!);
      push(breakdown, 'vmlet "pod VM ready" bootMs (scratch → agent answered + setup_pod)', podVmReadyMs(r.pod));
      guestLines.push(guestTimes(text));
      await removePod(vm.runtime, r.pod);
      const b = await bareBoot({ kit, accel, mem: qemuInfo.mem, smp: qemuInfo.smp, cpu: qemuInfo.cpu, bios: qemuInfo.bios, images: join(vm.stateDir, 'images', 'rootfs'), dir: bareDir });
      bare.push(b.ms);
      bareLines.push(b.times);
      bareRss = b.rssKiB;
      bareParts = b.rssParts;
      rounds.push(r.phases.total! / b.ms);
    }
    const early: Phases = {};
    for (let i = 0; i < N; i++) {
      const r = await sbx(`sbx-early-${i}`, { 'vmlet.io/pod-kind': 'sandboxed' });
      for (const [k, x] of Object.entries(r.phases)) push(early, k, x);
      await removePod(vm.runtime, r.pod);
    }

    // --- 2 and 6. exec and memory in a running sandboxed pod with one idle container ---
    const idle = await sbx('sbx-idle', {});
    const sbxExec = await execLatency(vm.runtime, idle.container);
    await new Promise((r) => setTimeout(r, 5000)); // let the guest settle
    const idlePid = qemuPid(`vmlet-bench-sbx-idle-${idle.pod.slice(0, 8)}`);
    const idleRss = rssKiB(idlePid);
    const idleParts = rssBreakdown(idlePid, memKiBOf(qemuInfo.mem));
    const meminfo = Buffer.from((await call<object, { stdout: Buffer }>(vm.runtime, 'ExecSync', { container_id: idle.container, cmd: ['cat', '/proc/meminfo'], timeout: 20 })).stdout).toString();
    const memKiB = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(meminfo)?.[1] ?? NaN);
    await removePod(vm.runtime, idle.pod);

    // --- 3. VM-image pod (kernel-boot test image) ---
    const vmPod: Phases = {};
    for (let i = 0; i <= N; i++) {
      const r = await startPod(vm.runtime, { name: `vm-${i}`, handler: 'vmlet', image: kernel, marker: 'VMLET-READY' });
      if (i === 0) say(`VM-image warm-up pod: total ${ms(r.phases.total!)}`);
      else for (const [k, x] of Object.entries(r.phases)) push(vmPod, k, x);
      await removePod(vm.runtime, r.pod);
    }

    // --- 4. containerd + runc ---
    ctr = await startContainerd({ registry: reg });
    const c = ctr;
    await call(c.image, 'PullImage', { image: { image: busybox } });
    const ctrPod = (name: string) => startPod(c.runtime, { name, handler: '', image: busybox, command: FIRST_LINE_COMMAND, marker: FIRST_LINE, linux: true });
    const cw = await ctrPod('ctr-warm');
    say(`containerd warm-up pod (pause image pull): total ${ms(cw.phases.total!)}`);
    await removePod(c.runtime, cw.pod);
    const ctrRuns: Phases = {};
    let ctrExec = { ms: [] as number[], wrong: [] as string[] };
    for (let i = 0; i < N; i++) {
      const r = await ctrPod(`ctr-${i}`);
      for (const [k, x] of Object.entries(r.phases)) push(ctrRuns, k, x);
      if (i === N - 1) ctrExec = await execLatency(c.runtime, r.container);
      await removePod(c.runtime, r.pod);
    }
    await c.stop();
    ctr = undefined;

    // --- 1c. the warm pool (config podVmPool): vmlet again, same state, one idle VM kept ---
    // Each run starts once the pool's VM is ready and its refill boot (after the last take) is
    // over, as on a node whose pods do not all arrive at once.
    await v.stop();
    v = await startVmlet({ stateDir: vm.stateDir, config: `registries:\n  insecure: ["${reg.host}"]\nguestKitDir: ${kit}\npodVmPool:\n  size: 1\n` });
    const pv = v;
    const poolReady = () => parseLogLines(pv.logLines).filter((x) => x.msg === 'pod VM pool: VM ready');
    const pooled: Phases = {};
    for (let i = 0; i < N; i++) {
      await waitFor('an idle pool VM', () => poolReady().length > i || undefined, { timeoutMs: 180_000, intervalMs: 50 });
      const r = await startPod(pv.runtime, { name: `sbx-pool-${i}`, handler: 'vmlet', image: busybox, command: FIRST_LINE_COMMAND, marker: FIRST_LINE });
      const claim = parseLogLines(pv.logLines).find((x) => x.msg === 'pod VM ready' && x.podSandboxId === r.pod);
      if (claim?.pooled !== true) throw new Error(`pod ${r.pod} did not take the pool VM: ${JSON.stringify(claim)}`);
      for (const [k, x] of Object.entries(r.phases)) push(pooled, k, x);
      push(pooled, 'vmlet "pod VM ready" claimMs (tap, cgroup, agent, setup_pod with network)', Number(claim.claimMs));
      await removePod(pv.runtime, r.pod);
    }

    // --- report ---
    console.log(`\nsandboxed pods, ${N} runs each, ${accel}, guest kit ${kitVersion}; image rootfs (busybox, test/registry), command ${JSON.stringify(FIRST_LINE_COMMAND)}`);
    console.log(`load average (1, 5, 15 min) at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${cpus().length} CPUs`);
    console.log(`vmlet's pod VM QEMU: -machine ${qemuInfo.machine} -cpu ${qemuInfo.cpu ?? '(default)'} -m ${qemuInfo.mem} -smp ${qemuInfo.smp} -bios ${qemuInfo.bios ?? '(SeaBIOS)'}; the bare boot the same`);
    for (const l of out) console.log(`  (${l})`);
    printPhases('1a. sandboxed pod, auto (VM boots in CreateContainer):', auto);
    printPhases('1b. sandboxed pod, vmlet.io/pod-kind: sandboxed (VM boots once RunPodSandbox has answered):', early);
    printPhases('1c. sandboxed pod taking a warm-pool VM (config podVmPool size 1; auto mode):', pooled);
    printPhases('    where 1a\'s time goes:', breakdown);
    console.log('    guest phase ends (uptime, s):');
    for (const l of guestLines) console.log(`      ${l}`);
    console.log(`2.  ExecSync echo hi in a sandboxed container (30 after 3 warm-ups): ${execStat(sbxExec)}`);
    printPhases('3.  VM-image pod (kernelboot test image, VMLET-READY in the CRI log):', vmPod);
    printPhases('4.  containerd + runc, same image and command:', ctrRuns);
    console.log(`    ExecSync echo hi (30 after 3 warm-ups): ${execStat(ctrExec)}`);
    console.log(`5.  bare QEMU boot of the guest kit to VMLET-AGENT-READY: ${stat(bare)}`);
    for (const l of bareLines) console.log(`      guest: ${l}`);
    console.log(`    QEMU RSS at agent ready (last run): ${(bareRss / 1024).toFixed(1)} MiB: ${bareParts}`);
    const ratio = (p: Phases) => (median(p.total!) / median(bare)).toFixed(2);
    console.log(`    ratio sandboxed start (to first log line) / bare boot (to agent ready), medians: auto ${ratio(auto)}, pod-kind sandboxed ${ratio(early)}, warm pool ${ratio(pooled)} (target ≤ 1.10)`);
    console.log(`    auto / bare per round (each bare boot right after its pod): median ${median(rounds).toFixed(2)}  [${rounds.map((x) => x.toFixed(2)).join(', ')}]`);
    console.log(`6.  memory, sandboxed pod with one idle container (5 s after its first line): QEMU VmRSS ${(idleRss / 1024).toFixed(1)} MiB; guest MemTotal ${(memKiB('MemTotal') / 1024).toFixed(1)} MiB, MemAvailable ${(memKiB('MemAvailable') / 1024).toFixed(1)} MiB (used ${((memKiB('MemTotal') - memKiB('MemAvailable')) / 1024).toFixed(1)} MiB)`);
    console.log(`    QEMU RSS by mapping: ${idleParts}`);
  } finally {
    if (ctr) await ctr.stop().catch((e: unknown) => console.error('containerd stop:', e));
    if (v) {
      const pods = await call<object, { items: { id: string }[] }>(v.runtime, 'ListPodSandbox', {}).catch(() => ({ items: [] }));
      for (const p of pods.items) await call(v.runtime, 'RemovePodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
      if (process.env.BENCH_VMLET_LOG) writeFileSync(process.env.BENCH_VMLET_LOG, v.logLines.join('\n') + '\n');
      await v.stop();
    }
    await reg.stop();
    rmSync(kit, { recursive: true, force: true });
    removeTempDirs('sandboxed-pod'); // vmlet's state dir (its images-ro mount), the logs, the layouts
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
