// Pod/container annotations + CRI resources → the VM's settings, validated in this one place.
// Every rejection is InvalidArgument naming the annotation as the user wrote it (a Virtlet alias
// when that was the source) and the values allowed. Precedence per setting:
//   container annotation > pod (sandbox) annotation > container resources > sandbox resources > default,
// and within one set of annotations the vmlet.io/ name beats its Virtlet alias. Scope comes
// first because a container-level annotation is the more specific request.
// Nothing here chooses KVM vs TCG: the domain type comes from the node's accel decision only.
import { invalidArgument } from '../errors.js';
import { formatBytes, parseQuantityBytes, QuantityError } from './quantity.js';

export const PREFIX = 'vmlet.io/';

export const ANNOTATIONS = {
  vcpus: 'vmlet.io/vcpus',
  memory: 'vmlet.io/memory',
  maxVcpus: 'vmlet.io/max-vcpus',
  maxMemory: 'vmlet.io/max-memory',
  cpuModel: 'vmlet.io/cpu-model',
  machine: 'vmlet.io/machine',
  diskBus: 'vmlet.io/disk-bus',
  rootDiskSize: 'vmlet.io/root-disk-size',
  kernelArgs: 'vmlet.io/kernel-args',
  firmware: 'vmlet.io/firmware',
  hugepages: 'vmlet.io/hugepages',
  ioThreads: 'vmlet.io/io-threads',
  serialLog: 'vmlet.io/serial-log',
} as const;

export type SettingName = keyof typeof ANNOTATIONS;

/** Virtlet's names, accepted so Virtlet pods move over unchanged. */
export const VIRTLET_ALIASES: Partial<Record<SettingName, string>> = {
  vcpus: 'VirtletVCPUCount',
  diskBus: 'VirtletDiskDriver',
  rootDiskSize: 'VirtletRootVolumeSize',
  cpuModel: 'VirtletCPUModel',
};

export type Machine = 'q35' | 'pc' | 'microvm';
export type DiskBus = 'virtio' | 'scsi' | 'sata';
export type Firmware = 'bios' | 'uefi';
export type Hugepages = '2Mi' | '1Gi';
export type CpuModel = { mode: 'host-passthrough' | 'host-model' } | { mode: 'custom'; model: string };

export interface VmSettings {
  vcpus: number;
  memoryMiB: number;
  /** vCPUs the VM can grow to while running (CPU hotplug); ≥ vcpus. */
  maxVcpus: number;
  /** Guest RAM the VM can grow to while running (balloon); ≥ memoryMiB. */
  maxMemoryMiB: number;
  cpuModel: CpuModel;
  machine: Machine;
  diskBus: DiskBus;
  rootDiskSizeBytes?: number;
  kernelArgs?: string;
  firmware: Firmware;
  hugepages?: Hugepages;
  ioThreads: number;
  serialLog: boolean;
  /** Setting → where its value came from ('pod annotation vmlet.io/vcpus', 'container resources', 'default', …). */
  sources: Record<string, string>;
}

/** The int64 fields of CRI LinuxContainerResources (decimal strings with longs:String; 0 = unset). */
export interface ResourceLimits {
  cpu_quota?: string | number;
  cpu_period?: string | number;
  memory_limit_in_bytes?: string | number;
}

export interface VmSettingsInput {
  sandboxAnnotations: Record<string, string>;
  containerAnnotations: Record<string, string>;
  containerResources?: ResourceLimits | null;
  sandboxResources?: ResourceLimits | null;
  defaults: { vcpus: number; memoryMiB: number };
  /** Other vmlet.io/ keys that other modules own (cloud-init, extra disks, …): not typos. */
  otherKnownAnnotations?: readonly string[];
}

export const LIMITS = {
  vcpus: { min: 1, max: 256 },
  memoryMiB: { min: 32, max: 16 * 1024 * 1024 },
  ioThreads: { min: 0, max: 64 },
  rootDiskBytes: { min: 1 << 20, max: 64 * 2 ** 40 },
  kernelArgsBytes: 2048, // x86 COMMAND_LINE_SIZE
} as const;

const CPU_MODEL = /^[A-Za-z0-9_.+-]{1,64}$/;
const MiB = 1 << 20;
const CFS_DEFAULT_PERIOD = 100_000; // kubelet always sends it with a quota; the kernel's default

