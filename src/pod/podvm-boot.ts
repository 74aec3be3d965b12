// The sandboxed pod's VM: booted when the pod becomes sandboxed (its first container of a plain
// OCI image, or RunPodSandbox with vmlet.io/pod-kind: sandboxed), destroyed at StopPodSandbox,
// undefined at RemovePodSandbox. Also what the agent says about containers: their exits, and
// after a reconnection (vmlet restarted) what happened to them meanwhile.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseVmSettings, NODE_DEFAULTS, type MachineSettings } from '../vm/annotations.js';
import { hostTopology } from '../vm/cputune.js';
import { domainName, type VmMetadata, type VmNic } from '../vm/spec.js';
import { prepareAgentSocketDir } from '../vm/guest-agent.js';
import { ROOT, qemuDirs } from '../vm/qemu-user.js';
import { attachPodTap, usePodTap, type PodNetworkState } from '../net/index.js';
import { readGuestKit, type InstalledKit } from '../guest/kit.js';
import { createScratch } from '../guest/scratch.js';
import { preparePodShare, readOnlyView } from '../guest/shared-mounts.js';
import { netArgs, podVmSpec, type PodNetForGuest } from '../guest/pod-vm-spec.js';
import type { AgentClient, ExitEvent, HelloResult } from '../guest/agent-client.js';
import type { PodManager } from './manager.js';
import type { ContainerRecord, SandboxRecord } from './records.js';
import type { PodSandboxConfig } from './configs.js';
import { CLAIMED_BY, type PoolVm } from './pool-vm.js';
import { podVmFiles, removePodVmDisks, type PodVmFiles } from './podvm-files.js';
import { PodVm } from './podvm.js';
import { placeQemu } from '../vm/pod-cgroup.js';
import { podEmulator, startInPodCgroup } from './qemu-cgroup.js';
import { observeBoot } from '../metrics/vmlet.js';
import { monitorSocketBeside } from '../vm/qmp-watch.js';

const GiB = 1024 ** 3;
/** The scratch disk's size (sparse) when vmlet.io/root-disk-size does not say. */
export const SCRATCH_DEFAULT_BYTES = 10 * GiB;
/** Guest memory beside the containers' limits when the pod has no overhead (measured: the kit's kernel and agent use ~46 MiB after boot; the rest is page and 9p cache). */
export const POD_VM_BASE_MIB = 256;
/** Boot to agent under TCG takes seconds; a loaded node (CI, many pods starting) takes longer. */
export const BOOT_TIMEOUT_MS = 120_000;

/** The running pod VM of a sandboxed pod (its handle made on first use), else undefined. */
export function podVmOf(m: PodManager, s: SandboxRecord): PodVm | undefined {
  if (s.kind !== 'sandboxed' || !s.podVm || s.state !== 'ready') return undefined;
  let p = m.podVms.get(s.id);
  if (!p) {
    p = new PodVm(s.id, s.podVm, {
      log: m.log,
      onExit: (e) => agentExit(m, e),
      onHello: (h, agent) => agentHello(m, s, h, agent),
    });
    m.podVms.set(s.id, p);
  }
  return p;
}

/** The kit a pod's VM boots and its machine (from the pod's annotations and resources); FAILED_PRECONDITION without a kit. */
export async function podVmPlan(m: PodManager, config: PodSandboxConfig): Promise<{ kit: InstalledKit; settings: MachineSettings }> {
  const kit = await readGuestKit(m.deps.config.guestKitDir);
  const settings = sizePodVm(
    parseVmSettings({
      sandboxAnnotations: config.annotations ?? {},
      containerAnnotations: {},
      imageLabels: {},
      containerResources: null,
      sandboxResources: config.linux?.resources ?? null,
      defaults: NODE_DEFAULTS,
    }),
  );
  return { kit, settings };
}

/**
 * Boots the pod's VM if it has none (caller holds the sandbox's lock). A failure leaves nothing
 * behind. `guessed`: booted at the image pull on a guess (podvm-ahead.ts), never from the pool.
 */
