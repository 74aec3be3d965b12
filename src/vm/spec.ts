// VmSpec: the one object that flows from annotations to domain XML. Built once per container
// from the parsed settings, the image's boot info, the disks pod/ prepared and the node's accel
// decision; domain-xml.ts renders it and nothing downstream reads annotations again. Pure: what
// needs the node's files (OVMF) is checked before, by spec-checks.ts.
import { VmletError, failedPrecondition } from '../errors.js';
import type { CpuTune } from './cputune.js';
import { ROOT, type QemuIdentity } from './qemu-user.js';
import { annotationOf, checkMachineForBoot, type CpuModel, type DiskBus, type Firmware, type Hugepages, type Machine, type MachineSettings } from './annotations.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** What vmlet keeps inside the domain (libvirt is the source of truth): rebuilt from at start. */
export interface VmMetadata {
  /** Format version; readMetadata ignores other versions. */
  v: 1;
  sandboxId: string;
  containerId: string;
  /** Everything else is pod/'s: CRI container metadata, labels, annotations, timestamps, setting sources. */
  [key: string]: JsonValue;
}

export type Boot = { kind: 'disk' } | { kind: 'kernel'; kernel: string; initrd?: string; cmdline: string };

export interface VmDisk {
  path: string;
  format: 'qcow2' | 'raw';
  bus: DiskBus;
  /** Guest device name: vda, vdb, … for virtio; sda, sdb, … for scsi and sata. */
  target: string;
  readonly?: boolean;
  /** Serial number the guest reads (/sys/block/<dev>/serial) to find a disk by purpose. */
  serial?: string;
  /** A host block device (a block PVC) rather than an image file. */
  block?: boolean;
}

/**
 * A host directory shared into the guest, found there by its mount tag: over virtiofs (a
 * virtiofsd libvirt runs as root; `binary`) or 9p (QEMU itself, which then runs as root).
 * virtiofs has no read-only mode: a read-only share's source is a read-only bind mount.
 */
export interface VmShare {
  source: string;
  tag: string;
  readonly: boolean;
  /** cache always: virtiofsd lets the guest keep what it looked up (an immutable tree, as the image share); absent: its default, a second. */
  virtiofs?: { binary: string; cache?: 'always' };
}

export interface VmSpec {
  /** libvirt domain name (see domainName). */
  name: string;
  /** From the node's accel decision only; no annotation can force KVM. */
  domainType: 'kvm' | 'qemu';
  machine: Machine;
  /** vCPUs online at start, and the most CPU hotplug can bring online. */
  vcpus: number;
  maxVcpus: number;
  /** Guest RAM at start (the balloon's target), and the RAM the guest is given (the most it can grow to). */
  memoryMiB: number;
  maxMemoryMiB: number;
  /** CPU shares (already in the host cgroup's units), quota, pinning, NUMA nodes. */
  cputune: CpuTune;
  cpuModel: CpuModel;
  firmware: Firmware;
  hugepages?: Hugepages;
  ioThreads: number;
  boot: Boot;
  /** Boot disk first. */
  disks: VmDisk[];
  /** Console history kept by virtlogd; absent when serial-log is false (a plain pty then). */
  serialLog?: { file: string };
  /** UEFI variable store, created by libvirt from the template on first start. */
  nvram?: { path: string; template: string };
  /** UEFI code image (read-only pflash); set with nvram. */
  loader?: string;
  /** A BIOS ROM in place of QEMU's SeaBIOS (`-bios`): a sandboxed pod's VM boots through qboot (QBOOT_ROM). */
  biosRom?: string;
  /** Network cards: taps libvirt creates (the pod network moves them into the pod's netns). */
  nics: VmNic[];
  /** cloud-init NoCloud seed (an ISO labelled cidata), attached read-only as a CD-ROM. */
  seed?: { path: string };
  /**
   * qemu-guest-agent channel: a virtio-serial port named org.qemu.guest_agent.0 whose host end is
   * a unix socket QEMU listens on (and owns: it outlives vmlet). Given to QEMU directly, not
   * declared to libvirt, so that libvirtd does not take the socket's only connection.
   */
  guestAgent?: { socket: string; port?: string };
  /**
   * vmlet's own QMP monitor: a unix socket QEMU listens on, which vmlet holds open to hear the
   * VM's end at once (vm/qmp-watch.ts). Given to QEMU directly, as the agent's channel.
   */
  monitor?: { socket: string };
  /** 9p shares (sandboxed pods: the image rootfs tree, read-only). */
  shares?: VmShare[];
  /** The guest hands pages it frees back to the host (virtio-balloon free page reporting). */
  freePageReporting?: boolean;
  /** Empty PCIe root ports for disks hotplugged later (q35 has no hotplug slot otherwise). */
  hotplugSlots?: number;
  /** The program libvirt runs as QEMU (a pod's: vm/emulator-wrapper.ts); absent: libvirt's default. */
  emulator?: string;
  /** Who QEMU runs as (a static DAC <seclabel>; vm/qemu-user.ts): root when the VM has 9p shares; absent: qemu.conf's user. */
  runAs?: QemuIdentity;
  /** TCG only (domain type qemu): QEMU's translation cache, in MiB (<tb-cache>); absent is QEMU's default (1 GiB). */
  tcgTbCacheMiB?: number;
  /** A VGA adapter and a VNC server on this unix socket (vmlet.io/vnc); absent: headless. */
  vnc?: { socket: string };
  metadata: VmMetadata;
}

