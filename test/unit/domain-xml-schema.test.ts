// libvirt's schema check of the domain XML vmlet renders, for a representative set of specs: every
// device and knob the renderer can emit appears in at least one of them. Unit speed (no libvirtd,
// no VM; about 10 ms a document); skipped, with the reason, where virt-xml-validate is not
// installed. test/integration/domain-xml-libvirt.test.ts goes further: libvirt defines and starts
// each variant.
import { describe, expect, it } from 'vitest';
import type { BuildVmSpecInput, VmSpec } from '../../src/vm/spec.js';
import { renderDomainXml } from '../../src/vm/domain-xml.js';
import { kernelBoot, spec } from './domain-spec-fixtures.js';
import { validateDomainXml, virtXmlValidateMissing } from '../helpers/virt-xml-validate.js';

const nic = { tap: 'vmt-ab12cd34ef56', mac: '02:ab:12:cd:34:ef', mtu: 1450 };
const guestAgent = { socket: '/run/vmlet/qga/ff00ee11.sock' };
const seedIso = '/var/lib/vmlet/s/seed.iso';
const vncSocket = '/var/lib/vmlet/pods/ab12cd34ef/vnc.sock';
const disks = (readonly = false): BuildVmSpecInput['disks'] => [
  { path: '/var/lib/vmlet/c/root.qcow2', format: 'qcow2' },
  { path: '/var/lib/vmlet/c/data.raw', format: 'raw' },
  { path: '/var/lib/vmlet/c/ro.raw', format: 'raw', readonly },
];
// UEFI is set on the built spec: buildVmSpec wants OVMF on the node, and the schema check does not.
const uefi = (s: VmSpec): VmSpec => ({
  ...s,
  firmware: 'uefi',
  loader: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  nvram: { path: '/var/lib/vmlet/c/nvram.fd', template: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
});
const kvm = { domainType: 'kvm' } as const;
const cputune = { shares: 512, quotaUs: 50_000, periodUs: 100_000, cpuset: [0, 1, 3], memNodes: [0] };

const variants: Array<[label: string, spec: VmSpec]> = [
  ['containerDisk on q35 (TCG: cpu maximum), seed on SATA, NIC with MTU, guest agent', spec({}, { seedIso, nics: [nic], guestAgent })],
  ['containerDisk on pc, seed on IDE', spec({ 'vmlet.io/machine': 'pc' }, { seedIso, nics: [nic] })],
  ['kernel boot with initrd, command line and a disk (KVM: host-passthrough)', spec({ 'vmlet.io/kernel-args': 'loglevel=7' }, { ...kvm, boot: kernelBoot })],
  ['kernel boot without initrd or command line', spec({}, { boot: { kind: 'kernel', kernel: '/k/vmlinux' }, disks: [] })],
  ['extra disks on virtio, one read-only, io threads', spec({ 'vmlet.io/io-threads': '2' }, { disks: disks(true) })],
  ['extra disks on scsi (virtio-scsi controller with an io thread), one read-only', spec({ 'vmlet.io/disk-bus': 'scsi', 'vmlet.io/io-threads': '1' }, { disks: disks(true) })],
  ['extra disks on sata, the read-only one a CD-ROM, seed after them', spec({ 'vmlet.io/disk-bus': 'sata' }, { disks: disks(true), seedIso })],
  ['extra disks on sata on pc', spec({ 'vmlet.io/disk-bus': 'sata', 'vmlet.io/machine': 'pc' }, { disks: disks() })],
  ['extra disks on scsi on pc', spec({ 'vmlet.io/disk-bus': 'scsi', 'vmlet.io/machine': 'pc' }, { disks: disks() })],
  ['microvm: virtio-mmio disks, seed, NIC, rng, balloon; guest agent on virtio-serial-device', spec({ 'vmlet.io/machine': 'microvm', 'vmlet.io/io-threads': '1' }, { ...kvm, boot: kernelBoot, seedIso, nics: [nic], guestAgent })],
  ['CPU tuning: pinning, shares, quota, NUMA nodes, vCPU and memory headroom', spec({ 'vmlet.io/vcpus': '1', 'vmlet.io/max-vcpus': '2', 'vmlet.io/max-memory': '1Gi' }, { cputune })],
  ['CPU model host-model', spec({ 'vmlet.io/cpu-model': 'host-model' })],
  ['CPU model custom (Nehalem)', spec({ 'vmlet.io/cpu-model': 'Nehalem' })],
  ['hugepages 2 MiB', spec({ 'vmlet.io/hugepages': '2Mi' })],
  ['hugepages 1 GiB', spec({ 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '1Gi' })],
  ['UEFI on q35', uefi(spec())],
  ['UEFI on pc, kernel boot', uefi(spec({ 'vmlet.io/machine': 'pc' }, { boot: kernelBoot }))],
  ['serial log off', spec({ 'vmlet.io/serial-log': 'false' }, { consoleLog: undefined })],
  ['VNC display on a unix socket and a VGA, kernel boot on q35', spec({ 'vmlet.io/vnc': 'true' }, { boot: kernelBoot, vncSocket, seedIso, nics: [nic], guestAgent })],
  ['VNC display on pc with UEFI', uefi(spec({ 'vmlet.io/vnc': 'true', 'vmlet.io/machine': 'pc' }, { vncSocket }))],
];

if (virtXmlValidateMissing) console.log(`domain XML schema check skipped: ${virtXmlValidateMissing}`);

describe("rendered domain XML against libvirt's schema (virt-xml-validate)", () => {
  it.for(variants)('%s', ([label, s], ctx) => {
    if (virtXmlValidateMissing) ctx.skip(virtXmlValidateMissing);
    expect(() => validateDomainXml(label, renderDomainXml(s))).not.toThrow();
  });

  it('the check itself fails on XML libvirt would refuse', (ctx) => {
    if (virtXmlValidateMissing) ctx.skip(virtXmlValidateMissing);
    const bad = renderDomainXml(spec()).replace('<clock offset="utc"/>', '<clock offset="sometimes"/>');
    expect(bad).toContain('sometimes');
    expect(() => validateDomainXml('a bad clock', bad)).toThrow(/virt-xml-validate rejected a bad clock/);
  });
});
