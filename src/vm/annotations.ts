// Pod/container annotations + image labels + CRI resources → the VM's settings (VmSettings),
// parsed and validated in this one place; cloud-init.ts, spec.ts and pod/ read only the result.
// Every rejection is InvalidArgument naming the annotation as the user wrote it (a Virtlet alias
// when that was the source) and the values allowed. Precedence (annotation-lookup.ts):
//   container annotation > pod annotation > container resources > sandbox resources > default,
// and within one set of annotations the vmlet.io/ name beats its Virtlet alias.
// Two steps: each annotation is parsed on its own (readMachine: all RunPodSandbox can check,
// parsePodAnnotations), then combined with the resources and checked together (combine).
// Nothing here chooses KVM vs TCG: the domain type comes from the node's accel decision only.
import { invalidArgument } from '../errors.js';
import { bad, bytesOf, checkUnknown, findAnnotation, intIn, oneOf, type AnnotationSets, type Found } from './annotation-lookup.js';
import { CLOUD_INIT_ANNOTATIONS, readCloudInit, type CloudInitSettings, type NetworkMode } from './cloud-init-settings.js';
import { LABEL, parseImageLabels } from './image-labels.js';
import { formatBytes } from './quantity.js';

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
  pvh: 'vmlet.io/pvh',
  rootDevice: 'vmlet.io/root-device',
  vnc: 'vmlet.io/vnc',
} as const;

export type SettingName = keyof typeof ANNOTATIONS;

/** Virtlet's names, accepted so Virtlet pods move over unchanged. */
export const VIRTLET_ALIASES: Partial<Record<SettingName, string>> = {
  vcpus: 'VirtletVCPUCount',
  diskBus: 'VirtletDiskDriver',
  rootDiskSize: 'VirtletRootVolumeSize',
  cpuModel: 'VirtletCPUModel',
};

/** Every vmlet.io/ annotation vmlet reads; any other vmlet.io/ key is refused as a typo. */
/** Pod annotation: what the pod is (docs: README "Pod kinds"); auto decides by its first container's image. */
export const POD_KIND_ANNOTATION = 'vmlet.io/pod-kind';
export type PodKind = 'auto' | 'vm' | 'sandboxed';
const KNOWN: readonly string[] = [...Object.values(ANNOTATIONS), ...CLOUD_INIT_ANNOTATIONS, POD_KIND_ANNOTATION];

export type Machine = 'q35' | 'pc' | 'microvm';
export type DiskBus = 'virtio' | 'scsi' | 'sata';
export type Firmware = 'bios' | 'uefi';
export type Hugepages = '2Mi' | '1Gi';
export type CpuModel = { mode: 'host-passthrough' | 'host-model' } | { mode: 'custom'; model: string };

/** The VM's machine: plain data, kept in the container's record for UpdateContainerResources. */
export interface MachineSettings {
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
  /** container_path of one of the container's CRI devices (a block PVC): the VM's root disk instead of an overlay. */
  rootDevice?: string;
  kernelArgs?: string;
  firmware: Firmware;
  hugepages?: Hugepages;
  ioThreads: number;
  serialLog: boolean;
  /** Kernel boot through the ELF unpacked from the image's bzImage (PVH), where the pull made one; absent in older records: true. */
  pvh?: boolean;
  /** A VGA adapter and a VNC display on a unix socket (docs/vnc.md); absent in records written before it: false. */
  vnc: boolean;
  /** The image's kernel command line (label vmlet.io/cmdline), for kernel boot. */
  imageCmdline?: string;
  /** Setting → where its value came from ('pod annotation vmlet.io/vcpus', 'container resources', 'default', …). */
  sources: Record<string, string>;
}

export interface VmSettings extends MachineSettings {
  /** What the NoCloud seed is built from (cloud-init.ts), with the container's envs and command. */
  cloudInit: CloudInitSettings;
}

/** The int64 fields of CRI LinuxContainerResources (decimal strings with longs:String; 0 = unset). */
export interface ResourceLimits {
  cpu_quota?: string | number;
  cpu_period?: string | number;
  memory_limit_in_bytes?: string | number;
}

