// The warm pool of sandboxed pods' VMs (config podVmPool, docs/sandboxed-pods.md): VMs booted
// ahead of any pod from the guest kit, at the size a pod VM has by default, each with its scratch
// disk, share and agent socket in <stateDir>/pool/<id>/ and its NIC's tap in the host netns with
// the guest's NIC down. A pod whose VM would be the same machine (podVmKey) takes one instead of
// booting its own (podvm-boot.ts claimPoolVm). Kata Containers' VM cache is the same idea.
//
// The pool refills once no VM has been taken for REFILL_QUIET_MS, one boot at a time, so a
// refill does not compete for the CPU with the pod start it made room for. Idle VMs are
// destroyed when vmlet stops; after a crash, start-up sweeps this node's pool VMs and dirs that
// no pod record names.
import { qemuDirs } from '../vm/qemu-user.js';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PodVmPoolConfig } from '../config.js';
import { parseVmSettings, NODE_DEFAULTS, type MachineSettings } from '../vm/annotations.js';
import { readGuestKit } from '../guest/kit.js';
import { releasePodShare } from '../guest/shared-mounts.js';
import { AgentClient } from '../guest/agent-client.js';
import { tapName } from '../net/tap.js';
import type { PodManager, PodVmPoolHandle } from './manager.js';
import { BOOT_TIMEOUT_MS, SCRATCH_DEFAULT_BYTES, sizePodVm, startPodVmDomain } from './podvm-boot.js';
import { podVmFiles } from './podvm-files.js';
import { CLAIMED_BY, fitsPoolVm, podVmKey, type PoolVm } from './pool-vm.js';

/** No refill boot until no VM has been taken for this long (a burst of pod starts is not slowed). */
export const REFILL_QUIET_MS = 3000;
/** A failed boot waits this long (doubled per failure in a row, up to 5 minutes) before the next. */
const RETRY_MS = 5000;

/** The pool's VMs: a pod VM of a pod with no annotations and no resources, able to grow to maxMemoryMiB. */
export function poolVmSettings(cfg: PodVmPoolConfig): MachineSettings {
  const s = sizePodVm(parseVmSettings({ sandboxAnnotations: {}, containerAnnotations: {}, imageLabels: {}, containerResources: null, sandboxResources: null, defaults: NODE_DEFAULTS }));
  return { ...s, maxMemoryMiB: Math.max(s.memoryMiB, cfg.maxMemoryMiB), sources: { ...s.sources, maxMemory: 'config podVmPool.maxMemoryMiB' } };
}

export class PodVmPool implements PodVmPoolHandle {
  private readonly idle: PoolVm[] = [];
  private timer: NodeJS.Timeout | undefined;
  private filling: Promise<void> | undefined;
  private stopped = false;
  private lastTake = 0;
  private failures = 0;
  private unlisten: (() => void) | undefined;
  /** This node's pool VMs' names start with it (a hash of the state dir: other vmlets on the same libvirtd have their own). */
  readonly prefix: string;
  readonly root: string;

  constructor(
    private readonly m: PodManager,
    private readonly cfg: PodVmPoolConfig,
  ) {
    const stateDir = m.deps.config.stateDir;
    this.prefix = `vmletpool-${createHash('sha256').update(stateDir).digest('hex').slice(0, 8)}-`;
    this.root = join(stateDir, 'pool');
  }

  get size(): number {
    return this.cfg.size;
  }

  /** Idle VMs now (for status and tests). */
  get idleNames(): string[] {
    return this.idle.map((v) => v.domainName);
  }

  /** After the pods are recovered: what a crash left is swept, then the pool fills. */
  async start(): Promise<void> {
    this.unlisten = this.m.deps.vm.onExit((name, reason) => this.exited(name, reason));
    await this.sweep().catch((err: unknown) => this.m.log.warn({ err: (err as Error).message }, 'pod VM pool: cannot sweep what an earlier run left'));
    if (this.cfg.size > 0) this.kick(0);
  }

  /** An idle VM for a pod VM of `want` booted from kit `kit`, taken out of the pool; undefined when none fits. */
  take(want: MachineSettings, kit: string): PoolVm | undefined {
    // VMs of another guest kit (the node's kit was upgraded) are never taken: replaced.
    for (const old of this.idle.filter((v) => v.kit !== kit)) {
      this.idle.splice(this.idle.indexOf(old), 1);
      this.m.log.info({ domain: old.domainName, kit: old.kit, nodeKit: kit }, 'pod VM pool: an idle VM of another guest kit is replaced');
      this.discard(old).catch(() => undefined).finally(() => this.kick(REFILL_QUIET_MS));
    }
    const i = this.idle.findIndex((v) => fitsPoolVm(v, want));
    if (i < 0) {
      if (this.idle.length) this.m.log.debug({ idle: this.idle.length, kit, key: podVmKey(want), memoryMiB: want.memoryMiB, vcpus: want.vcpus }, 'pod VM pool: no idle VM fits this pod');
      return undefined;
    }
    const [v] = this.idle.splice(i, 1);
    this.lastTake = Date.now();
    this.kick(REFILL_QUIET_MS);
    return v;
  }

  /** Destroys a pool VM and its files (one taken whose claim failed, or one that stopped). */
  async discard(v: PoolVm): Promise<void> {
    const vm = this.m.deps.vm;
    await vm.destroy(v.domainName).catch(() => undefined);
    await vm.remove(v.domainName).catch(() => undefined);
    await releasePodShare(v.shared).catch((err: unknown) => this.m.log.error({ domain: v.domainName, err: (err as Error).message }, 'pod VM pool: cannot release the share'));
    await rm(v.dir, { recursive: true, force: true });
  }

