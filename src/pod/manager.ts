// The in-memory index of sandboxes and containers, rebuilt at start from the state dir and
// the VM driver, plus what every verb needs: per-id locks, persistence, the VM driver.
// The verbs themselves live in one file each (sandbox-*.ts, container-*.ts).
import type { EmulatorWrapper } from '../vm/emulator-wrapper.js';
import { ConsoleRescue } from '../stream/console-rescue.js';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { PodSandboxMetadata } from './configs.js';
import type { Logger } from '../log.js';
import type { ImageStore } from '../image/store.js';
import type { AccelDecision } from '../vm/accel.js';
import type { VmDriver } from '../vm/driver.js';
import { failedPrecondition, notFound } from '../errors.js';
import { resolveId } from './ids.js';
import { KeyedLock } from './keyed-lock.js';
import { PodStateStore, type ContainerRecord, type SandboxRecord, type SetAsideRecord } from './records.js';
import { exitStatus } from './exit.js';
import { ConsoleTailer } from '../stream/console-tailer.js';
import { readPodNetworkState, reattachPodNetwork, type PodNetworkState } from '../net/index.js';
import { releaseUnfinishedNetwork } from './network-recovery.js';
import { stopUnfinishedStarts, sweepUnrecordedDomains } from './domain-sweep.js';
import type { PodVm } from './podvm.js';
import type { PoolVm } from './pool-vm.js';
import type { MachineSettings } from '../vm/annotations.js';
import { ContainerEvents, ContainerIndex } from './container-events.js';
import { ROOT, type QemuIdentity } from '../vm/qemu-user.js';
import { ExitWatches } from './exit-watch.js';
import { monitorSocketBeside } from '../vm/qmp-watch.js';
import { agentSocketPath } from '../vm/guest-agent.js';

export interface PodDeps {
  config: Config;
  log: Logger;
  vm: VmDriver;
  images: ImageStore;
  accel: AccelDecision;
  /** The <emulator> that starts a pod's QEMU in the pod cgroup (vm/emulator-wrapper.ts); absent: QEMU is moved there after its start. */
  emulator?: EmulatorWrapper;
  /** Who VMs' QEMU runs as (vm/qemu-user.ts); absent: root, as qemu.conf on nodes vmlet installed before. */
  qemuUser?: QemuIdentity;
  /** virtiofsd for VM-image pods' directory volumes (vm/virtiofs.ts); absent: 9p. */
  virtiofsd?: string;
  /** The BIOS ROM sandboxed pods' VMs start (qboot, config podVmBios); absent: QEMU's SeaBIOS. */
  podVmBiosRom?: string;
}

/** The warm pool of pod VMs as the pod layer uses it (podvm-pool.ts, made by serve.ts). */
export interface PodVmPoolHandle {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** An idle VM that can be a pod VM of `want` booted from kit `kit`, taken out of the pool. */
  take(want: MachineSettings, kit: string): PoolVm | undefined;
  /** Destroys a taken VM whose claim failed. */
  discard(v: PoolVm): Promise<void>;
  /** The idle VMs' domain names. */
  readonly idleNames: string[];
}

export class PodManager {
  readonly sandboxes = new Map<string, SandboxRecord>();
  /** Container state changes, for GetContainerEvents. */
  readonly events = new ContainerEvents();
  readonly containers = new ContainerIndex(this.events);
  readonly store: PodStateStore;
  readonly lock = new KeyedLock();
  readonly tailers = new Map<string, ConsoleTailer>();
  /** Per tailed VM: vmlet reads its console pipe when virtlogd no longer does (stream/console-rescue.ts). */
  readonly rescues = new Map<string, ConsoleRescue>();
  /** Pod networks by sandbox id (their state file, network.json, is owned by net/). */
  readonly networks = new Map<string, PodNetworkState>();
  /** Sandboxed pods' running VMs by sandbox id (handles made on first use: podvm-boot.ts podVmOf). */
  readonly podVms = new Map<string, PodVm>();
  /** The warm pool of sandboxed pods' VMs (config podVmPool; set by serve.ts): started after recovery, stopped first. */
  pool: PodVmPoolHandle | undefined;
  /** Connects to running pod VMs' agents (set by serve.ts through podvm-boot.ts, so this file need not import it). */
  reconnectPodVms: (() => void) | undefined;
  private monitorTimer: NodeJS.Timeout | undefined;
  private monitoring: Promise<void> | undefined;
  private readonly unlisten: Array<() => void> = [];
  /** Running VMs' QEMU (VM-image containers', pod VMs'), watched for its end (exit-watch.ts). */
  readonly exitWatches: ExitWatches;
  /**
   * Pods whose StopPodSandbox or RemovePodSandbox is under way (set under the pod's lock, before
   * its containers are listed): StartContainer and PortForward refuse them, and a CreateContainer
   * queued on the lock finds the pod stopped or gone.
   */
  readonly closing = new Map<string, 'stopping' | 'removing'>();
  /** Images of CreateContainer calls under way (image id → how many): in use before the record exists. */
  private readonly imagesInFlight = new Map<string, number>();
  /** Pods found on disk whose records cannot be served (records.ts loadAll); kept, reported. */
  setAside: SetAsideRecord[] = [];