export async function ensurePodVm(m: PodManager, s: SandboxRecord, o: { guessed?: boolean } = {}): Promise<PodVm> {
  const running = podVmOf(m, s);
  if (running) return running;
  const { kit, settings } = await podVmPlan(m, s.config);
  const net = m.networks.get(s.id);
  const pooled = o.guessed ? undefined : m.pool?.take(settings, kit.version);
  if (pooled) {
    const p = await claimPoolVm(m, s, pooled, settings, net).catch(async (err: unknown) => {
      m.log.warn({ podSandboxId: s.id, domain: pooled.domainName, err: (err as Error).message }, 'cannot use the pool VM; booting the pod its own');
      await m.pool!.discard(pooled);
      return undefined;
    });
    if (p) return p;
  }
  const files = podVmFiles(m.store.sandboxDir(s.id), s.id);
  const { scratch, shared, consoleLog, socket } = files;
  const md = s.config.metadata!;
  const name = domainName(md.name, md.namespace, s.id);
  const started = performance.now();
  let defined = false;
  try {
    await startPodVmDomain(m, {
      name,
      settings,
      kit,
      files,
      scratchBytes: settings.rootDiskSizeBytes ?? SCRATCH_DEFAULT_BYTES,
      ...(net ? { nic: { tap: net.tap, mac: net.mac, mtu: net.mtu }, net: { ips: net.ips, routes: net.routes, mtu: net.mtu } } : {}),
      metadata: { v: 1, sandboxId: s.id, containerId: '', podVm: true },
      ...(s.config.linux?.cgroup_parent ? { cgroupParent: s.config.linux.cgroup_parent } : {}),
    });
    defined = true;
    if (net) await attachPodTap(net, { fresh: true });
    s.kind = 'sandboxed';
    if (o.guessed) s.guessed = true;
    s.podVm = { domainName: name, agentSocket: socket.path, scratch, consoleLog, kit: kit.version, lastStream: 0, memoryMiB: settings.memoryMiB, maxMemoryMiB: settings.maxMemoryMiB };
    await watchPodVm(m, s);
    const p = podVmOf(m, s)!;
    const agent = await p.agent(BOOT_TIMEOUT_MS);
    await agent.setupPod(await podFiles(s, net?.ips[0]?.address));
    await m.store.saveSandbox(s);
    m.log.info({ podSandboxId: s.id, domain: name, kit: kit.version, vcpus: settings.vcpus, memoryMiB: settings.memoryMiB, bootMs: Math.round(performance.now() - started), ...(o.guessed ? { atPull: true } : {}) }, 'pod VM ready');
    observeBoot('sandboxed', (performance.now() - started) / 1000);
    return p;
  } catch (err) {
    forgetPodVm(m, s);
    if (defined) {
      await m.deps.vm.destroy(name).catch(() => undefined);
      await m.deps.vm.remove(name).catch(() => undefined);
    }
    await removePodVmDisks({ scratch, shared, socket }).catch((e: unknown) => m.log.error({ podSandboxId: s.id, err: (e as Error).message }, 'cannot remove the pod VM\'s scratch disk or release its share'));
    throw err;
  }
}

/**
 * Makes a pod VM's scratch disk and share, then defines and starts it from the guest kit with the
 * node's part of its spec (accelerator, image share, TCG cache): for a pod (ensurePodVm) and for
 * the warm pool (podvm-pool.ts). A pod's QEMU runs in its cgroup_parent (qemu-cgroup.ts). A start
 * that fails takes its definition with it; the scratch disk and share are the caller's to undo.
 */
export async function startPodVmDomain(
  m: PodManager,
  o: { name: string; settings: MachineSettings; kit: InstalledKit; files: PodVmFiles; scratchBytes: number; nic?: VmNic; net?: PodNetForGuest; pooled?: boolean; metadata: VmMetadata; cgroupParent?: string },
): Promise<void> {
  // Over 9p (no virtiofsd on the node) QEMU runs as root (vm/spec.ts runAs).
  const virtiofsd = m.deps.virtiofsd;
  const qemuUser = virtiofsd ? m.qemuUser : ROOT;
  await prepareAgentSocketDir(o.files.socket, qemuUser, m.log);
  await qemuDirs([dirname(o.files.scratch)], qemuUser); // the VM's dir: its scratch disk and console log
  // virtiofs has no read-only mode: the image tree is shared from a read-only bind of it.
  const imagesDir = virtiofsd ? await readOnlyView(m.deps.images.rootfsRoot, join(m.deps.config.stateDir, 'images-ro')) : m.deps.images.rootfsRoot;
  const emulator = podEmulator(m, o.cgroupParent);
  const spec = podVmSpec({
    name: o.name,
    domainType: m.deps.accel.domainType,
    settings: o.settings,
    kit: o.kit,
    imagesDir,
    ...(virtiofsd ? { virtiofsd } : {}),
    qemuUser,
    sharedDir: o.files.shared,
    scratch: o.files.scratch,
    agentSocket: o.files.socket.path,
    consoleLog: o.files.consoleLog,
    tcgTbCacheMiB: m.deps.config.tcgTbCacheMiB,
    ...(o.nic ? { nic: o.nic } : {}),
    ...(o.net ? { net: o.net } : {}),
    ...(o.pooled ? { pooled: true } : {}),
    metadata: o.metadata,
    ...(emulator ? { emulator } : {}),
    ...(m.deps.podVmBiosRom ? { biosRom: m.deps.podVmBiosRom } : {}),
  });
  await createScratch(o.files.scratch, o.scratchBytes);
  await preparePodShare(o.files.shared);
  await m.deps.vm.define(spec);
  try {
    await startInPodCgroup(m, o.cgroupParent, o.name, () => m.deps.vm.start(o.name));
  } catch (err) {
    await m.deps.vm.destroy(o.name).catch(() => undefined);
    await m.deps.vm.remove(o.name).catch(() => undefined);
    throw err;
  }
}

