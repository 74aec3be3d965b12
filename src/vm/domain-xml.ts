// VmSpec → libvirt domain XML (pure), and vmlet's metadata back out of a domain's XML.
// Choices checked against libvirt 9.0 / QEMU 7.2 (test/integration/domain-xml-libvirt.test.ts):
//  - TCG cannot do host-passthrough (libvirt refuses to start it), so under domain type 'qemu'
//    it becomes mode='maximum' (every feature TCG emulates: QEMU's `-cpu max`). host-model works
//    under TCG as is (libvirt computes it from TCG's capabilities) and boots the test guest.
//  - Disks use cache='writeback': it works on every filesystem (cache='none' needs O_DIRECT,
//    which tmpfs before Linux 6.6 and some others lack) and still honours guest flushes.
//  - microvm has no PCI bus: virtio devices sit on virtio-mmio and the default USB controller is
//    turned off (libvirt otherwise fails with "No PCI buses available").
//  - No <graphics>: libvirt 9.0 rejects type='none', and leaving it out gives a headless VM.
//  - The guest-agent channel is QEMU arguments (<qemu:commandline>), not a libvirt <channel>:
//    libvirtd would hold the socket's only connection. The -device values are JSON on purpose:
//    libvirt 9.0 passes its own devices as JSON, and QEMU 7.2 creates every key=value -device
//    before any JSON one, so a key=value virtio-serial-pci would take a PCI slot libvirt assigned
//    (measured: "slot 1 function 0 not available for pcie-root-port"). As JSON it comes after
//    libvirt's devices and QEMU gives it the first free slot (measured: q35 → pcie.0 slot 2, beside
//    libvirt's root ports in slot 1; pc → the slot after libvirt's last device). libvirt does not
//    know that slot, so hotplugging through libvirt could pick it (vmlet hotplugs nothing). libvirt
//    marks such a domain tainted (custom-argv) in its log.
import { formatCpuList } from './cputune.js';
import { diskTarget, type VmMetadata, type VmSpec, type VmDisk, type VmNic } from './spec.js';