/** One annotation as found: its value and the name/scope that supplied it. */
interface Found {
  key: string;
  value: string;
  source: string;
}

class Reader {
  constructor(private readonly input: VmSettingsInput) {}

  find(setting: SettingName): Found | undefined {
    const names = [ANNOTATIONS[setting], VIRTLET_ALIASES[setting]].filter((n): n is string => n !== undefined);
    const scopes: Array<[string, Record<string, string>]> = [
      ['container annotation', this.input.containerAnnotations],
      ['pod annotation', this.input.sandboxAnnotations],
    ];
    for (const [scope, annotations] of scopes) {
      for (const key of names) {
        const value = annotations[key];
        if (value !== undefined) return { key, value, source: `${scope} ${key}` };
      }
    }
    return undefined;
  }
}

const bad = (f: Found, allowed: string) => invalidArgument(`annotation ${f.key}=${JSON.stringify(f.value)} is invalid: allowed ${allowed}`);

function oneOf<T extends string>(f: Found, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(f.value)) return f.value as T;
  throw bad(f, allowed.join(' | '));
}

function intIn(f: Found, min: number, max: number): number {
  const n = /^\d{1,6}$/.test(f.value) ? Number(f.value) : NaN;
  if (!(n >= min && n <= max)) throw bad(f, `an integer ${min}–${max}`);
  return n;
}

function bytesOf(f: Found, allowed: string): number {
  try {
    return parseQuantityBytes(f.value);
  } catch (err) {
    if (err instanceof QuantityError) throw bad(f, `${allowed} (${err.message})`);
    throw err;
  }
}

/** An int64 CRI field: decimal string or number; 0, negative (quota -1 = unlimited) or junk = unset. */
function int64(v: string | number | undefined): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : 0;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

function checkUnknown(input: VmSettingsInput): void {
  const known = new Set<string>([...Object.values(ANNOTATIONS), ...(input.otherKnownAnnotations ?? [])]);
  for (const [where, annotations] of [['pod', input.sandboxAnnotations], ['container', input.containerAnnotations]] as const) {
    for (const key of Object.keys(annotations)) {
      if (key.startsWith(PREFIX) && !known.has(key)) {
        throw invalidArgument(`unknown ${where} annotation ${key}: known vmlet.io annotations are ${[...known].sort().join(', ')}`);
      }
    }
  }
}

