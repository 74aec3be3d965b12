// An in-memory VmDriver for unit tests of pod/: domains in a Map, no VMs. A test makes a VM exit
// (with libvirt's reason, heard as an event or silently, as while vmlet was down), makes one
// vanish, takes "libvirt" down (every call then fails as unavailable) and brings it back.
import { VmletError } from '../../src/errors.js';
import type { HotplugDisk, VmDriver, VmExitReason, VmSample, VmScheduler, VmState } from '../../src/vm/driver.js';
import type { VmSpec } from '../../src/vm/spec.js';

export interface MemoryVm {
  spec: VmSpec;
  state: VmState;
  /** The reason the last run ended (what the QEMU log would say). */
  lastExit?: VmExitReason;
  vcpus: number;
  maxVcpus: number;
  memoryKiB: number;
  maxMemKiB: number;
  cpuTimeNs: number;
  scheduler?: VmScheduler;
  pinned?: readonly number[];
  /** Hotplugged disks, by serial. */
  hotplugged?: Map<string, HotplugDisk>;
}

export class MemoryDriver implements VmDriver {
  readonly vms = new Map<string, MemoryVm>();
  /** Every call, as `<op> <name>`, in order. */
  readonly calls: string[] = [];
  /** libvirt unreachable: every call fails with 'unavailable'. */
  down = false;
  /** The guest ignores the ACPI power button (StopContainer must destroy it). */
  ignoreAcpi = false;
  private readonly exitListeners = new Set<(name: string, reason: VmExitReason) => void>();
  private readonly resyncListeners = new Set<() => void>();

  // --- what a test does to the "hypervisor" ---

  /** The VM stops for `reason`; listeners hear it unless `silent` (an event lost while vmlet was away). */
  exit(name: string, reason: VmExitReason, { silent = false } = {}): void {
    const vm = this.vms.get(name);
    if (!vm || !isActive(vm.state)) throw new Error(`memory driver: ${name} is not running`);
    vm.state = reason === 'crashed' ? 'crashed' : 'shutoff';
    vm.lastExit = reason;
    if (!silent) for (const fn of this.exitListeners) fn(name, reason);
  }

  /** The VM disappears (undefined behind vmlet's back), without any event. */
  vanish(name: string): void {
    this.vms.delete(name);
  }

  /** Events flow again after a gap: resync listeners run. */
  resync(): void {
    for (const fn of this.resyncListeners) fn();
  }

  // --- VmDriver ---

  async define(spec: VmSpec): Promise<void> {
    this.op('define', spec.name);
    const old = this.vms.get(spec.name);
    this.vms.set(spec.name, { vcpus: 1, maxVcpus: 2, memoryKiB: 524288, maxMemKiB: 1048576, cpuTimeNs: 0, ...old, spec, state: old?.state ?? 'shutoff' });
  }

  async start(name: string, o: { paused?: boolean } = {}): Promise<void> {
    const vm = this.must(o.paused ? 'start-paused' : 'start', name);
    if (isActive(vm.state)) throw new VmletError('internal', `start ${name}: Requested operation is not valid: domain is already running`);
    vm.state = o.paused ? 'paused' : 'running';
  }

  async resume(name: string): Promise<void> {
    const vm = this.must('resume', name);
    if (vm.state !== 'paused') throw new VmletError('internal', `resume ${name}: Requested operation is not valid: domain is not paused`);
    vm.state = 'running';
  }

  async shutdown(name: string): Promise<void> {
    const vm = this.must('shutdown', name);
    if (!isActive(vm.state)) throw new VmletError('internal', `shutdown ${name}: Requested operation is not valid: domain is not running`);
    if (!this.ignoreAcpi) setImmediate(() => isActive(vm.state) && this.exit(name, 'shutdown'));
  }

  async destroy(name: string): Promise<void> {
    this.op('destroy', name);
    const vm = this.vms.get(name);
    if (vm && isActive(vm.state)) this.exit(name, 'destroyed');
  }