export interface VmNic {
  tap: string;
  mac: string;
  /** The tap's and the guest NIC's (host_mtu); absent: the defaults (1500), the guest may set any (a pool VM's, set at claim). */
  mtu?: number;
}

/** Debian bookworm's `ovmf` package: the 4 MiB non-secure-boot build (no SMM requirement, so q35 and pc both work). */
export const DEBIAN_OVMF = { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd' } as const;
export type OvmfPaths = { code: string; varsTemplate: string };
/**
 * qboot, QEMU's minimal x86 firmware (Debian: qemu-system-data), for kernel boots: it loads the
 * kernel and jumps to it, where SeaBIOS also runs its POST (devices, option ROM scan, boot menu).
 * A sandboxed pod's VM reaches its kernel ~60 ms sooner under TCG (docs/sandboxed-pods.md).
 */
export const QBOOT_ROM = '/usr/share/qemu/qboot.rom';

const NAME_MAX = 80;

/**
 * TCG's translation cache (QEMU's default is 1 GiB, filled as the guest runs new code, so a busy
 * guest's QEMU grows by up to that much beyond its RAM). Measured with bench/pod-overhead.ts:
 * see docs/pod-cgroup.md. Overridden by the config's tcgTbCacheMiB.
 */
export const TCG_TB_CACHE_MIB = 128;

/**
 * vmlet-<namespace>-<pod>-<first 8 of sandbox id>[-<first 8 of container id>], libvirt-safe, ≤ 80
 * chars; shortens the pod part first, never the ids. The container id is for a VM that is not the
 * pod's first (the kubelet's restart of a dead one, whose domain lives on until it is removed).
 */
export function domainName(podName: string, namespace: string, sandboxId: string, containerId?: string): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '-');
  const id = safe(sandboxId.slice(0, 8).toLowerCase()) + (containerId ? `-${safe(containerId.slice(0, 8).toLowerCase())}` : '');
  let ns = safe(namespace);
  let pod = safe(podName);
  const room = NAME_MAX - 'vmlet-'.length - 2 - id.length; // two '-' separators
  if (ns.length + pod.length > room) {
    // Keep at least one character of the pod; an absurd namespace (crictl does not check) is cut too.
    ns = ns.slice(0, Math.max(1, Math.min(ns.length, room - 1)));
    pod = pod.slice(0, Math.max(1, room - ns.length));
  }
  return `vmlet-${ns}-${pod}-${id}`;
}

/** Linux-style device names: 0 → a, 25 → z, 26 → aa. */
export function diskTarget(bus: DiskBus, index: number): string {
  let suffix = '';
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) suffix = String.fromCharCode(97 + ((n - 1) % 26)) + suffix;
  return (bus === 'virtio' ? 'vd' : 'sd') + suffix;
}