export function parseVmSettings(input: VmSettingsInput): VmSettings {
  checkUnknown(input);
  const r = new Reader(input);
  const sources: Record<string, string> = {};
  const memRange = `a Kubernetes quantity from ${formatBytes(LIMITS.memoryMiB.min * MiB)} to ${formatBytes(LIMITS.memoryMiB.max * MiB)} (e.g. 512Mi, 2Gi)`;

  // vCPUs: annotation > container quota/period > sandbox quota/period > default.
  let vcpus: number;
  const fv = r.find('vcpus');
  if (fv) {
    vcpus = intIn(fv, LIMITS.vcpus.min, LIMITS.vcpus.max);
    sources.vcpus = fv.source;
  } else {
    const fromRes = (res: ResourceLimits | null | undefined, what: string): number | undefined => {
      const quota = int64(res?.cpu_quota);
      if (!quota) return undefined;
      const period = int64(res?.cpu_period) || CFS_DEFAULT_PERIOD;
      const n = Math.ceil(quota / period); // a fraction of a CPU still needs a whole vCPU
      if (n > LIMITS.vcpus.max) {
        throw invalidArgument(`${what}: CPU limit cpu_quota=${quota} cpu_period=${period} needs ${n} vCPUs: allowed ${LIMITS.vcpus.min}–${LIMITS.vcpus.max} (set ${ANNOTATIONS.vcpus} to override)`);
      }
      sources.vcpus = what;
      return n;
    };
    vcpus = fromRes(input.containerResources, 'container resources') ?? fromRes(input.sandboxResources, 'sandbox resources') ?? input.defaults.vcpus;
    sources.vcpus ??= 'default';
  }

  // Memory: annotation > container limit > sandbox limit > default; rounded up to whole MiB.
  let memoryMiB: number;
  const fm = r.find('memory');
  const inRange = (mib: number) => mib >= LIMITS.memoryMiB.min && mib <= LIMITS.memoryMiB.max;
  if (fm) {
    memoryMiB = Math.ceil(bytesOf(fm, memRange) / MiB);
    if (!inRange(memoryMiB)) throw bad(fm, memRange);
    sources.memory = fm.source;
  } else {
    const fromRes = (res: ResourceLimits | null | undefined, what: string): number | undefined => {
      const bytes = int64(res?.memory_limit_in_bytes);
      if (!bytes) return undefined;
      const mib = Math.ceil(bytes / MiB);
      if (!inRange(mib)) {
        throw invalidArgument(`${what}: memory limit ${bytes} bytes gives ${mib} MiB of guest RAM: allowed ${memRange} (set ${ANNOTATIONS.memory} to override)`);
      }
      sources.memory = what;
      return mib;
    };
    memoryMiB = fromRes(input.containerResources, 'container resources') ?? fromRes(input.sandboxResources, 'sandbox resources') ?? input.defaults.memoryMiB;
    sources.memory ??= 'default';
  }

  const pick = <T>(setting: SettingName, parse: (f: Found) => T, dflt: T): T => {
    const f = r.find(setting);
    sources[setting] = f ? f.source : 'default';
    return f ? parse(f) : dflt;
  };
  const pickOptional = <T>(setting: SettingName, parse: (f: Found) => T): T | undefined => {
    const f = r.find(setting);
    if (!f) return undefined;
    sources[setting] = f.source;
    return parse(f);
  };

  const cpuModel = pick<CpuModel>('cpuModel', (f) => {
    if (f.key === VIRTLET_ALIASES.cpuModel) return { mode: oneOf(f, ['host-model'] as const) }; // all Virtlet supported
    if (f.value === 'host-passthrough' || f.value === 'host-model') return { mode: f.value };
    if (CPU_MODEL.test(f.value)) return { mode: 'custom', model: f.value };
    throw bad(f, 'host-passthrough | host-model | a QEMU CPU model name (1–64 of A-Z a-z 0-9 _ . + -, e.g. Skylake-Client)');
  }, { mode: 'host-passthrough' });

  const machine = pick<Machine>('machine', (f) => oneOf(f, ['q35', 'pc', 'microvm'] as const), 'q35');

  const diskBus = pick<DiskBus>('diskBus', (f) => (f.key === VIRTLET_ALIASES.diskBus ? oneOf(f, ['virtio', 'scsi'] as const) : oneOf(f, ['virtio', 'scsi', 'sata'] as const)), 'virtio');

  const rootDiskSizeBytes = pickOptional('rootDiskSize', (f) => {
    const allowed = `a Kubernetes quantity from 1Mi to ${formatBytes(LIMITS.rootDiskBytes.max)} (e.g. 10Gi)`;
    const n = bytesOf(f, allowed);
    if (n < LIMITS.rootDiskBytes.min || n > LIMITS.rootDiskBytes.max) throw bad(f, allowed);
    return Math.ceil(n / 512) * 512; // disk images are whole 512-byte sectors
  });

  const kernelArgs = pickOptional('kernelArgs', (f) => {
    const v = f.value.trim();
    // Printable ASCII/UTF-8 only: a newline or control character would end or corrupt the command line.
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses
    if (!v || /[\x00-\x1f\x7f]/.test(v) || Buffer.byteLength(v) > LIMITS.kernelArgsBytes) {
      throw bad(f, `kernel parameters: printable text without control characters, 1–${LIMITS.kernelArgsBytes} bytes`);
    }
    return v;
  });

  const firmware = pick<Firmware>('firmware', (f) => oneOf(f, ['bios', 'uefi'] as const), 'bios');
  const hugepages = pickOptional<Hugepages>('hugepages', (f) => oneOf(f, ['2Mi', '1Gi'] as const));
  const ioThreads = pick('ioThreads', (f) => intIn(f, LIMITS.ioThreads.min, LIMITS.ioThreads.max), 0);
  const serialLog = pick('serialLog', (f) => oneOf(f, ['true', 'false'] as const) === 'true', true);

  // Headroom for live resizing (UpdateContainerResources): the VM is defined with these maxima
  // and runs at vcpus/memory; without the annotations it cannot grow, only be limited.
  const maxVcpus = pick('maxVcpus', (f) => {
    const n = intIn(f, LIMITS.vcpus.min, LIMITS.vcpus.max);
    if (n < vcpus) throw bad(f, `an integer ${vcpus}–${LIMITS.vcpus.max}: at least the VM's ${vcpus} vCPUs (from ${sources.vcpus})`);
    return n;
  }, vcpus);
  const maxMemoryMiB = pick('maxMemory', (f) => {
    const mib = Math.ceil(bytesOf(f, memRange) / MiB);
    if (!inRange(mib) || mib < memoryMiB) throw bad(f, `${memRange}, and at least the VM's ${memoryMiB} MiB (from ${sources.memory})`);
    return mib;
  }, memoryMiB);
  if (hugepages && maxMemoryMiB !== memoryMiB) {
    const f = r.find('maxMemory')!;
    throw invalidArgument(`annotation ${f.key}=${JSON.stringify(f.value)} cannot be combined with ${r.find('hugepages')!.key}: hugepage-backed guest memory cannot be ballooned; allowed: leave ${f.key} unset`);
  }

  if (hugepages) {
    const unit = hugepages === '1Gi' ? 1024 : 2;
    if (memoryMiB % unit !== 0) {
      const f = r.find('hugepages')!;
      throw invalidArgument(
        `annotation ${f.key}=${JSON.stringify(f.value)} needs guest memory to be a multiple of ${hugepages}, but memory is ${memoryMiB} MiB (from ${sources.memory}): allowed a memory size that is a multiple of ${unit} MiB`,
      );
    }
  }

  // microvm has no PCI bus (so no SCSI/SATA controller) and Debian ships no microvm OVMF.
  if (machine === 'microvm') {
    const fmach = r.find('machine')!;
    if (diskBus !== 'virtio') {
      throw invalidArgument(`annotation ${fmach.key}="microvm" needs disk bus virtio (microvm has no PCI bus for a ${diskBus} controller), but ${sources.diskBus} is ${JSON.stringify(diskBus)}: allowed virtio`);
    }
    if (maxVcpus !== vcpus) {
      const f = r.find('maxVcpus')!;
      throw invalidArgument(`annotation ${fmach.key}="microvm" has no ACPI CPU hotplug, but ${f.source} asks for ${maxVcpus} vCPUs at most with ${vcpus} at start: allowed ${f.key} unset or ${vcpus}`);
    }
    if (firmware !== 'bios') {
      throw invalidArgument(`annotation ${fmach.key}="microvm" cannot boot UEFI firmware (no microvm OVMF build is installed), but ${sources.firmware} is "uefi": allowed bios`);
    }
  }

  return {
    vcpus,
    memoryMiB,
    maxVcpus,
    maxMemoryMiB,
    cpuModel,
    machine,
    diskBus,
    ...(rootDiskSizeBytes !== undefined ? { rootDiskSizeBytes } : {}),
    ...(kernelArgs !== undefined ? { kernelArgs } : {}),
    firmware,
    ...(hugepages !== undefined ? { hugepages } : {}),
    ioThreads,
    serialLog,
    sources,
  };
}

export type BootKind = 'disk' | 'kernel';

/** microvm has no firmware disk boot path here (no PCI, qboot only loads a kernel): kernel boot only. */
export function checkMachineForBoot(settings: VmSettings, bootKind: BootKind): void {
  if (settings.machine === 'microvm' && bootKind !== 'kernel') {
    throw invalidArgument(
      `annotation ${annotationOf(settings, 'machine')}="microvm" needs an image that boots a kernel directly (vmlet.io/kernel label or /boot/vmlinuz), but this image boots from its disk: allowed q35 | pc for disk images`,
    );
  }
}

/** The annotation name recorded as the source of a setting ('pod annotation VirtletVCPUCount' → 'VirtletVCPUCount'). */
export function annotationOf(settings: VmSettings, setting: SettingName): string {
  const src = settings.sources[setting];
  const m = src ? /annotation (\S+)$/.exec(src) : null;
  return m?.[1] ?? ANNOTATIONS[setting];
}