/**
 * A warm-pool VM becomes the pod's (caller holds the sandbox's lock): recorded as the pod's first,
 * so a crash from here on leaves a pod with a VM, not a pool VM the next start sweeps; then its
 * tap joins the pod netns, QEMU the pod cgroup, the balloon and vCPUs give it the pod's size, and
 * the agent sets the pod's MAC, addresses, routes and files. A failure undoes the record and
 * throws; the caller discards the VM and boots one.
 */
async function claimPoolVm(m: PodManager, s: SandboxRecord, v: PoolVm, settings: MachineSettings, net: PodNetworkState | undefined): Promise<PodVm> {
  const started = performance.now();
  const sandboxDir = m.store.sandboxDir(s.id);
  const ownTap = net?.tap;
  s.kind = 'sandboxed';
  s.podVm = { domainName: v.domainName, agentSocket: v.agentSocket, scratch: v.scratch, consoleLog: v.consoleLog, kit: v.kit, lastStream: 0, memoryMiB: settings.memoryMiB, maxMemoryMiB: settings.maxMemoryMiB, dir: v.dir, shared: v.shared };
  try {
    await writeFile(join(v.dir, CLAIMED_BY), s.id);
    await m.store.saveSandbox(s);
    await watchPodVm(m, s);
    if (net) {
      await usePodTap(sandboxDir, net, v.tap);
      await attachPodTap(net, { fresh: true });
    }
    placeQemu(s.config.linux?.cgroup_parent, m.deps.config.cgroupDriver, m.deps.vm.qemuPid(v.domainName));
    if (settings.memoryMiB !== v.settings.memoryMiB) await m.deps.vm.setMemory(v.domainName, settings.memoryMiB * 1024, true);
    const p = podVmOf(m, s)!;
    const agent = await p.agent(BOOT_TIMEOUT_MS);
    if (settings.vcpus > v.settings.vcpus) {
      await m.deps.vm.setVcpus(v.domainName, settings.vcpus, true);
      // As when a pod VM grows (podvm-grow.ts): a vCPU the guest has not onlined yet costs CPU time, not correctness.
      await agent.onlineCpus(settings.vcpus).catch((err: unknown) => {
        m.log.warn({ podSandboxId: s.id, domain: v.domainName, vcpus: settings.vcpus, err: (err as Error).message }, 'the guest did not bring the added vCPUs online');
      });
    }
    await agent.setupPod({ ...(await podFiles(s, net?.ips[0]?.address)), ...(net ? { net: [...netArgs(net), `vmlet.mac=${net.mac}`] } : {}) });
    m.log.info({ podSandboxId: s.id, domain: v.domainName, pooled: true, kit: v.kit, vcpus: settings.vcpus, memoryMiB: settings.memoryMiB, claimMs: Math.round(performance.now() - started) }, 'pod VM ready');
    observeBoot('pooled', (performance.now() - started) / 1000);
    return p;
  } catch (err) {
    forgetPodVm(m, s);
    if (net && ownTap) await usePodTap(sandboxDir, net, ownTap).catch(() => undefined);
    await m.store.saveSandbox(s).catch(() => undefined);
    throw err;
  }
}