export interface BuildVmSpecInput {
  name: string;
  domainType: 'kvm' | 'qemu';
  settings: MachineSettings;
  /**
   * From the image: kernel boot carries the image's command line (label vmlet.io/cmdline) and,
   * for a bzImage, the ELF unpacked from it at pull (`pvh`).
   */
  boot: { kind: 'disk' } | { kind: 'kernel'; kernel: string; initrd?: string; cmdline?: string; pvh?: string };
  /**
   * Prepared by pod/ (root overlay first, already grown to settings.rootDiskSizeBytes); targets
   * are assigned here, the bus too unless given (block volumes are virtio-blk whatever the root's bus).
   */
  disks: Array<{ path: string; format: 'qcow2' | 'raw'; readonly?: boolean; serial?: string; block?: boolean; bus?: DiskBus }>;
  /** Serial console file virtlogd writes; required when settings.serialLog. */
  consoleLog?: string;
  /** Per-VM UEFI variable store; required when settings.firmware is uefi. */
  nvramPath?: string;
  metadata: VmMetadata;
  /** Defaults to Debian's OVMF (checkVmPrerequisites checked that it is there). */
  ovmf?: OvmfPaths;
  nics?: VmNic[];
  /** Path of the NoCloud seed ISO. */
  seedIso?: string;
  /** Unix socket for the guest-agent channel (see guest-agent.ts agentSocketPath: ≤ 107 bytes). */
  guestAgent?: { socket: string; port?: string };
  /** Unix socket for vmlet's QMP monitor (vm/qmp-watch.ts; ≤ 107 bytes). */
  monitorSocket?: string;
  shares?: VmShare[];
  freePageReporting?: boolean;
  hotplugSlots?: number;
  /** TCG translation cache in MiB (0: QEMU's default); TCG_TB_CACHE_MIB when not given. Ignored under KVM. */
  tcgTbCacheMiB?: number;
  /** The domain's <emulator> (the pod-cgroup wrapper); absent: libvirt's default. */
  emulator?: string;
  /** The node's QEMU user (vm/qemu-user.ts); a VM with 9p shares runs as root whatever it is. Absent: qemu.conf's user. */
  qemuUser?: QemuIdentity;
  /** From the container's resources (cputune.ts), shares already converted for the host's cgroup version. */
  cputune?: CpuTune;
  /** The VNC display's unix socket (vnc-socket.ts: ≤ 107 bytes); required when settings.vnc. */
  vncSocket?: string;
  /** A BIOS ROM for a kernel boot (QBOOT_ROM); ignored with UEFI firmware or a disk boot. */
  biosRom?: string;
}

/**
 * A 9p share is served by QEMU itself (passthrough: the guest's owners on the host, the host's
 * root-only files read), which only root can do; every other VM runs as the node's QEMU user
 * (virtiofs shares are virtiofsd's, which libvirt runs as root).
 */
export function runAs(qemuUser: QemuIdentity, shares: readonly VmShare[]): QemuIdentity {
  return shares.some((sh) => !sh.virtiofs) ? ROOT : qemuUser;
}

const internal = (msg: string) => new VmletError('internal', msg);

/** Bus and target per disk; targets count per device-name family (vd* for virtio, sd* for scsi and sata). */
function assignTargets(disks: BuildVmSpecInput['disks'], defaultBus: DiskBus): VmDisk[] {
  const used = { vd: 0, sd: 0 };
  return disks.map((d) => {
    const bus = d.bus ?? defaultBus;
    const family = bus === 'virtio' ? 'vd' : 'sd';
    return {
      path: d.path,
      format: d.format,
      bus,
      target: diskTarget(bus, used[family]++),
      ...(d.readonly ? { readonly: true } : {}),
      ...(d.serial ? { serial: d.serial } : {}),
      ...(d.block ? { block: true } : {}),
    };
  });
}

/**
 * With a VNC display, a kernel-boot guest's kernel also writes to the screen: `console=tty0`
 * goes first, so the image's own console= (the serial port, which the CRI log is copied from)
 * stays last and remains /dev/console, where init writes. Nothing when the command line already
 * names a virtual terminal. A kernel that boots without the real-mode setup (an ELF vmlinux
 * through PVH) finds no VGA text mode and keeps only a dummy console there: docs/vnc.md.
 */
function screenConsole(cmdline: string): string | undefined {
  return /(^|\s)console=tty\d/.test(cmdline) ? undefined : 'console=tty0';
}

/**
 * The ELF unpacked from the image's bzImage, booted through PVH (no SeaBIOS, no decompression in
 * the guest: 3.15 s against 5.84 s to the test guest's marker under TCG, bench/kernel-boot.ts), unless the pod
 * says vmlet.io/pvh: "false", boots UEFI firmware (which loads the bzImage's EFI stub), or has a
 * VNC screen (a PVH kernel has no VGA text console: docs/vnc.md).
 */
function kernelToBoot(s: MachineSettings, boot: { kernel: string; pvh?: string }): string {
  return boot.pvh && s.pvh !== false && s.firmware !== 'uefi' && !s.vnc ? boot.pvh : boot.kernel;
}

