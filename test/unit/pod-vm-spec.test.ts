// The sandboxed pod's VM spec and its domain XML (pure): guest kit boot, the image rootfs share,
// the scratch disk found by serial, vmlet's agent port, and the pod network on the command line.
import { describe, expect, it } from 'vitest';
import { AGENT_PORT, IMAGES_TAG, netArgs, podVmSpec, SCRATCH_SERIAL } from '../../src/guest/pod-vm-spec.js';
import { NODE_DEFAULTS, parseVmSettings } from '../../src/vm/annotations.js';
import { renderDomainXml } from '../../src/vm/domain-xml.js';
import { QBOOT_ROM } from '../../src/vm/spec.js';
import { validateDomainXml, virtXmlValidateMissing } from '../helpers/virt-xml-validate.js';

const settings = (annotations: Record<string, string> = {}) =>
  parseVmSettings({ sandboxAnnotations: annotations, containerAnnotations: {}, imageLabels: {}, containerResources: null, sandboxResources: null, defaults: NODE_DEFAULTS });

const input = (annotations: Record<string, string> = {}) => ({
  name: 'vmlet-ns-pod-ab12cd34',
  domainType: 'qemu' as const,
  settings: settings(annotations),
  kit: { vmlinux: '/usr/local/lib/vmlet/guest/vmlinux', initrd: '/usr/local/lib/vmlet/guest/initrd.img', cmdline: 'console=ttyS0 quiet\n' },
  imagesDir: '/var/lib/vmlet/images/rootfs',
  sharedDir: '/var/lib/vmlet/pods/ab/shared',
  scratch: '/var/lib/vmlet/pods/ab/scratch.img',
  agentSocket: '/var/lib/vmlet/pods/ab/qga.sock',
  consoleLog: '/var/lib/vmlet/pods/ab/console.log',
  nic: { tap: 'vmt-ab12cd34ef56', mac: '0a:58:0a:f4:00:05', mtu: 1450 },
  net: {
    ips: [
      { address: '10.244.0.5', prefix: 24, gateway: '10.244.0.1' },
      { address: 'fd00::5', prefix: 64, gateway: 'fd00::1' },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: '10.244.0.1' }, { dst: '10.96.0.0/12', gw: '10.244.0.1' }, { dst: '192.168.9.0/24' }],
    mtu: 1450,
  },
  metadata: { v: 1 as const, sandboxId: 'ab12cd34', containerId: '', podVm: true },
});

describe('pod VM spec', () => {
  it('puts the pod network on the kernel command line: addresses, gateways, routes (default route once), MTU', () => {
    expect(netArgs(input().net)).toEqual([
      'vmlet.ip=10.244.0.5/24',
      'vmlet.ip=fd00::5/64',
      'vmlet.gw=10.244.0.1',
      'vmlet.gw=fd00::1',
      'vmlet.route=10.96.0.0/12@10.244.0.1',
      'vmlet.route=192.168.9.0/24@',
      'vmlet.mtu=1450',
    ]);
    expect(netArgs(undefined)).toEqual([]);
  });

  it('boots the kit with the image tree read-only over 9p, the scratch disk by serial, and the agent port', () => {
    const spec = podVmSpec(input());
    expect(spec.boot).toMatchObject({ kind: 'kernel', kernel: '/usr/local/lib/vmlet/guest/vmlinux', initrd: '/usr/local/lib/vmlet/guest/initrd.img' });
    expect(spec.boot.kind === 'kernel' && spec.boot.cmdline).toBe('console=ttyS0 quiet pcie_ports=compat ' + netArgs(input().net).join(' '));
    // Device addresses (integrated endpoints on pcie.0) are domain-xml's business: left out here.
    const xml = renderDomainXml(spec).replace(/>\s+</g, '><').replace(/<address type="pci"[^>]*\/>/g, '');
    expect(xml).toContain(`<filesystem type="mount" accessmode="passthrough"><source dir="/var/lib/vmlet/images/rootfs"/><target dir="${IMAGES_TAG}"/><readonly/></filesystem>`);
    expect(xml).toContain('<filesystem type="mount" accessmode="passthrough"><source dir="/var/lib/vmlet/pods/ab/shared"/><target dir="vmlet-shared"/></filesystem>');
    expect(xml).toContain(`<serial>${SCRATCH_SERIAL}</serial>`);
    expect(xml).toContain(`name&quot;:&quot;${AGENT_PORT}&quot;`);
    expect(xml).not.toContain('org.qemu.guest_agent.0');
    expect(xml).toContain('<memballoon model="virtio" freePageReporting="on"></memballoon>');
    expect(spec.disks).toEqual([{ path: '/var/lib/vmlet/pods/ab/scratch.img', format: 'raw', bus: 'virtio', target: 'vda', serial: SCRATCH_SERIAL }]);
  });

  it('keeps the guest kit\'s needs whatever the annotations say: virtio disks, BIOS, a console log, no display', () => {
    const spec = podVmSpec(input({ 'vmlet.io/disk-bus': 'sata', 'vmlet.io/serial-log': 'false', 'vmlet.io/vcpus': '2', 'vmlet.io/memory': '1Gi', 'vmlet.io/vnc': 'true' }));
    expect(spec.vnc).toBeUndefined();
    expect(renderDomainXml(spec)).not.toMatch(/<graphics|<video/);
    expect(spec.boot.kind === 'kernel' && spec.boot.cmdline).not.toContain('console=tty0');
    expect(spec.disks[0]!.bus).toBe('virtio');
    expect(spec.serialLog).toEqual({ file: '/var/lib/vmlet/pods/ab/console.log' });
    expect(spec.vcpus).toBe(2);
    expect(spec.memoryMiB).toBe(1024);
  });

  it('starts the BIOS ROM it is given (qboot) in place of SeaBIOS; none given: no loader', () => {
    const xml = renderDomainXml(podVmSpec({ ...input(), biosRom: QBOOT_ROM })).replace(/>\s+</g, '><');
    expect(xml).toContain(`<loader readonly="yes" type="rom">${QBOOT_ROM}</loader><kernel>`);
    expect(renderDomainXml(podVmSpec(input()))).not.toContain('<loader');
  });

  it('renders XML libvirt\'s schema accepts', (ctx) => {
    if (virtXmlValidateMissing) ctx.skip(virtXmlValidateMissing);
    expect(() => validateDomainXml('pod VM', renderDomainXml(podVmSpec(input())))).not.toThrow();
    expect(() => validateDomainXml('pod VM with qboot', renderDomainXml(podVmSpec({ ...input(), biosRom: QBOOT_ROM })))).not.toThrow();
  });
});
