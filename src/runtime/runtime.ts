// Node-wide runtime state behind the CRI calls that are not about one pod: Status,
// RuntimeConfig, UpdateRuntimeConfig. Holds the libvirt connection and the KVM/TCG decision.
import { readFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { checkCni } from '../net/cni-config.js';
import { atomicWrite } from '../util/atomic-write.js';
import { decideAccel, probeHost, type AccelDecision } from '../vm/accel.js';
import { Libvirt, loadedLibvirtVersion } from '../vm/libvirt.js';
import { programVersion, QEMU_SYSTEM, which } from '../util/binaries.js';
import { resolveCgroupDriver } from '../vm/pod-cgroup.js';

export interface Condition {
  type: 'RuntimeReady' | 'NetworkReady';
  status: boolean;
  reason: string;
  message: string;
}

export interface RuntimeStatus {
  conditions: Condition[];
  /** Handler names; '' is the default handler when vmlet is the node's default runtime. */
  handlers: string[];
  /** Verbose only: JSON strings keyed by topic. */
  info?: Record<string, string>;
}

export type CgroupDriver = 'systemd' | 'cgroupfs';

interface PersistedRuntimeConfig {
  podCidr: string;
}

export class Runtime {
  readonly accel: AccelDecision;
  private podCidr = '';
  private qemuVersion: Promise<string | undefined> | undefined;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly libvirt: Libvirt = new Libvirt(config.libvirtUri, log),
    accel: AccelDecision = decideAccel(config.hypervisor, probeHost()),
  ) {
    this.accel = accel;
  }

  private get runtimeConfigFile(): string {
    return join(this.config.stateDir, 'runtime-config.json');
  }

  /** Prepares state dirs, reads persisted settings, and tries libvirt (a failure is reported by Status, not fatal). */
  async start(): Promise<void> {
    await mkdir(this.config.stateDir, { recursive: true, mode: 0o711 });
    await chmod(this.config.stateDir, 0o711); // searchable by QEMU's user (vm/qemu-user.ts), whoever made it
    try {
      const saved = JSON.parse(readFileSync(this.runtimeConfigFile, 'utf8')) as PersistedRuntimeConfig;
      if (typeof saved.podCidr === 'string') this.podCidr = saved.podCidr;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log.warn({ file: this.runtimeConfigFile, err: (err as Error).message }, 'ignoring unreadable runtime config');
      }
    }
    if (this.accel.accel === 'tcg') {
      this.log.warn({ reason: this.accel.reason }, 'KVM not usable: guests run under QEMU TCG (software emulation)');
    } else {
      this.log.info('guests run under KVM');
    }
    try {
      await this.libvirt.connect();
    } catch (err) {
      this.log.error({ uri: this.config.libvirtUri, err: (err as Error).message }, 'libvirt unreachable; RuntimeReady is false until it answers');
    }
  }

  async stop(): Promise<void> {
    await this.libvirt.close();
  }

  /** RuntimeConfig's linux.cgroup_driver: the same rule that places the pod's processes (vm/pod-cgroup.ts). */
  cgroupDriver(): CgroupDriver {
    return resolveCgroupDriver(this.config.cgroupDriver);
  }

  get currentPodCidr(): string {
    return this.podCidr;
  }

  async updatePodCidr(podCidr: string): Promise<void> {
    if (podCidr === this.podCidr) return;
    const previous = this.podCidr;
    await atomicWrite(this.runtimeConfigFile, JSON.stringify({ podCidr } satisfies PersistedRuntimeConfig) + '\n');
    this.podCidr = podCidr;
    this.log.info({ podCidr, previous }, 'pod CIDR updated');
  }

  handlers(): string[] {
    return this.config.defaultRuntime ? ['', ...this.config.handlers] : [...this.config.handlers];
  }

  async status(verbose: boolean): Promise<RuntimeStatus> {
    const runtime = await this.runtimeCondition();
    const cni = checkCni(this.config.cni.confDir, this.config.cni.binDirs);
    const network: Condition = cni.ok
      ? { type: 'NetworkReady', status: true, reason: '', message: '' }
      : // The kubelet's own reason for this condition; the message says what exactly is wrong.
        { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: `${cni.reason}: ${cni.message}` };
    const result: RuntimeStatus = { conditions: [runtime, network], handlers: this.handlers() };
    if (verbose) {
      this.qemuVersion ??= programVersion(which(QEMU_SYSTEM) ?? QEMU_SYSTEM);
      const { facts, ...accel } = this.accel;
      result.info = {
        libvirt: JSON.stringify({
          uri: this.config.libvirtUri,
          connected: runtime.status,
          libraryVersion: loadedLibvirtVersion() ?? null,
        }),
        hypervisor: JSON.stringify({
          accel: accel.accel,
          domainType: accel.domainType,
          kvmNotUsedBecause: accel.reason ?? null,
          qemuVersion: (await this.qemuVersion) ?? null,
          host: facts,
        }),
        network: JSON.stringify(cni.ok ? { network: cni.network, pluginPaths: cni.pluginPaths } : { error: cni.message }),
        config: JSON.stringify(this.config),
        runtimeConfig: JSON.stringify({ podCidr: this.podCidr, cgroupDriver: this.cgroupDriver() }),
      };
    }
    return result;
  }

  private async runtimeCondition(): Promise<Condition> {
    try {
      await this.libvirt.healthy();
    } catch (err) {
      return { type: 'RuntimeReady', status: false, reason: 'LibvirtUnreachable', message: (err as Error).message };
    }
    // Ready either way; under TCG say so, since guests will be much slower than on KVM.
    const message = this.accel.accel === 'tcg' ? `guests run under QEMU TCG, not KVM: ${this.accel.reason}` : '';
    return { type: 'RuntimeReady', status: true, reason: '', message };
  }
}
