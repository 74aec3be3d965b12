// VmSpec → libvirt domain XML (pure), and vmlet's metadata back out of a domain's XML.
// Choices checked against libvirt 9.0 / QEMU 7.2 (test/integration/domain-xml-libvirt.test.ts):
//  - TCG cannot do host-passthrough (libvirt refuses to start it), so under domain type 'qemu'
//    it becomes mode='maximum' (every feature TCG emulates: QEMU's `-cpu max`). host-model works
//    under TCG as is (libvirt computes it from TCG's capabilities) and boots the test guest.
//  - Disks use cache='writeback': it works on every filesystem (cache='none' needs O_DIRECT,
//    which tmpfs before Linux 6.6 and some others lack) and still honours guest flushes.
//  - microvm has no PCI bus: virtio devices sit on virtio-mmio and the default USB controller is
//    turned off (libvirt otherwise fails with "No PCI buses available").
//  - No <graphics>: libvirt 9.0 rejects type='none', and leaving it out gives a headless VM (no
//    <video> either: libvirt then adds none, and QEMU runs with -nodefaults, so no VGA). With
//    vmlet.io/vnc (spec.vnc) a <graphics type='vnc' socket=…> and a standard VGA (model 'vga'):
//    it has a VGA BIOS for SeaBIOS, a GOP driver in OVMF and text mode for Linux's vgacon, and
//    libvirt gives the primary video slot 1 of pcie.0 (q35), which onPcieRoot leaves free. libvirt
//    adds the PS/2 keyboard and mouse (always there on x86) and an <audio type='none'/>.
//  - The guest-agent channel is QEMU arguments (<qemu:commandline>), not a libvirt <channel>:
//    libvirtd would hold the socket's only connection. The -device values are JSON on purpose:
//    libvirt 9.0 passes its own devices as JSON, and QEMU 7.2 creates every key=value -device
//    before any JSON one, so a key=value virtio-serial-pci would take a PCI slot libvirt assigned
//    (measured: "slot 1 function 0 not available for pcie-root-port"). As JSON it comes after
//    libvirt's devices and QEMU gives it the first free slot (measured: q35 → pcie.0 slot 2, beside
//    libvirt's root ports in slot 1; pc → the slot after libvirt's last device). libvirt does not
//    know that slot, so hotplugging onto pcie.0 or pc's bus could pick it: vmlet hotplugs disks only
//    into empty pcie-root-ports of q35 (hotplugSlots), each a bus of its own, and a VM that takes
//    hotplugs has the controller at a fixed slot (AGENT_SERIAL_SLOT). libvirt
//    marks such a domain tainted (custom-argv) in its log.
//  - vmlet's own QMP monitor (monitorArgs) is QEMU arguments too: libvirt has no element for a
//    second monitor, and vmlet reads only events from it (qmp-watch.ts says why).
//  - Every domain deletes libvirt's `cpu-unavailable-features` QEMU capability (<qemu:capabilities>,
//    libvirt >= 5.5). With it, libvirt checks the started guest's CPU by one QMP qom-get per CPU
//    property (~400 on QEMU 7.2) before `cont`; without it, by two (feature-words,
//    filtered-features), as it did before QEMU 4.1. Same -cpu argument, same check of the CPUID
//    features; measured on this machine: domain start 649 → 185 ms (bench/domain-start.ts). libvirt
//    marks the domain tainted (custom-hypervisor-feature), as <qemu:commandline> does (custom-argv).
//  - Built as data (el(), src/vm/xml.ts) and serialised by @xmldom/xmldom, which escapes every
//    value; read back with its namespace-aware parser, never with regular expressions.
import { dacLabel } from './qemu-user.js';
import { VmletError } from '../errors.js';
import { formatCpuList } from './cputune.js';
import { diskTarget, type VmMetadata, type VmSpec, type VmDisk, type VmNic, type VmShare } from './spec.js';
import { childElements, el, parseXml, renderXml, serializeXml, type XmlElement } from './xml.js';