/** A pod VM that could not be made the pod's, or is gone as a wrong guess: its handle closed, the record back to no VM (not saved). */
export function forgetPodVm(m: PodManager, s: SandboxRecord): void {
  m.exitWatches.unwatch(podWatchKey(s.id));
  m.podVms.get(s.id)?.close();
  m.podVms.delete(s.id);
  delete s.kind;
  delete s.guessed;
  delete s.podVm;
}

const podWatchKey = (sandboxId: string) => `pod:${sandboxId}`;

/** Hears the end of the pod's VM from its QEMU (exit-watch.ts): the pod turns NOTREADY at once. */
async function watchPodVm(m: PodManager, s: SandboxRecord): Promise<void> {
  if (!s.podVm) return;
  await m.exitWatches.watch({ key: podWatchKey(s.id), domain: s.podVm.domainName, socket: monitorSocketBeside(s.podVm.agentSocket), ids: { podSandboxId: s.id } });
}

/** The host dir whose binds are the pod's CRI mounts in the guest (shared-mounts.ts). */
export function podShareDir(m: PodManager, s: SandboxRecord): string {
  return s.podVm?.shared ?? join(m.store.sandboxDir(s.id), 'shared');
}

/** At vmlet's start: the agents of running pod VMs, to hear the exits that happened meanwhile. */
export function reconnectPodVms(m: PodManager): void {
  for (const s of m.sandboxes.values()) {
    const p = podVmOf(m, s);
    if (p) void watchPodVm(m, s);
    p?.agent(30_000).catch((err: unknown) => m.log.warn({ podSandboxId: s.id, err: (err as Error).message }, 'cannot reach the pod VM\'s agent; tried again on next use'));
  }
}

/**
 * When the pod's memory comes from its resources (the kubelet's sum of its containers' limits),
 * the guest's own kernel, agent and caches need room beside them: POD_VM_BASE_MIB more. (The
 * pod's overhead, its RuntimeClass's podFixed, pays for QEMU on the host, not for the guest.)
 * An annotation's size is taken as it is.
 */
export function sizePodVm(settings: MachineSettings, hostCpus = hostTopology().cpus): MachineSettings {
  // vCPUs are hot-added as containers ask for them (podvm-grow.ts), as Kata's default_maxvcpus
  // allows up to the host's CPUs: an absent vCPU costs the VM nothing.
  const out = settings.sources.maxVcpus !== 'default' || hostCpus <= settings.maxVcpus
    ? settings
    : { ...settings, maxVcpus: hostCpus, sources: { ...settings.sources, maxVcpus: "the host's CPUs" } };
  if (settings.sources.memory !== 'sandbox resources') return out;
  const memoryMiB = settings.memoryMiB + POD_VM_BASE_MIB;
  return {
    ...out,
    memoryMiB,
    maxMemoryMiB: Math.max(settings.maxMemoryMiB, memoryMiB),
    sources: { ...out.sources, memory: `sandbox resources + ${POD_VM_BASE_MIB} MiB for the guest` },
  };
}

/** StopPodSandbox: the VM goes at once (the kubelet already gave containers their grace period). */
export async function stopPodVm(m: PodManager, s: SandboxRecord): Promise<void> {
  m.exitWatches.unwatch(podWatchKey(s.id)); // vmlet's own stop: no end to report
  m.podVms.get(s.id)?.close();
  m.podVms.delete(s.id);
  if (!s.podVm) return;
  await m.deps.vm.destroy(s.podVm.domainName);
  for (const c of m.containersOf(s.id)) {
    if (c.kind === 'sandboxed' && c.state === 'running') await finishSandboxed(m, c, { exitCode: 137, reason: 'Error', message: 'the pod was stopped' });
  }
}

/** RemovePodSandbox: the VM's definition and scratch disk (the rest is in the sandbox dir). */
export async function removePodVm(m: PodManager, s: SandboxRecord): Promise<void> {
  await stopPodVm(m, s);
  if (!s.podVm) return;
  await m.exitWatches.settled([s.podVm.domainName]); // a VM that died: libvirt done tearing it down first
  await m.deps.vm.remove(s.podVm.domainName);
  const socket = s.podVm.dir ? undefined : podVmFiles(m.store.sandboxDir(s.id), s.id).socket; // a claimed pool VM's is in its dir
  await removePodVmDisks({ scratch: s.podVm.scratch, shared: podShareDir(m, s), ...(socket ? { socket } : {}) });
  if (s.podVm.dir) await rm(s.podVm.dir, { recursive: true, force: true });
}