/** The resource order after the annotations: container limits, sandbox limits, the node default. */
export interface Resources {
  containerResources?: ResourceLimits | null;
  sandboxResources?: ResourceLimits | null;
  defaults: { vcpus: number; memoryMiB: number };
}

export interface VmSettingsInput extends Resources {
  sandboxAnnotations: Record<string, string>;
  containerAnnotations: Record<string, string>;
  /** The image's labels (ImageRecord.labels). */
  imageLabels?: Record<string, string>;
}

/** The node default, last in the resource order. */
export const NODE_DEFAULTS = { vcpus: 1, memoryMiB: 512 } as const;

export const LIMITS = {
  vcpus: { min: 1, max: 256 },
  memoryMiB: { min: 32, max: 16 * 1024 * 1024 },
  ioThreads: { min: 0, max: 64 },
  rootDiskBytes: { min: 1 << 20, max: 64 * 2 ** 40 },
  kernelArgsBytes: 2048, // x86 COMMAND_LINE_SIZE
} as const;

const CPU_MODEL = /^[A-Za-z0-9_.+-]{1,64}$/;
const MiB = 1 << 20;
export const CFS_DEFAULT_PERIOD = 100_000; // kubelet always sends it with a quota; the kernel's default
const MEM_RANGE = `a Kubernetes quantity from ${formatBytes(LIMITS.memoryMiB.min * MiB)} to ${formatBytes(LIMITS.memoryMiB.max * MiB)} (e.g. 512Mi, 2Gi)`;
const inMemRange = (mib: number) => mib >= LIMITS.memoryMiB.min && mib <= LIMITS.memoryMiB.max;

function memoryOf(f: Found): number {
  const mib = Math.ceil(bytesOf(f, MEM_RANGE) / MiB);
  if (!inMemRange(mib)) throw bad(f, MEM_RANGE);
  return mib;
}

/** Each annotation's value on its own: what one annotation can be refused for. */
const PARSE = {
  vcpus: (f: Found) => intIn(f, LIMITS.vcpus.min, LIMITS.vcpus.max),
  memory: memoryOf,
  maxVcpus: (f: Found) => intIn(f, LIMITS.vcpus.min, LIMITS.vcpus.max),
  maxMemory: memoryOf,
  cpuModel: (f: Found): CpuModel => {
    if (f.key === VIRTLET_ALIASES.cpuModel) return { mode: oneOf(f, ['host-model'] as const) }; // all Virtlet supported
    if (f.value === 'host-passthrough' || f.value === 'host-model') return { mode: f.value };
    if (CPU_MODEL.test(f.value)) return { mode: 'custom', model: f.value };
    throw bad(f, 'host-passthrough | host-model | a QEMU CPU model name (1–64 of A-Z a-z 0-9 _ . + -, e.g. Skylake-Client)');
  },
  machine: (f: Found) => oneOf<Machine>(f, ['q35', 'pc', 'microvm']),
  diskBus: (f: Found) => (f.key === VIRTLET_ALIASES.diskBus ? oneOf<DiskBus>(f, ['virtio', 'scsi']) : oneOf<DiskBus>(f, ['virtio', 'scsi', 'sata'])),
  rootDiskSize: (f: Found) => {
    const allowed = `a Kubernetes quantity from 1Mi to ${formatBytes(LIMITS.rootDiskBytes.max)} (e.g. 10Gi)`;
    const n = bytesOf(f, allowed);
    if (n < LIMITS.rootDiskBytes.min || n > LIMITS.rootDiskBytes.max) throw bad(f, allowed);
    return Math.ceil(n / 512) * 512; // disk images are whole 512-byte sectors
  },
  kernelArgs: (f: Found) => {
    const v = f.value.trim();
    // Printable ASCII/UTF-8 only: a newline or control character would end or corrupt the command line.
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses
    if (!v || /[\x00-\x1f\x7f]/.test(v) || Buffer.byteLength(v) > LIMITS.kernelArgsBytes) {
      throw bad(f, `kernel parameters: printable text without control characters, 1–${LIMITS.kernelArgsBytes} bytes`);
    }
    return v;
  },
  firmware: (f: Found) => oneOf<Firmware>(f, ['bios', 'uefi']),
  hugepages: (f: Found) => oneOf<Hugepages>(f, ['2Mi', '1Gi']),
  ioThreads: (f: Found) => intIn(f, LIMITS.ioThreads.min, LIMITS.ioThreads.max),
  serialLog: (f: Found) => oneOf(f, ['true', 'false'] as const) === 'true',
  pvh: (f: Found) => oneOf(f, ['true', 'false'] as const) === 'true',
  vnc: (f: Found) => oneOf(f, ['true', 'false'] as const) === 'true',
  rootDevice: (f: Found) => {
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses
    if (!f.value.startsWith('/') || /[\x00-\x1f\x7f]/.test(f.value) || f.value.length > 4096) {
      throw bad(f, "the container_path of one of the container's devices (an absolute path, e.g. /dev/xvda)");
    }
    return f.value;
  },
} satisfies Record<SettingName, (f: Found) => unknown>;