export const METADATA_NS = 'https://vmlet.io/xmlns/domain/1';
export const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** The virtio-serial port name qemu-ga (and cloud images' qemu-guest-agent unit) listens on. */
export const GUEST_AGENT_PORT = 'org.qemu.guest_agent.0';
const HUGEPAGE_KIB = { '2Mi': 2048, '1Gi': 1048576 } as const;
const MMIO = el('address', { type: 'virtio-mmio' });

export function renderDomainXml(spec: VmSpec): string {
  return renderXml(domainElement(spec)) + '\n';
}

function domainElement(spec: VmSpec): XmlElement {
  const mmio = spec.machine === 'microvm';
  const boot = spec.boot.kind === 'kernel' ? spec.boot : undefined;
  return el(
    'domain',
    { type: spec.domainType, 'xmlns:qemu': QEMU_NS },
    el('name', {}, spec.name),
    el('metadata', {}, el('vmlet:vm', { 'xmlns:vmlet': METADATA_NS }, JSON.stringify(spec.metadata))),
    // <memory> is what the guest is given; the balloon holds it at <currentMemory> (grown or shrunk live).
    el('memory', { unit: 'MiB' }, int(spec.maxMemoryMiB)),
    el('currentMemory', { unit: 'MiB' }, int(spec.memoryMiB)),
    memoryBacking(spec),
    el('vcpu', { placement: 'static', current: spec.maxVcpus > spec.vcpus ? int(spec.vcpus) : undefined }, int(spec.maxVcpus)),
    ...cputuneElements(spec),
    spec.ioThreads > 0 && el('iothreads', {}, int(spec.ioThreads)),
    el(
      'os',
      {},
      el('type', { arch: 'x86_64', machine: spec.machine }, 'hvm'),
      ...(spec.loader && spec.nvram ? [el('loader', { readonly: 'yes', type: 'pflash' }, spec.loader), el('nvram', { template: spec.nvram.template }, spec.nvram.path)] : []),
      spec.biosRom && el('loader', { readonly: 'yes', type: 'rom' }, spec.biosRom),
      boot && el('kernel', {}, boot.kernel),
      boot?.initrd ? el('initrd', {}, boot.initrd) : undefined,
      boot?.cmdline ? el('cmdline', {}, boot.cmdline) : undefined,
    ),
    // ACPI: without it a guest's poweroff halts instead of powering off, and shutdown (power button) is ignored.
    // tb-cache (TCG only; libvirt >= 8.0): caps QEMU's translation cache, part of the pod's overhead.
    el('features', {}, el('acpi'), el('apic'), spec.domainType === 'qemu' && spec.tcgTbCacheMiB !== undefined && el('tcg', {}, el('tb-cache', { unit: 'MiB' }, int(spec.tcgTbCacheMiB)))),
    cpuElement(spec),
    el('clock', { offset: 'utc' }),
    el('on_poweroff', {}, 'destroy'),
    el('on_reboot', {}, 'restart'),
    el('on_crash', {}, 'destroy'),
    onPcieRoot(
      spec,
      el(
        'devices',
        {},
        spec.emulator && el('emulator', {}, spec.emulator),
        ...spec.disks.map((d, i) => diskElement(spec, d, i)),
        spec.seed && seedElement(spec, spec.seed.path),
        ...(spec.shares ?? []).map((sh) => shareElement(sh)),
        ...spec.nics.map((nic) => nicElement(nic, spec.machine)),
        spec.disks.some((d) => d.bus === 'scsi') &&
          el('controller', { type: 'scsi', index: '0', model: 'virtio-scsi' }, spec.ioThreads > 0 && el('driver', { iothread: '1' })),
        el('controller', { type: 'usb', model: 'none' }),
        // append='on': virtlogd keeps the history across VM restarts; vmlet tails the file from a saved offset.
        el('serial', { type: 'pty' }, spec.serialLog && el('log', { file: spec.serialLog.file, append: 'on' }), el('target', { port: '0' })),
        el('console', { type: 'pty' }, el('target', { type: 'serial', port: '0' })),
        ...vncElements(spec),
        el('rng', { model: 'virtio' }, el('backend', { model: 'random' }, '/dev/urandom'), mmio && MMIO),
        // The balloon carries UpdateContainerResources' memory changes. No autodeflate: a guest
        // under memory pressure must not take back what its limit took away (a container is OOM-killed).
        el('memballoon', { model: 'virtio', freePageReporting: spec.freePageReporting ? 'on' : undefined }, mmio && MMIO),
      ),
    ),
    // libvirt runs QEMU as this user and chowns the files it is given to it (back after the run).
    spec.runAs && el('seclabel', { type: 'static', model: 'dac', relabel: 'yes' }, el('label', {}, dacLabel(spec.runAs))),
    (spec.guestAgent || spec.monitor) &&
      el(
        'qemu:commandline',
        {},
        ...[...(spec.guestAgent ? guestAgentArgs(spec, spec.guestAgent.socket, spec.guestAgent.port) : []), ...(spec.monitor ? monitorArgs(spec.monitor.socket) : [])].map((value) => el('qemu:arg', { value })),
      ),
    el('qemu:capabilities', {}, el('qemu:del', { capability: 'cpu-unavailable-features' })),
  );
}

/** The VNC display: QEMU's VNC server on a unix socket only (no TCP port, no password: its directory lets only root and QEMU's user in). */
function vncElements(spec: VmSpec): XmlElement[] {
  if (!spec.vnc) return [];
  return [el('graphics', { type: 'vnc', socket: spec.vnc.socket }), el('video', {}, el('model', { type: 'vga' }))];
}

function cputuneElements(spec: VmSpec): XmlElement[] {
  const t = spec.cputune;
  const out: XmlElement[] = [];
  const tune: XmlElement[] = [];
  if (t.cpuset) {
    const cpuset = formatCpuList(t.cpuset);
    for (let v = 0; v < spec.maxVcpus; v++) tune.push(el('vcpupin', { vcpu: String(v), cpuset }));
    tune.push(el('emulatorpin', { cpuset }));
  }
  if (t.shares !== undefined) tune.push(el('shares', {}, int(t.shares)));
  if (t.quotaUs !== undefined) tune.push(el('global_period', {}, int(t.periodUs ?? 100_000)), el('global_quota', {}, int(t.quotaUs)));
  if (tune.length) out.push(el('cputune', {}, ...tune));
  if (t.memNodes) out.push(el('numatune', {}, el('memory', { mode: 'strict', nodeset: formatCpuList(t.memNodes) })));
  return out;
}

function cpuElement(spec: VmSpec): XmlElement {
  const m = spec.cpuModel;
  // forbid: fail rather than silently give the guest a different CPU than the one asked for.
  if (m.mode === 'custom') return el('cpu', { mode: 'custom', match: 'exact' }, el('model', { fallback: 'forbid' }, m.model));
  if (m.mode === 'host-passthrough' && spec.domainType === 'qemu') return el('cpu', { mode: 'maximum' });
  return el('cpu', { mode: m.mode });
}

function diskElement(spec: Pick<VmSpec, 'ioThreads' | 'boot' | 'machine'>, d: VmDisk, i: number): XmlElement {
  // QEMU has no read-only SATA hard disk (libvirt: "readonly sata disks are not supported"); a SATA CD-ROM is the read-only device there.
  const device = d.readonly && d.bus === 'sata' ? 'cdrom' : 'disk';
  const driver = {
    name: 'qemu',
    type: d.format,
    // A block volume outlives the pod: no host page cache between the guest and it (O_DIRECT
    // works on every block device), so nothing written is lost if the node dies.
    cache: d.block ? 'none' : 'writeback',
    discard: d.readonly ? undefined : 'unmap', // freed guest blocks shrink the overlay
    iothread: d.bus === 'virtio' && spec.ioThreads > 0 ? String((i % spec.ioThreads) + 1) : undefined,
  };
  return el(
    'disk',
    { type: d.block ? 'block' : 'file', device },
    el('driver', driver),
    el('source', d.block ? { dev: d.path } : { file: d.path }),
    el('target', { dev: d.target, bus: d.bus }),
    d.readonly && el('readonly'),
    d.serial && el('serial', {}, d.serial),
    spec.boot.kind === 'disk' && i === 0 && el('boot', { order: '1' }),
    spec.machine === 'microvm' && d.bus === 'virtio' && MMIO,
  );
}

/**
 * The cloud-init seed as a read-only CD-ROM on the machine's own controller: SATA (AHCI) on
 * q35, IDE on pc. microvm has neither: a read-only virtio disk there (NoCloud finds the seed by
 * its cidata label on any block device).
 */
function seedElement(spec: VmSpec, path: string): XmlElement {
  // Targets are per name family: scsi and sata disks share sd*.
  const count = (bus: string) => spec.disks.filter((d) => (bus === 'virtio' ? d.bus === 'virtio' : d.bus !== 'virtio')).length;
  const [device, bus, dev] =
    spec.machine === 'microvm'
      ? ['disk', 'virtio', diskTarget('virtio', count('virtio'))]
      : spec.machine === 'pc'
        ? ['cdrom', 'ide', 'hdc']
        : ['cdrom', 'sata', diskTarget('sata', count('sata'))];
  return el(
    'disk',
    { type: 'file', device },
    el('driver', { name: 'qemu', type: 'raw' }),
    el('source', { file: path }),
    el('target', { dev, bus }),
    el('readonly'),
    spec.machine === 'microvm' && MMIO,
  );
}

/**
 * Guest RAM: hugepages when asked; a shared memfd when a share is virtiofs (virtiofsd, another
 * process, maps the guest's buffers).
 */
function memoryBacking(spec: VmSpec): XmlElement | undefined {
  const shared = (spec.shares ?? []).some((sh) => sh.virtiofs);
  if (!spec.hugepages && !shared) return undefined;
  return el(
    'memoryBacking',
    {},
    spec.hugepages && el('hugepages', {}, el('page', { size: String(HUGEPAGE_KIB[spec.hugepages]), unit: 'KiB' })),
    shared && el('source', { type: 'memfd' }),
    shared && el('access', { mode: 'shared' }),
  );
}

/**
 * A share. virtiofs: libvirt runs `binary` as root for it, passthrough (the host's owners and
 * modes both ways); read-only is the source's (a read-only bind mount: libvirt refuses
 * <readonly/> for virtiofs). 9p (QEMU's local fsdev): passthrough too, which is why QEMU runs as
 * root then; readonly makes QEMU refuse every write, whatever the guest mounts it as.
 */
function shareElement(sh: VmShare): XmlElement {
  if (sh.virtiofs) {
    const binary = el('binary', { path: sh.virtiofs.binary }, sh.virtiofs.cache && el('cache', { mode: sh.virtiofs.cache }));
    return el('filesystem', { type: 'mount', accessmode: 'passthrough' }, el('driver', { type: 'virtiofs' }), binary, el('source', { dir: sh.source }), el('target', { dir: sh.tag }));
  }
  return el('filesystem', { type: 'mount', accessmode: 'passthrough' }, el('source', { dir: sh.source }), el('target', { dir: sh.tag }), sh.readonly && el('readonly'));
}

/** PCI devices of a domain's <devices> (the ones libvirt would put behind a pcie-root-port on q35). */
const PCI_DEVICES = new Set(['disk', 'filesystem', 'interface', 'rng', 'memballoon']);
/** pcie.0's slot for the agent's virtio-serial controller (QEMU arguments, unknown to libvirt): the last free one. */
export const AGENT_SERIAL_SLOT = 0x1e;

/**
 * A VM that takes hotplugged disks (spec.hotplugSlots, q35): its own devices sit on pcie.0 as
 * integrated endpoints (explicit bus 0 slots from 2), and only the hotplug slots are root ports.
 * libvirt would otherwise put each device behind a root port of its own, and every root port
 * costs the guest's boot under TCG (measured: 15 root ports, VMLET-INIT 2.45 s against 1.73 s
 * without, ~47 ms a port, with the kernel's PCIe port services; a sandboxed pod's guest runs none:
 * guest/pod-vm-spec.ts PCIE_PORTS_ARG). libvirt hotplugs a disk into the first empty root port.
 */
function onPcieRoot(spec: VmSpec, devices: XmlElement): XmlElement {
  if (spec.machine !== 'q35' || !spec.hotplugSlots) return devices;
  let slot = 2; // 0: the host bridge, 1: VGA's by convention; 0x1f: ICH9's LPC, SATA and SMBus
  const address = () => el('address', { type: 'pci', domain: '0x0000', bus: '0x00', slot: `0x${(slot++).toString(16).padStart(2, '0')}`, function: '0x0' });
  const out: XmlElement[] = [el('controller', { type: 'pci', index: '0', model: 'pcie-root' })];
  for (const d of devices.children) {
    if (typeof d === 'string') continue;
    const pci = PCI_DEVICES.has(d.name) && !(d.name === 'disk' && d.children.some((c) => typeof c !== 'string' && c.name === 'target' && c.attrs.bus !== 'virtio'));
    const scsi = d.name === 'controller' && d.attrs.type === 'scsi';
    out.push(pci || scsi ? { ...d, children: [...d.children, address()] } : d);
  }
  for (let i = 0; i < spec.hotplugSlots; i++) out.push(el('controller', { type: 'pci', model: 'pcie-root-port' }, address()));
  if (slot > AGENT_SERIAL_SLOT) throw new VmletError('internal', `${spec.name}: ${slot - 2} PCI devices do not fit on pcie.0`);
  return { ...devices, children: out };
}

/** One disk's <disk> element alone, for hotplug into a running VM (no boot order, no io-thread). */
export function hotplugDiskXml(d: VmDisk, machine: VmSpec['machine']): string {
  return renderXml(diskElement({ ioThreads: 0, boot: { kind: 'disk' }, machine }, d, 1)) + '\n';
}

/**
 * A tap that libvirt creates in its own (the host's) netns; the pod network moves it into the
 * pod's netns once QEMU holds it. <mtu> sets the tap's MTU and the virtio NIC's host_mtu, so the
 * guest uses the pod MTU even before DHCP. No option ROM (QEMU's romfile=): it is iPXE, for
 * network boot, which no pod does, and the firmware runs it at every boot (55 ms to kernel start
 * under TCG here); an MMIO NIC (microvm) has none to turn off.
 */
function nicElement(nic: VmNic, machine: VmSpec['machine']): XmlElement {
  return el(
    'interface',
    { type: 'ethernet' },
    el('mac', { address: nic.mac }),
    el('target', { dev: nic.tap }),
    el('model', { type: 'virtio' }),
    nic.mtu !== undefined && el('mtu', { size: int(nic.mtu) }),
    machine === 'microvm' ? MMIO : el('rom', { enabled: 'no' }),
  );
}

/** The <interface> element alone, as lines (for a hand-written domain in the pod network's tests). */
export function nicXml(nic: VmNic, machine: VmSpec['machine'] = 'q35'): string[] {
  return renderXml(nicElement(nic, machine)).split('\n');
}

/**
 * The guest-agent channel as QEMU arguments: a listening unix socket (wait=off: QEMU starts
 * without a client; it serves one client at a time), a virtio-serial controller (on microvm
 * the virtio-mmio variant) and the named port on it. No address: QEMU picks a free one.
 */
export function guestAgentArgs(spec: Pick<VmSpec, 'machine' | 'hotplugSlots'>, socket: string, portName: string = GUEST_AGENT_PORT): string[] {
  // QemuOpts syntax: a comma in a value is written twice.
  const chardev = `socket,id=vmletqga,path=${socket.replace(/,/g, ',,')},server=on,wait=off`;
  // Beside integrated endpoints (onPcieRoot) it gets a fixed slot, so a hotplug can never want it.
  const fixed = spec.machine === 'q35' && spec.hotplugSlots ? { bus: 'pcie.0', addr: `0x${AGENT_SERIAL_SLOT.toString(16)}` } : {};
  const controller = { driver: spec.machine === 'microvm' ? 'virtio-serial-device' : 'virtio-serial-pci', id: 'vmletvser', ...fixed };
  const port = { driver: 'virtserialport', bus: 'vmletvser.0', chardev: 'vmletqga', name: portName };
  return ['-chardev', chardev, '-device', JSON.stringify(controller), '-device', JSON.stringify(port)];
}

/**
 * vmlet's QMP monitor as QEMU arguments: a listening unix socket (wait=off, one client at a time)
 * and a control-mode monitor on it, beside libvirt's own. QEMU sends events to every monitor.
 */
export function monitorArgs(socket: string): string[] {
  return ['-chardev', `socket,id=vmletmon,path=${socket.replace(/,/g, ',,')},server=on,wait=off`, '-mon', 'chardev=vmletmon,mode=control'];
}

function int(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new VmletError('internal', `domain XML: ${n} is not a count (a whole number, 0 or more)`);
  return String(n);
}

/**
 * A domain's XML (as libvirt dumps it, uuid included) without its UEFI loader and NVRAM. libvirt
 * refuses a plain undefine of a domain with NVRAM, so an inactive UEFI domain is redefined from
 * this first (the undefine also passes KEEP_NVRAM), then undefined; vmlet deletes the NVRAM file.
 * XML with neither comes back unchanged.
 */
export function stripNvram(xml: string): string {
  const doc = parseXml(xml);
  let removed = 0;
  for (const os of childElements(doc.documentElement!, 'os')) {
    for (const e of [...childElements(os, 'loader'), ...childElements(os, 'nvram')]) {
      const indentation = e.previousSibling;
      if (indentation && indentation.nodeType === indentation.TEXT_NODE && !indentation.nodeValue?.trim()) os.removeChild(indentation);
      os.removeChild(e);
      removed++;
    }
  }
  return removed ? serializeXml(doc) : xml;
}

/**
 * vmlet's metadata from a domain's XML (as rendered, or as libvirt returns it: re-indented, with
 * whatever prefix the namespace is bound to). undefined when absent, unreadable or another version.
 */
export function readMetadata(xml: string): VmMetadata | undefined {
  try {
    const vm = parseXml(xml).getElementsByTagNameNS(METADATA_NS, 'vm').item(0);
    if (!vm) return undefined;
    const v = JSON.parse(vm.textContent ?? '') as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    const md = v as Record<string, unknown>;
    if (md.v !== 1 || typeof md.sandboxId !== 'string' || typeof md.containerId !== 'string') return undefined;
    return md as VmMetadata;
  } catch {
    return undefined;
  }
}

/** The pty path of the domain's first serial, from the live domain XML; undefined if none yet. */
export function serialPtyPath(domainXml: string): string | undefined {
  const doc = parseXml(domainXml);
  for (const domain of childElements(doc, 'domain')) {
    for (const devices of childElements(domain, 'devices')) {
      for (const serial of childElements(devices, 'serial')) {
        if (serial.getAttribute('type') !== 'pty') continue;
        const path = childElements(serial, 'source')[0]?.getAttribute('path');
        if (path) return path;
      }
    }
  }
  return undefined;
}
