// The sandboxed pod's micro-VM as a VmSpec (pure): the guest kit's kernel and initramfs, the
// image rootfs tree shared read-only (virtiofs, or 9p where the node has no virtiofsd), the pod's scratch disk for containers' writable
// layers, vmlet's agent port, and the pod network given on the kernel command line (the guest
// has no DHCP client to wait for: its /init configures eth0 from vmlet.ip/vmlet.gw/vmlet.route).
import { ROOT, type QemuIdentity } from '../vm/qemu-user.js';
import { buildVmSpec, type VmMetadata, type VmNic, type VmSpec } from '../vm/spec.js';
import { monitorSocketBeside } from '../vm/qmp-watch.js';
import type { MachineSettings } from '../vm/annotations.js';
import type { CpuTune } from '../vm/cputune.js';
import { SHARED_TAG } from './shared-mounts.js';

/** The agent's virtio-serial port name (docs/guest-agent.md). */
export const AGENT_PORT = 'vmlet.agent.0';
/** The tag of the image rootfs tree's share; the guest mounts it at /run/vmlet/images. */
export const IMAGES_TAG = 'vmlet-images';
/** The serial of the scratch disk; the guest mounts it at /run/vmlet/scratch. */
export const SCRATCH_SERIAL = 'vmlet-scratch';

/**
 * Empty PCIe root ports of the pod VM, for block volumes hotplugged later: at most this many at
 * once per pod. Each cost the guest's boot ~47 ms under TCG (domain-xml.ts onPcieRoot), of which
 * the port driver's 25-30 ms (quiet boots) are gone with PCIE_PORTS_ARG.
 */
export const HOTPLUG_SLOTS = 4;
/**
 * The guest kernel leaves PCIe port services (PME, AER, native hotplug) alone: q35 hotplugs
 * into the root ports through ACPI (acpiphp), which this does not touch, and the port driver's
 * probe of the empty ports cost a quiet boot 100-130 ms under TCG (initcall_debug: pcie_portdrv_init).
 */
export const PCIE_PORTS_ARG = 'pcie_ports=compat';

export interface GuestKit {
  vmlinux: string;
  initrd: string;
  cmdline: string;
}

export interface PodNetForGuest {
  ips: Array<{ address: string; prefix: number; gateway?: string }>;
  routes: Array<{ dst: string; gw?: string }>;
  mtu: number;
}

export interface PodVmInput {
  name: string;
  domainType: 'kvm' | 'qemu';
  settings: MachineSettings;
  kit: GuestKit;
  imagesDir: string;
  /** The pod's shared dir of bind mounts (shared-mounts.ts), read-write. */
  sharedDir: string;
  scratch: string;
  agentSocket: string;
  consoleLog: string;
  nic?: VmNic;
  net?: PodNetForGuest;
  cputune?: CpuTune;
  /** TCG translation cache (config tcgTbCacheMiB). */
  tcgTbCacheMiB?: number;
  /** The domain's <emulator> (a pod's: the pod-cgroup wrapper). */
  emulator?: string;
  /** A warm-pool VM (pod/podvm-pool.ts): its NIC stays down until a pod's network is set by the agent. */
  pooled?: boolean;
  /** virtiofsd: both shares over virtiofs and QEMU as `qemuUser` (imagesDir is then a read-only bind); absent: 9p, QEMU as root. */
  virtiofsd?: string;
  qemuUser?: QemuIdentity;
  metadata: VmMetadata;
  /** qboot where the node has it (vm/spec.ts QBOOT_ROM); absent: SeaBIOS. */
  biosRom?: string;
}

export function podVmSpec(i: PodVmInput): VmSpec {
  const fs = i.virtiofsd ? { virtiofs: { binary: i.virtiofsd } } : {};
  return buildVmSpec({
    name: i.name,
    domainType: i.domainType,
    // Disks are virtio whatever the annotations say: the guest kit has virtio_blk only. No
    // display: vmlet.io/vnc is for VM-image pods (the kit's guest draws nothing on a screen).
    settings: { ...i.settings, diskBus: 'virtio', serialLog: true, firmware: 'bios', vnc: false },
    boot: { kind: 'kernel', kernel: i.kit.vmlinux, initrd: i.kit.initrd, cmdline: [i.kit.cmdline.trim(), PCIE_PORTS_ARG, ...netArgs(i.net), ...(i.pooled ? ['vmlet.nonet=1'] : [])].filter(Boolean).join(' ') },
    disks: [{ path: i.scratch, format: 'raw', serial: SCRATCH_SERIAL }],
    consoleLog: i.consoleLog,
    nics: i.nic ? [i.nic] : [],
    guestAgent: { socket: i.agentSocket, port: AGENT_PORT },
    monitorSocket: monitorSocketBeside(i.agentSocket), // its end heard at once (pod/exit-watch.ts)
    shares: [
      // Image trees never change once complete: the guest keeps what it looked up (as 9p's cache=loose).
      { source: i.imagesDir, tag: IMAGES_TAG, readonly: true, ...(i.virtiofsd ? { virtiofs: { binary: i.virtiofsd, cache: 'always' as const } } : {}) },
      { source: i.sharedDir, tag: SHARED_TAG, readonly: false, ...fs },
    ],
    ...(i.cputune ? { cputune: i.cputune } : {}),
    ...(i.tcgTbCacheMiB !== undefined ? { tcgTbCacheMiB: i.tcgTbCacheMiB } : {}),
    ...(i.emulator ? { emulator: i.emulator } : {}),
    // Said in the domain, whatever qemu.conf's user is: root when the shares are 9p (spec.ts runAs).
    qemuUser: i.qemuUser ?? ROOT,
    // The guest kit loads virtio_balloon: pages its containers free go back to the node, so a
    // pod VM's footprint follows what its containers use rather than its high-water mark.
    freePageReporting: true,
    // Block volumes are hotplugged at CreateContainer (pod/sandboxed-devices.ts): q35 needs an
    // empty root port per disk. At most this many block volumes at once per pod.
    hotplugSlots: HOTPLUG_SLOTS,
    metadata: i.metadata,
    ...(i.biosRom ? { biosRom: i.biosRom } : {}),
  });
}

/** vmlet.ip=<addr>/<len> per pod IP, vmlet.gw=<gw> per family, vmlet.route=<dst>@<gw> per CNI route. */
export function netArgs(net: PodNetForGuest | undefined): string[] {
  if (!net) return [];
  const out: string[] = [];
  for (const ip of net.ips) out.push(`vmlet.ip=${ip.address}/${ip.prefix}`);
  for (const ip of net.ips) if (ip.gateway) out.push(`vmlet.gw=${ip.gateway}`);
  for (const r of net.routes) {
    if (r.dst === '0.0.0.0/0' || r.dst === '::/0') continue; // the gateway's
    out.push(`vmlet.route=${r.dst}@${r.gw ?? ''}`);
  }
  if (net.mtu) out.push(`vmlet.mtu=${net.mtu}`);
  return out;
}
