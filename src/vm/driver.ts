// The VM driver: all pod/ knows about running VMs, in vmlet's own terms. A VM is named by its
// domain name (vm/spec.ts domainName); its definition is a VmSpec. Errors are VmletErrors:
// 'not-found' when the VM does not exist (any more), 'unavailable' when the hypervisor's daemon
// cannot be reached, 'internal' for anything else it refused (with its message). The libvirt
// implementation is ./libvirt-driver.ts, the only code above vm/rpc/ that knows libvirt's calls
// and QEMU's files; tests use an in-memory one (test/helpers/memory-driver.ts).
import type { VmSpec } from './spec.js';

/**
 * A VM's state (libvirt's virDomainState names, lower case): 'shutdown' is a guest that is
 * powering off (still running); 'shutoff' and 'crashed' are off; 'absent' is no such VM.
 */
export type VmState = 'nostate' | 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended' | 'absent';

/**
 * Why a VM stopped (libvirt's reasons): 'shutdown' the guest powered off, 'destroyed' it was
 * killed by a destroy, 'crashed' / 'failed' QEMU crashed or died, 'unknown' not said; also
 * 'migrated', 'saved', 'from-snapshot'.
 */
export type VmExitReason = string;

/** One VM's figures, with its name and when they were taken (for rates). */
export interface VmSample {
  name: string;
  /** Wall clock when the hypervisor answered, in ms since the epoch with sub-ms precision. */
  sampledAtMs: number;
  state: VmState;
  /** RAM the VM was defined with, and the balloon's current size, in KiB. */
  maxMemKiB: number;
  memoryKiB: number;
  vcpus: number;
  /** CPU time of the whole QEMU process (vCPUs, emulator and I/O threads), ns. */
  cpuTimeNs: number;
}

/** CPU scheduler settings of a whole VM. */
export interface VmScheduler {
  shares?: number;
  periodUs?: number;
  /** µs per period for the whole VM; -1 = no limit. */
  quotaUs?: number;
}

/** A block device to hotplug (see VmDriver.attachDisk). */
export interface HotplugDisk {
  path: string;
  serial: string;
  readonly: boolean;
}

export interface VmDriver {
  /** Defines (or redefines) the VM; nothing runs yet. */
  define(spec: VmSpec): Promise<void>;
  /**
   * Boots a defined VM. `paused`: its process and devices are up (the tap exists) but no guest
   * code runs until resume, so whatever the guest finds at its first instruction can be wired first.
   */
  start(name: string, o?: { paused?: boolean }): Promise<void>;
  /** Runs a VM started paused. */
  resume(name: string): Promise<void>;
  /** Asks the guest to power off (ACPI power button); returns at once. */
  shutdown(name: string): Promise<void>;
  /** Stops the VM at once; a VM that is absent or not running is no error. */
  destroy(name: string): Promise<void>;
  /** Removes the definition and what the hypervisor keeps beside it (logs, metadata); absent: no error. A running VM goes on, undefined. */
  remove(name: string): Promise<void>;
  /** The VM's state; 'absent' when there is no such VM. */
  state(name: string): Promise<VmState>;
  /** The VM's figures (not-found when absent). */
  sample(name: string): Promise<VmSample>;
  /** Figures of the running VMs among `names` (all when not given); a VM gone meanwhile is left out. */
  sampleActive(names?: ReadonlySet<string>): Promise<VmSample[]>;
  /** Names of the running VMs among `names` (all when not given). */
  activeNames(names?: ReadonlySet<string>): Promise<Set<string>>;
  /** Names of every VM the hypervisor knows, running or only defined. */
  allNames(): Promise<string[]>;
  /** The VM's definition as the hypervisor holds it (for operators: verbose status). */
  definition(name: string): Promise<string>;
  /** The host pty of the VM's serial console while it runs; undefined when it has none. */
  consolePty(name: string): Promise<string | undefined>;
  /** The pid of the VM's QEMU process; undefined when it does not run. Synchronous: it is read on every stats call. */
  qemuPid(name: string): number | undefined;
  /** Why the VM's last run ended, when the hypervisor recorded it (for exits vmlet did not hear). */
  exitReason(name: string): Promise<VmExitReason | undefined>;
  /** Online and maximum vCPUs, of the running VM (live) or of its definition. */
  vcpuCounts(name: string, live: boolean): Promise<{ current: number; max: number }>;
  /** CPU hotplug up to the maximum. A running VM changes live and in its definition; a defined one only in its definition (as below). */
  setVcpus(name: string, n: number, live: boolean): Promise<void>;
  /** The balloon's target (live) and the defined current memory, in KiB. */
  setMemory(name: string, kib: number, live: boolean): Promise<void>;
  setScheduler(name: string, s: VmScheduler, live: boolean): Promise<void>;
  /** Pins vCPUs 0..vcpus-1 and the emulator threads to `cpus` (host CPU ids). */
  pinCpus(name: string, vcpus: number, cpus: readonly number[], live: boolean): Promise<void>;
  /**
   * Hotplugs a host block device into the running VM as a virtio-blk disk with that serial (the
   * guest finds it by /sys/block/<dev>/serial); returns the target it got (vdb, …). The
   * definition is not changed: the disk lasts as long as this run of the VM.
   */
  attachDisk(name: string, disk: HotplugDisk): Promise<string>;
  /** Unplugs the disk with that serial from the running VM; no such disk (or VM not running): no error. */
  detachDisk(name: string, serial: string): Promise<void>;
  /**
   * `listener` hears each VM that stops, for any reason, as it happens. Exits while the
   * hypervisor could not be reached are not heard: onResync says when to look. Returns the unsubscribe.
   */
  onExit(listener: (name: string, reason: VmExitReason) => void): () => void;
  /** `listener` runs when exit events flow again after a gap (a lost connection): time to look at every VM once. Returns the unsubscribe. */
  onResync(listener: () => void): () => void;
  /** Resolves once exit events flow; rejects (unavailable) when the hypervisor cannot be reached now, while retries go on. */
  ready(): Promise<void>;
}