export const METADATA_NS = 'https://vmlet.io/xmlns/domain/1';
export const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** The virtio-serial port name qemu-ga (and cloud images' qemu-guest-agent unit) listens on. */
export const GUEST_AGENT_PORT = 'org.qemu.guest_agent.0';
const HUGEPAGE_KIB = { '2Mi': 2048, '1Gi': 1048576 } as const;

/** Escapes text and attribute values; refuses characters XML 1.0 cannot carry at all. */
export function esc(s: string): string {
  // eslint-disable-next-line no-control-regex -- the characters XML 1.0 cannot carry
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/.test(s)) throw new Error(`value not representable in XML: ${JSON.stringify(s)}`);
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

export function renderDomainXml(spec: VmSpec): string {
  const mmio = spec.machine === 'microvm';
  const lines: string[] = [];
  const add = (indent: number, ...xs: string[]) => lines.push(...xs.map((x) => ' '.repeat(indent) + x));

  const qemuNs = spec.guestAgent ? ` xmlns:qemu='${QEMU_NS}'` : '';
  add(0, `<domain type='${esc(spec.domainType)}'${qemuNs}>`);
  add(2, `<name>${esc(spec.name)}</name>`);
  add(2, '<metadata>', `  <vmlet:vm xmlns:vmlet="${METADATA_NS}">${esc(JSON.stringify(spec.metadata))}</vmlet:vm>`, '</metadata>');
  // <memory> is what the guest is given; the balloon holds it at <currentMemory> (grown or shrunk live).
  add(2, `<memory unit='MiB'>${int(spec.maxMemoryMiB)}</memory>`);
  add(2, `<currentMemory unit='MiB'>${int(spec.memoryMiB)}</currentMemory>`);
  if (spec.hugepages) {
    add(2, `<memoryBacking><hugepages><page size='${HUGEPAGE_KIB[spec.hugepages]}' unit='KiB'/></hugepages></memoryBacking>`);
  }
  const current = spec.maxVcpus > spec.vcpus ? ` current='${int(spec.vcpus)}'` : '';
  add(2, `<vcpu placement='static'${current}>${int(spec.maxVcpus)}</vcpu>`);
  add(2, ...cputuneXml(spec));
  if (spec.ioThreads > 0) add(2, `<iothreads>${int(spec.ioThreads)}</iothreads>`);

  add(2, '<os>', `  <type arch='x86_64' machine='${esc(spec.machine)}'>hvm</type>`);
  if (spec.loader && spec.nvram) {
    add(4, `<loader readonly='yes' type='pflash'>${esc(spec.loader)}</loader>`);
    add(4, `<nvram template='${esc(spec.nvram.template)}'>${esc(spec.nvram.path)}</nvram>`);
  }
  if (spec.boot.kind === 'kernel') {
    add(4, `<kernel>${esc(spec.boot.kernel)}</kernel>`);
    if (spec.boot.initrd) add(4, `<initrd>${esc(spec.boot.initrd)}</initrd>`);
    if (spec.boot.cmdline) add(4, `<cmdline>${esc(spec.boot.cmdline)}</cmdline>`);
  }
  add(2, '</os>');

  // ACPI: without it a guest's poweroff halts instead of powering off, and shutdown (power button) is ignored.
  add(2, '<features><acpi/><apic/></features>');
  add(2, cpuXml(spec));
  add(2, "<clock offset='utc'/>");
  add(2, '<on_poweroff>destroy</on_poweroff>', '<on_reboot>restart</on_reboot>', '<on_crash>destroy</on_crash>');

  add(2, '<devices>');
  spec.disks.forEach((d, i) => add(4, ...diskXml(spec, d, i)));
  if (spec.seed) add(4, ...seedXml(spec, spec.seed.path));
  for (const nic of spec.nics) add(4, ...nicXml(nic, spec.machine));
  if (spec.disks.some((d) => d.bus === 'scsi')) {
    const driver = spec.ioThreads > 0 ? "<driver iothread='1'/>" : '';
    add(4, `<controller type='scsi' index='0' model='virtio-scsi'>${driver}</controller>`);
  }
  add(4, "<controller type='usb' model='none'/>");
  // append='on': virtlogd keeps the history across VM restarts; vmlet tails the file from a saved offset.
  const log = spec.serialLog ? `<log file='${esc(spec.serialLog.file)}' append='on'/>` : '';
  add(4, `<serial type='pty'>${log}<target port='0'/></serial>`);
  add(4, "<console type='pty'><target type='serial' port='0'/></console>");
  add(4, `<rng model='virtio'><backend model='random'>/dev/urandom</backend>${mmio ? "<address type='virtio-mmio'/>" : ''}</rng>`);
  // The balloon carries UpdateContainerResources' memory changes. No autodeflate: a guest
  // under memory pressure must not take back what its limit took away (a container is OOM-killed).
  add(4, mmio ? "<memballoon model='virtio'><address type='virtio-mmio'/></memballoon>" : "<memballoon model='virtio'/>");
  add(2, '</devices>');
  if (spec.guestAgent) add(2, ...guestAgentXml(spec, spec.guestAgent.socket));
  add(0, '</domain>');
  return lines.join('\n') + '\n';
}

function cputuneXml(spec: VmSpec): string[] {
  const t = spec.cputune;
  const out: string[] = [];
  const tune: string[] = [];
  if (t.cpuset) {
    const set = formatCpuList(t.cpuset);
    for (let v = 0; v < spec.maxVcpus; v++) tune.push(`<vcpupin vcpu='${v}' cpuset='${set}'/>`);
    tune.push(`<emulatorpin cpuset='${set}'/>`);
  }
  if (t.shares !== undefined) tune.push(`<shares>${int(t.shares)}</shares>`);
  if (t.quotaUs !== undefined) tune.push(`<global_period>${int(t.periodUs ?? 100_000)}</global_period>`, `<global_quota>${int(t.quotaUs)}</global_quota>`);
  if (tune.length) out.push('<cputune>', ...tune.map((x) => '  ' + x), '</cputune>');
  if (t.memNodes) out.push(`<numatune><memory mode='strict' nodeset='${formatCpuList(t.memNodes)}'/></numatune>`);
  return out;
}

function cpuXml(spec: VmSpec): string {
  const m = spec.cpuModel;
  if (m.mode === 'custom') {
    // forbid: fail rather than silently give the guest a different CPU than the one asked for.
    return `<cpu mode='custom' match='exact'><model fallback='forbid'>${esc(m.model)}</model></cpu>`;
  }
  if (m.mode === 'host-passthrough' && spec.domainType === 'qemu') return "<cpu mode='maximum'/>";
  return `<cpu mode='${m.mode}'/>`;
}

function diskXml(spec: VmSpec, d: VmDisk, i: number): string[] {
  const iothread = d.bus === 'virtio' && spec.ioThreads > 0 ? ` iothread='${(i % spec.ioThreads) + 1}'` : '';
  const discard = d.readonly ? '' : " discard='unmap'"; // freed guest blocks shrink the overlay
  // QEMU has no read-only SATA hard disk (libvirt: "readonly sata disks are not supported"); a SATA CD-ROM is the read-only device there.
  const device = d.readonly && d.bus === 'sata' ? 'cdrom' : 'disk';
  return [
    `<disk type='file' device='${device}'>`,
    `  <driver name='qemu' type='${esc(d.format)}' cache='writeback'${discard}${iothread}/>`,
    `  <source file='${esc(d.path)}'/>`,
    `  <target dev='${esc(d.target)}' bus='${esc(d.bus)}'/>`,
    ...(d.readonly ? ['  <readonly/>'] : []),
    ...(spec.boot.kind === 'disk' && i === 0 ? ["  <boot order='1'/>"] : []),
    ...(spec.machine === 'microvm' && d.bus === 'virtio' ? ["  <address type='virtio-mmio'/>"] : []),
    '</disk>',
  ];
}

/**
 * The cloud-init seed as a read-only CD-ROM on the machine's own controller: SATA (AHCI) on
 * q35, IDE on pc. microvm has neither: a read-only virtio disk there (NoCloud finds the seed by
 * its cidata label on any block device).
 */
function seedXml(spec: VmSpec, path: string): string[] {
  const count = (bus: string) => spec.disks.filter((d) => d.bus === bus).length;
  const [device, bus, target, address] =
    spec.machine === 'microvm'
      ? ['disk', 'virtio', diskTarget('virtio', count('virtio')), "  <address type='virtio-mmio'/>"]
      : spec.machine === 'pc'
        ? ['cdrom', 'ide', 'hdc', '']
        : ['cdrom', 'sata', diskTarget('sata', count('sata')), ''];
  return [
    `<disk type='file' device='${device}'>`,
    "  <driver name='qemu' type='raw'/>",
    `  <source file='${esc(path)}'/>`,
    `  <target dev='${target}' bus='${bus}'/>`,
    '  <readonly/>',
    ...(address ? [address] : []),
    '</disk>',
  ];
}

/**
 * A tap that libvirt creates in its own (the host's) netns; the pod network moves it into the
 * pod's netns once QEMU holds it. <mtu> sets the tap's MTU and the virtio NIC's host_mtu, so the
 * guest uses the pod MTU even before DHCP.
 */
export function nicXml(nic: VmNic, machine: VmSpec['machine'] = 'q35'): string[] {
  return [
    "<interface type='ethernet'>",
    `  <mac address='${esc(nic.mac)}'/>`,
    `  <target dev='${esc(nic.tap)}'/>`,
    "  <model type='virtio'/>",
    `  <mtu size='${int(nic.mtu)}'/>`,
    ...(machine === 'microvm' ? ["  <address type='virtio-mmio'/>"] : []),
    '</interface>',
  ];
}

/**
 * The guest-agent channel as QEMU arguments: a listening unix socket (wait=off: QEMU starts
 * without a client; it serves one client at a time), a virtio-serial controller (on microvm
 * the virtio-mmio variant) and the named port on it. No address: QEMU picks a free one.
 */
export function guestAgentArgs(spec: Pick<VmSpec, 'machine'>, socket: string): string[] {
  // QemuOpts syntax: a comma in a value is written twice.
  const chardev = `socket,id=vmletqga,path=${socket.replace(/,/g, ',,')},server=on,wait=off`;
  const controller = { driver: spec.machine === 'microvm' ? 'virtio-serial-device' : 'virtio-serial-pci', id: 'vmletvser' };
  const port = { driver: 'virtserialport', bus: 'vmletvser.0', chardev: 'vmletqga', name: GUEST_AGENT_PORT };
  return ['-chardev', chardev, '-device', JSON.stringify(controller), '-device', JSON.stringify(port)];
}

function guestAgentXml(spec: VmSpec, socket: string): string[] {
  return ['<qemu:commandline>', ...guestAgentArgs(spec, socket).map((a) => `  <qemu:arg value='${esc(a)}'/>`), '</qemu:commandline>'];
}

function int(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a count: ${n}`);
  return String(n);
}

/**
 * A domain's XML (as libvirt dumps it, uuid included) without its UEFI loader and NVRAM. libvirt
 * refuses a plain undefine of a domain with NVRAM and the binding has no undefine flags, so an
 * inactive UEFI domain is redefined from this first, then undefined; vmlet deletes the NVRAM file.
 */
export function stripNvram(xml: string): string {
  return xml.replace(/\s*<(loader|nvram)\b[^>]*?(?:\/>|>[\s\S]*?<\/\1>)/g, '');
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|[a-z]+);/g, (all, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? all;
  });
}

/**
 * vmlet's metadata from a domain's XML (as rendered, or as libvirt returns it: libvirt re-indents
 * and unescapes quotes but keeps the prefix). undefined when absent, unreadable or another version.
 */
export function readMetadata(xml: string): VmMetadata | undefined {
  const nsAttr = METADATA_NS.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const re = new RegExp(`<([A-Za-z_][\\w.-]*):vm\\s[^>]*?xmlns:\\1\\s*=\\s*(["'])${nsAttr}\\2[^>]*>([\\s\\S]*?)</\\1:vm\\s*>`);
  const m = re.exec(xml);
  if (!m) return undefined;
  try {
    const v = JSON.parse(unescapeXml(m[3]!)) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    const md = v as Record<string, unknown>;
    if (md.v !== 1 || typeof md.sandboxId !== 'string' || typeof md.containerId !== 'string') return undefined;
    return md as VmMetadata;
  } catch {
    return undefined;
  }
}