type Parsed = { [K in SettingName]?: { value: ReturnType<(typeof PARSE)[K]>; found: Found } };

/** Step one: every setting's annotation under the precedence rule, parsed on its own. */
function readMachine(sets: AnnotationSets): Parsed {
  const out: Record<string, { value: unknown; found: Found }> = {};
  for (const setting of Object.keys(ANNOTATIONS) as SettingName[]) {
    const alias = VIRTLET_ALIASES[setting];
    const found = findAnnotation(sets, alias ? [ANNOTATIONS[setting], alias] : [ANNOTATIONS[setting]]);
    if (found) out[setting] = { value: PARSE[setting](found), found };
  }
  return out; // each value is PARSE[setting]'s result for its setting
}

/** An int64 CRI field: decimal string or number; 0, negative (quota -1 = unlimited) or junk = unset. */
export function int64(v: string | number | undefined): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : 0;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** vCPUs from the container's CPU limit, else the sandbox's, else the default; `sources.vcpus` says which. */
function vcpusFromResources(r: Resources, sources: Record<string, string>): number {
  for (const [res, what] of [[r.containerResources, 'container resources'], [r.sandboxResources, 'sandbox resources']] as const) {
    const quota = int64(res?.cpu_quota);
    if (!quota) continue;
    const period = int64(res?.cpu_period) || CFS_DEFAULT_PERIOD;
    const n = Math.ceil(quota / period); // a fraction of a CPU still needs a whole vCPU
    if (n > LIMITS.vcpus.max) {
      throw invalidArgument(`${what}: CPU limit cpu_quota=${quota} cpu_period=${period} needs ${n} vCPUs: allowed ${LIMITS.vcpus.min}–${LIMITS.vcpus.max} (set ${ANNOTATIONS.vcpus} to override)`);
    }
    sources.vcpus = what;
    return n;
  }
  sources.vcpus = 'default';
  return r.defaults.vcpus;
}

/** Guest RAM from the container's memory limit, else the sandbox's, else the default; rounded up to whole MiB. */
function memoryFromResources(r: Resources, sources: Record<string, string>): number {
  for (const [res, what] of [[r.containerResources, 'container resources'], [r.sandboxResources, 'sandbox resources']] as const) {
    const bytes = int64(res?.memory_limit_in_bytes);
    if (!bytes) continue;
    const mib = Math.ceil(bytes / MiB);
    if (!inMemRange(mib)) {
      throw invalidArgument(`${what}: memory limit ${bytes} bytes gives ${mib} MiB of guest RAM: allowed ${MEM_RANGE} (set ${ANNOTATIONS.memory} to override)`);
    }
    sources.memory = what;
    return mib;
  }
  sources.memory = 'default';
  return r.defaults.memoryMiB;
}

function checkHugepages(hugepages: Hugepages, key: string, memoryMiB: number, memorySource: string | undefined): void {
  const unit = hugepages === '1Gi' ? 1024 : 2;
  if (memoryMiB % unit !== 0) {
    throw invalidArgument(
      `annotation ${key}=${JSON.stringify(hugepages)} needs guest memory to be a multiple of ${hugepages}, but memory is ${memoryMiB} MiB (from ${memorySource}): allowed a memory size that is a multiple of ${unit} MiB`,
    );
  }
}

