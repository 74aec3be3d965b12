import { describe, expect, it } from 'vitest';
import { VmletError } from '../../src/errors.js';
import { parseVmSettings } from '../../src/vm/annotations.js';
import { buildVmSpec, diskTarget, domainName, type BuildVmSpecInput, type VmMetadata, type VmSpec } from '../../src/vm/spec.js';
import { guestAgentArgs, readMetadata, renderDomainXml, stripNvram } from '../../src/vm/domain-xml.js';

const metadata: VmMetadata = { v: 1, sandboxId: 'ab12cd34ef', containerId: 'ff00ee11', pod: { name: 'web', namespace: 'default' } };

function spec(annotations: Record<string, string> = {}, over: Partial<BuildVmSpecInput> = {}): VmSpec {
  const settings = parseVmSettings({ sandboxAnnotations: annotations, containerAnnotations: {}, defaults: { vcpus: 1, memoryMiB: 512 } });
  return buildVmSpec({
    name: 'vmlet-default-web-ab12cd34',
    domainType: 'qemu',
    settings,
    boot: { kind: 'disk' },
    disks: [{ path: '/var/lib/vmlet/c/root.qcow2', format: 'qcow2' }],
    consoleLog: '/var/lib/vmlet/s/console.log',
    nvramPath: '/var/lib/vmlet/c/nvram.fd',
    metadata,
    ...over,
  });
}
const xml = (annotations: Record<string, string> = {}, over: Partial<BuildVmSpecInput> = {}) => renderDomainXml(spec(annotations, over));
const kernelBoot = { kind: 'kernel', kernel: '/k/vmlinux', initrd: '/k/initrd', cmdline: 'console=ttyS0 quiet' } as const;

describe('domainName', () => {
  it('is vmlet-<namespace>-<pod>-<8 of the id>', () => {
    expect(domainName('web-0', 'default', 'AB12cd34ef567890')).toBe('vmlet-default-web-0-ab12cd34');
  });
  it('replaces characters libvirt names should not carry', () => {
    expect(domainName('we b/ü:x', 'ns$1', 'ab12cd34ef')).toBe('vmlet-ns-1-we-b---x-ab12cd34');
    expect(domainName('a.b_c', 'n', '12345678')).toMatch(/^[A-Za-z0-9_.-]+$/);
  });
  it('stays within 80 characters by shortening the pod part, never the id', () => {
    const n = domainName('p'.repeat(253), 'my-namespace', 'deadbeefcafe');
    expect(n).toHaveLength(80);
    expect(n).toMatch(/^vmlet-my-namespace-p+-deadbeef$/);
    const worst = domainName('p'.repeat(253), 'n'.repeat(63), 'deadbeefcafe');
    expect(worst).toHaveLength(80);
    expect(worst.endsWith('-p-deadbeef')).toBe(true);
    const absurd = domainName('pod', 'n'.repeat(300), 'deadbeefcafe');
    expect(absurd.length).toBeLessThanOrEqual(80);
    expect(absurd.endsWith('-p-deadbeef')).toBe(true);
  });
});

describe('diskTarget', () => {
  it('names disks like Linux does', () => {
    expect(diskTarget('virtio', 0)).toBe('vda');
    expect(diskTarget('virtio', 1)).toBe('vdb');
    expect(diskTarget('scsi', 0)).toBe('sda');
    expect(diskTarget('sata', 25)).toBe('sdz');
    expect(diskTarget('sata', 26)).toBe('sdaa');
  });
});