export interface SandboxedExit {
  exitCode: number;
  reason: string;
  message: string;
  finishedAt?: bigint;
}

/** Records that a sandboxed container's main process ended. Idempotent, lock-free: the state changes before any await. */
export async function finishSandboxed(m: PodManager, c: ContainerRecord, st: SandboxedExit): Promise<void> {
  if (c.state !== 'running') return;
  c.state = 'exited';
  c.exitCode = st.exitCode;
  c.reason = st.reason;
  c.message = st.message;
  c.finishedAt = (st.finishedAt ?? BigInt(Date.now()) * 1_000_000n).toString();
  await m.podVms.get(c.sandboxId)?.io.get(c.id)?.exited();
  await m.store.saveContainer(c);
  m.log.info({ containerId: c.id, podSandboxId: c.sandboxId, exitCode: c.exitCode, reason: c.reason }, 'container exited');
}

/** containerd's vocabulary: Completed for 0, OOMKilled, Error otherwise; 128 + signal when signalled. */
export function exitFromAgent(e: Pick<ExitEvent, 'exitCode' | 'signal' | 'oomKilled' | 'finishedAt'>): SandboxedExit {
  const reason = e.oomKilled ? 'OOMKilled' : e.exitCode === 0 ? 'Completed' : 'Error';
  return { exitCode: e.exitCode, reason, message: e.signal ? `killed by signal ${e.signal}` : '', finishedAt: e.finishedAt };
}

function agentExit(m: PodManager, e: ExitEvent): void {
  if (e.exec) return;
  const c = m.containers.get(e.id);
  if (!c || c.kind !== 'sandboxed' || c.stream !== e.stream) return;
  finishSandboxed(m, c, exitFromAgent(e)).catch((err: unknown) => m.log.warn({ containerId: c.id, err: (err as Error).message }, 'cannot record the container exit'));
}

/** After a (re)connection: exits the agent saw while nobody listened, and output routing again. */
async function agentHello(m: PodManager, s: SandboxRecord, h: HelloResult, agent: AgentClient): Promise<void> {
  const p = m.podVms.get(s.id);
  for (const c of m.containersOf(s.id)) {
    if (c.kind !== 'sandboxed' || c.state !== 'running' || c.stream === undefined) continue;
    const st = h.containers.find((x) => x.id === c.id);
    if (!st || st.stream !== c.stream) {
      await finishSandboxed(m, c, { exitCode: 255, reason: 'Error', message: 'the guest agent does not know this run of the container (the pod VM restarted?)' });
    } else if (st.state === 'exited') {
      await finishSandboxed(m, c, exitFromAgent({ exitCode: st.exitCode, signal: st.signal, oomKilled: false, finishedAt: st.finishedAt }));
    } else if (p) {
      agent.attachSink(c.stream, p.ioOf(c.id, c.logPath).sink());
    }
  }
}

/**
 * The guest's hostname: the pod's, else its name cut as the kubelet cuts it (63 bytes, no
 * trailing '-' or '.'): Linux takes at most 64, and pod names (critest's among them) are longer.
 */
export function podHostname(hostname: string | undefined, podName: string): string {
  if (hostname) return hostname;
  return podName.slice(0, 63).replace(/[-.]+$/, '');
}

/** /etc/hosts, /etc/resolv.conf, hostname and sysctls for every container, as containerd makes them. */
async function podFiles(s: SandboxRecord, podIp: string | undefined) {
  const hostname = podHostname(s.config.hostname, s.config.metadata!.name);
  const hosts = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
    ...(podIp ? [`${podIp}\t${hostname}`] : []),
  ].join('\n') + '\n';
  const dns = s.config.dns_config;
  let resolvConf: string;
  if (dns && (dns.servers?.length || dns.searches?.length || dns.options?.length)) {
    resolvConf = [
      ...(dns.searches?.length ? [`search ${dns.searches.join(' ')}`] : []),
      ...(dns.servers ?? []).map((x) => `nameserver ${x}`),
      ...(dns.options?.length ? [`options ${dns.options.join(' ')}`] : []),
    ].join('\n') + '\n';
  } else {
    // No DNS config: the node's, as containerd does.
    resolvConf = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  }
  return { hostname, hosts, resolvConf, sysctls: { ...(s.config.linux?.sysctls ?? {}) } };
}