/** Step two: the parsed annotations with the resources and defaults, and the checks between settings. */
function combine(p: Parsed, r: Resources): MachineSettings {
  const sources: Record<string, string> = {};
  for (const [setting, { found }] of Object.entries(p)) sources[setting] = found.source;
  const vcpus = p.vcpus?.value ?? vcpusFromResources(r, sources);
  const memoryMiB = p.memory?.value ?? memoryFromResources(r, sources);
  const or = <K extends SettingName>(setting: K, dflt: ReturnType<(typeof PARSE)[K]>) => {
    sources[setting] ??= 'default';
    return p[setting]?.value ?? dflt;
  };
  const cpuModel = or('cpuModel', { mode: 'host-passthrough' });
  const machine = or('machine', 'q35');
  const diskBus = or('diskBus', 'virtio');
  const firmware = or('firmware', 'bios');
  const ioThreads = or('ioThreads', 0);
  const serialLog = or('serialLog', true);
  const pvh = or('pvh', true);
  const vnc = or('vnc', false);
  const { rootDiskSize, kernelArgs, hugepages, maxVcpus: fmaxV, maxMemory: fmaxM, rootDevice } = p;
  if (rootDevice && rootDiskSize) {
    throw invalidArgument(`annotation ${rootDiskSize.found.key} cannot be combined with ${rootDevice.found.key}: the root disk is then the block device, of its own size; allowed: leave ${rootDiskSize.found.key} unset`);
  }

  // Headroom for live resizing (UpdateContainerResources): the VM is defined with these maxima
  // and runs at vcpus/memory; without the annotations it cannot grow, only be limited.
  const maxVcpus = or('maxVcpus', vcpus);
  if (fmaxV && maxVcpus < vcpus) throw bad(fmaxV.found, `an integer ${vcpus}–${LIMITS.vcpus.max}: at least the VM's ${vcpus} vCPUs (from ${sources.vcpus})`);
  const maxMemoryMiB = or('maxMemory', memoryMiB);
  if (fmaxM && maxMemoryMiB < memoryMiB) throw bad(fmaxM.found, `${MEM_RANGE}, and at least the VM's ${memoryMiB} MiB (from ${sources.memory})`);
  if (hugepages && fmaxM && maxMemoryMiB !== memoryMiB) {
    const f = fmaxM.found;
    throw invalidArgument(`annotation ${f.key}=${JSON.stringify(f.value)} cannot be combined with ${hugepages.found.key}: hugepage-backed guest memory cannot be ballooned; allowed: leave ${f.key} unset`);
  }
  if (hugepages) checkHugepages(hugepages.value, hugepages.found.key, memoryMiB, sources.memory);

  // microvm has no PCI bus (so no SCSI/SATA controller) and Debian ships no microvm OVMF.
  if (p.machine?.value === 'microvm') {
    const fmach = p.machine.found;
    if (diskBus !== 'virtio') {
      throw invalidArgument(`annotation ${fmach.key}="microvm" needs disk bus virtio (microvm has no PCI bus for a ${diskBus} controller), but ${sources.diskBus} is ${JSON.stringify(diskBus)}: allowed virtio`);
    }
    if (fmaxV && maxVcpus !== vcpus) {
      throw invalidArgument(`annotation ${fmach.key}="microvm" has no ACPI CPU hotplug, but ${fmaxV.found.source} asks for ${maxVcpus} vCPUs at most with ${vcpus} at start: allowed ${fmaxV.found.key} unset or ${vcpus}`);
    }
    if (firmware !== 'bios') {
      throw invalidArgument(`annotation ${fmach.key}="microvm" cannot boot UEFI firmware (no microvm OVMF build is installed), but ${sources.firmware} is "uefi": allowed bios`);
    }
    if (p.vnc?.value) {
      throw invalidArgument(`annotation ${fmach.key}="microvm" has no PCI bus for the VGA adapter a VNC display needs, but ${p.vnc.found.source} is "true": allowed ${p.vnc.found.key} "false" or unset`);
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
    ...(rootDiskSize ? { rootDiskSizeBytes: rootDiskSize.value } : {}),
    ...(kernelArgs ? { kernelArgs: kernelArgs.value } : {}),
    ...(rootDevice ? { rootDevice: rootDevice.value } : {}),
    firmware,
    ...(hugepages ? { hugepages: hugepages.value } : {}),
    ioThreads,
    serialLog,
    pvh,
    vnc,
    sources,
  };
}

/** A container's VM settings, for CreateContainer: everything the pod, the container and the image ask for. */
export function parseVmSettings(input: VmSettingsInput): VmSettings {
  const sets: AnnotationSets = { container: input.containerAnnotations, pod: input.sandboxAnnotations };
  checkUnknown(sets, KNOWN);
  const settings = combine(readMachine(sets), input);
  const cloudInit = readCloudInit(sets, settings.sources);
  const { cmdline } = parseImageLabels(input.imageLabels ?? {});
  if (cmdline === undefined) return { ...settings, cloudInit };
  settings.sources.imageCmdline = `image label ${LABEL.cmdline}`;
  return { ...settings, imageCmdline: cmdline, cloudInit };
}

/** What RunPodSandbox needs of the pod's annotations; they are checked on their own before the pod is made. */
export interface PodSettings {
  networkMode: NetworkMode;
  podKind: PodKind;
}

/**
 * The pod's annotations on their own (RunPodSandbox): names, and every value that decides a
 * setting. What depends on the container (its annotations and resources) or the image is
 * checked again, with them, at CreateContainer.
 */
export function parsePodAnnotations(annotations: Record<string, string>): PodSettings {
  const sets: AnnotationSets = { container: {}, pod: annotations };
  checkUnknown(sets, KNOWN);
  readMachine(sets);
  const kind = findAnnotation(sets, [POD_KIND_ANNOTATION]);
  const podKind = kind ? oneOf<PodKind>(kind, ['auto', 'vm', 'sandboxed']) : 'auto';
  return { networkMode: readCloudInit(sets, {}).networkMode, podKind };
}

const byAnnotation = (source: string | undefined) => /^(?:container|pod) annotation /.test(source ?? '');

/**
 * The settings CreateContainer stored, with new container resources (UpdateContainerResources):
 * vCPUs and memory follow the resources unless an annotation set them, under the same order and
 * checks as at creation. The maxima stay as created: libvirt's domain holds them.
 */
export function resizeSettings(stored: MachineSettings, resources: Resources): MachineSettings {
  const sources = { ...stored.sources };
  const vcpus = byAnnotation(sources.vcpus) ? stored.vcpus : vcpusFromResources(resources, sources);
  const memoryMiB = byAnnotation(sources.memory) ? stored.memoryMiB : memoryFromResources(resources, sources);
  if (stored.hugepages) checkHugepages(stored.hugepages, annotationOf(stored, 'hugepages'), memoryMiB, sources.memory);
  return { ...stored, vcpus, memoryMiB, sources };
}

export type BootKind = 'disk' | 'kernel';

/** microvm has no firmware disk boot path here (no PCI, qboot only loads a kernel): kernel boot only. */
export function checkMachineForBoot(settings: MachineSettings, bootKind: BootKind): void {
  if (settings.machine === 'microvm' && bootKind !== 'kernel') {
    throw invalidArgument(
      `annotation ${annotationOf(settings, 'machine')}="microvm" needs an image that boots a kernel directly (vmlet.io/kernel label or /boot/vmlinuz), but this image boots from its disk: allowed q35 | pc for disk images`,
    );
  }
}

/** The annotation name recorded as the source of a setting ('pod annotation VirtletVCPUCount' → 'VirtletVCPUCount'). */
export function annotationOf(settings: MachineSettings, setting: SettingName): string {
  const src = settings.sources[setting];
  const m = src ? /annotation (\S+)$/.exec(src) : null;
  return m?.[1] ?? ANNOTATIONS[setting];
}