  constructor(readonly deps: PodDeps) {
    this.store = new PodStateStore(join(deps.config.stateDir, 'pods'), deps.log, deps.qemuUser);
    this.store.onContainerSaved = (c) => this.events.saved(c);
    this.store.onContainerRemoved = (c) => this.events.removed(c);
    this.exitWatches = new ExitWatches({
      vm: deps.vm,
      log: deps.log,
      onEnd: (domain, end) => {
        if (end) this.domainStopped(domain, end, 'vmlet monitor'); // else libvirt's event says why
      },
    });
  }

  get qemuUser(): QemuIdentity {
    return this.deps.qemuUser ?? ROOT;
  }

  get log(): Logger {
    return this.deps.log;
  }

  /**
   * Rebuilds the index from disk and libvirt; VMs keep running across vmlet restarts. Exits are
   * heard as libvirt lifecycle events; a full look at every running VM's domain runs at start,
   * after each libvirt reconnect (events sent meanwhile are lost) and, as a safety net, every
   * `safetyPollMs`.
   */
  async start(safetyPollMs = 30_000): Promise<void> {
    const { sandboxes, containers, setAside } = await this.store.loadAll();
    this.setAside = setAside;
    for (const s of sandboxes) {
      this.sandboxes.set(s.id, s);
      const net = readPodNetworkState(this.store.sandboxDir(s.id));
      // A RunPodSandbox that never answered, or a ready pod whose network state is missing, corrupt
      // or from before CNI ADD answered: its lease and DHCP server would leak, tracked by nothing.
      if (s.creating || (s.state === 'ready' && !('state' in net && net.state.cni.result))) {
        await releaseUnfinishedNetwork(this, s, net);
        continue;
      }
      if ('state' in net && net.state.cni.result) this.networks.set(s.id, net.state);
    }
    // No events for what was there before vmlet started.
    this.events.seed(containers);
    // Offsets kept by the console copiers are newer than the records.
    for (const c of containers) {
      if (!this.sandboxes.has(c.sandboxId)) continue;
      const saved = await ConsoleTailer.savedPosition(this.offsetFile(c), c.logPath, this.log.child({ containerId: c.id, podSandboxId: c.sandboxId }));
      if (saved) {
        c.consoleOffset = saved.offset;
        if (saved.ino !== undefined) c.consoleIno = saved.ino;
      }
      this.containers.set(c.id, c);
    }
    // Listen before looking, so an exit between the look and the listening is not missed.
    const vm = this.deps.vm;
    this.unlisten.push(
      vm.onExit((name, reason) => this.domainStopped(name, reason)),
      vm.onResync(() => this.pollStates('after a libvirt reconnect')),
    );
    await vm.ready().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'libvirt lifecycle events not registered yet; the safety poll covers exits meanwhile'));
    await sweepUnrecordedDomains(this).catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'cannot look for VMs no record names (libvirt down?)'));
    await stopUnfinishedStarts(this).catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'cannot look for VMs of containers not started (libvirt down?)'));
    // A VM may have stopped while vmlet was down, even one vmlet was stopping when it died.
    await this.reconcile(true).catch((err: unknown) =>
      this.log.error({ err: (err as Error).message }, 'cannot check VM states at start (libvirt down?); will retry'),
    );
    for (const c of this.containers.values()) {
      if (c.state !== 'running' || c.kind === 'sandboxed') continue;
      this.startTailer(c);
      // Not waited for (as pod VMs' in reconnectPodVms): libvirt's events cover the few ms until it is on.
      void this.watchVm(c);
    }
    this.reconnectPodVms?.();
    // DHCP servers outlive vmlet; after a reboot or a kill they are started again, and a running
    // VM's tap is put back on its bridge.
    for (const [id, net] of this.networks) {
      if (this.sandboxes.get(id)?.state !== 'ready') continue;
      await reattachPodNetwork(net, { log: this.log }).catch((err: unknown) =>
        this.log.error({ podSandboxId: id, err: (err as Error).message }, 'cannot re-attach pod network'),
      );
    }
    this.log.info({ sandboxes: this.sandboxes.size, containers: this.containers.size, setAside: this.setAside.length }, 'pod state recovered');
    await this.pool?.start();
    this.monitorTimer = setInterval(() => this.pollStates(), safetyPollMs);
  }

  /** One look at every running VM's domain (not while one is under way). */
  private pollStates(why?: string): void {
    if (why) this.log.info({ why }, 'checking VM states');
    this.monitoring ??= this.reconcile()
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'domain state poll failed'))
      .finally(() => (this.monitoring = undefined));
  }

  /** A domain ended (libvirt's lifecycle event, or vmlet's monitor closed): its running container (if vmlet is not stopping it) exited. */
  private domainStopped(domainName: string, reason: string, heardBy: 'libvirt event' | 'vmlet monitor' = 'libvirt event'): void {
    this.log.debug({ domain: domainName, reason, heardBy }, 'domain stopped');
    const pod = [...this.sandboxes.values()].find((x) => x.podVm?.domainName === domainName);
    if (pod) return this.podVmStopped(pod, reason);
    const c = [...this.containers.values()].find((x) => x.domainName === domainName && x.kind !== 'sandboxed');
    if (!c || c.state !== 'running' || c.stopping) return;
    this.lock
      .run(c.id, async () => {
        if (c.state !== 'running' || c.stopping || !this.containers.has(c.id)) return;
        await this.markExited(c, undefined, reason);
      })
      .catch((err: unknown) => this.log.warn({ containerId: c.id, err: (err as Error).message }, 'cannot record the VM exit'));
  }

  /**
   * A sandboxed pod's VM ended while the pod was ready (it crashed, or someone destroyed it): its
   * running containers exited and the pod is NOTREADY, so the kubelet makes it again.
   */
  private podVmStopped(s: SandboxRecord, reason: string): void {
    if (s.state !== 'ready' || this.stoppingPods.has(s.id)) return;
    this.podVms.get(s.id)?.close();
    this.podVms.delete(s.id);
    this.lock
      .run(s.id, async () => {
        if (s.state !== 'ready' || this.stoppingPods.has(s.id)) return;
        const at = (BigInt(Date.now()) * 1_000_000n).toString();
        for (const c of this.containersOf(s.id)) {
          if (c.kind !== 'sandboxed' || c.state !== 'running') continue;
          Object.assign(c, { state: 'exited', exitCode: 255, reason: 'Error', message: `the pod's VM stopped (libvirt: ${reason})`, finishedAt: at });
          await this.store.saveContainer(c);
        }
        s.state = 'notready';
        await this.store.saveSandbox(s);
        this.log.warn({ podSandboxId: s.id, domain: s.podVm?.domainName, reason }, 'pod VM stopped; pod is NOTREADY');
      })
      .catch((err: unknown) => this.log.warn({ podSandboxId: s.id, err: (err as Error).message }, 'cannot record the pod VM stop'));
  }

  /** Pods whose VM vmlet itself is stopping (StopPodSandbox): their VM's end is expected. */
  readonly stoppingPods = new Set<string>();

  /** Stops watching; VMs keep running. Console copy positions are saved for the next start. */
  async stop(): Promise<void> {
    await this.pool?.stop();
    this.exitWatches.closeAll();
    if (this.monitorTimer) clearInterval(this.monitorTimer);
    for (const off of this.unlisten.splice(0)) off();
    await this.monitoring;
    for (const p of this.podVms.values()) p.close();
    this.podVms.clear();
    for (const r of this.rescues.values()) r.stop();
    this.rescues.clear();
    for (const c of this.containers.values()) {
      const t = this.tailers.get(c.id);
      if (!t) continue;
      await t.halt();
      ({ offset: c.consoleOffset, ino: c.consoleIno } = t.position);
      await this.store.saveContainer(c);
    }
    this.tailers.clear();
  }

  sandbox(idOrPrefix: string): SandboxRecord | undefined {
    return resolveId(idOrPrefix, this.sandboxes, 'pod sandbox');
  }

  /** The pod a kubelet knows by this metadata (namespace, name, uid, attempt: one sandbox each). */
  sandboxByMetadata(md: PodSandboxMetadata): SandboxRecord | undefined {
    for (const s of this.sandboxes.values()) {
      const o = s.config.metadata!;
      if (o.namespace === md.namespace && o.name === md.name && o.uid === md.uid && o.attempt === md.attempt) return s;
    }
    return undefined;
  }

  container(idOrPrefix: string): ContainerRecord | undefined {
    return resolveId(idOrPrefix, this.containers, 'container');
  }

  mustSandbox(id: string): SandboxRecord {
    const s = this.sandbox(id);
    if (!s) throw notFound(`pod sandbox ${id} not found`);
    return s;
  }

  mustContainer(id: string): ContainerRecord {
    const c = this.container(id);
    if (!c) throw notFound(`container ${id} not found`);
    return c;
  }

  containersOf(sandboxId: string): ContainerRecord[] {
    return [...this.containers.values()].filter((c) => c.sandboxId === sandboxId);
  }

  /** Used by a container, or by a CreateContainer under way (RemoveImage asks: serve.ts). */
  imageInUse(imageId: string): boolean {
    if (this.imagesInFlight.has(imageId)) return true;
    for (const c of this.containers.values()) if (c.imageId === imageId) return true;
    return false;
  }

  /**
   * Runs a CreateContainer's work with the images it `hold`s counted as in use until it ends (by
   * then the container's record, if any, holds them): RemoveImage cannot pull an image from under
   * a create between its look-up and its record.
   */
  async holdingImages<T>(fn: (hold: (imageId: string) => void) => Promise<T>): Promise<T> {
    const held: string[] = [];
    try {
      return await fn((id) => {
        held.push(id);
        this.imagesInFlight.set(id, (this.imagesInFlight.get(id) ?? 0) + 1);
      });
    } finally {
      for (const id of held) {
        const n = (this.imagesInFlight.get(id) ?? 1) - 1;
        if (n > 0) this.imagesInFlight.set(id, n);
        else this.imagesInFlight.delete(id);
      }
    }
  }

  /**
   * The pod as it is now, for a verb that needs it ready: NOT_FOUND once removed (a call that
   * waited on its lock), FAILED_PRECONDITION naming its state when stopped or being stopped or
   * removed. `what` says what was refused ("container <id> cannot start").
   */
  /**
   * Stop and Remove of a pod: fn runs under the pod's lock (which CreateContainer holds, so no
   * create is under way) with the pod marked closing; nothing when the pod went while waiting.
   */
  async closingPod(s: SandboxRecord, why: 'stopping' | 'removing', fn: () => Promise<void>): Promise<void> {
    await this.lock.run(s.id, async () => {
      if (this.sandboxes.get(s.id) !== s) return; // removed while this call waited
      this.closing.set(s.id, why);
      try {
        await fn();
      } finally {
        this.closing.delete(s.id);
      }
    });
  }

  /** A pod VM going down on vmlet's own order, not taken for a crash (domainStopped). */
  async ownVmStop(s: SandboxRecord, fn: () => Promise<void>): Promise<void> {
    this.stoppingPods.add(s.id);
    try {
      await fn();
    } finally {
      this.stoppingPods.delete(s.id);
    }
  }

  requireReady(s: SandboxRecord, what: string): void {
    if (this.sandboxes.get(s.id) !== s) throw notFound(`${what}: pod sandbox ${s.id} not found (removed)`);
    const closing = this.closing.get(s.id);
    if (closing) throw failedPrecondition(`${what}: pod sandbox ${s.id} is ${closing === 'stopping' ? 'being stopped' : 'being removed'}`);
    if (s.state !== 'ready') throw failedPrecondition(`${what}: pod sandbox ${s.id} is notready (stopped)`);
  }

  /** Hears the end of a running VM-image container's VM from its QEMU (exit-watch.ts). */
  watchVm(c: ContainerRecord): Promise<void> {
    const socket = monitorSocketBeside(agentSocketPath(this.store.containerDir(c.sandboxId, c.id), c.id).path);
    return this.exitWatches.watch({ key: c.id, domain: c.domainName, socket, ids: { containerId: c.id, podSandboxId: c.sandboxId } });
  }

  startTailer(c: ContainerRecord): void {
    // No CRI log asked for, or serial-log off (no console file): nothing to copy.
    if (this.tailers.has(c.id) || !c.logPath || !c.consoleLog) return;
    const start = c.consoleIno === undefined ? { offset: c.consoleOffset } : { offset: c.consoleOffset, ino: c.consoleIno };
    const t = new ConsoleTailer(c.consoleLog, c.logPath, this.offsetFile(c), start, this.log.child({ containerId: c.id, podSandboxId: c.sandboxId }));
    this.tailers.set(c.id, t);
    t.start();
    const r = new ConsoleRescue(c.consoleLog, () => this.deps.vm.qemuPid(c.domainName), this.log.child({ containerId: c.id, podSandboxId: c.sandboxId }));
    this.rescues.set(c.id, r);
    r.start();
  }

  async stopTailer(c: ContainerRecord): Promise<void> {
    this.rescues.get(c.id)?.stop();
    this.rescues.delete(c.id);
    const t = this.tailers.get(c.id);
    if (!t) return;
    this.tailers.delete(c.id);
    await t.stop();
    ({ offset: c.consoleOffset, ino: c.consoleIno } = t.position);
  }

  offsetFile(c: ContainerRecord): string {
    return join(this.store.containerDir(c.sandboxId, c.id), 'console.offset');
  }

  /**
   * A running container whose domain is no longer active (off, crashed or gone) has exited; record when and why. Also used at start, for VMs that stopped while vmlet was down.
   */
  async reconcile(includeStopping = false): Promise<void> {
    const running = [...this.containers.values()].filter((c) => c.state === 'running' && c.kind !== 'sandboxed' && (includeStopping || !c.stopping));
    const pods = [...this.sandboxes.values()].filter((s) => s.state === 'ready' && s.podVm);
    if (running.length === 0 && pods.length === 0) return;
    // One bulk call for the active domains' state: no domain job, no QEMU asked.
    const active = await this.deps.vm.activeNames(new Set([...running.map((c) => c.domainName), ...pods.map((s) => s.podVm!.domainName)]));
    for (const s of pods) if (!active.has(s.podVm!.domainName)) this.podVmStopped(s, 'not running');
    for (const c of running) {
      if (active.has(c.domainName)) continue;
      await this.lock.run(c.id, async () => {
        if (c.state !== 'running' || (c.stopping && !includeStopping)) return;
        await this.markExited(c, c.stopping);
      });
    }
  }

  /** Records a container's exit (caller holds its lock). */
  async markExited(c: ContainerRecord, stopping: 'shutdown' | 'destroy' | undefined, reason?: string): Promise<void> {
    this.exitWatches.unwatch(c.id);
    await this.stopTailer(c);
    const st = exitStatus(reason ?? (await this.deps.vm.exitReason(c.domainName)), stopping);
    c.state = 'exited';
    c.finishedAt = (BigInt(Date.now()) * 1_000_000n).toString();
    c.exitCode = st.exitCode;
    c.reason = st.reason;
    c.message = st.message;
    delete c.stopping;
    // The event goes with the state ContainerStatus already answers, not after the save's fsync
    // (tens of ms on a busy disk); the save's own call to it then finds nothing new.
    this.events.saved(c);
    await this.store.saveContainer(c);
    this.log.info({ containerId: c.id, podSandboxId: c.sandboxId, exitCode: c.exitCode, reason: c.reason, message: c.message }, 'container exited');
  }
}