describe('buildVmSpec', () => {
  it('carries settings, assigns bus and targets, keeps sources in metadata', () => {
    const s = spec({ 'vmlet.io/vcpus': '2', 'vmlet.io/disk-bus': 'scsi' }, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/b', format: 'raw', readonly: true }] });
    expect(s).toMatchObject({ vcpus: 2, memoryMiB: 512, domainType: 'qemu', machine: 'q35', serialLog: { file: '/var/lib/vmlet/s/console.log' } });
    expect(s.disks).toEqual([
      { path: '/a', format: 'qcow2', bus: 'scsi', target: 'sda' },
      { path: '/b', format: 'raw', bus: 'scsi', target: 'sdb', readonly: true },
    ]);
    expect(s.metadata).toMatchObject({ ...metadata, settingSources: { vcpus: 'pod annotation vmlet.io/vcpus' } });
    expect(s.nvram).toBeUndefined();
  });
  it('kernel boot: image cmdline + kernel-args', () => {
    expect(spec({ 'vmlet.io/kernel-args': 'loglevel=7' }, { boot: kernelBoot }).boot).toEqual({ ...kernelBoot, cmdline: 'console=ttyS0 quiet loglevel=7' });
    expect(spec({ 'vmlet.io/kernel-args': 'x=1' }, { boot: { kind: 'kernel', kernel: '/k' }, disks: [] }).boot).toEqual({ kind: 'kernel', kernel: '/k', cmdline: 'x=1' });
  });
  it('microvm needs kernel boot', () => {
    expect(() => spec({ 'vmlet.io/machine': 'microvm' }, { domainType: 'kvm' })).toThrow(/vmlet\.io\/machine="microvm" needs an image that boots a kernel/);
    expect(spec({ 'vmlet.io/machine': 'microvm' }, { boot: kernelBoot, domainType: 'kvm' }).machine).toBe('microvm');
  });
  it('uefi: Debian OVMF code and vars template, NVRAM path from the caller', () => {
    const s = spec({ 'vmlet.io/firmware': 'uefi' });
    expect(s.loader).toBe('/usr/share/OVMF/OVMF_CODE_4M.fd');
    expect(s.nvram).toEqual({ path: '/var/lib/vmlet/c/nvram.fd', template: '/usr/share/OVMF/OVMF_VARS_4M.fd' });
  });
  it('uefi without OVMF on the node is FailedPrecondition naming the annotation', () => {
    try {
      spec({ 'vmlet.io/firmware': 'uefi' }, { ovmf: { code: '/nonexistent/CODE.fd', varsTemplate: '/nonexistent/VARS.fd' } });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(VmletError);
      expect((err as VmletError).kind).toBe('failed-precondition');
      expect((err as Error).message).toMatch(/vmlet\.io\/firmware="uefi" needs OVMF.*ovmf package.*\/nonexistent\/CODE\.fd/);
    }
  });
  it('microvm needs KVM: refused under TCG', () => {
    const a = { 'vmlet.io/machine': 'microvm', 'vmlet.io/io-threads': '1' };
    try {
      spec(a, { boot: kernelBoot, domainType: 'qemu' });
      expect.unreachable();
    } catch (err) {
      expect((err as VmletError).kind).toBe('failed-precondition');
      expect((err as Error).message).toMatch(/^annotation vmlet\.io\/machine="microvm" needs KVM, and this node runs guests under TCG.*allowed q35 \| pc here$/);
    }
    expect(spec(a, { boot: kernelBoot, domainType: 'kvm' })).toMatchObject({ machine: 'microvm', ioThreads: 1 });
  });
  it('serial-log false: no log file', () => {
    expect(spec({ 'vmlet.io/serial-log': 'false' }, { consoleLog: undefined }).serialLog).toBeUndefined();
  });
  it('rejects an image command line with control characters', () => {
    expect(() => spec({}, { boot: { ...kernelBoot, cmdline: 'a\nb' } })).toThrow(/control characters/);
  });
});

describe('renderDomainXml', () => {
  it('base shape: type, name, memory, vcpus, features, lifecycle, clock, devices', () => {
    const x = xml();
    expect(x).toMatch(/^<domain type='qemu'>\n/);
    expect(x).toContain('<name>vmlet-default-web-ab12cd34</name>');
    expect(x).toContain("<memory unit='MiB'>512</memory>");
    expect(x).toContain("<currentMemory unit='MiB'>512</currentMemory>");
    expect(x).toContain("<vcpu placement='static'>1</vcpu>");
    expect(x).toContain("<type arch='x86_64' machine='q35'>hvm</type>");
    expect(x).toContain('<features><acpi/><apic/></features>');
    expect(x).toContain('<on_poweroff>destroy</on_poweroff>');
    expect(x).toContain('<on_reboot>restart</on_reboot>');
    expect(x).toContain('<on_crash>destroy</on_crash>');
    expect(x).toContain("<clock offset='utc'/>");
    expect(x).toContain("<memballoon model='virtio'/>");
    expect(x).not.toContain('<cputune>');
    expect(x).not.toContain('<numatune>');
    expect(x).toContain("<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>");
    expect(x).toContain("<controller type='usb' model='none'/>");
    expect(x).not.toContain('<graphics');
    expect(x).not.toContain('<iothreads>');
    expect(x).not.toContain('<memoryBacking>');
    expect(x).not.toContain('<loader');
  });
  it('domain type kvm comes only from the spec', () => {
    expect(xml({}, { domainType: 'kvm' })).toMatch(/^<domain type='kvm'>/);
  });
  it('vcpus and memory', () => {
    const x = xml({ 'vmlet.io/vcpus': '4', 'vmlet.io/memory': '2Gi' });
    expect(x).toContain("<vcpu placement='static'>4</vcpu>");
    expect(x).toContain("<memory unit='MiB'>2048</memory>");
  });
  it('cpu model: host-passthrough becomes maximum under TCG, stays under KVM', () => {
    expect(xml()).toContain("<cpu mode='maximum'/>");
    expect(xml({}, { domainType: 'kvm' })).toContain("<cpu mode='host-passthrough'/>");
    expect(xml({ 'vmlet.io/cpu-model': 'host-model' })).toContain("<cpu mode='host-model'/>");
    expect(xml({ 'vmlet.io/cpu-model': 'host-model' }, { domainType: 'kvm' })).toContain("<cpu mode='host-model'/>");
    expect(xml({ 'vmlet.io/cpu-model': 'Nehalem' })).toContain("<cpu mode='custom' match='exact'><model fallback='forbid'>Nehalem</model></cpu>");
  });
  it('machine pc', () => {
    expect(xml({ 'vmlet.io/machine': 'pc' })).toContain("<type arch='x86_64' machine='pc'>hvm</type>");
  });
  it('machine microvm: virtio devices on virtio-mmio', () => {
    const x = xml({ 'vmlet.io/machine': 'microvm' }, { boot: kernelBoot, domainType: 'kvm' });
    expect(x).toContain("machine='microvm'");
    expect(x).toContain("<rng model='virtio'><backend model='random'>/dev/urandom</backend><address type='virtio-mmio'/></rng>");
    expect(x).toMatch(/<target dev='vda' bus='virtio'\/>\n\s*<address type='virtio-mmio'\/>/);
  });
  it('disk boot: the first disk boots; qcow2 with writeback cache and discard', () => {
    const x = xml({}, { disks: [{ path: '/a.qcow2', format: 'qcow2' }, { path: '/b.raw', format: 'raw', readonly: true }] });
    expect(x).toContain(
      ["<disk type='file' device='disk'>", "  <driver name='qemu' type='qcow2' cache='writeback' discard='unmap'/>", "  <source file='/a.qcow2'/>", "  <target dev='vda' bus='virtio'/>", "  <boot order='1'/>", '</disk>']
        .map((l) => '    ' + l)
        .join('\n'),
    );
    expect(x).toMatch(/<driver name='qemu' type='raw' cache='writeback'\/>\n\s*<source file='\/b\.raw'\/>\n\s*<target dev='vdb' bus='virtio'\/>\n\s*<readonly\/>\n\s*<\/disk>/);
    expect(x.match(/<boot order/g)).toHaveLength(1);
  });
  it('disk bus scsi adds a virtio-scsi controller; sata needs none', () => {
    const scsi = xml({ 'vmlet.io/disk-bus': 'scsi' });
    expect(scsi).toContain("<target dev='sda' bus='scsi'/>");
    expect(scsi).toContain("<controller type='scsi' index='0' model='virtio-scsi'></controller>");
    const sata = xml({ 'vmlet.io/disk-bus': 'sata' });
    expect(sata).toContain("<target dev='sda' bus='sata'/>");
    expect(sata).not.toContain("type='scsi'");
  });
  it('a read-only disk on sata is a CD-ROM (QEMU has no read-only SATA hard disk)', () => {
    const x = xml({ 'vmlet.io/disk-bus': 'sata' }, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/seed.iso', format: 'raw', readonly: true }] });
    expect(x).toMatch(/<disk type='file' device='disk'>\n\s*<driver name='qemu' type='qcow2'/);
    expect(x).toMatch(/<disk type='file' device='cdrom'>\n\s*<driver name='qemu' type='raw' cache='writeback'\/>\n\s*<source file='\/seed\.iso'\/>\n\s*<target dev='sdb' bus='sata'\/>\n\s*<readonly\/>/);
    expect(xml({}, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/b', format: 'raw', readonly: true }] })).not.toContain('cdrom');
  });
  it('io-threads: declared, spread over virtio disks, and given to the scsi controller', () => {
    const x = xml({ 'vmlet.io/io-threads': '2' }, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/b', format: 'qcow2' }, { path: '/c', format: 'qcow2' }] });
    expect(x).toContain('<iothreads>2</iothreads>');
    expect([...x.matchAll(/iothread='(\d)'/g)].map((m) => m[1])).toEqual(['1', '2', '1']);
    const scsi = xml({ 'vmlet.io/io-threads': '1', 'vmlet.io/disk-bus': 'scsi' });
    expect(scsi).toContain("<controller type='scsi' index='0' model='virtio-scsi'><driver iothread='1'/></controller>");
    expect(scsi).not.toMatch(/<driver name='qemu'[^>]*iothread/);
  });
  it('hugepages', () => {
    expect(xml({ 'vmlet.io/hugepages': '2Mi' })).toContain("<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>");
    expect(xml({ 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '1Gi' })).toContain("<page size='1048576' unit='KiB'/>");
  });
  it('firmware uefi: read-only pflash loader and an NVRAM from the template', () => {
    const x = xml({ 'vmlet.io/firmware': 'uefi' });
    expect(x).toContain("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>");
    expect(x).toContain("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/vmlet/c/nvram.fd</nvram>");
  });
  it('kernel boot: kernel, initrd, cmdline; no disk boot order', () => {
    const x = xml({ 'vmlet.io/kernel-args': 'loglevel=7' }, { boot: kernelBoot });
    expect(x).toContain('<kernel>/k/vmlinux</kernel>');
    expect(x).toContain('<initrd>/k/initrd</initrd>');
    expect(x).toContain('<cmdline>console=ttyS0 quiet loglevel=7</cmdline>');
    expect(x).not.toContain('<boot order');
  });
  it('serial log on: virtlogd appends to the file; off: a plain pty', () => {
    expect(xml()).toContain("<serial type='pty'><log file='/var/lib/vmlet/s/console.log' append='on'/><target port='0'/></serial>");
    expect(xml()).toContain("<console type='pty'><target type='serial' port='0'/></console>");
    expect(xml({ 'vmlet.io/serial-log': 'false' })).toContain("<serial type='pty'><target port='0'/></serial>");
  });
  it('escapes every value', () => {
    const x = xml({ 'vmlet.io/kernel-args': `a="<b>" c='&'` }, { name: "x'<&>\"", boot: { kind: 'kernel', kernel: "/k/it's<&>", cmdline: '' }, disks: [{ path: "/d/'q'&<>.qcow2", format: 'qcow2' }] });
    expect(x).toContain('<name>x&apos;&lt;&amp;&gt;&quot;</name>');
    expect(x).toContain('<kernel>/k/it&apos;s&lt;&amp;&gt;</kernel>');
    expect(x).toContain('<cmdline>a=&quot;&lt;b&gt;&quot; c=&apos;&amp;&apos;</cmdline>');
    expect(x).toContain("<source file='/d/&apos;q&apos;&amp;&lt;&gt;.qcow2'/>");
    // Inside attribute values: no raw < or >, and every & starts an entity.
    for (const m of x.matchAll(/='([^']*)'/g)) expect(m[1]).not.toMatch(/[<>]|&(?!(amp|lt|gt|apos|quot);)/);
  });
  it('refuses characters XML cannot carry', () => {
    expect(() => xml({}, { disks: [{ path: '/a\x01b', format: 'qcow2' }] })).toThrow(/not representable in XML/);
  });
});

describe('stripNvram', () => {
  it('removes the UEFI loader and NVRAM, nothing else', () => {
    const x = xml({ 'vmlet.io/firmware': 'uefi' });
    const stripped = stripNvram(x.replace('<name>', "<uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid><name>"));
    expect(stripped).not.toMatch(/<loader|<nvram/);
    expect(stripped).toContain('<uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>');
    expect(stripped).toContain("<type arch='x86_64' machine='q35'>hvm</type>\n  </os>");
    expect(stripNvram("<os><loader readonly='yes' type='pflash'/><nvram template='/t'/></os>")).toBe('<os></os>');
    expect(stripNvram(xml())).toBe(xml());
  });
});

describe('metadata', () => {
  it('is stored under the vmlet namespace as escaped JSON and read back', () => {
    const md: VmMetadata = { ...metadata, tricky: `</vmlet:vm> & "quotes" 'apos' <x> ü \u2028 \n`, n: 3, list: [true, null] };
    const x = xml({}, { metadata: md });
    expect(x).toMatch(/<metadata>\n\s*<vmlet:vm xmlns:vmlet="https:\/\/vmlet\.io\/xmlns\/domain\/1">\{[^<]*\}<\/vmlet:vm>\n\s*<\/metadata>/);
    expect(x.match(/<\/vmlet:vm>/g)).toHaveLength(1);
    expect(readMetadata(x)).toEqual(spec({}, { metadata: md }).metadata);
  });
  it('reads the form libvirt gives back (re-indented, quotes unescaped, numeric entities)', () => {
    const fromLibvirt = `<domain type='qemu'>\n  <name>x</name>\n  <metadata>\n    <vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{"v":1,"sandboxId":"s","containerId":"c","a":"x&lt;y&amp;z'&#233;&#x41;"}</vmlet:vm>\n  </metadata>\n</domain>`;
    expect(readMetadata(fromLibvirt)).toEqual({ v: 1, sandboxId: 's', containerId: 'c', a: "x<y&z'éA" });
    expect(readMetadata(fromLibvirt.replace(/vmlet:vm/g, 'v2:vm').replace('xmlns:vmlet', 'xmlns:v2'))).toMatchObject({ sandboxId: 's' });
  });
  it('is undefined when absent, of another namespace or version, or not vmlet JSON', () => {
    expect(readMetadata("<domain type='qemu'><name>x</name></domain>")).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://example.com/other">{"v":1,"sandboxId":"s","containerId":"c"}</vmlet:vm></metadata>')).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{"v":2,"sandboxId":"s","containerId":"c"}</vmlet:vm></metadata>')).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{not json</vmlet:vm></metadata>')).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">[1]</vmlet:vm></metadata>')).toBeUndefined();
  });
});

describe('network cards and the cloud-init seed', () => {
  const nic = { tap: 'vmt-ab12cd34ef56', mac: '02:ab:12:cd:34:ef', mtu: 1450 };

  it('renders a tap NIC with the pod MAC and MTU', () => {
    const x = xml({}, { nics: [nic] });
    expect(x).toMatch(/<interface type='ethernet'>\s*<mac address='02:ab:12:cd:34:ef'\/>\s*<target dev='vmt-ab12cd34ef56'\/>\s*<model type='virtio'\/>\s*<mtu size='1450'\/>\s*<\/interface>/);
    expect(xml()).not.toContain('<interface');
  });

  it('attaches the seed read-only as a CD-ROM on the machine’s own bus', () => {
    const q35 = xml({}, { seedIso: '/s/seed.iso' });
    expect(q35).toMatch(/<disk type='file' device='cdrom'>\s*<driver name='qemu' type='raw'\/>\s*<source file='\/s\/seed.iso'\/>\s*<target dev='sda' bus='sata'\/>\s*<readonly\/>/);
    const pc = xml({ 'vmlet.io/machine': 'pc' }, { seedIso: '/s/seed.iso' });
    expect(pc).toMatch(/<target dev='hdc' bus='ide'\/>\s*<readonly\/>/);
    // A SATA root disk takes sda: the seed follows it.
    const sata = xml({ 'vmlet.io/disk-bus': 'sata' }, { seedIso: '/s/seed.iso' });
    expect(sata).toMatch(/<source file='\/s\/seed.iso'\/>\s*<target dev='sdb' bus='sata'\/>/);
  });
});

describe('guest-agent channel', () => {
  const socket = '/run/vmlet/qga/c0ffee.sock';

  it('is QEMU arguments libvirt does not manage: a unix socket, a virtio-serial controller and the named port', () => {
    const x = xml({}, { guestAgent: { socket } });
    expect(x).toMatch(/^<domain type='qemu' xmlns:qemu='http:\/\/libvirt.org\/schemas\/domain\/qemu\/1.0'>/);
    const args = [...x.matchAll(/<qemu:arg value='([^']*)'\/>/g)].map((m) => m[1]!.replace(/&quot;/g, '"'));
    expect(args).toEqual([
      '-chardev', `socket,id=vmletqga,path=${socket},server=on,wait=off`,
      '-device', '{"driver":"virtio-serial-pci","id":"vmletvser"}',
      '-device', '{"driver":"virtserialport","bus":"vmletvser.0","chardev":"vmletqga","name":"org.qemu.guest_agent.0"}',
    ]);
    // After </devices>, and never a libvirt <channel> (libvirtd would hold the socket's only connection).
    expect(x).toMatch(/<\/devices>\s*<qemu:commandline>[\s\S]*<\/qemu:commandline>\s*<\/domain>/);
    expect(x).not.toContain('<channel');
    expect(x).not.toMatch(/address/); // QEMU picks the slot
  });

  it('is absent, with no qemu namespace, without a socket', () => {
    const x = xml();
    expect(x).not.toContain('qemu:commandline');
    expect(x).toMatch(/^<domain type='qemu'>/);
  });

  it('uses the virtio-mmio controller on microvm and doubles commas in the path', () => {
    expect(guestAgentArgs({ machine: 'microvm' }, '/a,b/q.sock')).toEqual([
      '-chardev', 'socket,id=vmletqga,path=/a,,b/q.sock,server=on,wait=off',
      '-device', '{"driver":"virtio-serial-device","id":"vmletvser"}',
      '-device', '{"driver":"virtserialport","bus":"vmletvser.0","chardev":"vmletqga","name":"org.qemu.guest_agent.0"}',
    ]);
  });

  it('refuses a socket path longer than a unix socket path can be', () => {
    expect(() => spec({}, { guestAgent: { socket: '/' + 'x'.repeat(107) } })).toThrow(/longer than 107 bytes/);
    expect(spec({}, { guestAgent: { socket: '/' + 'x'.repeat(106) } }).guestAgent).toEqual({ socket: '/' + 'x'.repeat(106) });
  });
});

describe('live-resize headroom and CPU tuning', () => {
  it('defines the maxima and starts at the size', () => {
    const x = xml({ 'vmlet.io/vcpus': '2', 'vmlet.io/max-vcpus': '4', 'vmlet.io/memory': '256Mi', 'vmlet.io/max-memory': '1Gi' });
    expect(x).toContain("<memory unit='MiB'>1024</memory>");
    expect(x).toContain("<currentMemory unit='MiB'>256</currentMemory>");
    expect(x).toContain("<vcpu placement='static' current='2'>4</vcpu>");
  });
  it('renders shares, the whole-domain quota, pinning of every vCPU and the emulator, and NUMA nodes', () => {
    const x = xml({ 'vmlet.io/vcpus': '1', 'vmlet.io/max-vcpus': '2' }, { cputune: { shares: 512, quotaUs: 50_000, periodUs: 100_000, cpuset: [0, 1, 3], memNodes: [0] } });
    expect(x).toContain(
      [
        '  <cputune>',
        "    <vcpupin vcpu='0' cpuset='0-1,3'/>",
        "    <vcpupin vcpu='1' cpuset='0-1,3'/>",
        "    <emulatorpin cpuset='0-1,3'/>",
        '    <shares>512</shares>',
        '    <global_period>100000</global_period>',
        '    <global_quota>50000</global_quota>',
        '  </cputune>',
        "  <numatune><memory mode='strict' nodeset='0'/></numatune>",
      ].join('\n'),
    );
  });
  it('puts the balloon on virtio-mmio for microvm', () => {
    const x = xml({ 'vmlet.io/machine': 'microvm' }, { boot: kernelBoot, domainType: 'kvm' });
    expect(x).toContain("<memballoon model='virtio'><address type='virtio-mmio'/></memballoon>");
  });
});