  /** vmlet stops: no more boots, idle VMs destroyed (claimed ones are pods', and go on). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.unlisten?.();
    await this.filling;
    for (const v of this.idle.splice(0)) await this.discard(v);
  }

  private kick(delayMs: number): void {
    if (this.stopped || this.cfg.size === 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.filling ??= this.fill().finally(() => (this.filling = undefined));
    }, delayMs).unref();
  }

  private async fill(): Promise<void> {
    while (!this.stopped && this.idle.length < this.cfg.size) {
      const quiet = Date.now() - this.lastTake;
      if (quiet < REFILL_QUIET_MS) return this.kick(REFILL_QUIET_MS - quiet);
      try {
        const v = await this.boot();
        if (this.stopped) {
          await this.discard(v);
          return;
        }
        this.idle.push(v);
        this.failures = 0;
      } catch (err) {
        this.failures++;
        const retryMs = Math.min(300_000, RETRY_MS * 2 ** (this.failures - 1));
        this.m.log.error({ err: (err as Error).message, failures: this.failures, retryMs }, 'pod VM pool: boot failed; trying again later');
        return this.kick(retryMs);
      }
    }
  }

  /** One pool VM, booted until its agent answers. A failure leaves nothing behind. */
  private async boot(): Promise<PoolVm> {
    const m = this.m;
    const id = `p${randomBytes(5).toString('hex')}`; // 11 characters: the tap's name holds them all
    const dir = join(this.root, id);
    const kit = await readGuestKit(m.deps.config.guestKitDir);
    const settings = poolVmSettings(this.cfg);
    const files = podVmFiles(dir, id);
    const mac = `02:${randomBytes(5).toString('hex').match(/../g)!.join(':')}`; // replaced by the pod's at claim
    const v: PoolVm = {
      id,
      domainName: `${this.prefix}${id}`,
      dir,
      scratch: files.scratch,
      shared: files.shared,
      consoleLog: files.consoleLog,
      agentSocket: files.socket.path,
      tap: tapName(id),
      kit: kit.version,
      settings,
      key: podVmKey(settings),
    };
    const started = performance.now();
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      if (m.deps.virtiofsd) await qemuDirs([this.root], m.qemuUser); // QEMU passes through to its VM's dir (startPodVmDomain)
      await startPodVmDomain(m, {
        name: v.domainName,
        settings,
        kit,
        files,
        scratchBytes: SCRATCH_DEFAULT_BYTES,
        nic: { tap: v.tap, mac },
        pooled: true,
        metadata: { v: 1, sandboxId: '', containerId: '', podVm: true, pool: id },
      });
      const agent = await AgentClient.connect(v.agentSocket, { log: m.log.child({ domain: v.domainName }), timeoutMs: BOOT_TIMEOUT_MS });
      try {
        await agent.hello();
      } finally {
        agent.close(); // one client at a time on the port: the pod's PodVm connects after the claim
      }
    } catch (err) {
      await this.discard(v);
      throw err;
    }
    m.log.info({ domain: v.domainName, kit: kit.version, memoryMiB: settings.memoryMiB, maxMemoryMiB: settings.maxMemoryMiB, bootMs: Math.round(performance.now() - started), idle: this.idle.length + 1, size: this.cfg.size }, 'pod VM pool: VM ready');
    return v;
  }

  /** An idle VM that stopped (crashed, or destroyed by hand) leaves the pool. */
  private exited(name: string, reason: string): void {
    const i = this.idle.findIndex((v) => v.domainName === name);
    if (i < 0) return;
    const [v] = this.idle.splice(i, 1);
    this.m.log.warn({ domain: name, reason }, 'pod VM pool: an idle VM stopped; it is replaced');
    this.discard(v!).catch(() => undefined).finally(() => this.kick(0));
  }

  /**
   * This node's pool VMs and dirs that no pod claimed: idle VMs of an earlier run (vmlet was
   * killed). A claimed one is named by its pod's record, or (when that record cannot be read and
   * was set aside) by the CLAIMED_BY file its claim wrote, while the pod's dir exists: kept.
   */
  private async sweep(): Promise<void> {
    const claimed = new Set<string>();
    const claimedDirs = new Set<string>();
    for (const s of this.m.sandboxes.values()) {
      if (s.podVm?.domainName) claimed.add(s.podVm.domainName);
      if (s.podVm?.dir) claimedDirs.add(s.podVm.dir);
    }
    const ids = await readdir(this.root).catch(() => [] as string[]);
    for (const id of ids) {
      const pod = await readFile(join(this.root, id, CLAIMED_BY), 'utf8').catch(() => '');
      if (pod && existsSync(this.m.store.sandboxDir(pod.trim()))) {
        claimed.add(`${this.prefix}${id}`);
        claimedDirs.add(join(this.root, id));
      }
    }
    const vm = this.m.deps.vm;
    for (const name of await vm.allNames()) {
      if (!name.startsWith(this.prefix) || claimed.has(name)) continue;
      await vm.destroy(name).catch(() => undefined);
      await vm.remove(name).catch(() => undefined);
      this.m.log.info({ domain: name }, 'pod VM pool: swept an idle VM of an earlier run');
    }
    for (const id of ids) {
      const dir = join(this.root, id);
      if (claimedDirs.has(dir)) continue;
      await releasePodShare(join(dir, 'shared'));
      await rm(dir, { recursive: true, force: true });
    }
  }
}