export function buildVmSpec(input: BuildVmSpecInput): VmSpec {
  const { settings: s } = input;
  checkMachineForBoot(s, input.boot.kind);
  if (input.boot.kind === 'disk' && input.disks.length === 0) throw internal(`${input.name}: disk boot without a disk`);

  let boot: Boot = { kind: 'disk' };
  if (input.boot.kind === 'kernel') {
    const cmdline = [s.vnc ? screenConsole(`${input.boot.cmdline ?? ''} ${s.kernelArgs ?? ''}`) : undefined, input.boot.cmdline?.trim(), s.kernelArgs].filter(Boolean).join(' ');
    // The image's label is not checked anywhere else; a control character would corrupt the XML or the command line.
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses
    if (/[\x00-\x1f\x7f]/.test(cmdline)) throw failedPrecondition(`image kernel command line contains control characters: ${JSON.stringify(cmdline)}`);
    boot = { kind: 'kernel', kernel: kernelToBoot(s, input.boot), ...(input.boot.initrd ? { initrd: input.boot.initrd } : {}), cmdline };
  }

  let uefi: Pick<VmSpec, 'loader' | 'nvram'> = {};
  if (s.firmware === 'uefi') {
    const ovmf = input.ovmf ?? DEBIAN_OVMF;
    if (!input.nvramPath) throw internal(`${input.name}: UEFI firmware without an NVRAM path`);
    uefi = { loader: ovmf.code, nvram: { path: input.nvramPath, template: ovmf.varsTemplate } };
  }

  // Measured under TCG (QEMU 7.2): 3 of 10 microvm boots hung at clock calibration (microvm has no
  // HPET or ACPI PM timer to check the PIT against; KVM guests use kvmclock), and virtio-mmio gets
  // no ioeventfd, so io-threads fail to start. A pod that hangs now and then is worse than a refusal.
  if (s.machine === 'microvm' && input.domainType !== 'kvm') {
    throw failedPrecondition(
      `annotation ${annotationOf(s, 'machine')}="microvm" needs KVM, and this node runs guests under TCG (the guest kernel cannot calibrate its clock reliably there): allowed q35 | pc here`,
    );
  }

  if (s.serialLog && !input.consoleLog) throw internal(`${input.name}: serial log on without a console log path`);
  // sun_path holds 108 bytes with the terminating NUL; QEMU refuses a longer path at start.
  if (input.guestAgent && Buffer.byteLength(input.guestAgent.socket) > 107) {
    throw internal(`${input.name}: guest-agent socket path is longer than 107 bytes: ${input.guestAgent.socket}`);
  }

  if (input.monitorSocket && Buffer.byteLength(input.monitorSocket) > 107) throw internal(`${input.name}: monitor socket path is longer than 107 bytes: ${input.monitorSocket}`);

  if (s.vnc && !input.vncSocket) throw internal(`${input.name}: VNC display on without a socket path`);
  if (input.vncSocket && Buffer.byteLength(input.vncSocket) > 107) throw internal(`${input.name}: VNC socket path is longer than 107 bytes: ${input.vncSocket}`);

  return {
    name: input.name,
    domainType: input.domainType,
    machine: s.machine,
    vcpus: s.vcpus,
    maxVcpus: s.maxVcpus,
    memoryMiB: s.memoryMiB,
    maxMemoryMiB: s.maxMemoryMiB,
    cputune: input.cputune ?? {},
    cpuModel: s.cpuModel,
    firmware: s.firmware,
    ...(s.hugepages ? { hugepages: s.hugepages } : {}),
    ioThreads: s.ioThreads,
    boot,
    disks: assignTargets(input.disks, s.diskBus),
    ...(s.serialLog && input.consoleLog ? { serialLog: { file: input.consoleLog } } : {}),
    ...uefi,
    ...(input.biosRom && s.firmware === 'bios' && boot.kind === 'kernel' ? { biosRom: input.biosRom } : {}),
    nics: input.nics ?? [],
    ...(input.seedIso ? { seed: { path: input.seedIso } } : {}),
    ...(input.guestAgent ? { guestAgent: { socket: input.guestAgent.socket, ...(input.guestAgent.port ? { port: input.guestAgent.port } : {}) } } : {}),
    ...(input.monitorSocket ? { monitor: { socket: input.monitorSocket } } : {}),
    ...(input.shares?.length ? { shares: input.shares.map((sh) => ({ ...sh })) } : {}),
    ...(input.freePageReporting ? { freePageReporting: true } : {}),
    ...(input.hotplugSlots ? { hotplugSlots: input.hotplugSlots } : {}),
    ...(input.emulator ? { emulator: input.emulator } : {}),
    ...(input.qemuUser ? { runAs: runAs(input.qemuUser, input.shares ?? []) } : {}),
    ...(input.domainType === 'qemu' && (input.tcgTbCacheMiB ?? TCG_TB_CACHE_MIB) > 0 ? { tcgTbCacheMiB: input.tcgTbCacheMiB ?? TCG_TB_CACHE_MIB } : {}),
    ...(s.vnc && input.vncSocket ? { vnc: { socket: input.vncSocket } } : {}),
    // Setting sources travel with the domain so ContainerStatus verbose can show them after a restart.
    metadata: { settingSources: s.sources, ...input.metadata },
  };
}