  async remove(name: string): Promise<void> {
    this.op('remove', name);
    const vm = this.vms.get(name);
    if (vm && isActive(vm.state)) return; // goes on, transient: the test sees it still in vms
    this.vms.delete(name);
  }

  async state(name: string): Promise<VmState> {
    this.op('state', name);
    return this.vms.get(name)?.state ?? 'absent';
  }

  async sample(name: string): Promise<VmSample> {
    return this.sampleOf(name, this.must('sample', name));
  }

  async sampleActive(names?: ReadonlySet<string>): Promise<VmSample[]> {
    this.op('sampleActive', '*');
    return [...this.vms].filter(([n, vm]) => isActive(vm.state) && (!names || names.has(n))).map(([n, vm]) => this.sampleOf(n, vm));
  }

  async activeNames(names?: ReadonlySet<string>): Promise<Set<string>> {
    this.op('activeNames', '*');
    return new Set([...this.vms].filter(([n, vm]) => isActive(vm.state) && (!names || names.has(n))).map(([n]) => n));
  }

  async allNames(): Promise<string[]> {
    this.op('allNames', '*');
    return [...this.vms.keys()];
  }

  async definition(name: string): Promise<string> {
    this.must('definition', name);
    return `<domain><name>${name}</name></domain>`;
  }

  async consolePty(name: string): Promise<string | undefined> {
    this.must('consolePty', name);
    return undefined;
  }

  qemuPid(): number | undefined {
    return undefined;
  }

  async exitReason(name: string): Promise<VmExitReason | undefined> {
    return this.vms.get(name)?.lastExit;
  }

  async vcpuCounts(name: string): Promise<{ current: number; max: number }> {
    const vm = this.must('vcpuCounts', name);
    return { current: vm.vcpus, max: vm.maxVcpus };
  }

  async setVcpus(name: string, n: number): Promise<void> {
    this.must('setVcpus', name).vcpus = n;
  }

  async setMemory(name: string, kib: number): Promise<void> {
    this.must('setMemory', name).memoryKiB = kib;
  }

  async setScheduler(name: string, s: VmScheduler): Promise<void> {
    this.must('setScheduler', name).scheduler = s;
  }

  async pinCpus(name: string, _vcpus: number, cpus: readonly number[]): Promise<void> {
    this.must('pinCpus', name).pinned = cpus;
  }

  async attachDisk(name: string, disk: HotplugDisk): Promise<string> {
    const vm = this.must('attachDisk', name);
    if (!isActive(vm.state)) throw new VmletError('internal', `attachDisk ${name}: domain is not running`);
    vm.hotplugged ??= new Map();
    vm.hotplugged.set(disk.serial, disk);
    return `vd${String.fromCharCode(97 + vm.spec.disks.length + vm.hotplugged.size - 1)}`;
  }

  async detachDisk(name: string, serial: string): Promise<void> {
    this.op('detachDisk', name);
    this.vms.get(name)?.hotplugged?.delete(serial);
  }

  onExit(listener: (name: string, reason: VmExitReason) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  onResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  async ready(): Promise<void> {
    this.op('ready', '*');
  }

  private op(op: string, name: string): void {
    this.calls.push(`${op} ${name}`);
    if (this.down) throw new VmletError('unavailable', `${op}: cannot connect to libvirt (in-memory driver is down)`);
  }

  private must(op: string, name: string): MemoryVm {
    this.op(op, name);
    const vm = this.vms.get(name);
    if (!vm) throw new VmletError('not-found', `${op} ${name}: Domain not found: no domain with matching name '${name}'`);
    return vm;
  }

  private sampleOf(name: string, vm: MemoryVm): VmSample {
    const { state, maxMemKiB, memoryKiB, vcpus, cpuTimeNs } = vm;
    return { name, sampledAtMs: performance.timeOrigin + performance.now(), state, maxMemKiB, memoryKiB, vcpus, cpuTimeNs };
  }
}

const isActive = (s: VmState): boolean => s === 'running' || s === 'blocked' || s === 'paused' || s === 'shutdown' || s === 'pmsuspended';
