import { describe, expect, it } from 'vitest';
import { VmletError } from '../../src/errors.js';
import { diskTarget, domainName, type BuildVmSpecInput, type VmMetadata } from '../../src/vm/spec.js';
import { guestAgentArgs, METADATA_NS, monitorArgs, nicXml, QEMU_NS, readMetadata, renderDomainXml, stripNvram } from '../../src/vm/domain-xml.js';
import { el, parseXml, type XmlElement } from '../../src/vm/xml.js';
import { kernelBoot, metadata, spec, xml } from './domain-spec-fixtures.js';
import { at, childNames, descendants, one, tree } from './xml-tree.js';

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
  it('adds 8 of the container id for a VM that is not the pod\'s first (a restart), within 80 characters too', () => {
    expect(domainName('web-0', 'default', 'AB12cd34ef567890', 'FEDCBA9876543210')).toBe('vmlet-default-web-0-ab12cd34-fedcba98');
    const n = domainName('p'.repeat(253), 'my-namespace', 'deadbeefcafe', '0123456789');
    expect(n).toHaveLength(80);
    expect(n).toMatch(/^vmlet-my-namespace-p+-deadbeef-01234567$/);
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
  it("kernel boot of a bzImage: the ELF the pull unpacked (PVH), unless vmlet.io/pvh is false, the firmware is UEFI or there is a VNC screen", () => {
    const bz = { ...kernelBoot, kernel: '/k/kernel', pvh: '/k/vmlinux' };
    const kernelOf = (a: Record<string, string>) => spec(a, { boot: bz, vncSocket: '/run/vnc.sock' }).boot;
    expect(kernelOf({})).toEqual({ kind: 'kernel', kernel: '/k/vmlinux', initrd: '/k/initrd', cmdline: 'console=ttyS0 quiet' });
    expect(kernelOf({ 'vmlet.io/pvh': 'false' })).toMatchObject({ kernel: '/k/kernel' });
    expect(kernelOf({ 'vmlet.io/pvh': 'true' })).toMatchObject({ kernel: '/k/vmlinux' });
    expect(kernelOf({ 'vmlet.io/firmware': 'uefi' })).toMatchObject({ kernel: '/k/kernel' });
    expect(kernelOf({ 'vmlet.io/vnc': 'true' })).toMatchObject({ kernel: '/k/kernel' });
    expect(() => kernelOf({ 'vmlet.io/pvh': 'yes' })).toThrow(/vmlet\.io\/pvh.*true.*false/);
  });
  it('a BIOS ROM (qboot) is kept for a kernel boot on BIOS firmware only: a disk boot needs SeaBIOS, UEFI has its own loader', () => {
    expect(spec({}, { boot: kernelBoot, biosRom: '/rom/qboot.rom' }).biosRom).toBe('/rom/qboot.rom');
    expect(spec({}, { biosRom: '/rom/qboot.rom' }).biosRom).toBeUndefined();
    const uefi = spec({ 'vmlet.io/firmware': 'uefi' }, { boot: kernelBoot, biosRom: '/rom/qboot.rom' });
    expect(uefi.biosRom).toBeUndefined();
    expect(uefi.loader).toBe('/usr/share/OVMF/OVMF_CODE_4M.fd');
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
  it('uefi: pure, the OVMF paths are used as given (whether they exist is checked before: spec-checks.test.ts)', () => {
    const s = spec({ 'vmlet.io/firmware': 'uefi' }, { ovmf: { code: '/nonexistent/CODE.fd', varsTemplate: '/nonexistent/VARS.fd' } });
    expect(s.loader).toBe('/nonexistent/CODE.fd');
    expect(s.nvram).toEqual({ path: '/var/lib/vmlet/c/nvram.fd', template: '/nonexistent/VARS.fd' });
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

// The rendered XML is read back with the XML library and compared as data (xml-tree.ts): what
// libvirt reads, whatever the quoting and indentation.
const dom = (annotations: Record<string, string> = {}, over: Partial<BuildVmSpecInput> = {}) => tree(xml(annotations, over));
const MMIO = el('address', { type: 'virtio-mmio' });
const qcow2Driver = { name: 'qemu', type: 'qcow2', cache: 'writeback', discard: 'unmap' };

describe('renderDomainXml', () => {
  it('base shape: type, name, memory, vcpus, features, lifecycle, clock, devices', () => {
    const d = dom();
    expect(d.name).toBe('domain');
    expect(d.attrs).toEqual({ type: 'qemu', 'xmlns:qemu': QEMU_NS });
    expect(childNames(d)).toEqual(['name', 'metadata', 'memory', 'currentMemory', 'vcpu', 'os', 'features', 'cpu', 'clock', 'on_poweroff', 'on_reboot', 'on_crash', 'devices', 'qemu:capabilities']);
    expect(one(d, 'name')).toEqual(el('name', {}, 'vmlet-default-web-ab12cd34'));
    expect(one(d, 'memory')).toEqual(el('memory', { unit: 'MiB' }, '512'));
    expect(one(d, 'currentMemory')).toEqual(el('currentMemory', { unit: 'MiB' }, '512'));
    expect(one(d, 'vcpu')).toEqual(el('vcpu', { placement: 'static' }, '1'));
    expect(one(d, 'os')).toEqual(el('os', {}, el('type', { arch: 'x86_64', machine: 'q35' }, 'hvm')));
    // TCG: QEMU's translation cache capped (spec.ts TCG_TB_CACHE_MIB).
    expect(one(d, 'features')).toEqual(el('features', {}, el('acpi'), el('apic'), el('tcg', {}, el('tb-cache', { unit: 'MiB' }, '128'))));
    expect(one(d, 'on_poweroff')).toEqual(el('on_poweroff', {}, 'destroy'));
    expect(one(d, 'on_reboot')).toEqual(el('on_reboot', {}, 'restart'));
    expect(one(d, 'on_crash')).toEqual(el('on_crash', {}, 'destroy'));
    expect(one(d, 'clock')).toEqual(el('clock', { offset: 'utc' }));
    expect(one(d, 'devices/memballoon')).toEqual(el('memballoon', { model: 'virtio' }));
    expect(one(d, 'devices/rng')).toEqual(el('rng', { model: 'virtio' }, el('backend', { model: 'random' }, '/dev/urandom')));
    expect(at(d, 'devices/controller')).toEqual([el('controller', { type: 'usb', model: 'none' })]);
    for (const absent of ['cputune', 'numatune', 'graphics', 'video', 'iothreads', 'memoryBacking', 'loader']) expect(descendants(d, absent)).toEqual([]);
  });
  it('ends with a newline, as before (a file or a log line reads whole)', () => {
    expect(xml()).toMatch(/<\/domain>\n$/);
  });
  it('domain type kvm comes only from the spec', () => {
    expect(dom({}, { domainType: 'kvm' }).attrs).toEqual({ type: 'kvm', 'xmlns:qemu': QEMU_NS });
  });
  it("deletes libvirt's cpu-unavailable-features capability, under KVM and TCG alike (one qom-get per CPU property at every start otherwise)", () => {
    for (const domainType of ['qemu', 'kvm'] as const) {
      const x = xml({}, { domainType });
      const caps = parseXml(x).getElementsByTagNameNS(QEMU_NS, 'capabilities');
      expect(caps).toHaveLength(1);
      expect(one(tree(x), 'qemu:capabilities')).toEqual(el('qemu:capabilities', {}, el('qemu:del', { capability: 'cpu-unavailable-features' })));
    }
  });
  it('vcpus and memory', () => {
    const d = dom({ 'vmlet.io/vcpus': '4', 'vmlet.io/memory': '2Gi' });
    expect(one(d, 'vcpu')).toEqual(el('vcpu', { placement: 'static' }, '4'));
    expect(one(d, 'memory')).toEqual(el('memory', { unit: 'MiB' }, '2048'));
  });
  it('cpu model: host-passthrough becomes maximum under TCG, stays under KVM', () => {
    expect(one(dom(), 'cpu')).toEqual(el('cpu', { mode: 'maximum' }));
    expect(one(dom({}, { domainType: 'kvm' }), 'cpu')).toEqual(el('cpu', { mode: 'host-passthrough' }));
    expect(one(dom({ 'vmlet.io/cpu-model': 'host-model' }), 'cpu')).toEqual(el('cpu', { mode: 'host-model' }));
    expect(one(dom({ 'vmlet.io/cpu-model': 'host-model' }, { domainType: 'kvm' }), 'cpu')).toEqual(el('cpu', { mode: 'host-model' }));
    expect(one(dom({ 'vmlet.io/cpu-model': 'Nehalem' }), 'cpu')).toEqual(el('cpu', { mode: 'custom', match: 'exact' }, el('model', { fallback: 'forbid' }, 'Nehalem')));
  });
  it('machine pc', () => {
    expect(one(dom({ 'vmlet.io/machine': 'pc' }), 'os/type')).toEqual(el('type', { arch: 'x86_64', machine: 'pc' }, 'hvm'));
  });
  it('machine microvm: virtio devices on virtio-mmio', () => {
    const d = dom({ 'vmlet.io/machine': 'microvm' }, { boot: kernelBoot, domainType: 'kvm' });
    expect(one(d, 'os/type').attrs.machine).toBe('microvm');
    expect(one(d, 'devices/rng')).toEqual(el('rng', { model: 'virtio' }, el('backend', { model: 'random' }, '/dev/urandom'), MMIO));
    expect(one(d, 'devices/disk')).toEqual(
      el('disk', { type: 'file', device: 'disk' }, el('driver', qcow2Driver), el('source', { file: '/var/lib/vmlet/c/root.qcow2' }), el('target', { dev: 'vda', bus: 'virtio' }), MMIO),
    );
  });
  it('disk boot: the first disk boots; qcow2 with writeback cache and discard', () => {
    const d = dom({}, { disks: [{ path: '/a.qcow2', format: 'qcow2' }, { path: '/b.raw', format: 'raw', readonly: true }] });
    expect(at(d, 'devices/disk')).toEqual([
      el('disk', { type: 'file', device: 'disk' }, el('driver', qcow2Driver), el('source', { file: '/a.qcow2' }), el('target', { dev: 'vda', bus: 'virtio' }), el('boot', { order: '1' })),
      el('disk', { type: 'file', device: 'disk' }, el('driver', { name: 'qemu', type: 'raw', cache: 'writeback' }), el('source', { file: '/b.raw' }), el('target', { dev: 'vdb', bus: 'virtio' }), el('readonly')),
    ]);
    expect(descendants(d, 'boot')).toHaveLength(1);
  });
  it('disk bus scsi adds a virtio-scsi controller; sata needs none', () => {
    const scsi = dom({ 'vmlet.io/disk-bus': 'scsi' });
    expect(one(scsi, 'devices/disk/target')).toEqual(el('target', { dev: 'sda', bus: 'scsi' }));
    expect(at(scsi, 'devices/controller')).toContainEqual(el('controller', { type: 'scsi', index: '0', model: 'virtio-scsi' }));
    const sata = dom({ 'vmlet.io/disk-bus': 'sata' });
    expect(one(sata, 'devices/disk/target')).toEqual(el('target', { dev: 'sda', bus: 'sata' }));
    expect(descendants(sata).filter((e) => e.attrs.type === 'scsi')).toEqual([]);
  });
  it('a read-only disk on sata is a CD-ROM (QEMU has no read-only SATA hard disk)', () => {
    const disks = at(dom({ 'vmlet.io/disk-bus': 'sata' }, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/seed.iso', format: 'raw', readonly: true }] }), 'devices/disk');
    expect(disks[0]!.attrs).toEqual({ type: 'file', device: 'disk' });
    expect(childNames(disks[0]!)[0]).toBe('driver');
    expect(one(disks[0]!, 'driver').attrs).toMatchObject({ name: 'qemu', type: 'qcow2' });
    expect(disks[1]).toEqual(
      el('disk', { type: 'file', device: 'cdrom' }, el('driver', { name: 'qemu', type: 'raw', cache: 'writeback' }), el('source', { file: '/seed.iso' }), el('target', { dev: 'sdb', bus: 'sata' }), el('readonly')),
    );
    const virtio = dom({}, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/b', format: 'raw', readonly: true }] });
    expect(at(virtio, 'devices/disk').map((e) => e.attrs.device)).toEqual(['disk', 'disk']);
  });
  it('io-threads: declared, spread over virtio disks, and given to the scsi controller', () => {
    const d = dom({ 'vmlet.io/io-threads': '2' }, { disks: [{ path: '/a', format: 'qcow2' }, { path: '/b', format: 'qcow2' }, { path: '/c', format: 'qcow2' }] });
    expect(one(d, 'iothreads')).toEqual(el('iothreads', {}, '2'));
    expect(descendants(d).flatMap((e) => e.attrs.iothread ?? [])).toEqual(['1', '2', '1']);
    const scsi = dom({ 'vmlet.io/io-threads': '1', 'vmlet.io/disk-bus': 'scsi' });
    expect(at(scsi, 'devices/controller')).toContainEqual(el('controller', { type: 'scsi', index: '0', model: 'virtio-scsi' }, el('driver', { iothread: '1' })));
    expect(at(scsi, 'devices/disk/driver').map((e) => e.attrs.iothread)).toEqual([undefined]);
  });
  it('hugepages', () => {
    expect(one(dom({ 'vmlet.io/hugepages': '2Mi' }), 'memoryBacking')).toEqual(el('memoryBacking', {}, el('hugepages', {}, el('page', { size: '2048', unit: 'KiB' }))));
    expect(one(dom({ 'vmlet.io/hugepages': '1Gi', 'vmlet.io/memory': '1Gi' }), 'memoryBacking/hugepages/page')).toEqual(el('page', { size: '1048576', unit: 'KiB' }));
  });
  it('firmware uefi: read-only pflash loader and an NVRAM from the template', () => {
    const d = dom({ 'vmlet.io/firmware': 'uefi' });
    expect(one(d, 'os/loader')).toEqual(el('loader', { readonly: 'yes', type: 'pflash' }, '/usr/share/OVMF/OVMF_CODE_4M.fd'));
    expect(one(d, 'os/nvram')).toEqual(el('nvram', { template: '/usr/share/OVMF/OVMF_VARS_4M.fd' }, '/var/lib/vmlet/c/nvram.fd'));
  });
  it('kernel boot: kernel, initrd, cmdline; no disk boot order', () => {
    const d = dom({ 'vmlet.io/kernel-args': 'loglevel=7' }, { boot: kernelBoot });
    expect(one(d, 'os/kernel')).toEqual(el('kernel', {}, '/k/vmlinux'));
    expect(one(d, 'os/initrd')).toEqual(el('initrd', {}, '/k/initrd'));
    expect(one(d, 'os/cmdline')).toEqual(el('cmdline', {}, 'console=ttyS0 quiet loglevel=7'));
    expect(descendants(d, 'boot')).toEqual([]);
  });
  it('serial log on: virtlogd appends to the file; off: a plain pty', () => {
    expect(one(dom(), 'devices/serial')).toEqual(el('serial', { type: 'pty' }, el('log', { file: '/var/lib/vmlet/s/console.log', append: 'on' }), el('target', { port: '0' })));
    expect(one(dom(), 'devices/console')).toEqual(el('console', { type: 'pty' }, el('target', { type: 'serial', port: '0' })));
    expect(one(dom({ 'vmlet.io/serial-log': 'false' }), 'devices/serial')).toEqual(el('serial', { type: 'pty' }, el('target', { port: '0' })));
  });
  it('escapes every value', () => {
    const x = xml({ 'vmlet.io/kernel-args': `a="<b>" c='&'` }, { name: "x'<&>\"", boot: { kind: 'kernel', kernel: "/k/it's<&>", cmdline: '' }, disks: [{ path: "/d/'q'&<>.qcow2", format: 'qcow2' }] });
    const d = tree(x); // the strict parser reads it back: well-formed, and every value comes back as given
    expect(one(d, 'name')).toEqual(el('name', {}, "x'<&>\""));
    expect(one(d, 'os/kernel')).toEqual(el('kernel', {}, "/k/it's<&>"));
    expect(one(d, 'os/cmdline')).toEqual(el('cmdline', {}, `a="<b>" c='&'`));
    expect(one(d, 'devices/disk/source')).toEqual(el('source', { file: "/d/'q'&<>.qcow2" }));
    // Inside attribute values: no raw < or >, and every & starts an entity.
    const values = [...x.matchAll(/=(?:'([^']*)'|"([^"]*)")/g)].map((m) => m[1] ?? m[2]!);
    for (const v of values) expect(v).not.toMatch(/[<>]|&(?!(amp|lt|gt|apos|quot|#\d+|#x[0-9a-fA-F]+);)/);
  });
  it('refuses characters XML cannot carry, as an internal error (a programming fault)', () => {
    for (const path of ['/a\x01b', '/a\uffffb', '/a\ud800b']) {
      const err = catchError(() => xml({}, { disks: [{ path, format: 'qcow2' }] }));
      expect(err).toBeInstanceOf(VmletError);
      expect(err).toMatchObject({ kind: 'internal', message: expect.stringMatching(/not representable in XML/) as unknown });
    }
    expect(catchError(() => xml({}, { name: 'a\x1fb' }))).toMatchObject({ kind: 'internal', message: expect.stringMatching(/not representable in XML/) as unknown });
  });
  it('refuses a count that is not a whole number, as an internal error', () => {
    const s = spec();
    expect(catchError(() => renderDomainXml({ ...s, vcpus: 1, maxVcpus: 1.5 }))).toMatchObject({ kind: 'internal', message: expect.stringMatching(/1\.5 is not a count/) as unknown });
    expect(catchError(() => renderDomainXml({ ...s, memoryMiB: -1 }))).toMatchObject({ kind: 'internal', message: expect.stringMatching(/-1 is not a count/) as unknown });
  });
});

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  return expect.unreachable('no error thrown');
}

describe('stripNvram', () => {
  const uuid = el('uuid', {}, '1b4e28ba-2fa1-11d2-883f-0016d3cca427');
  it('removes the UEFI loader and NVRAM, nothing else', () => {
    const x = xml({ 'vmlet.io/firmware': 'uefi' }).replace('<name>', '<uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid><name>');
    const stripped = stripNvram(x);
    const d = tree(stripped);
    expect(descendants(d, 'loader')).toEqual([]);
    expect(descendants(d, 'nvram')).toEqual([]);
    expect(one(d, 'uuid')).toEqual(uuid);
    expect(one(d, 'os')).toEqual(el('os', {}, el('type', { arch: 'x86_64', machine: 'q35' }, 'hvm')));
    // Everything else as it was; no blank line where they stood.
    const before = tree(x);
    one(before, 'os').children = one(before, 'os').children.filter((c) => typeof c === 'string' || !['loader', 'nvram'].includes(c.name));
    expect(d).toEqual(before);
    expect(stripped).not.toMatch(/\n\s*\n/);
    expect(tree(stripNvram("<domain><os><loader readonly='yes' type='pflash'/><nvram template='/t'/></os></domain>"))).toEqual(el('domain', {}, el('os')));
    expect(stripNvram(xml())).toBe(xml());
  });
  it('reads the XML as libvirt dumps it (single quotes, its indentation, other metadata kept)', () => {
    const fromLibvirt = [
      "<domain type='kvm' id='3'>",
      '  <name>x</name>',
      '  <uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>',
      '  <metadata>',
      '    <other:x xmlns:other="https://example.com/x"><![CDATA[a<b]]>&amp;</other:x>',
      '  </metadata>',
      '  <os>',
      "    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>",
      "    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>",
      "    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/vmlet/c/nvram.fd</nvram>",
      "    <boot dev='hd'/>",
      '  </os>',
      '  <devices>',
      '    <nvram><address type="spapr-vio" reg="0x3000"/></nvram>',
      '  </devices>',
      '</domain>',
      '',
    ].join('\n');
    const d = tree(stripNvram(fromLibvirt));
    expect(d.attrs).toEqual({ type: 'kvm', id: '3' });
    expect(one(d, 'os')).toEqual(el('os', {}, el('type', { arch: 'x86_64', machine: 'pc-q35-7.2' }, 'hvm'), el('boot', { dev: 'hd' })));
    expect(one(d, 'metadata/other:x').children).toEqual(['a<b', '&']); // the CDATA section and the text, both kept
    expect(at(d, 'devices/nvram')).toHaveLength(1); // a device of that name (spapr-vio) is not the UEFI NVRAM
  });
});

describe('metadata', () => {
  it('is stored under the vmlet namespace as escaped JSON and read back', () => {
    const md: VmMetadata = { ...metadata, tricky: `</vmlet:vm> & "quotes" 'apos' <x> ü \u2028 \n`, n: 3, list: [true, null] };
    const x = xml({}, { metadata: md });
    const stored = one(tree(x), 'metadata');
    expect(stored.children).toHaveLength(1);
    const vm = one(stored, 'vmlet:vm');
    expect(vm.attrs).toEqual({ 'xmlns:vmlet': METADATA_NS });
    expect(vm.children).toHaveLength(1);
    expect(JSON.parse(vm.children[0] as string)).toEqual(spec({}, { metadata: md }).metadata);
    expect(parseXml(x).getElementsByTagNameNS(METADATA_NS, 'vm')).toHaveLength(1);
    expect(x.match(/<\/vmlet:vm>/g)).toHaveLength(1);
    expect(readMetadata(x)).toEqual(spec({}, { metadata: md }).metadata);
  });
  it('reads the form libvirt gives back (re-indented, quotes unescaped, numeric entities)', () => {
    const fromLibvirt = `<domain type='qemu'>\n  <name>x</name>\n  <metadata>\n    <vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{"v":1,"sandboxId":"s","containerId":"c","a":"x&lt;y&amp;z'&#233;&#x41;"}</vmlet:vm>\n  </metadata>\n</domain>`;
    expect(readMetadata(fromLibvirt)).toEqual({ v: 1, sandboxId: 's', containerId: 'c', a: "x<y&z'éA" });
    expect(readMetadata(fromLibvirt.replace(/vmlet:vm/g, 'v2:vm').replace('xmlns:vmlet', 'xmlns:v2'))).toMatchObject({ sandboxId: 's' });
    // The namespace is what counts, wherever it is declared.
    expect(readMetadata(`<domain xmlns:m="${METADATA_NS}"><metadata><m:vm>{"v":1,"sandboxId":"s","containerId":"c"}</m:vm></metadata></domain>`)).toMatchObject({ sandboxId: 's' });
  });
  it('is undefined when absent, of another namespace or version, or not vmlet JSON', () => {
    expect(readMetadata("<domain type='qemu'><name>x</name></domain>")).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://example.com/other">{"v":1,"sandboxId":"s","containerId":"c"}</vmlet:vm></metadata>')).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{"v":2,"sandboxId":"s","containerId":"c"}</vmlet:vm></metadata>')).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{not json</vmlet:vm></metadata>')).toBeUndefined();
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">[1]</vmlet:vm></metadata>')).toBeUndefined();
  });
  it('is undefined when the XML is not well-formed', () => {
    expect(readMetadata('<metadata><vmlet:vm xmlns:vmlet="https://vmlet.io/xmlns/domain/1">{"v":1,"sandboxId":"s","containerId":"c"}</vmlet:vm>')).toBeUndefined();
    expect(readMetadata('')).toBeUndefined();
  });
});

describe('network cards and the cloud-init seed', () => {
  const nic = { tap: 'vmt-ab12cd34ef56', mac: '02:ab:12:cd:34:ef', mtu: 1450 };
  const nicEl = (...extra: XmlElement[]) =>
    el('interface', { type: 'ethernet' }, el('mac', { address: '02:ab:12:cd:34:ef' }), el('target', { dev: 'vmt-ab12cd34ef56' }), el('model', { type: 'virtio' }), el('mtu', { size: '1450' }), ...extra);

  const NO_ROM = el('rom', { enabled: 'no' });

  it('renders a tap NIC with the pod MAC and MTU, without the network-boot option ROM', () => {
    expect(one(dom({}, { nics: [nic] }), 'devices/interface')).toEqual(nicEl(NO_ROM));
    expect(descendants(dom(), 'interface')).toEqual([]);
  });

  it('nicXml: the same <interface> alone, as lines (virtio-mmio on microvm)', () => {
    expect(tree(nicXml(nic).join('\n'))).toEqual(nicEl(NO_ROM));
    expect(nicXml(nic).length).toBeGreaterThan(1);
    expect(tree(nicXml(nic, 'microvm').join('\n'))).toEqual(nicEl(MMIO));
  });

  it('attaches the seed read-only as a CD-ROM on the machine’s own bus', () => {
    const seed = (dev: string, bus: string) => el('disk', { type: 'file', device: 'cdrom' }, el('driver', { name: 'qemu', type: 'raw' }), el('source', { file: '/s/seed.iso' }), el('target', { dev, bus }), el('readonly'));
    expect(at(dom({}, { seedIso: '/s/seed.iso' }), 'devices/disk')[1]).toEqual(seed('sda', 'sata'));
    expect(at(dom({ 'vmlet.io/machine': 'pc' }, { seedIso: '/s/seed.iso' }), 'devices/disk')[1]).toEqual(seed('hdc', 'ide'));
    // A SATA root disk takes sda: the seed follows it.
    expect(at(dom({ 'vmlet.io/disk-bus': 'sata' }, { seedIso: '/s/seed.iso' }), 'devices/disk')[1]).toEqual(seed('sdb', 'sata'));
    // microvm has neither controller: a read-only virtio disk on virtio-mmio.
    const micro = at(dom({ 'vmlet.io/machine': 'microvm' }, { boot: kernelBoot, domainType: 'kvm', seedIso: '/s/seed.iso' }), 'devices/disk')[1];
    expect(micro).toEqual(el('disk', { type: 'file', device: 'disk' }, el('driver', { name: 'qemu', type: 'raw' }), el('source', { file: '/s/seed.iso' }), el('target', { dev: 'vdb', bus: 'virtio' }), el('readonly'), MMIO));
  });
});

describe('guest-agent channel', () => {
  const socket = '/run/vmlet/qga/c0ffee.sock';

  it('is QEMU arguments libvirt does not manage: a unix socket, a virtio-serial controller and the named port', () => {
    const x = xml({}, { guestAgent: { socket } });
    const d = tree(x);
    expect(d.attrs).toEqual({ type: 'qemu', 'xmlns:qemu': 'http://libvirt.org/schemas/domain/qemu/1.0' });
    // In libvirt's qemu namespace (whatever the prefix), which is what makes libvirt pass the arguments on.
    expect(parseXml(x).getElementsByTagNameNS(QEMU_NS, 'commandline')).toHaveLength(1);
    const cmdline = one(d, 'qemu:commandline');
    expect(cmdline.children.every((c) => typeof c !== 'string' && c.name === 'qemu:arg')).toBe(true);
    expect(at(d, 'qemu:commandline/qemu:arg').map((a) => a.attrs.value)).toEqual([
      '-chardev', `socket,id=vmletqga,path=${socket},server=on,wait=off`,
      '-device', '{"driver":"virtio-serial-pci","id":"vmletvser"}',
      '-device', '{"driver":"virtserialport","bus":"vmletvser.0","chardev":"vmletqga","name":"org.qemu.guest_agent.0"}',
    ]);
    // After <devices>, and never a libvirt <channel> (libvirtd would hold the socket's only connection).
    expect(childNames(d).slice(-3)).toEqual(['devices', 'qemu:commandline', 'qemu:capabilities']);
    expect(descendants(d, 'channel')).toEqual([]);
    expect(descendants(d, 'address')).toEqual([]); // QEMU picks the slot
  });

  it('is absent without a socket', () => {
    expect(descendants(dom(), 'qemu:commandline')).toEqual([]);
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

describe("vmlet's QMP monitor", () => {
  const agent = '/run/vmlet/qga/c0ffee/qga.sock';
  const monitorSocket = '/run/vmlet/qga/c0ffee/qmp.sock';

  it('is QEMU arguments after the agent channel: a listening unix socket and a control-mode monitor on it', () => {
    const d = tree(xml({}, { guestAgent: { socket: agent }, monitorSocket }));
    expect(at(d, 'qemu:commandline/qemu:arg').map((a) => a.attrs.value).slice(-4)).toEqual([
      '-chardev', `socket,id=vmletmon,path=${monitorSocket},server=on,wait=off`,
      '-mon', 'chardev=vmletmon,mode=control',
    ]);
    expect(descendants(d, 'qemu:commandline')).toHaveLength(1);
  });

  it('alone still gets the qemu namespace; commas in the path are doubled', () => {
    const d = tree(xml({}, { monitorSocket }));
    expect(d.attrs).toEqual({ type: 'qemu', 'xmlns:qemu': QEMU_NS });
    expect(at(d, 'qemu:commandline/qemu:arg')).toHaveLength(4);
    expect(monitorArgs('/a,b/qmp.sock')[1]).toBe('socket,id=vmletmon,path=/a,,b/qmp.sock,server=on,wait=off');
  });

  it('refuses a socket path longer than a unix socket path can be', () => {
    expect(() => spec({}, { monitorSocket: '/' + 'x'.repeat(107) })).toThrow(/monitor socket path is longer than 107 bytes/);
    expect(spec({}, { monitorSocket: '/' + 'x'.repeat(106) }).monitor).toEqual({ socket: '/' + 'x'.repeat(106) });
  });
});

describe('VNC display (vmlet.io/vnc)', () => {
  const vncSocket = '/var/lib/vmlet/pods/ab12cd34ef/vnc.sock';

  it('without the annotation: headless, exactly the devices of before (no graphics, no video)', () => {
    const plain = dom({}, { boot: kernelBoot });
    expect(childNames(one(plain, 'devices'))).toEqual(['disk', 'controller', 'serial', 'console', 'rng', 'memballoon']);
    // Off as written, or a socket given without the annotation: the same domain (the setting decides).
    const sameAsPlain = (d: XmlElement) => expect({ ...d, children: d.children.filter((c) => typeof c === 'string' || c.name !== 'metadata') }).toEqual({ ...plain, children: plain.children.filter((c) => typeof c === 'string' || c.name !== 'metadata') });
    sameAsPlain(dom({ 'vmlet.io/vnc': 'false' }, { boot: kernelBoot }));
    expect(dom({}, { boot: kernelBoot, vncSocket })).toEqual(plain);
    expect(one(plain, 'os/cmdline')).toEqual(el('cmdline', {}, 'console=ttyS0 quiet'));
  });

  it('with it: a VNC server on the unix socket only, and a standard VGA, after the console', () => {
    const d = dom({ 'vmlet.io/vnc': 'true' }, { vncSocket });
    expect(one(d, 'devices/graphics')).toEqual(el('graphics', { type: 'vnc', socket: vncSocket }));
    expect(one(d, 'devices/video')).toEqual(el('video', {}, el('model', { type: 'vga' })));
    expect(childNames(one(d, 'devices'))).toEqual(['disk', 'controller', 'serial', 'console', 'graphics', 'video', 'rng', 'memballoon']);
    // No TCP: no port, autoport, listen address or password anywhere.
    expect(descendants(d, 'listen')).toEqual([]);
    for (const e of descendants(d)) for (const a of ['port', 'autoport', 'listen', 'passwd']) expect(e.name === 'graphics' ? e.attrs[a] : undefined).toBeUndefined();
    // The serial console is untouched: still the CRI log's source.
    expect(one(d, 'devices/serial')).toEqual(one(dom(), 'devices/serial'));
    expect(spec({ 'vmlet.io/vnc': 'true' }, { vncSocket }).vnc).toEqual({ socket: vncSocket });
  });

  it("kernel boot: console=tty0 goes first, so the image's serial console stays /dev/console", () => {
    expect(one(dom({ 'vmlet.io/vnc': 'true' }, { boot: kernelBoot, vncSocket }), 'os/cmdline')).toEqual(el('cmdline', {}, 'console=tty0 console=ttyS0 quiet'));
    const withArgs = dom({ 'vmlet.io/vnc': 'true', 'vmlet.io/kernel-args': 'loglevel=7' }, { boot: kernelBoot, vncSocket });
    expect(one(withArgs, 'os/cmdline')).toEqual(el('cmdline', {}, 'console=tty0 console=ttyS0 quiet loglevel=7'));
    // Already on a virtual terminal (the image's or the kernel-args'): left as it is.
    const vt = (cmdline: string, args?: string) => spec({ 'vmlet.io/vnc': 'true', ...(args ? { 'vmlet.io/kernel-args': args } : {}) }, { boot: { ...kernelBoot, cmdline }, vncSocket }).boot;
    expect(vt('console=ttyS0 console=tty1')).toMatchObject({ cmdline: 'console=ttyS0 console=tty1' });
    expect(vt('console=ttyS0', 'console=tty0')).toMatchObject({ cmdline: 'console=ttyS0 console=tty0' });
    // console=ttyS0 and consoles named ttyS… are not virtual terminals.
    expect(vt('console=ttyS1,115200')).toMatchObject({ cmdline: 'console=tty0 console=ttyS1,115200' });
    expect(vt('')).toMatchObject({ cmdline: 'console=tty0' });
    // Disk boot: the command line is the guest's own (its boot loader's).
    expect(descendants(dom({ 'vmlet.io/vnc': 'true' }, { vncSocket }), 'cmdline')).toEqual([]);
  });

  it('on pc and UEFI alike; with hotplug slots the VGA keeps slot 1 of pcie.0 (libvirt assigns it)', () => {
    expect(one(dom({ 'vmlet.io/vnc': 'true', 'vmlet.io/machine': 'pc' }, { vncSocket }), 'devices/video')).toEqual(el('video', {}, el('model', { type: 'vga' })));
    expect(one(dom({ 'vmlet.io/vnc': 'true', 'vmlet.io/firmware': 'uefi' }, { vncSocket }), 'devices/graphics').attrs.socket).toBe(vncSocket);
    const hp = dom({ 'vmlet.io/vnc': 'true' }, { vncSocket, hotplugSlots: 2 });
    expect(one(hp, 'devices/video')).toEqual(el('video', {}, el('model', { type: 'vga' })));
    const slots = descendants(hp, 'address').map((a) => a.attrs.slot);
    expect(slots).not.toContain('0x01');
  });

  it('refuses, as internal errors, a display without a socket and a socket path too long for a unix socket', () => {
    expect(catchError(() => spec({ 'vmlet.io/vnc': 'true' }))).toMatchObject({ kind: 'internal', message: expect.stringMatching(/VNC display on without a socket path/) as unknown });
    expect(catchError(() => spec({ 'vmlet.io/vnc': 'true' }, { vncSocket: '/' + 'x'.repeat(107) }))).toMatchObject({ kind: 'internal', message: expect.stringMatching(/VNC socket path is longer than 107 bytes/) as unknown });
    expect(spec({ 'vmlet.io/vnc': 'true' }, { vncSocket: '/' + 'x'.repeat(106) }).vnc).toEqual({ socket: '/' + 'x'.repeat(106) });
  });

  it('escapes the socket path like every other value', () => {
    const odd = "/s/it's <&> \"q\".sock";
    expect(one(dom({ 'vmlet.io/vnc': 'true' }, { vncSocket: odd }), 'devices/graphics').attrs.socket).toBe(odd);
  });
});

describe('live-resize headroom and CPU tuning', () => {
  it('defines the maxima and starts at the size', () => {
    const d = dom({ 'vmlet.io/vcpus': '2', 'vmlet.io/max-vcpus': '4', 'vmlet.io/memory': '256Mi', 'vmlet.io/max-memory': '1Gi' });
    expect(one(d, 'memory')).toEqual(el('memory', { unit: 'MiB' }, '1024'));
    expect(one(d, 'currentMemory')).toEqual(el('currentMemory', { unit: 'MiB' }, '256'));
    expect(one(d, 'vcpu')).toEqual(el('vcpu', { placement: 'static', current: '2' }, '4'));
  });
  it('renders shares, the whole-domain quota, pinning of every vCPU and the emulator, and NUMA nodes', () => {
    const d = dom({ 'vmlet.io/vcpus': '1', 'vmlet.io/max-vcpus': '2' }, { cputune: { shares: 512, quotaUs: 50_000, periodUs: 100_000, cpuset: [0, 1, 3], memNodes: [0] } });
    expect(one(d, 'cputune')).toEqual(
      el(
        'cputune',
        {},
        el('vcpupin', { vcpu: '0', cpuset: '0-1,3' }),
        el('vcpupin', { vcpu: '1', cpuset: '0-1,3' }),
        el('emulatorpin', { cpuset: '0-1,3' }),
        el('shares', {}, '512'),
        el('global_period', {}, '100000'),
        el('global_quota', {}, '50000'),
      ),
    );
    expect(one(d, 'numatune')).toEqual(el('numatune', {}, el('memory', { mode: 'strict', nodeset: '0' })));
    expect(childNames(d).slice(childNames(d).indexOf('cputune'), childNames(d).indexOf('cputune') + 2)).toEqual(['cputune', 'numatune']);
  });
  it('puts the balloon on virtio-mmio for microvm', () => {
    expect(one(dom({ 'vmlet.io/machine': 'microvm' }, { boot: kernelBoot, domainType: 'kvm' }), 'devices/memballoon')).toEqual(el('memballoon', { model: 'virtio' }, MMIO));
  });
});
